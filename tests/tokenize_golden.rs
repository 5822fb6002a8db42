//! Golden token counts: the committed fixtures/tokenizers/golden.jsonl was produced by the
//! Python `tokenizers` library (scripts/golden_counts.py). Both the full pipeline
//! (`Tokenizer::count`) and the chunked, memoised path (`TokenizerSet::count_all`) must
//! match it, with and without special tokens.

use std::sync::Arc;

mod common;

use batchline::tokenize::{OpenAiEncoding, Tokenizer, TokenizerSet};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tokenizers");

fn texts() -> Vec<String> {
    std::fs::read_to_string(format!("{FIXTURES}/texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn golden() -> Vec<Value> {
    std::fs::read_to_string(format!("{FIXTURES}/golden.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks each tokenizer in `toks` against the golden column `columns[i]`.
fn check(toks: Vec<Tokenizer>, columns: &[&str]) {
    let texts = texts();
    let golden = golden();
    assert_eq!(texts.len(), golden.len());
    assert!(texts.len() >= 300);
    let set = TokenizerSet::new(toks.into_iter().map(Arc::new).collect()).unwrap();
    let mut mismatches = Vec::new();
    for special in [false, true] {
        // Two passes over the texts: the second one hits the chunk memo.
        let mut cache = set.new_cache();
        for pass in 0..2 {
            for (text, row) in texts.iter().zip(&golden) {
                let mut got = Vec::new();
                set.count_all(text, special, &mut cache, &mut got).unwrap();
                for (i, t) in set.tokenizers().iter().enumerate() {
                    let want = row[columns[i]][special as usize].as_u64().unwrap() as usize;
                    let full = t.count(text, special);
                    if full != want || got[i] != want {
                        mismatches.push(format!(
                            "{} special={special} pass={pass} text {:?}: python {want}, full {full}, chunked {}",
                            columns[i], text, got[i]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn golden_claude_and_mistral() {
    let claude = Tokenizer::from_file("claude", format!("{FIXTURES}/claude.json")).unwrap();
    let mistral =
        Tokenizer::from_file("mistral-7b", format!("{FIXTURES}/mistral-7b.json")).unwrap();
    assert!(claude.is_chunkable());
    assert!(!mistral.is_chunkable()); // no pre-tokenizer: whole-text pipeline
    check(vec![claude, mistral], &["claude", "mistral-7b"]);
}

#[test]
fn golden_openai_encodings() {
    let o200k = Tokenizer::openai("o200k_base", OpenAiEncoding::O200kBase);
    let cl100k = Tokenizer::openai("cl100k_base", OpenAiEncoding::Cl100kBase);
    check(vec![o200k, cl100k], &["o200k_base", "cl100k_base"]);
}

/// Needs the files of scripts/fetch_tokenizers.sh (scripts/test.sh fetches them).
#[test]
#[ignore = "needs the tokenizers of scripts/fetch_tokenizers.sh (scripts/test.sh fetches them and runs this)"]
fn golden_fetched_files() {
    let names = [
        ("llama3", "llama3"),
        ("qwen3", "qwen3"),
        ("gpt4o", "o200k_base"),
        ("gpt35turbo", "cl100k_base"),
    ];
    let mut toks = Vec::new();
    let mut columns = Vec::new();
    for (file, column) in names {
        let t = Tokenizer::from_file(column, common::fetched_tokenizer(file)).unwrap();
        assert!(t.is_chunkable(), "{file} should take the chunked path");
        toks.push(t);
        columns.push(column);
    }
    check(toks, &columns);
}

#[test]
fn missing_and_malformed_files_are_clear_errors() {
    let e = Tokenizer::from_file("x", "/nonexistent/tok.json").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/tok.json"), "{e}");
    let dir = std::env::temp_dir().join(format!("bl-tok-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"model\": 3").unwrap();
    let e = Tokenizer::from_file("x", &bad).unwrap_err();
    assert!(
        e.to_string().starts_with("malformed tokenizer file") && e.to_string().contains("bad.json"),
        "{e}"
    );
    std::fs::write(&bad, "{\"model\": {\"type\": \"BPE\"}}").unwrap();
    let e = Tokenizer::from_file("x", &bad).unwrap_err();
    assert!(e.to_string().contains("bad.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokenizers_are_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<TokenizerSet>();
    assert_send_sync::<batchline::tokenize::RuleSet>();
}
