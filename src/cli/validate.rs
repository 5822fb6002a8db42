//! `batchline validate` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::{self};
use batchline::io::input::InputSpec;

use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline validate scenarios.jsonl -o valid.jsonl --tokenizer llama3=/tmp/tok/llama3.json \\
      --tokenizer o200k_base --rule 'same(tokens(prompt + \" \" + single_token))'
  batchline validate records.jsonl --tokenizer qwen=Qwen/Qwen2.5-7B-Instruct --rules rules.txt \\
      --rejects rejects.jsonl
  HF_HUB_OFFLINE=1 batchline validate - --tokenizer hf:gpt2 --rule 'tokens(text) < 1024' \\
      --target 1000 < records.jsonl

Exit status: 0 every record is valid; 1 finished, some records invalid (the usual case);
2 usage, rule, tokenizer or I/O error (nothing is written then); 130 interrupted.")]
pub struct ValidateArgs {
    /// Records (JSONL objects), or `-` for stdin (`.zst`/`.gz` are decompressed).
    #[arg(value_name = "RECORDS")]
    pub input: String,
    /// Valid records (default: stdout), in input order, as read.
    #[arg(long, short = 'o', value_name = "OUT", default_value = "-")]
    pub output: String,
    /// Tokenizer (repeatable): NAME=PATH of an HF tokenizer.json, a Hugging Face model id
    /// (NAME=ORG/MODEL[@REV] or hf:ID[@REV], from the HF cache or downloaded into it), or
    /// o200k_base / cl100k_base (embedded). An existing path wins over a Hub id.
    #[arg(long = "tokenizer", value_name = "NAME=SOURCE")]
    pub tokenizers: Vec<String>,
    /// Revision (branch, tag or commit) for the Hub tokenizers that name none with @REV
    /// (default: main).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Rule (repeatable), `EXPR` or `NAME: EXPR`, e.g.
    /// 'same(tokens(prompt + " " + single_token))'.
    #[arg(long = "rule", value_name = "RULE", allow_hyphen_values = true)]
    pub rules: Vec<String>,
    /// File of rules, one per line (`NAME: EXPR` or `EXPR`; `#` comments); a line
    /// `tokenizer NAME=SOURCE` adds a tokenizer as --tokenizer does.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules_file: Option<PathBuf>,
    /// tokens(...) counts the special tokens the tokenizer adds (BOS, ...).
    #[arg(long)]
    pub special: bool,
    /// Add the counts to each valid record as "_tokens": {EXPR: {NAME: N}}.
    #[arg(long)]
    pub annotate: bool,
    /// Stop after N valid records (the first N in input order).
    #[arg(long, value_name = "N")]
    pub target: Option<u64>,
    /// Invalid records, with the failed rules and the counts per tokenizer.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<String>,
    /// What to do with a line that is not a JSON object (or not UTF-8, or too long):
    /// `skip` (count it invalid, exit 1) or `fail` (stop at the first, write nothing,
    /// exit 2). Records that break rules are never errors: they are what is filtered.
    #[arg(long, value_enum, default_value = "skip")]
    pub on_error: super::OnError,
    /// Write the report (records, valid, failures per rule, tokens...) as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

impl ValidateArgs {
    pub fn into_config(
        self,
        g: &GlobalArgs,
    ) -> Result<commands::validate::ValidateConfig, batchline::Error> {
        use batchline::io::output::OutputSpec;
        let mut c = commands::validate::ValidateConfig::new(
            InputSpec::parse(&self.input),
            OutputSpec::parse(&self.output),
        );
        c.tokenizers = self
            .tokenizers
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, batchline::tokenize::TokenizeError>>()
            .map_err(|e| batchline::Error::Usage(e.to_string()))?;
        if let Some(rev) = &self.revision {
            batchline::tokenize::hub::check_revision(rev)
                .map_err(|m| batchline::Error::Usage(format!("--revision: {m}")))?;
        }
        c.revision = self.revision;
        c.rules = self.rules;
        c.rules_file = self.rules_file;
        c.special = self.special;
        c.annotate = self.annotate;
        c.target = self.target;
        c.report = self.report;
        c.common = g.common(self.on_error, self.rejects.as_deref());
        Ok(c)
    }
}
