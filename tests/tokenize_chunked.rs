//! Randomised check that chunked, memoised counting equals the full pipeline on texts made
//! of pieces that stress the chunk boundaries (spaces after letters, marks, digits,
//! apostrophes, unusual whitespace, NFKC-sensitive characters, added tokens).

mod common;

use std::sync::Arc;

use batchline::tokenize::{OpenAiEncoding, Tokenizer, TokenizerSet};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tokenizers");
const PIECES: &[&str] = &[
    " ",
    " ",
    " ",
    "  ",
    "   ",
    "\u{a0}",
    "\t",
    "\n",
    "\r\n",
    " \n",
    "\u{2003}",
    "\u{3000}",
    "\u{85}",
    "a",
    "B",
    "the",
    "The",
    "é",
    "e\u{301}",
    "\u{301}",
    "\u{308}",
    "'s",
    "'S",
    "'ll",
    "'",
    "’",
    "1",
    "23",
    "4567",
    "東",
    "京",
    "😀",
    "👍🏽",
    ".",
    ",",
    "/",
    "-",
    "—",
    "\"",
    "\\",
    "ﬁ",
    "Ａ",
    "ǅ",
    "\u{958}",
    "क",
    "\u{1100}",
    "\u{1161}",
    "\u{11a8}",
    "ß",
    "İ",
    "\u{1c}",
    "\u{0}",
    "<EOT>",
    "<|endoftext|>",
    "<s>",
    "it",
    "ingful",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks chunked == full for every tokenizer, and equal counts within each `pairs` pair
/// (an HF-form file and the bpe-openai encoding it describes).
fn check(toks: Vec<Tokenizer>, n: usize) {
    check_pairs(toks, n, &[]);
}

fn check_pairs(toks: Vec<Tokenizer>, n: usize, pairs: &[(usize, usize)]) {
    let set = TokenizerSet::new(toks.into_iter().map(Arc::new).collect()).unwrap();
    let mut cache = set.new_cache();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut got = Vec::new();
    for _ in 0..n {
        let len = (rng.next() % 24) as usize;
        let text: String = (0..len)
            .map(|_| PIECES[(rng.next() % PIECES.len() as u64) as usize])
            .collect();
        for special in [false, true] {
            set.count_all(&text, special, &mut cache, &mut got).unwrap();
            for (t, &c) in set.tokenizers().iter().zip(&got) {
                assert_eq!(
                    t.count(&text, special),
                    c,
                    "{} special={special} on {text:?}",
                    t.name()
                );
            }
            for &(a, b) in pairs {
                assert_eq!(
                    got[a],
                    got[b],
                    "{} vs {} on {text:?}",
                    set.tokenizers()[a].name(),
                    set.tokenizers()[b].name()
                );
            }
        }
    }
}

#[test]
fn chunked_equals_full_committed_and_embedded() {
    let toks = vec![
        Tokenizer::from_file("claude", format!("{FIXTURES}/claude.json")).unwrap(),
        Tokenizer::openai("o200k_base", OpenAiEncoding::O200kBase),
        Tokenizer::openai("cl100k_base", OpenAiEncoding::Cl100kBase),
    ];
    check(toks, 4000);
}

#[test]
#[ignore = "needs the tokenizers of scripts/fetch_tokenizers.sh (scripts/test.sh fetches them and runs this)"]
fn chunked_equals_full_fetched() {
    let mut toks = Vec::new();
    for name in ["llama3", "qwen3", "gpt4o", "gpt35turbo"] {
        toks.push(Tokenizer::from_file(name, common::fetched_tokenizer(name)).unwrap());
    }
    // HF-form files of the OpenAI encodings must agree with bpe-openai.
    let mut pairs = Vec::new();
    for (file, enc) in [
        ("gpt4o", OpenAiEncoding::O200kBase),
        ("gpt35turbo", OpenAiEncoding::Cl100kBase),
    ] {
        if let Some(i) = toks.iter().position(|t| t.name() == file) {
            toks.push(Tokenizer::openai(enc.name(), enc));
            pairs.push((i, toks.len() - 1));
        }
    }
    check_pairs(toks, 3000, &pairs);
}
