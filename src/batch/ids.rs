//! Duplicate custom_id tracking, one way for every command: ids are keyed by their
//! xxh3-128 hash (a collision among a billion ids has odds of about 1e-21), and the
//! table keeps the line where each id was first seen, for the reject's reason.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The key of a custom_id in [`SeenIds`].
pub fn id_key(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The custom_ids seen so far, with the line of each first occurrence.
#[derive(Default)]
pub struct SeenIds(HashMap<u128, u64, BuildHasherDefault<FoldHasher>>);

impl SeenIds {
    /// The line where `key` was first seen, if it was.
    pub fn first(&self, key: u128) -> Option<u64> {
        self.0.get(&key).copied()
    }

    /// Records `key` as first seen at `line`.
    pub fn insert(&mut self, key: u128, line: u64) {
        self.0.entry(key).or_insert(line);
    }
}

/// The reject reason for a later duplicate.
pub fn duplicate_reason(id: &str, first_line: u64) -> String {
    format!("duplicate custom_id \"{id}\" (first at line {first_line})")
}

/// The keys are xxh3-128 hashes already: folding them is enough.
#[derive(Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}
