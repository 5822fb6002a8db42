//! Inputs and outputs: memory-mapped or streamed inputs cut into line-aligned chunks,
//! and outputs that only appear, complete, when a command succeeds.

pub mod input;
pub mod output;
pub mod paths;
pub mod rejects;

/// The compression implied by a file name: `.zst` and `.gz` are handled as streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

impl Compression {
    pub fn from_name(name: &str) -> Compression {
        if name.ends_with(".zst") || name.ends_with(".zstd") {
            Compression::Zstd
        } else if name.ends_with(".gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}
