//! The request executor: sends request bodies to an OpenAI-compatible server (vLLM,
//! llama.cpp server, Ollama, OpenAI) with a bound on concurrent requests, an optional
//! requests-per-minute limit, and retries of 429, 5xx and dropped connections with
//! exponential backoff and full jitter, honouring `Retry-After`. `serve --upstream`
//! uses it for batch lines and proxied direct calls; `run` is meant to reuse it.
//!
//! Every call ends in exactly one [`Reply`]: the upstream's answer (possibly an error
//! status after the last retry), or a failure that names why no answer came.

pub mod ratelimit;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use ratelimit::TokenBucket;

/// How the executor talks to its upstream.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The server root (`http://127.0.0.1:8000`) or its `/v1` (`.../v1`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; read from the environment by the caller.
    pub api_key: Option<String>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles on each retry up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Requests per minute, if limited.
    pub rpm: Option<u64>,
}

impl ExecConfig {
    pub fn new(base_url: &str) -> ExecConfig {
        ExecConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: None,
            concurrency: 16,
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(600),
            rpm: None,
        }
    }
}

/// The end of one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The upstream answered (any status, after retries).
    Http {
        status: u16,
        body: Vec<u8>,
        request_id: Option<String>,
    },
    /// No answer: the connection failed on every attempt.
    Failed { code: String, message: String },
}

/// Sends requests upstream; cheap to share behind an `Arc`.
pub struct Executor {
    client: reqwest::Client,
    cfg: ExecConfig,
    permits: Arc<Semaphore>,
    rpm: Option<Mutex<TokenBucket>>,
}

/// A random number in `0..=max` (full jitter needs no more than std's random keys).
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(max.subsec_nanos());
    let r = h.finish() as f64 / u64::MAX as f64;
    max.mul_f64(r)
}

/// The wait before retry `attempt` (0-based): full jitter over an exponential ceiling,
/// but never less than the server's `Retry-After`.
pub fn backoff(cfg: &ExecConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = cfg
        .base_backoff
        .saturating_mul(1u32 << attempt.min(20))
        .min(cfg.max_backoff);
    let j = jitter(ceiling);
    match retry_after {
        Some(ra) => ra.max(j).min(cfg.max_backoff.max(ra)),
        None => j,
    }
}

/// `Retry-After` (seconds, or Azure's `retry-after-ms`) of an answer.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)))
}

impl Executor {
    pub fn new(cfg: ExecConfig) -> Result<Executor, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.concurrency.max(1))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Executor {
            client,
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            rpm: cfg.rpm.map(|r| Mutex::new(TokenBucket::per_minute(r))),
            cfg,
        })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.cfg
    }

    /// The full URL for an API path such as `/v1/chat/completions`.
    pub fn url(&self, path: &str) -> String {
        let base = &self.cfg.base_url;
        match (base.ends_with("/v1"), path.strip_prefix("/v1")) {
            (true, Some(rest)) => format!("{base}{rest}"),
            (false, None) => format!("{base}/v1{path}"),
            _ => format!("{base}{path}"),
        }
    }

    async fn wait_rpm(&self) {
        let Some(bucket) = &self.rpm else { return };
        loop {
            let wait = match bucket.lock().unwrap_or_else(|p| p.into_inner()).try_take(1) {
                Ok(()) => return,
                Err(w) => w,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// POSTs `body` (JSON) to `path`, retrying as the module says.
    pub async fn send(&self, path: &str, body: Vec<u8>) -> Reply {
        let url = self.url(path);
        let attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            self.wait_rpm().await;
            let result = {
                // The permit is held only while a request is in flight, not during the
                // backoff, so one slow retry does not hold up the others.
                let _permit = self.permits.acquire().await;
                let mut req = self
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(key) = &self.cfg.api_key {
                    req = req.bearer_auth(key);
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let ra = retry_after(resp.headers());
                        let request_id = resp
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        match resp.bytes().await {
                            Ok(b) => Ok((status, b.to_vec(), request_id, ra)),
                            Err(e) => Err(format!(
                                "the connection dropped while reading the answer: {e}"
                            )),
                        }
                    }
                    Err(e) => Err(describe(&e)),
                }
            };
            attempt += 1;
            match result {
                Ok((status, body, request_id, ra)) => {
                    let retryable = status == 429 || status >= 500;
                    if retryable && attempt < attempts {
                        tokio::time::sleep(backoff(&self.cfg, attempt - 1, ra)).await;
                        continue;
                    }
                    return Reply::Http {
                        status,
                        body,
                        request_id,
                    };
                }
                Err(message) => {
                    if attempt < attempts {
                        tokio::time::sleep(backoff(&self.cfg, attempt - 1, None)).await;
                        continue;
                    }
                    return Reply::Failed {
                        code: "upstream_unreachable".into(),
                        message: format!("{message} (after {attempt} attempts)"),
                    };
                }
            }
        }
    }
}

/// A connection error in one line, without the request's headers (no key leaks).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_or_without_v1() {
        let e = Executor::new(ExecConfig::new("http://h:1/")).unwrap();
        assert_eq!(e.url("/v1/embeddings"), "http://h:1/v1/embeddings");
        assert_eq!(e.url("/chat/completions"), "http://h:1/v1/chat/completions");
        let e = Executor::new(ExecConfig::new("http://h:1/v1")).unwrap();
        assert_eq!(e.url("/v1/embeddings"), "http://h:1/v1/embeddings");
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let cfg = ExecConfig::new("http://h");
        for attempt in 0..30 {
            let d = backoff(&cfg, attempt, None);
            assert!(d <= cfg.max_backoff);
            assert!(d <= cfg.base_backoff * (1 << attempt.min(20)));
        }
        let d = backoff(&cfg, 0, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3));
    }
}
