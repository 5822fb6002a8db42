//! The life of a batch: `validating` → `in_progress` (request_counts advancing) →
//! `finalizing` → `completed`; or `failed` at validation; `expired` when the window
//! closes (answered requests stay in the output file, the rest become `batch_expired`
//! lines in the error file); `cancelling` → `cancelled` with partial results.
//!
//! Resuming: answers are appended to the batch's work files as they come; at (re)start
//! the driver reads those files back (cutting a torn last line), and sends only the
//! requests whose custom_id is not in them, so no answered request is sent again. The
//! end of a batch is a two-step, repeatable change: the ids of the result files are
//! recorded first, then the work files become those files, then the status changes.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::store::{new_id, now, now_ms, BatchError, BatchErrors, FileObject, Usage};
use super::{Answer, App};
use crate::batch::Endpoint;

/// How often request_counts are written while a batch runs.
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// Starts a driver for every batch that has work left (after a restart).
pub fn resume_all(app: &Arc<App>) {
    for rec in app.store.batch_recs() {
        if rec.batch.is_active() {
            spawn(app.clone(), rec.batch.id.clone());
        }
    }
}

/// The error of a task that ended without its result: `Interrupted` when the runtime
/// cancelled it (shutdown), which [`spawn`] never records as a failed batch.
fn stopped(what: &str, e: tokio::task::JoinError) -> io::Error {
    let kind = if e.is_cancelled() {
        io::ErrorKind::Interrupted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("{what} stopped: {e}"))
}

/// Drives batch `id` to its end in the background.
pub fn spawn(app: Arc<App>, id: String) {
    tokio::spawn(async move {
        if let Err(e) = drive(&app, &id).await {
            // Cut by the server's shutdown (the runtime cancels tasks): the batch stays
            // as it is on disk and the next start resumes it. Marking it failed here
            // would end a healthy batch because the server stopped.
            if e.kind() == io::ErrorKind::Interrupted {
                return;
            }
            // A storage failure: the batch fails with the reason rather than hanging
            // in a state nobody advances.
            let msg = format!("The server could not process the batch: {e}");
            let _ = app.store.update_batch(&id, |r| {
                r.batch.status = "failed".into();
                r.batch.failed_at = Some(now());
                r.batch.errors = Some(BatchErrors {
                    object: "list".into(),
                    data: vec![BatchError {
                        code: "server_error".into(),
                        message: msg,
                        param: None,
                        line: None,
                    }],
                });
            });
        }
        app.forget_cancel_flag(&id);
    });
}

fn errors_list(data: Vec<BatchError>) -> Option<BatchErrors> {
    Some(BatchErrors {
        object: "list".into(),
        data,
    })
}

async fn drive(app: &Arc<App>, id: &str) -> io::Result<()> {
    loop {
        let Some(rec) = app.store.batch(id) else {
            return Ok(());
        };
        if let Some(ending) = rec.state.ending.clone() {
            return finalize(app, id, &ending);
        }
        match rec.batch.status.as_str() {
            "validating" => validate_step(app, id).await?,
            "in_progress" | "cancelling" => {
                let ending = run_step(app, id).await?;
                return finalize(app, id, ending);
            }
            "finalizing" => return finalize(app, id, "completed"),
            _ => return Ok(()),
        }
    }
}

async fn validate_step(app: &Arc<App>, id: &str) -> io::Result<()> {
    let Some(rec) = app.store.batch(id) else {
        return Ok(());
    };
    let input = app.store.file_data(&rec.batch.input_file_id);
    let endpoint = Endpoint::from_url(&rec.batch.endpoint).unwrap_or(Endpoint::ChatCompletions);
    let limits = app.opts.limits;
    let checked = if input.exists() {
        let path = input.clone();
        tokio::task::spawn_blocking(move || super::validate::validate(&path, endpoint, limits))
            .await
            .map_err(|e| stopped("validation", e))??
    } else {
        Err(vec![BatchError {
            code: "invalid_file".into(),
            message: format!("The input file {} was deleted.", rec.batch.input_file_id),
            param: Some("input_file_id".into()),
            line: None,
        }])
    };
    let checked = match checked {
        Ok(v) => match app.opts.enqueued_token_limit {
            // Tokens of the other unfinished batches of the same model, plus this one.
            Some(limit) => {
                let queued: u64 = app
                    .store
                    .batch_recs()
                    .iter()
                    .filter(|r| {
                        r.batch.id != id
                            && r.batch.is_active()
                            && r.batch.status != "validating"
                            && r.batch.model.as_deref() == Some(v.model.as_str())
                    })
                    .map(|r| r.state.prompt_tokens)
                    .sum();
                if queued + v.prompt_tokens > limit {
                    Err(vec![BatchError {
                        code: "token_limit_exceeded".into(),
                        message: format!(
                            "Enqueued token limit reached for {} in organization. Limit: {limit} enqueued tokens. This batch holds {} and {queued} are already enqueued. Please try again once some in_progress batches have been completed.",
                            v.model, v.prompt_tokens
                        ),
                        param: None,
                        line: None,
                    }])
                } else {
                    Ok(v)
                }
            }
            None => Ok(v),
        },
        Err(e) => Err(e),
    };
    app.store.update_batch(id, |r| match checked {
        Ok(v) => {
            r.batch.model = Some(v.model);
            r.batch.request_counts.total = v.total;
            r.state.prompt_tokens = v.prompt_tokens;
            r.batch.in_progress_at = Some(now());
            // A cancel that came during validation stays a cancel.
            if r.batch.status == "validating" {
                r.batch.status = "in_progress".into();
            }
        }
        Err(errors) => {
            r.batch.status = "failed".into();
            r.batch.failed_at = Some(now());
            r.batch.errors = errors_list(errors);
        }
    })?;
    Ok(())
}

/// One answered request, ready to append.
struct Done {
    ok: bool,
    line: String,
    usage: (u64, u64),
}

/// What the work files already hold.
#[derive(Default)]
struct Recovered {
    ids: HashSet<String>,
    completed: u64,
    failed: u64,
    usage: (u64, u64),
}

/// Input and output tokens of an answer body (chat, completions, responses, embeddings).
fn usage_of(body: &Value) -> (u64, u64) {
    let u = &body["usage"];
    let get = |a: &str, b: &str| u[a].as_u64().or(u[b].as_u64()).unwrap_or(0);
    (
        get("prompt_tokens", "input_tokens"),
        get("completion_tokens", "output_tokens"),
    )
}

/// Reads one work file back, cutting a torn last line (a crash mid-write).
fn recover_file(path: &Path, into: &mut Recovered, ok: bool) -> io::Result<()> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else {
        return Ok(());
    };
    let mut good = 0u64;
    {
        let mut r = BufReader::new(&mut f);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                break;
            };
            good += n as u64;
            if let Some(cid) = v["custom_id"].as_str() {
                into.ids.insert(cid.to_string());
            }
            if ok {
                into.completed += 1;
                let (i, o) = usage_of(&v["response"]["body"]);
                into.usage.0 += i;
                into.usage.1 += o;
            } else {
                into.failed += 1;
            }
        }
    }
    if f.metadata()?.len() != good {
        f.set_len(good)?;
        f.sync_all()?;
    }
    Ok(())
}

fn append(path: &Path) -> io::Result<BufWriter<File>> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.seek(io::SeekFrom::End(0))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

fn set_usage(u: &mut Usage, (i, o): (u64, u64)) {
    u.input_tokens = i;
    u.output_tokens = o;
    u.total_tokens = i + o;
}

/// A result line as OpenAI writes it.
fn result_line(custom_id: &str, answer: Answer) -> (bool, String, (u64, u64)) {
    let id = new_id("batch_req_");
    match answer {
        Answer::Http { status, body } => {
            let usage = if status == 200 {
                usage_of(&body)
            } else {
                (0, 0)
            };
            let v = json!({
                "id": id,
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": new_id("req_"), "body": body},
                "error": null,
            });
            (status == 200, v.to_string(), usage)
        }
        Answer::Failed { code, message } => {
            let v = json!({
                "id": id, "custom_id": custom_id, "response": null,
                "error": {"code": code, "message": message},
            });
            (false, v.to_string(), (0, 0))
        }
    }
}

/// Paths of a batch's work files.
fn work_files(app: &App, id: &str) -> io::Result<(PathBuf, PathBuf)> {
    let dir = app.store.batch_dir(id)?;
    Ok((dir.join("output.jsonl"), dir.join("errors.jsonl")))
}

/// Sends every request not answered yet; returns how the batch ends (`completed`,
/// `expired`, `cancelled`).
async fn run_step(app: &Arc<App>, id: &str) -> io::Result<&'static str> {
    let Some(rec) = app.store.batch(id) else {
        return Ok("completed");
    };
    let (out_path, err_path) = work_files(app, id)?;
    let mut rec_state = Recovered::default();
    recover_file(&out_path, &mut rec_state, true)?;
    recover_file(&err_path, &mut rec_state, false)?;
    let flag = app.cancel_flag(id);
    if rec.batch.status == "cancelling" {
        flag.store(true, Ordering::SeqCst);
    }
    let (mut completed, mut failed, mut usage) =
        (rec_state.completed, rec_state.failed, rec_state.usage);
    app.store.update_batch(id, |r| {
        r.batch.request_counts.completed = completed;
        r.batch.request_counts.failed = failed;
        set_usage(&mut r.batch.usage, usage);
    })?;
    let done = Arc::new(rec_state.ids);
    let input = app.store.file_data(&rec.batch.input_file_id);
    let endpoint = Endpoint::from_url(&rec.batch.endpoint).unwrap_or(Endpoint::ChatCompletions);
    let deadline = rec.state.deadline_ms;
    let (tx, mut rx) = mpsc::channel::<Done>(1024);
    let dispatcher = tokio::spawn(dispatch(
        app.clone(),
        input.clone(),
        endpoint,
        done.clone(),
        deadline,
        flag.clone(),
        tx,
    ));
    let mut out = append(&out_path)?;
    let mut err = append(&err_path)?;
    let mut last = Instant::now();
    while let Some(d) = rx.recv().await {
        let mut d = Some(d);
        // Take whatever is ready, then flush once: every line is written before it is
        // counted, so a restart finds at least what the counts said.
        while let Some(one) = d.take().or_else(|| rx.try_recv().ok()) {
            let w = if one.ok { &mut out } else { &mut err };
            w.write_all(one.line.as_bytes())?;
            w.write_all(b"\n")?;
            if one.ok {
                completed += 1;
                usage.0 += one.usage.0;
                usage.1 += one.usage.1;
            } else {
                failed += 1;
            }
        }
        out.flush()?;
        err.flush()?;
        if last.elapsed() >= PERSIST_EVERY {
            last = Instant::now();
            out.get_ref().sync_data()?;
            err.get_ref().sync_data()?;
            app.store.update_batch(id, |r| {
                r.batch.request_counts.completed = completed;
                r.batch.request_counts.failed = failed;
                set_usage(&mut r.batch.usage, usage);
            })?;
        }
    }
    let stopped_at = dispatcher
        .await
        .map_err(|e| stopped("the batch dispatcher", e))??;
    let ending = match stopped_at {
        None => "completed",
        Some(from) => {
            let cancelled = flag.load(Ordering::SeqCst);
            let (code, message) = if cancelled {
                (
                    "batch_cancelled",
                    "This request was not executed because the batch was cancelled.",
                )
            } else {
                (
                    "batch_expired",
                    "This request could not be executed before the completion window expired.",
                )
            };
            // Every line from `from` on that has no answer ends as one error line.
            let reader = BufReader::with_capacity(1 << 20, File::open(&input)?);
            for (i, line) in reader.split(b'\n').enumerate() {
                let line = line?;
                if (i as u64 + 1) < from {
                    continue;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let Some(cid) = v["custom_id"].as_str() else {
                    continue;
                };
                if done.contains(cid) {
                    continue;
                }
                let (_, l, _) = result_line(
                    cid,
                    Answer::Failed {
                        code: code.into(),
                        message: message.into(),
                    },
                );
                err.write_all(l.as_bytes())?;
                err.write_all(b"\n")?;
                failed += 1;
            }
            if cancelled {
                "cancelled"
            } else {
                "expired"
            }
        }
    };
    out.flush()?;
    err.flush()?;
    out.get_ref().sync_all()?;
    err.get_ref().sync_all()?;
    app.store.update_batch(id, |r| {
        r.batch.request_counts.completed = completed;
        r.batch.request_counts.failed = failed;
        set_usage(&mut r.batch.usage, usage);
    })?;
    Ok(ending)
}

/// Reads the input and starts a task per unanswered request, at most `concurrency` at
/// once. Returns the 1-based line where it stopped for a cancel or the window's end.
async fn dispatch(
    app: Arc<App>,
    input: PathBuf,
    endpoint: Endpoint,
    done: Arc<HashSet<String>>,
    deadline_ms: u64,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    tx: mpsc::Sender<Done>,
) -> io::Result<Option<u64>> {
    let permits = Arc::new(Semaphore::new(app.opts.concurrency.max(1)));
    let mut reader = BufReader::with_capacity(1 << 20, File::open(&input)?);
    let mut buf = Vec::new();
    let mut n = 0u64;
    let stop = || cancelled.load(Ordering::SeqCst) || now_ms() >= deadline_ms;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(None);
        }
        n += 1;
        if stop() {
            return Ok(Some(n));
        }
        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        let Some(cid) = v["custom_id"].as_str().map(str::to_string) else {
            continue;
        };
        if done.contains(&cid) {
            continue;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        // The wait for a permit may have outlasted the window or met a cancel.
        if stop() {
            return Ok(Some(n));
        }
        let app = app.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let plan = app.faults.on_call("batch.line");
            if let Some(d) = plan.slow {
                tokio::time::sleep(d).await;
            }
            let answer = match plan.error {
                Some(e) => Answer::Http {
                    status: e.status.as_u16(),
                    body: e.body(),
                },
                None => app.backend.call(endpoint, &v["body"], None).await,
            };
            let (ok, line, usage) = result_line(&cid, answer);
            let _ = tx.send(Done { ok, line, usage }).await;
            drop(permit);
        });
    }
}

/// Turns the work files into result files and sets the final status; safe to repeat
/// after a crash at any point.
fn finalize(app: &Arc<App>, id: &str, ending: &str) -> io::Result<()> {
    let Some(rec) = app.store.update_batch(id, |r| {
        if r.state.ending.is_none() {
            r.state.ending = Some(ending.to_string());
            if ending == "completed" {
                r.batch.status = "finalizing".into();
                r.batch.finalizing_at = Some(now());
            }
        }
        if r.state.result_ids.is_none() {
            r.state.result_ids = Some((app.store.new_id("file-"), app.store.new_id("file-")));
        }
    })?
    else {
        return Ok(());
    };
    let (out_id, err_id) = rec.state.result_ids.clone().unwrap_or_default();
    let (out_path, err_path) = work_files(app, id)?;
    let expires_at = rec
        .state
        .output_expires_after
        .map(|s| now() + s)
        .or(Some(now() + 30 * 86400));
    let publish = |path: &Path, fid: &str, kind: &str| -> io::Result<Option<String>> {
        if app.store.file(fid).is_some() {
            return Ok(Some(fid.to_string()));
        }
        let bytes = match fs::metadata(path) {
            Ok(m) => m.len(),
            Err(_) => return Ok(None),
        };
        if bytes == 0 {
            let _ = fs::remove_file(path);
            return Ok(None);
        }
        let obj = FileObject {
            id: fid.to_string(),
            object: "file".into(),
            bytes,
            created_at: now(),
            filename: format!("{id}_{kind}.jsonl"),
            purpose: "batch_output".into(),
            status: "processed".into(),
            expires_at,
            status_details: None,
        };
        app.store.add_file(path, obj)?;
        Ok(Some(fid.to_string()))
    };
    let output = publish(&out_path, &out_id, "output")?;
    let errors = publish(&err_path, &err_id, "error")?;
    app.store.update_batch(id, |r| {
        r.batch.output_file_id = output;
        r.batch.error_file_id = errors;
        let t = Some(now());
        match ending {
            "expired" => r.batch.expired_at = t,
            "cancelled" => r.batch.cancelled_at = t,
            _ => r.batch.completed_at = t,
        }
        r.batch.status = ending.to_string();
    })?;
    if let Ok(dir) = app.store.batch_dir(id) {
        let _ = fs::remove_dir_all(dir);
    }
    Ok(())
}
