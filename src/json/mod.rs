//! JSON helpers shared by every command: [`scan`], the validating span scanner (byte
//! spans of members, no tree), and [`text`], raw-text helpers for lines already known
//! to be valid JSON.

pub mod scan;
pub mod text;

/// The deepest nesting a JSONL record may have, its own braces counting as one: what
/// serde_json reads (its recursion limit of 128 allows 127 levels), so that `build` and
/// `validate` accept the same records.
pub const MAX_DEPTH: usize = 127;
