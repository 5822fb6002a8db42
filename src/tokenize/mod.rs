//! Tokenizer registry and rule language for `batchline validate`.
//!
//! - [`registry`]: load HF `tokenizer.json` files and the OpenAI encodings (`o200k_base`,
//!   `cl100k_base`), share them across threads, count tokens exactly and cheaply.
//! - [`hub`]: find a Hub model's `tokenizer.json` (`Qwen/Qwen1.5-7B`) in the Hugging Face
//!   cache, or download it into that cache as `huggingface_hub` would.
//! - [`rules`]: parse rule expressions (`same(tokens(prompt + " " + x))`, ...) and
//!   `--rules FILE` texts, with 1-based column positions in syntax errors.
//! - [`eval`]: evaluate a [`RuleSet`] on JSON records, once per tokenizer where
//!   `tokens(...)` is used, giving a [`RecordVerdict`] per record.
//!
//! ```no_run
//! use batchline::tokenize::*;
//! let specs: Vec<TokenizerSpec> = ["llama3=/tmp/llama3.json", "o200k_base"]
//!     .iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
//! let set = TokenizerSet::load(&specs)?;
//! let rules = vec![Rule::parse_arg(1, r#"same(tokens(prompt + " " + single_token))"#)?];
//! let rule_set = RuleSet::new(rules, set, false)?;
//! let mut cache = rule_set.new_cache(); // one per thread
//! let record = serde_json::json!({"prompt": "hi", "single_token": "it"});
//! let verdict = rule_set.evaluate(&record, &mut cache);
//! println!("{} {:?}", verdict.valid, verdict.counts);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod eval;
pub mod hub;
pub mod registry;
pub mod rules;

pub use error::{ParseError, RuleError, TokenizeError};
pub use eval::{EvalCache, FailedRule, RecordVerdict, RuleSet};
pub use registry::{
    take_tokenizer_lines, CountCache, LoadOptions, OpenAiEncoding, Tokenizer, TokenizerSet,
    TokenizerSource, TokenizerSpec,
};
pub use rules::{parse_expr, parse_rules_file, BinOp, Expr, Func, PathSeg, Rule};
