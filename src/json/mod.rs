//! JSON helpers shared by every command: [`scan`], the validating span scanner (byte
//! spans of members, no tree), and [`text`], raw-text helpers for lines already known
//! to be valid JSON.

pub mod scan;
pub mod text;
