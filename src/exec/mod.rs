//! The request executor: sends request bodies to an OpenAI-compatible server (vLLM,
//! llama.cpp server, Ollama, OpenAI) with a bound on concurrent requests, an optional
//! requests-per-minute limit, and retries of 429, 5xx and dropped connections with
//! exponential backoff and full jitter, honouring `Retry-After`. `serve --upstream`
//! uses it for batch lines and proxied direct calls; `run` is meant to reuse it.
//!
//! Every call ends in exactly one [`Reply`]: the upstream's answer (possibly an error
//! status after the last retry), or a failure that names why no answer came.
//!
//! `run` uses [`Executor::call`]: the same retries, plus the [`Limiter`] (even spacing
//! of requests and tokens, limits from `x-ratelimit-*` headers, a gradual return after
//! a 429 pause), a window of requests in flight that halves on a 429 and grows back one
//! request per success, Azure's `api-key` header and `api-version` parameter, extra
//! headers, and counters for progress. `send` (serve) is unchanged by these.

pub mod ratelimit;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use ratelimit::{Limiter, RateHeaders, TokenBucket};

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY` (OpenAI and most compatible servers).
    #[default]
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
}

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
    /// Tokens per minute, if limited (used by [`Executor::call`]).
    pub tpm: Option<u64>,
    /// How `api_key` is sent.
    pub auth: AuthStyle,
    /// Azure's `api-version` query parameter, added to every URL when set.
    pub api_version: Option<String>,
    /// More headers for every request (`--header NAME:VALUE`).
    pub headers: Vec<(String, String)>,
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
            tpm: None,
            auth: AuthStyle::Bearer,
            api_version: None,
            headers: Vec::new(),
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

/// What [`Executor::call`] gives back: the reply and how it was reached.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// `None` when the run was stopped before the request could be (re)sent: it has no
    /// result and is sent again by the next run.
    pub reply: Option<Reply>,
    /// Attempts sent, the first included.
    pub attempts: u32,
    /// Time of the last attempt, from sending to the whole answer.
    pub latency: Duration,
}

/// Room for one request in the executor's window (see [`Executor::window_permit`]).
pub struct WindowPermit(tokio::sync::OwnedSemaphorePermit);

/// How long the other calls wait for the first answer's rate-limit headers.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Counters read by a progress display while calls run.
#[derive(Debug, Default)]
pub struct ExecStats {
    pub in_flight: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// The requests allowed in flight: `concurrency` at most, halved on a 429 (once per
/// pause) and grown back by one per success, like TCP's congestion window, so that a
/// server that limits concurrency rather than rate is found too. The first request
/// goes alone: its answer's `x-ratelimit-*` headers set the schedule before the others
/// go, instead of a whole window going out before the limits are known.
struct Window {
    sem: Arc<Semaphore>,
    max: usize,
    state: Mutex<WindowState>,
}

struct WindowState {
    /// Still waiting for the first answer (the window is 1).
    probing: bool,
    size: usize,
    /// Permits still to be withdrawn as they come back (the window shrank below what
    /// was in flight).
    debt: usize,
    last_cut: Option<Instant>,
}

impl Window {
    fn new(max: usize) -> Window {
        Window {
            sem: Arc::new(Semaphore::new(1)),
            max,
            state: Mutex::new(WindowState {
                probing: true,
                size: max,
                debt: 0,
                last_cut: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn probing(&self) -> bool {
        self.lock().probing
    }

    /// Opens the window to its size after the first answer (or failure).
    fn opened(&self) {
        let mut st = self.lock();
        if st.probing {
            st.probing = false;
            self.sem.add_permits(self.max - 1);
        }
    }

    /// Gives a permit back, or withdraws it when the window owes one.
    fn release(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        let mut st = self.lock();
        if st.debt > 0 {
            st.debt -= 1;
            permit.forget();
        }
    }

    fn shrink(&self, now: Instant, pause: Duration) {
        let mut st = self.lock();
        // One cut per pause: the 429s of requests sent together are one signal.
        if st.last_cut.is_some_and(|t| now < t + pause) {
            return;
        }
        st.last_cut = Some(now);
        let target = (st.size / 2).max(1);
        let cut = st.size - target;
        st.size = target;
        let taken = self.sem.forget_permits(cut);
        st.debt += cut - taken;
    }

    fn grow(&self) {
        let mut st = self.lock();
        if st.size >= self.max {
            return;
        }
        st.size += 1;
        if st.debt > 0 {
            st.debt -= 1;
        } else {
            self.sem.add_permits(1);
        }
    }
}

/// Sends requests upstream; cheap to share behind an `Arc`.
pub struct Executor {
    client: reqwest::Client,
    cfg: ExecConfig,
    permits: Arc<Semaphore>,
    rpm: Option<Mutex<TokenBucket>>,
    limiter: Limiter,
    window: Window,
    stats: ExecStats,
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
    backoff_between(cfg.base_backoff, cfg.max_backoff, attempt, retry_after)
}

/// [`backoff`] with its bounds given directly (also the policy of `api::Client`):
/// full jitter over `base` doubled per attempt up to `max`, never under `Retry-After`.
pub fn backoff_between(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    let j = jitter(ceiling);
    match retry_after {
        Some(ra) => ra.max(j).min(max.max(ra)),
        None => j,
    }
}

/// `Retry-After` (seconds, or Azure's `retry-after-ms`) of an answer.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
    {
        return Some(Duration::from_secs_f64(
            ms.clamp(0.0, 86_400_000.0) / 1000.0,
        ));
    }
    // An HTTP date or garbage is ignored (the backoff applies); NaN and infinities too.
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
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
            limiter: Limiter::new(cfg.rpm, cfg.tpm),
            window: Window::new(cfg.concurrency.max(1)),
            stats: ExecStats::default(),
            cfg,
        })
    }

    /// Stops [`Executor::call`]s from sending: the ones waiting for room in the window
    /// end at once without a reply (set their `stop` flag too, for the ones waiting for
    /// a slot or a backoff). Requests in flight are not cut.
    pub fn stop(&self) {
        self.window.sem.close();
    }

    /// The counters of [`Executor::call`].
    pub fn stats(&self) -> &ExecStats {
        &self.stats
    }

    /// The send schedule of [`Executor::call`].
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Waits for a send slot of `cost` tokens; false when `stop` was set meanwhile.
    async fn wait_slot(&self, cost: u64, stop: &AtomicBool) -> bool {
        // Sleeps in short steps so that Ctrl-C is seen during a long 429 pause.
        const STEP: Duration = Duration::from_millis(100);
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let slot = self.limiter.reserve(cost);
            loop {
                let now = Instant::now();
                if slot.at <= now {
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                tokio::time::sleep((slot.at - now).min(STEP)).await;
            }
            if self.limiter.holds(&slot, Instant::now()) {
                return true;
            }
        }
    }

    /// POSTs `body` (JSON) to the full `url` for `run`: waits for its slot in the
    /// schedule (`cost` is its token estimate) and for room in the window, retries 429,
    /// 5xx, timeouts and dropped connections with backoff up to `max_attempts`, and
    /// feeds the limiter with the answers' headers. When `stop` is set, nothing more is
    /// sent: a call not yet sent ends without a reply.
    pub async fn call(&self, url: &str, body: &[u8], cost: u64, stop: &AtomicBool) -> CallOutcome {
        self.call_with(None, url, body, cost, stop).await
    }

    /// Waits for room in the window of requests in flight; `None` once
    /// [`Executor::stop`] closed it. A caller that takes permits in input order and
    /// hands them to [`Executor::call_with`] gets first attempts sent in that order
    /// (the semaphore is fair), which keeps an ordered writer's window moving.
    pub async fn window_permit(&self) -> Option<WindowPermit> {
        let acquire = self.window.sem.clone().acquire_owned();
        let got = if self.window.probing() {
            // A first answer that takes long (a long generation) must not hold up
            // the run: after PROBE_WAIT the window opens without its headers.
            match tokio::time::timeout(PROBE_WAIT, acquire).await {
                Ok(p) => p,
                Err(_) => {
                    self.window.opened();
                    self.window.sem.clone().acquire_owned().await
                }
            }
        } else {
            acquire.await
        };
        got.ok().map(WindowPermit)
    }

    /// [`Executor::call`], with the window permit of the first attempt already taken.
    pub async fn call_with(
        &self,
        first: Option<WindowPermit>,
        url: &str,
        body: &[u8],
        cost: u64,
        stop: &AtomicBool,
    ) -> CallOutcome {
        let attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 0;
        let mut first = first;
        let stopped = |attempts| CallOutcome {
            reply: None,
            attempts,
            latency: Duration::ZERO,
        };
        loop {
            // Room in the window first, then the slot: a slot booked while waiting for
            // the window would be spent before the limits of the first answer are known.
            // [`Executor::stop`] closes the window, which wakes every call waiting here.
            if stop.load(Ordering::Relaxed) {
                if let Some(WindowPermit(p)) = first.take() {
                    self.window.release(p);
                }
                return stopped(attempt);
            }
            let permit = match first.take() {
                Some(WindowPermit(p)) => p,
                None => match self.window_permit().await {
                    Some(WindowPermit(p)) => p,
                    None => return stopped(attempt),
                },
            };
            if !self.wait_slot(cost, stop).await {
                self.window.release(permit);
                return stopped(attempt);
            }
            self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let result = self.post_once(url, body).await;
            let latency = t0.elapsed();
            self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.window.opened();
            self.window.release(permit);
            attempt += 1;
            let now = Instant::now();
            let (retry, wait) = match &result {
                Ok((status, _, _, ra)) if *status == 429 => {
                    self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    self.limiter.on_429(*ra, now);
                    self.window
                        .shrink(now, ra.unwrap_or(Duration::from_secs(1)));
                    (true, *ra)
                }
                Ok((status, _, _, ra)) if *status >= 500 => (true, *ra),
                Ok(_) => {
                    self.window.grow();
                    (false, None)
                }
                Err(_) => (true, None),
            };
            if retry && attempt < attempts && !stop.load(Ordering::Relaxed) {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let d = backoff(&self.cfg, attempt - 1, wait);
                let until = now + d;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100)))
                        .await;
                }
                continue;
            }
            let reply = match result {
                Ok((status, body, request_id, _)) => Reply::Http {
                    status,
                    body,
                    request_id,
                },
                Err((code, message)) => Reply::Failed {
                    code: code.into(),
                    message: format!("{message} (after {attempt} attempts)"),
                },
            };
            return CallOutcome {
                reply: Some(reply),
                attempts: attempt,
                latency,
            };
        }
    }

    /// One POST: the status, body, `x-request-id` and `Retry-After` of the answer, or
    /// why none came (a code and a message).
    async fn post_once(
        &self,
        url: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>, Option<String>, Option<Duration>), (&'static str, String)> {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(v) = &self.cfg.api_version {
            req = req.query(&[("api-version", v)]);
        }
        if let Some(key) = &self.cfg.api_key {
            req = match self.cfg.auth {
                AuthStyle::Bearer => req.bearer_auth(key),
                AuthStyle::ApiKey => {
                    let mut v = reqwest::header::HeaderValue::from_str(key).map_err(|_| {
                        (
                            "bad_key",
                            "the API key is not a valid header value".to_string(),
                        )
                    })?;
                    v.set_sensitive(true);
                    req.header("api-key", v)
                }
            };
        }
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| {
            let code = if e.is_timeout() {
                "timeout"
            } else {
                "connection_failed"
            };
            (code, describe(&e))
        })?;
        let status = resp.status().as_u16();
        let h = resp.headers();
        let ra = retry_after(h);
        let request_id = h
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let rate = RateHeaders::read(|k| h.get(k).and_then(|v| v.to_str().ok()));
        self.limiter.on_headers(&rate, Instant::now());
        match resp.bytes().await {
            Ok(b) => Ok((status, b.to_vec(), request_id, ra)),
            Err(e) => Err((
                if e.is_timeout() {
                    "timeout"
                } else {
                    "connection_dropped"
                },
                format!(
                    "the connection dropped while reading the answer: {}",
                    describe(&e)
                ),
            )),
        }
    }

    pub fn config(&self) -> &ExecConfig {
        &self.cfg
    }

    /// The full URL for an API path such as `/v1/chat/completions`.
    pub fn url(&self, path: &str) -> String {
        join_url(&self.cfg.base_url, path)
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

/// The full URL for an API path such as `/v1/chat/completions` under `base` (the server
/// root or its `/v1`, as the SDKs take it; no trailing slash).
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    match (base.ends_with("/v1"), path.strip_prefix("/v1")) {
        (true, Some(rest)) => format!("{base}{rest}"),
        (false, None) => format!("{base}/v1{path}"),
        _ => format!("{base}{path}"),
    }
}

/// A connection error in one line, without the request's headers (no key leaks).
pub fn describe(e: &reqwest::Error) -> String {
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
