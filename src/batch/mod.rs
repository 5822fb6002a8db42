//! The Batch API data model: endpoints, limits, request lines and their checks, and
//! prompt-token counting with the real OpenAI encodings.

pub mod classify;
pub mod endpoint;
pub mod ids;
pub mod manifest;
pub mod outcome;
pub mod prices;
pub mod request;
pub mod result;
pub mod tokens;

pub use endpoint::Endpoint;
pub use request::{parse_request, RequestLine};

/// Per-file limits of the OpenAI Batch API (see SPEC.md); every one is a flag.
pub mod limits {
    /// Requests per input file.
    pub const MAX_REQUESTS: u64 = 50_000;
    /// Bytes per input file (200 MB, decimal).
    pub const MAX_BYTES: u64 = 200_000_000;
    /// Embedding inputs summed over one batch.
    pub const MAX_EMBEDDING_INPUTS: u64 = 50_000;
    /// Anthropic's cap on custom_id length (OpenAI documents none): warn above it.
    pub const CUSTOM_ID_WARN_LEN: usize = 64;
}
