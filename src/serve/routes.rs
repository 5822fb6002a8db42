//! The HTTP surface: OpenAI's Files and Batches routes, the direct chat / embeddings /
//! responses endpoints, key checking, and fault injection around each route. Every
//! route is also served under `/openai` (Azure's `/openai/v1/...` form); the Azure
//! `api-version` query parameter is accepted and ignored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::error::ApiError;
use super::faults::Plan;
use super::store::{
    new_id, now, now_ms, Batch, BatchRec, BatchState, FileObject, RequestCounts, Usage,
};
use super::{echo, lifecycle, Answer, App};
use crate::batch::{limits, Endpoint};
use crate::exec::ratelimit::format_reset;

/// Largest file of any purpose (OpenAI: 512 MB).
pub const MAX_FILE_BYTES: u64 = 512_000_000;
/// The purposes an upload may name.
const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

type Shared = State<Arc<App>>;

/// The router of the whole API.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route(
            "/v1/files",
            post(create_file)
                .layer(DefaultBodyLimit::disable())
                .get(list_files),
        )
        .route("/v1/files/{id}", get(retrieve_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_batch).get(list_batches))
        .route("/v1/batches/{id}", get(retrieve_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/completions", post(completions))
        .route("/v1/moderations", post(moderations));
    Router::new()
        .merge(api.clone())
        .nest("/openai", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Invalid URL ({method} {})", uri.path()), "")
        .tap(|e| e.param = None)
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for ApiError {}

/// Compares without an early exit, so the time taken does not tell how much of a key
/// was right.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(app): Shared, req: Request, next: Next) -> Response {
    if let Some(key) = &app.opts.api_key {
        let h = req.headers();
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| h.get("api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        match given {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key header.",
                )
                .into_response()
            }
            Some(g) if !same_key(g.as_bytes(), key.as_bytes()) => {
                // The key given is never repeated back: errors must not carry secrets.
                return ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", "Incorrect API key provided.")
                    .code("invalid_api_key")
                    .into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

/// Applies the `--faults` plan of a route around its work: a wait first, an injected
/// error instead of the work, or the work done and its answer never sent.
async fn guarded<F>(app: &App, route: &'static str, work: impl FnOnce(Plan) -> F) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let plan = app.faults.on_call(route);
    if let Some(d) = plan.slow {
        tokio::time::sleep(d).await;
    }
    if let Some(e) = plan.error.clone() {
        return e.into_response();
    }
    let hang = plan.hang;
    let resp = work(plan).await;
    if hang {
        // The work is done (a batch exists); the client never hears. The server cuts
        // the connection when it shuts down.
        std::future::pending::<()>().await;
    }
    resp
}

fn json_response<T: serde::Serialize>(v: &T) -> Response {
    Json(v).into_response()
}

// ---------- files ----------

/// Removes an upload's temp file unless it was kept.
struct TempGuard(Option<std::path::PathBuf>);
impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!(
        "Could not read the multipart body: {}",
        e.body_text()
    ))
}

async fn create_file(
    State(app): Shared,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let a = app.clone();
    guarded(&app, "files.create", |_| async move {
        match upload(&a, mp).await {
            Ok(f) => json_response(&f),
            Err(e) => e.into_response(),
        }
    })
    .await
}

async fn upload(
    app: &App,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<FileObject, ApiError> {
    let mut mp = mp.map_err(|e| {
        ApiError::bad_request(format!(
            "The body must be multipart/form-data with fields 'file' and 'purpose': {}",
            e.body_text()
        ))
    })?;
    let mut purpose: Option<String> = None;
    let mut received: Option<(TempGuard, u64, String)> = None;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(multipart_error)?),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload").to_string();
                let path = app.store.upload_path();
                let guard = TempGuard(Some(path.clone()));
                // 1 MB writes: fewer trips to the blocking pool than one per network chunk.
                let mut f = tokio::io::BufWriter::with_capacity(
                    1 << 20,
                    tokio::fs::File::create(&path).await?,
                );
                let mut n = 0u64;
                // The body goes to disk chunk by chunk: memory stays flat whatever the size.
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    n += chunk.len() as u64;
                    if n > MAX_FILE_BYTES {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "invalid_request_error",
                            format!("File is too large: the maximum size is {MAX_FILE_BYTES} bytes (512 MB)."),
                        )
                        .param("file")
                        .code("file_too_large"));
                    }
                    f.write_all(&chunk).await?;
                }
                f.flush().await?;
                f.get_ref().sync_all().await?;
                received = Some((guard, n, name));
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| {
        ApiError::bad_request("Missing required parameter: 'purpose'.")
            .param("purpose")
            .code("missing_required_parameter")
    })?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::bad_request(format!(
            "'{purpose}' is not one of {PURPOSES:?} - 'purpose'"
        ))
        .param("purpose")
        .code("invalid_value"));
    }
    let (mut guard, bytes, filename) = received.ok_or_else(|| {
        ApiError::bad_request("Missing required parameter: 'file'.")
            .param("file")
            .code("missing_required_parameter")
    })?;
    if purpose == "batch" {
        if !filename.ends_with(".jsonl") {
            return Err(
                ApiError::bad_request("Invalid file format for Batch API. Must be .jsonl")
                    .param("file"),
            );
        }
        if bytes > limits::MAX_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("File is too large for the Batch API: {bytes} bytes; the maximum is {} bytes (200 MB).", limits::MAX_BYTES),
            )
            .param("file")
            .code("file_too_large"));
        }
    }
    let created_at = now();
    let obj = FileObject {
        id: app.store.new_id("file-"),
        object: "file".into(),
        bytes,
        created_at,
        filename,
        expires_at: (purpose == "batch").then_some(created_at + 30 * 86400),
        purpose,
        status: "processed".into(),
        status_details: None,
    };
    let path = guard.0.take().unwrap_or_default();
    let kept = app.store.add_file(&path, obj);
    if kept.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(kept?)
}

fn no_file(id: &str) -> ApiError {
    ApiError::not_found(format!("No such File object: {id}"), "id")
}

/// Parses `limit` within `1..=max`.
fn limit_param(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid 'limit': integer must be between 1 and {max}, got '{s}'."
                ))
                .param("limit")
                .code("invalid_value")
            }),
    }
}

/// One page of a list, cursor after `after`.
fn page<T: serde::Serialize>(
    items: Vec<T>,
    id_of: impl Fn(&T) -> &str,
    after: Option<&String>,
    limit: usize,
) -> Value {
    let start = match after {
        Some(a) => items
            .iter()
            .position(|x| id_of(x) == a.as_str())
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let data = &rest[..limit.min(rest.len())];
    json!({
        "object": "list",
        "data": data,
        "first_id": data.first().map(&id_of),
        "last_id": data.last().map(&id_of),
        "has_more": rest.len() > data.len(),
    })
}

async fn list_files(State(app): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    guarded(&app, "files.list", |_| async {
        let limit = match limit_param(&q, 10_000, 10_000) {
            Ok(l) => l,
            Err(e) => return e.into_response(),
        };
        let ascending = match q.get("order").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => {
                return ApiError::bad_request(format!(
                    "Invalid 'order': expected 'asc' or 'desc', got '{o}'."
                ))
                .param("order")
                .into_response()
            }
        };
        let mut files = app.store.files(ascending);
        if let Some(p) = q.get("purpose") {
            files.retain(|f| &f.purpose == p);
        }
        Json(page(files, |f| &f.id, q.get("after"), limit)).into_response()
    })
    .await
}

async fn retrieve_file(State(app): Shared, Path(id): Path<String>) -> Response {
    guarded(&app, "files.retrieve", |_| async {
        match app.store.file(&id) {
            Some(f) => json_response(&f),
            None => no_file(&id).into_response(),
        }
    })
    .await
}

async fn delete_file(State(app): Shared, Path(id): Path<String>) -> Response {
    guarded(&app, "files.delete", |_| async {
        match app.store.delete_file(&id) {
            Ok(true) => Json(json!({"id": id, "object": "file", "deleted": true})).into_response(),
            Ok(false) => no_file(&id).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    })
    .await
}

/// A `Range` that does not fit the body (answered 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A `Range: bytes=...` header against a body of `len` bytes: `Ok(None)` for the whole
/// body, `Ok(Some((start, end_inclusive)))`, or `Err` when it cannot be satisfied.
pub fn parse_range(h: &str, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // Several ranges: answered with the whole body (allowed by RFC 9110).
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let s: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let e = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| Unsatisfiable)?
                .min(len.saturating_sub(1))
        };
        (s, e)
    };
    if len == 0 || start >= len || start > end {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

async fn file_content(State(app): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let a = app.clone();
    guarded(&app, "content", |plan| async move {
        match content(&a, &id, &headers, plan.drop_after).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    })
    .await
}

async fn content(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    drop_after: Option<u64>,
) -> Result<Response, ApiError> {
    if app.store.file(id).is_none() {
        return Err(no_file(id));
    }
    let mut file = tokio::fs::File::open(app.store.file_data(id))
        .await
        .map_err(|_| no_file(id))?;
    let len = file.metadata().await?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range.map(|r| parse_range(r, len)) {
        None | Some(Ok(None)) => (StatusCode::OK, 0, len),
        Some(Ok(Some((s, e)))) => (StatusCode::PARTIAL_CONTENT, s, e + 1),
        Some(Err(Unsatisfiable)) => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_request_error",
                format!(
                    "The range {} cannot be satisfied: the file has {len} bytes.",
                    range.unwrap_or("")
                ),
            )
            .param("range")
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            return Ok(r);
        }
    };
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let total = end - start;
    // With a `drop=BYTES` fault the stream fails after that many bytes: the client sees
    // a connection cut short of its Content-Length.
    let budget = drop_after.unwrap_or(u64::MAX);
    let stream =
        futures_util::stream::unfold((file, total, budget), |(mut f, left, budget)| async move {
            if left == 0 {
                return None;
            }
            if budget == 0 {
                // Give the connection a moment to flush the bytes already yielded: the
                // point of the fault is a body cut after N bytes, not a missing answer.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return Some((
                    Err(std::io::Error::other("connection dropped by --faults")),
                    (f, 0, 0),
                ));
            }
            let want = left.min(budget).min(1 << 16) as usize;
            let mut buf = vec![0u8; want];
            match f.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::other("file shrank while being sent")),
                    (f, 0, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok(Bytes::from(buf)),
                        (f, left - n as u64, budget - n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (f, 0, 0))),
            }
        });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

// ---------- batches ----------

fn no_batch(id: &str) -> ApiError {
    ApiError::not_found(format!("No batch found with id '{id}'."), "batch_id")
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON: {e}.)"
        ))
    })
}

fn required_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::bad_request(format!(
            "Missing required parameter: '{key}'."
        ))
        .param(key)
        .code("missing_required_parameter")),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid type for '{key}': expected a string."
        ))
        .param(key)
        .code("invalid_type")),
    }
}

fn check_create(app: &App, body: &Value) -> Result<BatchRec, ApiError> {
    let Value::Object(o) = body else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let input_file_id = required_str(o, "input_file_id")?;
    let endpoint = required_str(o, "endpoint")?;
    let window = required_str(o, "completion_window")?;
    let known = Endpoint::ALL;
    if !known.iter().any(|e| e.url() == endpoint) {
        return Err(ApiError::bad_request(format!(
            "Invalid value for 'endpoint': '{endpoint}'. Supported values are: {}.",
            known
                .iter()
                .map(|e| format!("'{}'", e.url()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .param("endpoint")
        .code("invalid_value"));
    }
    if window != "24h" {
        return Err(ApiError::bad_request(format!(
            "Invalid value for 'completion_window': '{window}'. Supported values are: '24h'."
        ))
        .param("completion_window")
        .code("invalid_value"));
    }
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(ApiError::bad_request(format!("Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got {}.", m.len())).param("metadata").code("invalid_value"));
            }
            for (k, v) in m {
                if k.chars().count() > 64 {
                    return Err(ApiError::bad_request(format!(
                        "Invalid 'metadata': key '{k}' is longer than 64 characters."
                    ))
                    .param("metadata")
                    .code("invalid_value"));
                }
                match v {
                    Value::String(s) if s.chars().count() <= 512 => {}
                    Value::String(_) => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid 'metadata': the value of '{k}' is longer than 512 characters."
                        ))
                        .param("metadata")
                        .code("invalid_value"))
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid 'metadata': the value of '{k}' must be a string."
                        ))
                        .param("metadata")
                        .code("invalid_type"))
                    }
                }
            }
            Some(m.clone())
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("Invalid type for 'metadata': expected an object.")
                    .param("metadata")
                    .code("invalid_type"),
            )
        }
    };
    let output_expires_after = match o.get("output_expires_after") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let anchor_ok = v.get("anchor").and_then(Value::as_str) == Some("created_at");
            match v.get("seconds").and_then(Value::as_u64) {
                Some(s) if anchor_ok && (3600..=2_592_000).contains(&s) => Some(s),
                _ => {
                    return Err(ApiError::bad_request("Invalid 'output_expires_after': expected {\"anchor\": \"created_at\", \"seconds\": 3600..2592000}.")
                        .param("output_expires_after")
                        .code("invalid_value"))
                }
            }
        }
    };
    let file = app.store.file(input_file_id).ok_or_else(|| {
        ApiError::not_found(
            format!("No such File object: {input_file_id}"),
            "input_file_id",
        )
    })?;
    if file.purpose != "batch" {
        return Err(ApiError::bad_request(format!(
            "The file {input_file_id} has purpose '{}'; a batch input file must have purpose 'batch'.",
            file.purpose
        ))
        .param("input_file_id")
        .code("invalid_value"));
    }
    let created_ms = now_ms();
    let created_at = created_ms / 1000;
    let window_ms = app.opts.window.as_millis() as u64;
    Ok(BatchRec {
        batch: Batch {
            id: app.store.new_id("batch_"),
            object: "batch".into(),
            endpoint: endpoint.to_string(),
            model: None,
            errors: None,
            input_file_id: input_file_id.to_string(),
            completion_window: window.to_string(),
            status: "validating".into(),
            output_file_id: None,
            error_file_id: None,
            created_at,
            in_progress_at: None,
            expires_at: Some((created_ms + window_ms).div_ceil(1000)),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            request_counts: RequestCounts::default(),
            metadata,
            usage: Usage::default(),
        },
        state: BatchState {
            deadline_ms: created_ms + window_ms,
            output_expires_after,
            ..BatchState::default()
        },
    })
}

async fn create_batch(State(app): Shared, body: Bytes) -> Response {
    let a = app.clone();
    guarded(&app, "batches.create", |_| async move {
        let made = parse_json(&body)
            .and_then(|v| check_create(&a, &v))
            .and_then(|rec| {
                a.store.add_batch(rec.clone())?;
                Ok(rec)
            });
        match made {
            Ok(rec) => {
                lifecycle::spawn(a.clone(), rec.batch.id.clone());
                json_response(&rec.batch)
            }
            Err(e) => e.into_response(),
        }
    })
    .await
}

async fn retrieve_batch(State(app): Shared, Path(id): Path<String>) -> Response {
    guarded(&app, "batches.retrieve", |_| async {
        match app.store.batch(&id) {
            Some(r) => json_response(&r.batch),
            None => no_batch(&id).into_response(),
        }
    })
    .await
}

async fn list_batches(State(app): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    guarded(&app, "batches.list", |_| async {
        match limit_param(&q, 20, 100) {
            Ok(limit) => {
                let batches: Vec<Batch> = app.store.batches();
                Json(page(batches, |b| &b.id, q.get("after"), limit)).into_response()
            }
            Err(e) => e.into_response(),
        }
    })
    .await
}

async fn cancel_batch(State(app): Shared, Path(id): Path<String>) -> Response {
    guarded(&app, "batches.cancel", |_| async {
        let mut refused: Option<String> = None;
        let updated = app
            .store
            .update_batch(&id, |r| match r.batch.status.as_str() {
                "validating" | "in_progress" => {
                    r.batch.status = "cancelling".into();
                    r.batch.cancelling_at = Some(now());
                }
                "cancelling" | "cancelled" => {}
                other => refused = Some(other.to_string()),
            });
        match updated {
            Ok(Some(rec)) => {
                if let Some(status) = refused {
                    return ApiError::new(
                        StatusCode::CONFLICT,
                        "invalid_request_error",
                        format!("Cannot cancel a batch with status '{status}'."),
                    )
                    .into_response();
                }
                app.cancel_flag(&id)
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                json_response(&rec.batch)
            }
            Ok(None) => no_batch(&id).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    })
    .await
}

// ---------- direct endpoints ----------

async fn chat(State(app): Shared, body: Bytes) -> Response {
    direct(app, Endpoint::ChatCompletions, "chat", body).await
}

async fn embeddings(State(app): Shared, body: Bytes) -> Response {
    direct(app, Endpoint::Embeddings, "embeddings", body).await
}

async fn responses(State(app): Shared, body: Bytes) -> Response {
    direct(app, Endpoint::Responses, "responses", body).await
}

async fn completions(State(app): Shared, body: Bytes) -> Response {
    direct(app, Endpoint::Completions, "chat", body).await
}

async fn moderations(State(app): Shared, body: Bytes) -> Response {
    direct(app, Endpoint::Moderations, "chat", body).await
}

/// The provider's token estimate for a request: prompt plus the most it may write.
fn token_estimate(body: &Value, prompt: u64) -> u64 {
    let max = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .unwrap_or(0);
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    prompt + max * n
}

/// Prompt tokens of a direct call's body, counted once: from its raw text (a scan, no
/// second serialisation), else from the parsed value (the figure is the same).
fn prompt_of(endpoint: Endpoint, raw: &[u8], body: &Value) -> u64 {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|t| crate::batch::tokens::body_prompt_tokens(endpoint, t.trim()))
        .unwrap_or_else(|| echo::prompt_tokens_of(endpoint, body))
}

/// Takes from the `--rpm` / `--tpm` buckets, or answers 429; returns the headers to add.
fn take_limits(app: &App, tokens: u64) -> Result<Vec<(&'static str, String)>, ApiError> {
    fn lock(
        m: &std::sync::Mutex<crate::exec::ratelimit::TokenBucket>,
    ) -> std::sync::MutexGuard<'_, crate::exec::ratelimit::TokenBucket> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
    // Each guard is dropped before the bucket is locked again (no self-deadlock).
    if let Some(r) = &app.rpm {
        let taken = lock(r).try_take(1);
        if let Err(wait) = taken {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let cap = lock(r).capacity();
            return Err(ApiError::rate_limited(
                "requests",
                format!("Rate limit reached for requests per min (RPM): Limit {cap}, Used {cap}, Requested 1. Please try again in {}.", format_reset(wait)),
                secs,
            ));
        }
    }
    if let Some(t) = &app.tpm {
        let taken = lock(t).try_take(tokens);
        if let Err(wait) = taken {
            if let Some(r) = &app.rpm {
                lock(r).refund(1);
            }
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut b = lock(t);
            let (cap, left) = (b.capacity(), b.remaining());
            return Err(ApiError::rate_limited(
                "tokens",
                format!("Rate limit reached for tokens per min (TPM): Limit {cap}, Used {}, Requested {tokens}. Please try again in {}.", cap - left.min(cap), format_reset(wait)),
                secs,
            ));
        }
    }
    let mut h = Vec::new();
    if let Some(r) = &app.rpm {
        let mut b = lock(r);
        h.push(("x-ratelimit-limit-requests", b.capacity().to_string()));
        h.push(("x-ratelimit-remaining-requests", b.remaining().to_string()));
        h.push(("x-ratelimit-reset-requests", format_reset(b.reset_after())));
    }
    if let Some(t) = &app.tpm {
        let mut b = lock(t);
        h.push(("x-ratelimit-limit-tokens", b.capacity().to_string()));
        h.push(("x-ratelimit-remaining-tokens", b.remaining().to_string()));
        h.push(("x-ratelimit-reset-tokens", format_reset(b.reset_after())));
    }
    Ok(h)
}

async fn direct(app: Arc<App>, endpoint: Endpoint, route: &'static str, body: Bytes) -> Response {
    let a = app.clone();
    guarded(&app, route, |_| async move {
        let v = match parse_json(&body) {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        // Counted only when something reads it: the `--tpm` bucket or the echo's usage.
        let prompt = (a.tpm.is_some() || matches!(a.backend, super::Backend::Echo { .. }))
            .then(|| prompt_of(endpoint, &body, &v));
        let tokens = a
            .tpm
            .as_ref()
            .map_or(0, |_| token_estimate(&v, prompt.unwrap_or(0)));
        let headers = match take_limits(&a, tokens) {
            Ok(h) => h,
            Err(e) => return e.into_response(),
        };
        let mut r = match a.backend.call(endpoint, &v, prompt).await {
            Answer::Http { status, body } => {
                let mut r = Json(body).into_response();
                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                r
            }
            Answer::Failed { code, message } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message)
                    .code(&code)
                    .into_response()
            }
        };
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&new_id("req_")) {
            r.headers_mut().insert("x-request-id", v);
        }
        r
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=4-6", 10), Ok(Some((4, 6))));
        assert_eq!(parse_range("bytes=4-100", 10), Ok(Some((4, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=6-4", 10), Err(Unsatisfiable));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
    }

    #[test]
    fn pages_go_newest_first_with_a_cursor() {
        let ids: Vec<String> = ["c", "b", "a"].iter().map(|s| s.to_string()).collect();
        let p = page(ids.clone(), |s| s, None, 2);
        assert_eq!(p["data"], json!(["c", "b"]));
        assert_eq!(p["has_more"], true);
        assert_eq!(p["last_id"], "b");
        let p = page(ids.clone(), |s| s, Some(&"b".to_string()), 2);
        assert_eq!(p["data"], json!(["a"]));
        assert_eq!(p["has_more"], false);
        let p = page(Vec::<String>::new(), |s| s, None, 2);
        assert_eq!(p["first_id"], Value::Null);
    }
}
