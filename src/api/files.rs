//! Files: streamed uploads (multipart, purpose `batch`) and downloads.

use std::path::Path;

use reqwest::blocking::{multipart, Response};
use serde::{Deserialize, Serialize};

use super::client::{ApiError, ApiErrorKind, Client, Repeat};
use super::List;

/// A file object. Only `id` is required; the rest is as the server sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileObject {
    pub id: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub created_at: Option<u64>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

impl Client {
    /// Uploads `path` as `name` with purpose `batch`, streamed from disk (never whole in
    /// memory). Retried like any safe call: a lost answer means at worst an extra file,
    /// which costs nothing.
    pub fn upload_file(&self, path: &Path, name: &str) -> Result<FileObject, ApiError> {
        let what = "POST /v1/files";
        self.send_json(what, Repeat::Safe, &mut || {
            let file = std::fs::File::open(path).map_err(|e| ApiError {
                kind: ApiErrorKind::Transport,
                code: None,
                message: format!("{}: {e}", path.display()),
            })?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let part = multipart::Part::reader_with_length(file, len)
                .file_name(name.to_string())
                .mime_str("application/jsonl")
                .expect("a valid mime type");
            let form = multipart::Form::new()
                .text("purpose", "batch")
                .part("file", part);
            // An upload of 200 MB may take a while on a slow line.
            Ok(self
                .file_request(reqwest::Method::POST, "/v1/files")
                .multipart(form))
        })
    }

    /// `GET /v1/files/{id}`.
    pub fn retrieve_file(&self, id: &str) -> Result<FileObject, ApiError> {
        let path = format!("/v1/files/{id}");
        let what = format!("GET {path}");
        self.send_json(&what, Repeat::Safe, &mut || Ok(self.get(&path)))
    }

    /// One page of `GET /v1/files` (`purpose`, `after`, `limit`).
    pub fn list_files(
        &self,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<List<FileObject>, ApiError> {
        self.send_json("GET /v1/files", Repeat::Safe, &mut || {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(p) = purpose {
                q.push(("purpose", p.to_string()));
            }
            if let Some(a) = after {
                q.push(("after", a.to_string()));
            }
            Ok(self.get("/v1/files").query(&q))
        })
    }

    /// `GET /v1/files/{id}/content`, from byte `start` on when given (`Range: bytes=N-`;
    /// the answer is 206, or 200 when the server ignores ranges: the caller checks).
    /// The response is returned unread, for the caller to stream.
    pub fn file_content(&self, id: &str, start: Option<u64>) -> Result<Response, ApiError> {
        let path = format!("/v1/files/{id}/content");
        let what = format!("GET {path}");
        self.send(&what, Repeat::Safe, &mut || {
            let mut r = self
                .file_request(reqwest::Method::GET, &path)
                .header(reqwest::header::ACCEPT_ENCODING, "identity");
            if let Some(s) = start {
                r = r.header(reqwest::header::RANGE, format!("bytes={s}-"));
            }
            Ok(r)
        })
    }
}
