//! [`Client`]: requests with the provider's auth, and the one retry policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::Provider;
use crate::exec::{backoff_between, describe, join_url, retry_after};
use crate::io::rejects::cap;

/// How often and how long calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per retry up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest wait for one answer (per connect and per read of the body).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(120),
        }
    }
}

/// The longest an upload or a download of a whole file may take.
pub const FILE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What kind of failure an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The server answered with this status (after the retries, for 429 and 5xx).
    Status(u16),
    /// A call that creates something was sent, but its answer was lost (a timeout, a
    /// dropped connection, a 5xx): it may or may not have been carried out.
    Uncertain,
    /// No answer after the retries (cannot connect, timeouts, dropped connections).
    Transport,
    /// The answer was not the JSON expected.
    Decode,
    /// The caller's stop flag was set (Ctrl-C) while waiting.
    Interrupted,
}

/// A failed call, with a message a user can act on. Never holds the key.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    /// The API's error code (`invalid_api_key`, `rate_limit_exceeded`, ...), if any.
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for crate::Error {
    fn from(e: ApiError) -> crate::Error {
        match e.kind {
            ApiErrorKind::Interrupted => crate::Error::Interrupted,
            _ => crate::Error::Other(e.message),
        }
    }
}

/// Whether a call may be repeated when its answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, uploads (an extra file costs nothing), cancels: retried on 429, 5xx
    /// and any transport failure.
    Safe,
    /// Creates something that costs money: retried only when it surely did not
    /// happen (429, a connection that could not be made); otherwise
    /// [`ApiErrorKind::Uncertain`].
    Once,
}

/// The Files + Batches client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    /// For uploads and downloads of whole files: the blocking client's timeout covers
    /// the whole upload, and 200 MB on a slow line takes longer than `policy.timeout`.
    long: reqwest::blocking::Client,
    provider: Provider,
    pub policy: RetryPolicy,
    stop: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.provider)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Client {
    pub fn new(provider: Provider) -> Result<Client, ApiError> {
        Client::with_policy(provider, RetryPolicy::default())
    }

    pub fn with_policy(provider: Provider, policy: RetryPolicy) -> Result<Client, ApiError> {
        let build = |timeout: Duration| {
            reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(30).min(policy.timeout))
                .timeout(timeout)
                .user_agent(concat!("batchline/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ApiError {
                    kind: ApiErrorKind::Transport,
                    code: None,
                    message: format!("cannot set up the HTTP client: {e}"),
                })
        };
        let http = build(policy.timeout)?;
        let long = build(policy.timeout.max(FILE_TIMEOUT))?;
        Ok(Client {
            http,
            long,
            provider,
            policy,
            stop: None,
        })
    }

    /// Backoff waits end early (as [`ApiErrorKind::Interrupted`]) once `flag` is set.
    pub fn with_stop(mut self, flag: Arc<AtomicBool>) -> Client {
        self.stop = Some(flag);
        self
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The full URL of an API path (`/v1/batches`), joined as `exec::Executor::url`.
    pub fn url(&self, path: &str) -> String {
        join_url(&self.provider.base_url, path)
    }

    /// A request to `path` with the key, `api-version` and extra headers applied.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_on(&self.http, method, path)
    }

    /// [`Client::request`] for a whole file's upload or download: its timeout is
    /// [`FILE_TIMEOUT`] rather than `policy.timeout`.
    pub fn file_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_on(&self.long, method, path)
    }

    fn request_on(
        &self,
        http: &reqwest::blocking::Client,
        method: Method,
        path: &str,
    ) -> RequestBuilder {
        let mut req = http.request(method, self.url(path));
        if let Some(v) = &self.provider.api_version {
            req = req.query(&[("api-version", v)]);
        }
        if let Some(key) = &self.provider.key {
            if self.provider.azure {
                if let Ok(mut v) = reqwest::header::HeaderValue::from_str(key) {
                    v.set_sensitive(true);
                    req = req.header("api-key", v);
                }
            } else {
                req = req.bearer_auth(key);
            }
        }
        for (k, v) in &self.provider.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// Sends the request `make` builds (again for each attempt), with the retry policy;
    /// `what` names the call in errors (`POST /v1/batches`). A success status returns
    /// the response; anything else an [`ApiError`].
    pub fn send(
        &self,
        what: &str,
        repeat: Repeat,
        make: &mut dyn FnMut() -> Result<RequestBuilder, ApiError>,
    ) -> Result<Response, ApiError> {
        let mut attempt = 0u32;
        loop {
            self.check_stop()?;
            attempt += 1;
            let last = attempt >= self.policy.max_attempts.max(1);
            let req = make()?;
            let wait: Option<Duration>;
            match req.send() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() {
                        return Ok(resp);
                    }
                    let ra = retry_after(resp.headers());
                    let transient = status == 429 || status >= 500;
                    // A 5xx on a create may hide a batch that was made.
                    let sure_not_done = status == 429 || repeat == Repeat::Safe;
                    if !transient || last || !sure_not_done {
                        let mut err = self.status_error(what, resp);
                        if transient && !sure_not_done {
                            err.kind = ApiErrorKind::Uncertain;
                        }
                        return Err(err);
                    }
                    wait = ra;
                }
                Err(e) => {
                    let not_sent = e.is_connect();
                    if (repeat == Repeat::Once && !not_sent) || last {
                        return Err(ApiError {
                            kind: if repeat == Repeat::Once && !not_sent {
                                ApiErrorKind::Uncertain
                            } else {
                                ApiErrorKind::Transport
                            },
                            code: None,
                            message: self.redact(&format!(
                                "{what} ({}): {}{}",
                                self.url_for_message(),
                                describe(&e),
                                if last {
                                    format!(" (after {attempt} attempts)")
                                } else {
                                    String::new()
                                }
                            )),
                        });
                    }
                    wait = None;
                }
            }
            let pause = backoff_between(
                self.policy.base_backoff,
                self.policy.max_backoff,
                attempt - 1,
                wait,
            );
            self.sleep(pause)?;
        }
    }

    /// [`Client::send`], then the body as JSON.
    pub fn send_json<T: DeserializeOwned>(
        &self,
        what: &str,
        repeat: Repeat,
        make: &mut dyn FnMut() -> Result<RequestBuilder, ApiError>,
    ) -> Result<T, ApiError> {
        let resp = self.send(what, repeat, make)?;
        let bytes = resp.bytes().map_err(|e| ApiError {
            kind: if repeat == Repeat::Once {
                ApiErrorKind::Uncertain
            } else {
                ApiErrorKind::Transport
            },
            code: None,
            message: format!("{what}: the answer broke off: {}", describe(&e)),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError {
            kind: ApiErrorKind::Decode,
            code: None,
            message: format!(
                "{what}: the answer is not the expected JSON ({e}); is {} an OpenAI-compatible API?",
                self.url_for_message()
            ),
        })
    }

    fn check_stop(&self) -> Result<(), ApiError> {
        if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(ApiError {
                kind: ApiErrorKind::Interrupted,
                code: None,
                message: "interrupted".into(),
            });
        }
        Ok(())
    }

    /// Sleeps `d` in short steps, ending early when the stop flag is set.
    pub fn sleep(&self, d: Duration) -> Result<(), ApiError> {
        let until = Instant::now() + d;
        loop {
            self.check_stop()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn url_for_message(&self) -> String {
        self.provider.base_url.clone()
    }

    /// Removes the key from a text that might hold it (a server echoing it back).
    fn redact(&self, text: &str) -> String {
        match &self.provider.key {
            Some(k) if k.len() >= 4 && text.contains(k.as_str()) => {
                text.replace(k.as_str(), "<key>")
            }
            _ => text.to_string(),
        }
    }

    /// An error for a non-success answer: status, the API's message, and what to do.
    fn status_error(&self, what: &str, resp: Response) -> ApiError {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Body {
            error: Option<ErrBody>,
        }
        #[derive(serde::Deserialize)]
        struct ErrBody {
            message: Option<String>,
            code: Option<serde_json::Value>,
        }
        let parsed = serde_json::from_str::<Body>(&body)
            .ok()
            .and_then(|b| b.error);
        let code = parsed
            .as_ref()
            .and_then(|e| e.code.as_ref())
            .and_then(|c| match c {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                v => Some(v.to_string()),
            });
        let server_msg = parsed.and_then(|e| e.message).unwrap_or_else(|| {
            let t = body.trim();
            let (cut, _) = cap(t, 300);
            cut.to_string()
        });
        let p = &self.provider;
        let hint = match status.as_u16() {
            401 => match &p.key {
                None => format!(
                    "no API key was sent: set {} in the environment",
                    p.key_env
                ),
                Some(_) => format!(
                    "the API key is wrong or revoked: check {} (the key is read from the environment only)",
                    p.key_env
                ),
            },
            403 => "the key is not allowed to do this (its project, organization, region or model access); check the key's permissions".to_string(),
            404 => format!(
                "not found: check the base URL ({}; OpenAI: https://api.openai.com/v1, Azure: https://NAME.openai.azure.com/openai/v1, batchline serve: http://HOST:PORT/v1) and the id",
                p.base_url
            ),
            413 => "too large for the API: a batch input file is at most 200 MB (split it with `batchline shard --max-bytes`)".to_string(),
            429 => "rate limited, still after the retries; try again later".to_string(),
            s if s >= 500 => "the server failed, still after the retries; try again later".to_string(),
            _ => String::new(),
        };
        let mut message = format!("{what}: HTTP {}", status.as_u16());
        if !server_msg.is_empty() {
            message.push_str(&format!(": {server_msg}"));
        }
        if !hint.is_empty() {
            message.push_str(&format!(" ({hint})"));
        }
        ApiError {
            kind: ApiErrorKind::Status(status.as_u16()),
            code,
            message: self.redact(&message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(base: &str) -> Provider {
        Provider {
            base_url: base.into(),
            key: Some("sk-test-secret-123".into()),
            key_env: "OPENAI_API_KEY".into(),
            ..Provider::default()
        }
    }

    #[test]
    fn urls_join_like_the_sdks() {
        let c = Client::new(provider("http://h:1/v1")).unwrap();
        assert_eq!(c.url("/v1/batches"), "http://h:1/v1/batches");
        let c = Client::new(provider("https://x.openai.azure.com/openai/v1/")).unwrap();
        assert_eq!(
            c.url("/v1/files"),
            "https://x.openai.azure.com/openai/v1/files"
        );
        let c = Client::new(provider("http://h:1")).unwrap();
        assert_eq!(c.url("/v1/files"), "http://h:1/v1/files");
    }

    #[test]
    fn requests_carry_auth_and_api_version() {
        let mut p = provider("http://h:1/v1");
        let c = Client::new(p.clone()).unwrap();
        let r = c.get("/v1/batches").build().unwrap();
        assert_eq!(
            r.headers()["authorization"].to_str().unwrap(),
            "Bearer sk-test-secret-123"
        );
        p.azure = true;
        p.api_version = Some("2024-10-21".into());
        let c = Client::new(p).unwrap();
        let r = c.get("/v1/batches").build().unwrap();
        assert!(r.headers().get("authorization").is_none());
        assert!(r.headers()["api-key"].is_sensitive());
        assert_eq!(r.url().query(), Some("api-version=2024-10-21"));
    }

    #[test]
    fn debug_prints_never_show_the_key() {
        let c = Client::new(provider("http://h:1/v1")).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("sk-test-secret-123"), "{text}");
        assert!(text.contains("<set>"));
    }

    #[test]
    fn redact_removes_the_key() {
        let c = Client::new(provider("http://h:1/v1")).unwrap();
        assert_eq!(
            c.redact("Incorrect API key provided: sk-test-secret-123."),
            "Incorrect API key provided: <key>."
        );
    }

    #[test]
    fn connection_refused_is_retried_then_reported() {
        // A port nobody listens on: every attempt fails to connect.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let policy = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            timeout: Duration::from_secs(5),
        };
        let c =
            Client::with_policy(provider(&format!("http://127.0.0.1:{port}/v1")), policy).unwrap();
        let err = c
            .send("GET /v1/batches", Repeat::Safe, &mut || {
                Ok(c.get("/v1/batches"))
            })
            .unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Transport);
        assert!(err.message.contains("after 3 attempts"), "{}", err.message);
        // Not connecting is "surely not done": a create is retried too, and ends as a
        // transport failure, not an uncertain one.
        let err = c
            .send("POST /v1/batches", Repeat::Once, &mut || {
                Ok(c.post("/v1/batches"))
            })
            .unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Transport);
    }

    #[test]
    fn the_stop_flag_ends_the_wait() {
        let stop = Arc::new(AtomicBool::new(true));
        let c = Client::new(provider("http://h:1/v1"))
            .unwrap()
            .with_stop(stop);
        let err = c.sleep(Duration::from_secs(60)).unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Interrupted);
    }
}
