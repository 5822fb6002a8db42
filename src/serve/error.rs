//! Errors of the served API, shaped as OpenAI answers them: an HTTP status and the body
//! `{"error":{"message","type","param","code"}}`, plus `Retry-After` on a 429.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One API error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type` (`invalid_request_error`, `server_error`, `requests`, ...).
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds for the `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 `invalid_request_error`, naming the parameter that held the unknown id.
    pub fn not_found(message: impl Into<String>, param: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message).param(param)
    }

    /// 500 `server_error`: our own failure (a disk error), never a client's.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 429 `rate_limit_exceeded` with `Retry-After`.
    pub fn rate_limited(
        kind: &'static str,
        message: impl Into<String>,
        retry_after: u64,
    ) -> ApiError {
        let mut e =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, kind, message).code("rate_limit_exceeded");
        e.retry_after = Some(retry_after);
        e
    }

    pub fn param(mut self, p: &str) -> ApiError {
        self.param = Some(p.to_string());
        self
    }

    pub fn code(mut self, c: &str) -> ApiError {
        self.code = Some(c.to_string());
        self
    }

    /// The JSON body OpenAI sends with this error.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
            r.headers_mut()
                .insert("retry-after-ms", HeaderValue::from(s.saturating_mul(1000)));
        }
        r
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        ApiError::internal(format!("storage error: {e}"))
    }
}
