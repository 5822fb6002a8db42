//! Error types of the tokenizer registry and of the rule language.

use std::path::PathBuf;

/// Errors raised while loading tokenizers or counting tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer file was read but is not a valid HF `tokenizer.json`.
    #[error("malformed tokenizer file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    /// A `--tokenizer` argument could not be understood.
    #[error("bad tokenizer spec {spec:?}: {message}")]
    BadSpec { spec: String, message: String },
    /// Two tokenizers were given the same name.
    #[error("tokenizer name {0:?} given twice")]
    DuplicateName(String),
    /// A Hub tokenizer could not be found in the cache or downloaded.
    #[error("Hub tokenizer {id} (revision {revision}): {message}")]
    Hub {
        id: String,
        revision: String,
        message: String,
    },
    /// The underlying tokenizer failed on a text.
    #[error("tokenizer {name} failed: {message}")]
    Encode { name: String, message: String },
}

/// A syntax error inside one rule expression (1-based character column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based column, counted in characters from the start of the rule text.
    pub column: usize,
    pub message: String,
}

/// Errors raised while building a rule set, before any record is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Syntax error in the N-th `--rule` argument (1-based).
    #[error("rule {rule}, column {column}: {message}")]
    Syntax {
        rule: usize,
        column: usize,
        message: String,
    },
    /// Syntax error in a rules file, at a 1-based line.
    #[error("{file} line {line}, column {column}: {message}")]
    FileSyntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A rule uses `tokens()` but no tokenizer was given.
    #[error("rule {0:?} uses tokens() but no tokenizer was given")]
    NoTokenizer(String),
    /// Two rules were given the same name.
    #[error("rule name {0:?} given twice")]
    DuplicateName(String),
    /// No rule at all.
    #[error("no rule given")]
    Empty,
}
