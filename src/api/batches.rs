//! Batches: create, retrieve, list (paged), cancel, and the batch object.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::{ApiError, Client, Repeat};
use super::List;

/// `request_counts` of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

/// One entry of `errors.data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchErrors {
    #[serde(default)]
    pub data: Vec<BatchErrorItem>,
}

/// A batch object. Unknown fields are ignored; everything but `id` may be absent or
/// `null` (the real API sends `null` for unset fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub created_at: Option<u64>,
    #[serde(default)]
    pub in_progress_at: Option<u64>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub finalizing_at: Option<u64>,
    #[serde(default)]
    pub completed_at: Option<u64>,
    #[serde(default)]
    pub failed_at: Option<u64>,
    #[serde(default)]
    pub expired_at: Option<u64>,
    #[serde(default)]
    pub cancelling_at: Option<u64>,
    #[serde(default)]
    pub cancelled_at: Option<u64>,
}

impl Batch {
    /// `completed`, `failed`, `expired` or `cancelled`: nothing more will happen.
    pub fn is_terminal(&self) -> bool {
        is_terminal_status(&self.status)
    }

    /// When it ended (the time of its terminal status), if it has.
    pub fn ended_at(&self) -> Option<u64> {
        match self.status.as_str() {
            "completed" => self.completed_at,
            "failed" => self.failed_at,
            "expired" => self.expired_at,
            "cancelled" => self.cancelled_at,
            _ => None,
        }
    }

    /// A metadata value as a string.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key)?.as_str()
    }

    /// Whether the batch failed validation because of the enqueued-token limit.
    pub fn token_limit_exceeded(&self) -> bool {
        self.status == "failed"
            && self.errors.as_ref().is_some_and(|e| {
                e.data
                    .iter()
                    .any(|d| d.code.as_deref() == Some("token_limit_exceeded"))
            })
    }
}

/// Whether a batch status is final.
pub fn is_terminal_status(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "expired" | "cancelled")
}

/// The body of `POST /v1/batches`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Client {
    /// `POST /v1/batches`. Never repeated when its answer may have been lost: then the
    /// error is [`super::ApiErrorKind::Uncertain`] and the caller must look for the
    /// batch (by its metadata) before creating it again.
    pub fn create_batch(&self, body: &CreateBatch) -> Result<Batch, ApiError> {
        self.send_json("POST /v1/batches", Repeat::Once, &mut || {
            Ok(self.post("/v1/batches").json(body))
        })
    }

    /// `GET /v1/batches/{id}`.
    pub fn retrieve_batch(&self, id: &str) -> Result<Batch, ApiError> {
        let path = format!("/v1/batches/{id}");
        let what = format!("GET {path}");
        self.send_json(&what, Repeat::Safe, &mut || Ok(self.get(&path)))
    }

    /// One page of `GET /v1/batches` (newest first; `after` is the last id seen).
    pub fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<List<Batch>, ApiError> {
        self.send_json("GET /v1/batches", Repeat::Safe, &mut || {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.clamp(1, 100).to_string())];
            if let Some(a) = after {
                q.push(("after", a.to_string()));
            }
            Ok(self.get("/v1/batches").query(&q))
        })
    }

    /// Walks every page of `GET /v1/batches`, newest first, until `visit` returns false
    /// or the list ends.
    pub fn for_each_batch(
        &self,
        page_size: u32,
        visit: &mut dyn FnMut(&Batch) -> bool,
    ) -> Result<(), ApiError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.list_batches(after.as_deref(), page_size)?;
            for b in &page.data {
                if !visit(b) {
                    return Ok(());
                }
            }
            let last = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            match (page.has_more, last) {
                (Some(true), Some(l)) if Some(&l) != after.as_ref() => after = Some(l),
                // No `has_more` (some servers): a full page means there may be more.
                (None, Some(l))
                    if page.data.len() as u32 >= page_size && Some(&l) != after.as_ref() =>
                {
                    after = Some(l)
                }
                _ => return Ok(()),
            }
        }
    }

    /// `POST /v1/batches/{id}/cancel` (repeating it is harmless).
    pub fn cancel_batch(&self, id: &str) -> Result<Batch, ApiError> {
        let path = format!("/v1/batches/{id}/cancel");
        let what = format!("POST {path}");
        self.send_json(&what, Repeat::Safe, &mut || Ok(self.post(&path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_objects_read_with_nulls_and_unknown_fields() {
        let b: Batch = serde_json::from_str(
            r#"{"id":"batch_1","object":"batch","status":"failed","output_file_id":null,
            "errors":{"object":"list","data":[{"code":"token_limit_exceeded","line":null,"message":"m","param":null}]},
            "request_counts":{"total":0,"completed":0,"failed":0},"metadata":{"batchline_job":"job_1"},
            "created_at":1,"failed_at":5,"usage":null,"some_new_field":{"x":1}}"#,
        )
        .unwrap();
        assert!(b.is_terminal());
        assert!(b.token_limit_exceeded());
        assert_eq!(b.ended_at(), Some(5));
        assert_eq!(b.meta("batchline_job"), Some("job_1"));
        let minimal: Batch = serde_json::from_str(r#"{"id":"b"}"#).unwrap();
        assert!(!minimal.is_terminal());
        assert!(minimal.request_counts.is_none());
    }

    #[test]
    fn create_body_leaves_out_empty_metadata() {
        let body = CreateBatch {
            input_file_id: "file-1".into(),
            endpoint: "/v1/chat/completions".into(),
            completion_window: "24h".into(),
            metadata: Map::new(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}"#
        );
    }
}
