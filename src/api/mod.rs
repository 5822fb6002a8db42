//! The HTTP client of the OpenAI Files + Batches API (and Azure OpenAI's form of it),
//! used by the lifecycle commands (`submit`, `status`, `wait`, `cancel`, `list`, and
//! `download`). Blocking reqwest: these commands make a few calls at a time, and a
//! blocking client keeps them plain sequential code that a crash can interrupt anywhere.
//!
//! One retry policy for every call ([`client`]): 429 (honouring `Retry-After`), 5xx and
//! dropped connections are retried with exponential backoff and full jitter; other 4xx
//! are final, with errors that say what to do about them (401, 403, 404, 413). A call
//! that creates something that costs money (a batch) is never repeated blindly: when
//! its answer is lost, the error says so ([`ApiErrorKind::Uncertain`]) and the caller
//! reconciles against the server first.
//!
//! The key comes from the environment (read by `src/cli`), is sent only in a header,
//! and never appears in an error or a debug print.

pub mod batches;
pub mod client;
pub mod download;
pub mod files;

pub use batches::{Batch, BatchErrorItem, BatchErrors, CreateBatch, RequestCounts};
pub use client::{ApiError, ApiErrorKind, Client, RetryPolicy};
pub use files::FileObject;

use serde::Deserialize;

/// Where the API is and how to authenticate. Built by `src/cli` from `--base-url` /
/// `OPENAI_BASE_URL`, the key variables and `--api-version`.
#[derive(Clone, Default)]
pub struct Provider {
    /// The API base as the SDKs take it: `https://api.openai.com/v1`,
    /// `http://127.0.0.1:8080/v1`, `https://NAME.openai.azure.com/openai/v1`.
    pub base_url: String,
    /// The key (from the environment only); `None` sends none.
    pub key: Option<String>,
    /// The environment variable the key comes (or would come) from, named in errors.
    pub key_env: String,
    /// Azure style: the key goes in the `api-key` header rather than
    /// `Authorization: Bearer`.
    pub azure: bool,
    /// Azure's `api-version` query parameter, added to every URL when set.
    pub api_version: Option<String>,
    /// More headers for every request (`--header NAME:VALUE`).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Provider")
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("key_env", &self.key_env)
            .field("azure", &self.azure)
            .field("api_version", &self.api_version)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The OpenAI default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A list page: `{object: "list", data, first_id, last_id, has_more}`.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
    #[serde(default)]
    pub has_more: Option<bool>,
}
