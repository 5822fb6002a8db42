//! `batchline run`: executes a Batch request file directly against an
//! OpenAI-compatible endpoint and writes Batch-format result lines, so that `join`,
//! `extract` and `validate` work the same for both modes.
//!
//! Shape of a run: one reader thread checks request lines (the same check as `shard`)
//! and counts their token cost; an async dispatcher hands each request to the
//! [`exec`](crate::exec) executor (schedule, window of requests in flight, retries) as
//! a task; one writer thread appends result lines to OUT and the error file, in input
//! order through a bounded reorder window (or as they come with
//! [`OutputOrder::Arrival`]).
//!
//! - **Every input line ends in one result line**: a success in OUT; an HTTP error or a
//!   failure without an answer after the last attempt in the error file (OUT when there
//!   is none); a line that is not a valid request, or repeats a custom_id, in the error
//!   file with `error.code: "invalid_request_line"` and `FILE:LINE: reason`. Each line
//!   carries `"attempts"` (0 for a bad line) after the Batch fields.
//! - **The reorder window** holds `window` requests, counted from the oldest one not
//!   yet written: when that one is slow (retries, a long answer), the ones after it
//!   finish and wait in memory until the window is full, then no new request is sent
//!   until the slow one ends (it always ends: attempts and the timeout are bounded).
//! - **Resuming**: OUT and the error file are read first; a custom_id with a result
//!   line in either is skipped. Failed requests are therefore not sent again by a
//!   rerun: delete (or move) the error file to retry them.
//! - **Appending, not temp + rename**: unlike the other commands, OUT grows across
//!   runs, so lines are appended, complete lines only, written as answers come and
//!   fsynced about once a second; a kill -9 loses at most the requests in flight, and a
//!   cut last line (a write interrupted midway) is removed when the next run starts.
//! - **Ctrl-C / SIGTERM**: nothing more is sent; requests in flight get up to
//!   `drain` to finish and are written; the run then ends with `interrupted` set
//!   (exit 130). Requests without a result are sent by the next run.

pub use crate::batch::prices;
pub mod resume;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::batch::parse_request;
use crate::batch::tokens::{max_output_tokens, request_cost};
use crate::commands::{Outcome, RejectEcho, Summary};
use crate::engine::Cancel;
use crate::error::{Error, Result};
use crate::exec::{ExecConfig, Executor, Reply};
use crate::io::input::{InputSpec, OpenInput};

/// The base URL when neither `--base-url` nor `OPENAI_BASE_URL` says one.
pub use crate::api::DEFAULT_BASE_URL;

/// The order of result lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputOrder {
    /// Input order, through the reorder window.
    #[default]
    Input,
    /// As the answers arrive (`--unordered`).
    Arrival,
}

/// What `run` runs with.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: InputSpec,
    pub output: PathBuf,
    /// Failures go here; into `output` when `None`.
    pub errors: Option<PathBuf>,
    /// Where and how requests go: the base URL (`.../v1`, as the SDKs take it), key,
    /// concurrency, attempts, limits, timeout, headers.
    pub exec: ExecConfig,
    pub order: OutputOrder,
    /// Requests between the oldest unwritten one and the newest sent, at most.
    pub window: usize,
    /// How long requests in flight may take to finish after Ctrl-C.
    pub drain: Duration,
    /// A progress line on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Fewer messages on stderr (no echo of bad lines).
    pub quiet: bool,
    /// fsync the outputs about once a second and at the end.
    pub sync: bool,
    /// Set by Ctrl-C / SIGTERM (main's signal handler).
    pub cancel: Cancel,
    /// Where the echo of bad lines goes (and whether it is shown).
    pub common: crate::commands::CommonOptions,
}

impl RunConfig {
    pub fn new(input: InputSpec, output: PathBuf, exec: ExecConfig) -> RunConfig {
        let window = (exec.concurrency * 4).max(1024);
        RunConfig {
            input,
            output,
            errors: None,
            exec,
            order: OutputOrder::Input,
            window,
            drain: Duration::from_secs(30),
            progress: true,
            quiet: false,
            sync: true,
            cancel: Cancel::new(),
            common: Default::default(),
        }
    }
}

/// Latency of the answered requests (last attempt), in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The figures of a run (`--json` writes them in this order).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub input: String,
    pub output: String,
    pub errors: Option<String>,
    /// Input lines, blank ones included.
    pub lines: u64,
    pub blank: u64,
    /// Requests already answered in OUT or the error file by an earlier run.
    pub skipped: u64,
    /// Lines that are not valid requests (written as errors).
    pub bad_lines: u64,
    /// Requests answered with a success (written to OUT).
    pub succeeded: u64,
    /// Requests that failed after their attempts (written to the error file).
    pub failed: u64,
    /// Requests left without a result by Ctrl-C (sent again by the next run).
    pub unsent: u64,
    /// HTTP attempts made, retries among them, and 429 answers.
    pub attempts: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub latency_ms: Latency,
    /// Tokens of the answers' `usage` (prompt / input, completion / output).
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Cost at the list prices of [`prices`]; `None` when no answer was priced.
    pub cost_usd: Option<f64>,
    /// Answers whose model has no price in the table.
    pub unpriced: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub interrupted: bool,
    #[serde(skip)]
    pub outcome: Outcome,
}

impl Summary for RunSummary {
    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        false
    }

    /// The one-line human summary.
    fn human(&self) -> String {
        let mut s = format!(
            "run: {} ok, {} failed, {} bad lines, {} skipped (answered before)",
            self.succeeded, self.failed, self.bad_lines, self.skipped
        );
        if self.unsent > 0 {
            s.push_str(&format!(", {} not sent (interrupted)", self.unsent));
        }
        s.push_str(&format!(
            "; {} attempts ({} retries, {} rate-limited); latency p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms; tokens {} in, {} out",
            self.attempts,
            self.retries,
            self.rate_limited,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.tokens_in,
            self.tokens_out
        ));
        match self.cost_usd {
            Some(c) if self.unpriced > 0 => {
                s.push_str(&format!(", ${c:.4} ({} answers not priced)", self.unpriced))
            }
            Some(c) => s.push_str(&format!(", ${c:.4}")),
            None => {}
        }
        s.push_str(&format!(
            "; {:.2} s, {:.0} req/s",
            self.seconds, self.requests_per_s
        ));
        if self.failed + self.bad_lines > 0 {
            let errs = self.errors.as_deref().unwrap_or(&self.output);
            s.push_str(&format!("; errors in {errs}"));
        }
        s
    }
}

/// The URL a request line's `url` is sent to: `/v1/chat/completions` goes to
/// `{base}/chat/completions`, as the SDKs do with a base URL ending in `/v1`; Azure's
/// older `/chat/completions` form likewise.
pub fn target_url(base: &str, url: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = url
        .strip_prefix("/v1")
        .filter(|r| r.starts_with('/'))
        .unwrap_or(url);
    format!("{base}{rest}")
}

/// One request line, checked, ready to send; or a line that cannot be sent.
enum Job {
    Send {
        seq: u64,
        custom_id: String,
        url: String,
        body: Vec<u8>,
        cost: u64,
        max_out: u64,
        model: String,
    },
    Bad {
        seq: u64,
        custom_id: Option<String>,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Failed,
    Bad,
}

/// A finished request (or a bad line) for the writer.
enum Done {
    Line {
        seq: u64,
        kind: Kind,
        line: Vec<u8>,
        stats: Option<AnswerStats>,
    },
    /// Stopped before it could be sent: no line; the next run sends it.
    Unsent { seq: u64 },
}

#[derive(Debug, Clone, Copy, Default)]
struct AnswerStats {
    latency_us: u64,
    tokens_in: u64,
    tokens_out: u64,
    cost: Option<f64>,
}

/// Counters the reader keeps.
#[derive(Default)]
struct ReadCounts {
    lines: AtomicU64,
    blank: AtomicU64,
    skipped: AtomicU64,
}

/// Counters shown by the progress line.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    tokens: AtomicU64,
    total: AtomicU64,
}

/// A result id unique across runs: a per-process nonce and a counter.
fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{nonce:016x}{n:08x}")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// An error line: `response: null` and the error object.
fn error_line(custom_id: Option<&str>, code: &str, message: &str, attempts: u32) -> Vec<u8> {
    let cid = custom_id.map_or_else(|| "null".to_string(), json_str);
    format!(
        "{{\"id\":{},\"custom_id\":{cid},\"response\":null,\"error\":{{\"code\":{},\"message\":{}}},\"attempts\":{attempts}}}\n",
        json_str(&new_id("batch_req_")),
        json_str(code),
        json_str(message)
    )
    .into_bytes()
}

#[derive(Deserialize, Default)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct BodyInfo {
    error: Option<IgnoredAny>,
    usage: Option<Usage>,
    model: Option<String>,
}

/// The result line of an HTTP answer, whether it counts as a success, and its usage
/// and model.
fn answer_line(
    custom_id: &str,
    status: u16,
    request_id: Option<&str>,
    body: &[u8],
    attempts: u32,
) -> (Kind, Vec<u8>, Option<(u64, u64)>, Option<String>) {
    let trimmed = body.trim_ascii();
    let info = serde_json::from_slice::<BodyInfo>(trimmed);
    let valid = info.is_ok() || serde_json::from_slice::<IgnoredAny>(trimmed).is_ok();
    let body_text: std::borrow::Cow<'_, str> = if !valid {
        let shown = String::from_utf8_lossy(&trimmed[..trimmed.len().min(200)]).into_owned();
        std::borrow::Cow::Owned(
            serde_json::json!({"error": {
                "message": format!("The server answered HTTP {status} with a body that is not JSON: {shown}"),
                "type": "invalid_response", "param": null, "code": "non_json_body"}})
            .to_string(),
        )
    } else if memchr::memchr2(b'\n', b'\r', trimmed).is_some() {
        // A pretty-printed answer: one line per result, so it is written compactly.
        let v: serde_json::Value = serde_json::from_slice(trimmed).unwrap_or_default();
        std::borrow::Cow::Owned(v.to_string())
    } else {
        // Valid JSON checked above, so valid UTF-8.
        String::from_utf8_lossy(trimmed)
    };
    let (has_error, usage, model) = match info {
        Ok(i) => (i.error.is_some(), i.usage, i.model),
        Err(_) => (false, None, None),
    };
    let ok = valid && (200..300).contains(&status) && !has_error;
    let rid = request_id.map_or_else(|| "null".to_string(), json_str);
    let line = format!(
        "{{\"id\":{},\"custom_id\":{},\"response\":{{\"status_code\":{status},\"request_id\":{rid},\"body\":{body_text}}},\"error\":null,\"attempts\":{attempts}}}\n",
        json_str(&new_id("batch_req_")),
        json_str(custom_id),
    )
    .into_bytes();
    let tokens = usage.map(|u| {
        (
            u.prompt_tokens.or(u.input_tokens).unwrap_or(0),
            u.completion_tokens.or(u.output_tokens).unwrap_or(0),
        )
    });
    (
        if ok { Kind::Ok } else { Kind::Failed },
        line,
        tokens,
        model,
    )
}

/// Reads, checks and numbers the request lines; sends them to the dispatcher.
#[allow(clippy::too_many_arguments)]
fn read_jobs(
    input: InputSpec,
    base: String,
    answered: resume::Answered,
    tx: tokio::sync::mpsc::Sender<Job>,
    counts: Arc<ReadCounts>,
    stop: Arc<AtomicBool>,
    common: crate::commands::CommonOptions,
) -> Result<()> {
    #[derive(Deserialize)]
    struct BodyOnly<'a> {
        #[serde(borrow)]
        body: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct IdOnly {
        custom_id: Option<String>,
    }
    let open = OpenInput::open(&input)?;
    let name = open.name().to_string();
    let mut echo = RejectEcho::new(&common, false);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut seq = 0u64;
    for chunk in open.into_chunks(crate::engine::EngineConfig::default().max_line) {
        let chunk = chunk?;
        for line in chunk.lines() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            counts.lines.fetch_add(1, Ordering::Relaxed);
            if line.is_blank() {
                counts.blank.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let checked = if line.is_cut() {
                Err((None, format!("line too long ({} bytes)", line.len)))
            } else {
                match line.text() {
                    Err(reason) => Err((None, reason)),
                    Ok(text) => match parse_request(text, true) {
                        Err(reason) => {
                            let cid = serde_json::from_str::<IdOnly>(text)
                                .ok()
                                .and_then(|i| i.custom_id);
                            Err((cid, reason))
                        }
                        Ok(req) => {
                            let cid = req.custom_id.to_string();
                            if let Some(first) = seen.get(&cid) {
                                // Not named in the error line: the first line's result
                                // carries this custom_id, and one id must have one result.
                                Err((
                                    None,
                                    format!(
                                        "duplicate custom_id {} (first on line {first})",
                                        json_str(&cid)
                                    ),
                                ))
                            } else if answered.ids.contains(&cid) {
                                seen.insert(cid, line.number);
                                counts.skipped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            } else {
                                seen.insert(cid.clone(), line.number);
                                match serde_json::from_str::<BodyOnly>(text) {
                                    Ok(b) => {
                                        let body = b.body.get();
                                        Ok(Job::Send {
                                            seq,
                                            url: target_url(&base, &req.url),
                                            cost: request_cost(&req, body),
                                            max_out: max_output_tokens(body),
                                            model: req.model.to_string(),
                                            body: body.as_bytes().to_vec(),
                                            custom_id: cid,
                                        })
                                    }
                                    Err(e) => Err((Some(cid), format!("body: {e}"))),
                                }
                            }
                        }
                    },
                }
            };
            let job = match checked {
                Ok(job) => job,
                Err((custom_id, reason)) => {
                    let message = format!("{name}:{}:{}: {reason}", line.number, line.offset);
                    let known = match &custom_id {
                        Some(id) => answered.ids.contains(id),
                        None => answered.bad_lines.contains(&message),
                    };
                    if known {
                        counts.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    echo.echo(&name, line.number, line.offset, &reason);
                    Job::Bad {
                        seq,
                        custom_id,
                        message,
                    }
                }
            };
            seq += 1;
            if tx.blocking_send(job).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What the writer counted.
#[derive(Default)]
struct Tally {
    succeeded: u64,
    failed: u64,
    bad: u64,
    unsent: u64,
    latencies_us: Vec<u64>,
    tokens_in: u64,
    tokens_out: u64,
    cost: f64,
    priced: u64,
    unpriced: u64,
}

struct Sinks {
    out: File,
    out_name: String,
    err: Option<(File, String)>,
    sync: bool,
    last_sync: Instant,
}

impl Sinks {
    fn write(&mut self, out: &[u8], err: &[u8]) -> Result<()> {
        if !out.is_empty() {
            self.out
                .write_all(out)
                .map_err(|e| Error::io(&self.out_name, e))?;
        }
        if !err.is_empty() {
            match &mut self.err {
                Some((f, name)) => f.write_all(err).map_err(|e| Error::io(&*name, e))?,
                None => self
                    .out
                    .write_all(err)
                    .map_err(|e| Error::io(&self.out_name, e))?,
            }
        }
        Ok(())
    }

    fn sync(&mut self, force: bool) -> Result<()> {
        if !self.sync || (!force && self.last_sync.elapsed() < Duration::from_secs(1)) {
            return Ok(());
        }
        self.last_sync = Instant::now();
        self.out
            .sync_data()
            .map_err(|e| Error::io(&self.out_name, e))?;
        if let Some((f, name)) = &self.err {
            f.sync_data().map_err(|e| Error::io(&*name, e))?;
        }
        Ok(())
    }
}

/// Writes finished lines (in input order, or as they come), returns window slots, and
/// counts. After a write error it keeps draining (so nothing waits on it forever) and
/// returns the error at the end.
fn write_results(
    rx: crossbeam_channel::Receiver<Done>,
    mut sinks: Sinks,
    order: OutputOrder,
    slots: Arc<Semaphore>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> (Tally, Result<()>) {
    let mut tally = Tally::default();
    let mut failure: Result<()> = Ok(());
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut out_buf = Vec::new();
    let mut err_buf = Vec::new();
    let account = |d: Done, out: &mut Vec<u8>, err: &mut Vec<u8>, tally: &mut Tally| match d {
        Done::Line {
            kind, line, stats, ..
        } => {
            match kind {
                Kind::Ok => {
                    tally.succeeded += 1;
                    out.extend_from_slice(&line);
                }
                Kind::Failed => {
                    tally.failed += 1;
                    err.extend_from_slice(&line);
                }
                Kind::Bad => {
                    tally.bad += 1;
                    err.extend_from_slice(&line);
                }
            }
            if let Some(s) = stats {
                tally.latencies_us.push(s.latency_us);
                tally.tokens_in += s.tokens_in;
                tally.tokens_out += s.tokens_out;
                progress
                    .tokens
                    .fetch_add(s.tokens_in + s.tokens_out, Ordering::Relaxed);
                match s.cost {
                    Some(c) => {
                        tally.cost += c;
                        tally.priced += 1;
                    }
                    None if s.tokens_in + s.tokens_out > 0 => tally.unpriced += 1,
                    None => {}
                }
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
        }
        Done::Unsent { .. } => tally.unsent += 1,
    };
    let seq_of = |d: &Done| match d {
        Done::Line { seq, .. } | Done::Unsent { seq } => *seq,
    };
    let mut closed = false;
    while !closed {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(d) => Some(d),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                closed = true;
                None
            }
        };
        let mut released = 0usize;
        let mut batch: Vec<Done> = first.into_iter().collect();
        // Everything already waiting goes out in one write per file.
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        for d in batch {
            match order {
                OutputOrder::Arrival => {
                    account(d, &mut out_buf, &mut err_buf, &mut tally);
                    released += 1;
                }
                OutputOrder::Input => {
                    pending.insert(seq_of(&d), d);
                }
            }
        }
        if order == OutputOrder::Input {
            while let Some(d) = pending.remove(&next) {
                account(d, &mut out_buf, &mut err_buf, &mut tally);
                next += 1;
                released += 1;
            }
            if closed {
                // Ctrl-C left gaps (requests not sent or cut off): what is done is
                // written all the same, still in input order.
                for (_, d) in std::mem::take(&mut pending) {
                    account(d, &mut out_buf, &mut err_buf, &mut tally);
                }
            }
        }
        if failure.is_ok() {
            failure = sinks
                .write(&out_buf, &err_buf)
                .and_then(|_| sinks.sync(closed));
            if failure.is_err() {
                stop.store(true, Ordering::SeqCst);
            }
        }
        out_buf.clear();
        err_buf.clear();
        if released > 0 {
            slots.add_permits(released);
        }
    }
    (tally, failure)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i] as f64 / 1000.0 * 10.0).round() / 10.0
}

/// Refuses an output that is one of the inputs (same device and inode).
fn ensure_not_input(output: &std::path::Path, inputs: &[&std::path::Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(output) else {
        return Ok(());
    };
    for i in inputs {
        if let Ok(m) = std::fs::metadata(i) {
            if m.dev() == o.dev() && m.ino() == o.ino() {
                return Err(Error::Usage(format!(
                    "{} is also the input: run appends to its output, so it must be another file",
                    output.display()
                )));
            }
        }
    }
    Ok(())
}

fn open_append(path: &std::path::Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Lines of a regular file, counted in the background for the progress line's total.
fn count_in_background(input: &InputSpec, progress: Arc<Progress>, minus: u64) {
    let Some(path) = input.path().map(|p| p.to_path_buf()) else {
        return;
    };
    if crate::io::Compression::from_name(&path.display().to_string())
        != crate::io::Compression::None
    {
        return;
    }
    std::thread::spawn(move || {
        let Ok(mut f) = File::open(&path) else { return };
        let mut buf = vec![0u8; 1 << 20];
        let (mut n, mut last) = (0u64, b'\n');
        while let Ok(k) = f.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += memchr::memchr_iter(b'\n', &buf[..k]).count() as u64;
            last = buf[k - 1];
        }
        if last != b'\n' {
            n += 1;
        }
        progress
            .total
            .store(n.saturating_sub(minus).max(1), Ordering::Relaxed);
    });
}

/// Draws the progress line from the counters until `done` is set.
fn show_progress(
    progress: Arc<Progress>,
    exec: Arc<Executor>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let t0 = Instant::now();
        // Rates over the last few seconds, not since the start, so a pause shows.
        let mut history: std::collections::VecDeque<(Instant, u64, u64)> = Default::default();
        while !done.load(Ordering::Relaxed) {
            let now = Instant::now();
            let d = progress.done.load(Ordering::Relaxed);
            let tok = progress.tokens.load(Ordering::Relaxed);
            history.push_back((now, d, tok));
            while history.len() > 2 && now.duration_since(history[0].0) > Duration::from_secs(10) {
                history.pop_front();
            }
            let (t_old, d_old, tok_old) = history[0];
            let dt = now.duration_since(t_old).as_secs_f64().max(1e-3);
            let rps = (d - d_old) as f64 / dt;
            let tpm = (tok - tok_old) as f64 / dt * 60.0;
            let total = progress.total.load(Ordering::Relaxed);
            let s = exec.stats();
            let eta = if total > d && rps > 0.0 {
                let secs = ((total - d) as f64 / rps) as u64;
                format!("ETA {}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
            } else {
                "ETA -".into()
            };
            let total_s = if total > 0 {
                total.to_string()
            } else {
                "?".into()
            };
            bar.set_message(format!(
                "{d}/{total_s} done, {rps:.0} req/s, {tpm:.0} tokens/min, {} in flight, {} retries, {} 429s, {eta} ({:.0} s)",
                s.in_flight.load(Ordering::Relaxed),
                s.retries.load(Ordering::Relaxed),
                s.rate_limited.load(Ordering::Relaxed),
                t0.elapsed().as_secs_f64()
            ));
            std::thread::sleep(Duration::from_millis(250));
        }
        bar.finish_and_clear();
    })
}

/// Runs the requests of `cfg.input`; see the module doc.
pub fn run(cfg: &RunConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let input_name = cfg.input.display_name();
    let out_name = cfg.output.display().to_string();
    let inputs: Vec<&std::path::Path> = cfg.input.path().into_iter().collect();
    ensure_not_input(&cfg.output, &inputs)?;
    let errors = cfg.errors.clone().filter(|e| *e != cfg.output);
    if let Some(e) = &errors {
        ensure_not_input(e, &inputs)?;
    }
    // What earlier runs answered; their cut tails are removed before appending.
    let mut answered = resume::Answered::default();
    resume::read_answered(&cfg.output, &mut answered)?;
    if let Some(e) = &errors {
        resume::read_answered(e, &mut answered)?;
    }
    let sinks = Sinks {
        out: open_append(&cfg.output)?,
        out_name: out_name.clone(),
        err: match &errors {
            Some(p) => Some((open_append(p)?, p.display().to_string())),
            None => None,
        },
        sync: cfg.sync,
        last_sync: Instant::now(),
    };
    let exec = Arc::new(Executor::new(cfg.exec.clone()).map_err(Error::Other)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(ReadCounts::default());
    let progress = Arc::new(Progress::default());
    let show = cfg.progress && std::io::stderr().is_terminal();
    if show {
        count_in_background(&cfg.input, progress.clone(), answered.ids.len() as u64);
    }
    let (job_tx, mut job_rx) = tokio::sync::mpsc::channel::<Job>(1024);
    let reader = {
        let (input, base, counts, stop, common) = (
            cfg.input.clone(),
            cfg.exec.base_url.clone(),
            counts.clone(),
            stop.clone(),
            cfg.common.clone(),
        );
        std::thread::spawn(move || read_jobs(input, base, answered, job_tx, counts, stop, common))
    };
    let window = cfg.window.max(1);
    let slots = Arc::new(Semaphore::new(window));
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
    let writer = {
        let (slots, progress, stop, order) =
            (slots.clone(), progress.clone(), stop.clone(), cfg.order);
        std::thread::spawn(move || write_results(done_rx, sinks, order, slots, progress, stop))
    };
    let drawing = Arc::new(AtomicBool::new(false));
    let drawer = show.then(|| show_progress(progress.clone(), exec.clone(), drawing.clone()));

    let interrupted = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let check = |stop: &AtomicBool| {
            if cfg.cancel.is_cancelled() {
                stop.store(true, Ordering::SeqCst);
            }
            let stopped = stop.load(Ordering::Relaxed);
            if stopped {
                exec.stop();
            }
            stopped
        };
        'jobs: loop {
            let job = tokio::select! {
                j = job_rx.recv() => j,
                _ = tick.tick() => {
                    if check(&stop) { break 'jobs; }
                    continue;
                }
            };
            let Some(job) = job else { break };
            {
                // Pinned across ticks, so the wait keeps its place in the queue.
                let slot = slots.clone().acquire_owned();
                tokio::pin!(slot);
                loop {
                    tokio::select! {
                        p = &mut slot => {
                            if let Ok(p) = p { p.forget(); }
                            break;
                        }
                        _ = tick.tick() => {
                            if check(&stop) { break 'jobs; }
                        }
                    }
                }
            }
            while tasks.try_join_next().is_some() {}
            match job {
                Job::Bad {
                    seq,
                    custom_id,
                    message,
                } => {
                    let line = error_line(custom_id.as_deref(), resume::BAD_LINE_CODE, &message, 0);
                    let _ = done_tx.send(Done::Line {
                        seq,
                        kind: Kind::Bad,
                        line,
                        stats: None,
                    });
                }
                Job::Send {
                    seq,
                    custom_id,
                    url,
                    body,
                    cost,
                    max_out,
                    model,
                } => {
                    // The first attempt's room in the window is taken here, in input
                    // order, so early requests are not queued behind later ones.
                    let permit = {
                        let p = exec.window_permit();
                        tokio::pin!(p);
                        loop {
                            tokio::select! {
                                p = &mut p => break p,
                                _ = tick.tick() => {
                                    if check(&stop) { break 'jobs; }
                                }
                            }
                        }
                    };
                    let Some(permit) = permit else { break 'jobs };
                    let (exec, done_tx, stop) = (exec.clone(), done_tx.clone(), stop.clone());
                    tasks.spawn(async move {
                        let o = exec.call_with(Some(permit), &url, &body, cost, &stop).await;
                        let done = match o.reply {
                            None => Done::Unsent { seq },
                            Some(Reply::Failed { code, message }) => Done::Line {
                                seq,
                                kind: Kind::Failed,
                                line: error_line(Some(&custom_id), &code, &message, o.attempts),
                                stats: Some(AnswerStats {
                                    latency_us: o.latency.as_micros() as u64,
                                    ..Default::default()
                                }),
                            },
                            Some(Reply::Http {
                                status,
                                body,
                                request_id,
                            }) => {
                                let (kind, line, tokens, answer_model) = answer_line(
                                    &custom_id,
                                    status,
                                    request_id.as_deref(),
                                    &body,
                                    o.attempts,
                                );
                                let (tin, tout) = tokens.unwrap_or((0, 0));
                                if tokens.is_some() {
                                    // The provider charged the prompt it counted plus
                                    // max_tokens (or what was written when unset).
                                    let actual = tin.saturating_add(if max_out > 0 {
                                        max_out
                                    } else {
                                        tout
                                    });
                                    let delta = (actual as i128 - cost as i128)
                                        .clamp(i64::MIN as i128, i64::MAX as i128)
                                        as i64;
                                    exec.limiter().correct_tokens(delta, Instant::now());
                                }
                                let m = answer_model.as_deref().unwrap_or(&model);
                                Done::Line {
                                    seq,
                                    kind,
                                    line,
                                    stats: Some(AnswerStats {
                                        latency_us: o.latency.as_micros() as u64,
                                        tokens_in: tin,
                                        tokens_out: tout,
                                        cost: prices::cost_of(m, tin, tout),
                                    }),
                                }
                            }
                        };
                        let _ = done_tx.send(done);
                    });
                }
            }
        }
        drop(job_rx);
        // Every task ends (attempts and the timeout are bounded); after Ctrl-C the
        // ones in flight get `drain` to finish, then are cut off.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if deadline.is_none() && check(&stop) {
                deadline = Some(tokio::time::Instant::now() + cfg.drain);
            }
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = tick.tick() => {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
        stop.load(Ordering::Relaxed)
    });
    drop(done_tx);
    rt.shutdown_timeout(Duration::from_secs(1));
    // After Ctrl-C the reader may sit in a read of a terminal or a pipe that never
    // ends: it is left behind (the process is about to exit), not waited for.
    let read_result = if stop.load(Ordering::Relaxed) {
        Ok(())
    } else {
        reader
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the reader thread panicked".into())))
    };
    let (tally, written) = writer.join().unwrap_or_else(|_| {
        (
            Tally::default(),
            Err(Error::Other("the writer thread panicked".into())),
        )
    });
    drawing.store(true, Ordering::Relaxed);
    if let Some(d) = drawer {
        let _ = d.join();
    }
    written?;
    read_result?;
    // A stop that came from neither Ctrl-C nor a write error is impossible; an
    // interrupted run still reports what it did.
    let interrupted = interrupted && cfg.cancel.is_cancelled();
    let mut lat = tally.latencies_us.clone();
    lat.sort_unstable();
    let s = exec.stats();
    let seconds = started.elapsed().as_secs_f64();
    let answered_now = tally.succeeded + tally.failed;
    let summary = RunSummary {
        input: input_name,
        output: out_name,
        errors: errors.map(|e| e.display().to_string()),
        lines: counts.lines.load(Ordering::Relaxed),
        blank: counts.blank.load(Ordering::Relaxed),
        skipped: counts.skipped.load(Ordering::Relaxed),
        bad_lines: tally.bad,
        succeeded: tally.succeeded,
        failed: tally.failed,
        unsent: tally.unsent,
        attempts: s.attempts.load(Ordering::Relaxed),
        retries: s.retries.load(Ordering::Relaxed),
        rate_limited: s.rate_limited.load(Ordering::Relaxed),
        latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p90: percentile(&lat, 0.90),
            p99: percentile(&lat, 0.99),
            max: percentile(&lat, 1.0),
        },
        tokens_in: tally.tokens_in,
        tokens_out: tally.tokens_out,
        cost_usd: (tally.priced > 0).then(|| (tally.cost * 1e6).round() / 1e6),
        unpriced: tally.unpriced,
        seconds: (seconds * 1000.0).round() / 1000.0,
        requests_per_s: if seconds > 0.0 {
            (answered_now as f64 / seconds * 10.0).round() / 10.0
        } else {
            0.0
        },
        interrupted,
        outcome: if interrupted {
            Outcome::Interrupted
        } else {
            Outcome::from_rejected(tally.failed + tally.bad)
        },
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_sdk_base_url() {
        assert_eq!(
            target_url("http://h:1/v1/", "/v1/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            target_url("https://x.openai.azure.com/openai/v1", "/chat/completions"),
            "https://x.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(target_url("http://h/v1", "/v1x"), "http://h/v1/v1x");
    }

    #[test]
    fn answers_become_batch_result_lines() {
        let body = br#"{"id":"c","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let (kind, line, tokens, model) = answer_line("a\"b", 200, Some("req_1"), body, 2);
        assert_eq!(kind, Kind::Ok);
        assert_eq!(tokens, Some((5, 7)));
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["custom_id"], "a\"b");
        assert_eq!(v["response"]["status_code"], 200);
        assert_eq!(v["response"]["request_id"], "req_1");
        assert_eq!(v["response"]["body"]["usage"]["prompt_tokens"], 5);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["attempts"], 2);
        assert!(line.ends_with(b"}\n") && line.iter().filter(|&&b| b == b'\n').count() == 1);

        // Pretty-printed bodies are written on one line.
        let (kind, line, _, _) = answer_line("x", 200, None, b"{\n  \"a\": 1\n}\n", 1);
        assert_eq!(kind, Kind::Ok);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);

        // Errors, bodies with an error, and bodies that are not JSON are failures.
        let (kind, _, _, _) = answer_line("x", 400, None, br#"{"error":{"message":"m"}}"#, 1);
        assert_eq!(kind, Kind::Failed);
        let (kind, _, _, _) = answer_line("x", 200, None, br#"{"error":{"message":"m"}}"#, 1);
        assert_eq!(kind, Kind::Failed);
        let (kind, line, _, _) = answer_line("x", 502, None, b"<html>bad gateway</html>", 3);
        assert_eq!(kind, Kind::Failed);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["response"]["body"]["error"]["code"], "non_json_body");
    }

    #[test]
    fn error_lines_carry_code_and_message() {
        let line = error_line(None, "invalid_request_line", "in.jsonl:3:40: bad", 0);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["custom_id"], serde_json::Value::Null);
        assert_eq!(v["response"], serde_json::Value::Null);
        assert_eq!(v["error"]["message"], "in.jsonl:3:40: bad");
        assert!(v["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_ne!(new_id("a"), new_id("a"));
    }

    #[test]
    fn percentiles_pick_from_the_sorted_sample() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
