//! `batchline download` and `wait --download`: the real binary against `batchline serve
//! --echo` on 127.0.0.1 (`--port 0`), on jobs made by `shard` and `submit`. Faults come
//! from `serve --faults`; waits are on events (a file's size, the server's state), never
//! on sleeps. One test drives the library's downloader against a small server that
//! ignores `Range` (serve honours it), which is the only way to see that path.

mod common;

use common::serve::Serve;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const REQUESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/requests.jsonl");

/// The fixture's chat requests for gpt-4o-mini only (one shard, one output file of
/// about 128 kB), written into `dir`; returns the file name.
fn one_shard_requests(dir: &Path) -> &'static str {
    let text: String = std::fs::read_to_string(REQUESTS)
        .unwrap()
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["url"] == "/v1/chat/completions" && v["body"]["model"] == "gpt-4o-mini"
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(text.lines().count() > 40);
    std::fs::write(dir.join("mini.jsonl"), text).unwrap();
    "mini.jsonl"
}

/// Runs batchline against `server` (its base URL in OPENAI_BASE_URL, no key).
fn bl(dir: &Path, server: &Serve, args: &[&str]) -> Output {
    cmd(dir, server, args).output().expect("run batchline")
}

fn cmd(dir: &Path, server: &Serve, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.current_dir(dir)
        .args(args)
        .env("OPENAI_BASE_URL", server.base())
        .env_remove("OPENAI_API_KEY")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env("BATCHLINE_THREADS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Shards `requests` into `dir/job` (extra shard flags), submits and waits.
fn submitted_job(
    dir: &Path,
    server: &Serve,
    requests: &str,
    shard: &[&str],
    wait: &[&str],
) -> PathBuf {
    let job = dir.join("job");
    let mut args = vec!["shard", requests, "--out-dir", "job", "-q"];
    args.extend_from_slice(shard);
    ok(&bl(dir, server, &args));
    ok(&bl(dir, server, &["submit", "job", "-q"]));
    let mut args = vec!["wait", "job", "--poll", "0.05", "-q"];
    args.extend_from_slice(wait);
    let out = bl(dir, server, &args);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    job
}

fn ledger(job: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(job.join("ledger.json")).unwrap()).unwrap()
}

fn shards(job: &Path) -> Vec<Value> {
    ledger(job)["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["shards"].as_array().unwrap().clone())
        .collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn custom_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["custom_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Checks every ended shard's files against its batch and the shard's requests: each
/// request has exactly one line in the output or the error file, the output has
/// `completed` lines and the error file `failed` lines, and the ledger records both.
fn check_results(job: &Path) -> (u64, u64) {
    let (mut ok_lines, mut err_lines) = (0, 0);
    for s in shards(job) {
        let b = &s["batch"];
        let name = s["name"].as_str().unwrap();
        let stem = name.strip_suffix(".jsonl").unwrap();
        let out = job.join(format!("results/round-0/{stem}.output.jsonl"));
        let err = job.join(format!("results/round-0/{stem}.error.jsonl"));
        let counts = &b["request_counts"];
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (path, kind, want) in [
            (&out, "output", &counts["completed"]),
            (&err, "error", &counts["failed"]),
        ] {
            let n = if b[format!("{kind}_file_id")].is_string() {
                let entry = &s["downloads"][kind];
                assert_eq!(entry["complete"], true, "{name} {kind}: {entry}");
                assert_eq!(entry["file_id"], b[format!("{kind}_file_id")]);
                assert_eq!(
                    entry["bytes"].as_u64().unwrap(),
                    std::fs::metadata(path).unwrap().len()
                );
                let ids = custom_ids(path);
                assert_eq!(entry["lines"].as_u64().unwrap(), ids.len() as u64);
                for id in ids {
                    *seen.entry(id).or_default() += 1;
                }
                entry["lines"].as_u64().unwrap()
            } else {
                assert!(!path.exists(), "{}", path.display());
                0
            };
            assert_eq!(n, want.as_u64().unwrap(), "{name} {kind} lines");
            if kind == "output" {
                ok_lines += n;
            } else {
                err_lines += n;
            }
        }
        // Every request of the shard, exactly once.
        let shard_ids = custom_ids(&job.join(name));
        assert_eq!(seen.len(), shard_ids.len(), "{name}");
        for id in &shard_ids {
            assert_eq!(seen.get(id), Some(&1), "{name}: {id}");
        }
    }
    (ok_lines, err_lines)
}

/// The output file of the job's first shard and its id.
fn first_output(job: &Path) -> (String, PathBuf) {
    let s = &shards(job)[0];
    let id = s["batch"]["output_file_id"].as_str().unwrap().to_string();
    let stem = s["name"].as_str().unwrap().strip_suffix(".jsonl").unwrap();
    (id, job.join(format!("results/round-0/{stem}.output.jsonl")))
}

/// The bytes of a file as the server stored them (read from its data directory, so
/// that no content call is spent: `--faults` count them).
fn content(server: &Serve, file_id: &str) -> Vec<u8> {
    std::fs::read(
        server
            .data_dir
            .join("files")
            .join(format!("{file_id}.data")),
    )
    .unwrap()
}

#[test]
fn a_whole_job_is_downloaded_and_its_line_counts_match() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "40"],
        &[],
    );
    let out = ok(&bl(dir.path(), &server, &["download", "job", "--json"])).clone();
    let sum = json(&out);
    let n = shards(&job).len() as u64;
    assert!(n >= 5, "{n} shards");
    assert_eq!(sum["mismatched"], 0);
    assert_eq!(sum["not_ended"], 0);
    let files = sum["files"].as_array().unwrap();
    assert_eq!(sum["fetched"].as_u64().unwrap(), files.len() as u64);
    assert!(files
        .iter()
        .all(|f| f["action"] == "fetched" && f["retries"] == 0));
    let (ok_lines, err_lines) = check_results(&job);
    // The fixture's 200 requests, every one accounted for.
    assert_eq!(ok_lines + err_lines, 200);
    assert_eq!(sum["lines"].as_u64().unwrap(), 200);
    let total: u64 = files.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sum["total_bytes"].as_u64().unwrap(), total);
    assert_eq!(sum["bytes"].as_u64().unwrap(), total);
    // The files are the server's bytes.
    let (id, path) = first_output(&job);
    assert_eq!(std::fs::read(&path).unwrap(), content(&server, &id));
    // No partial files are left behind.
    let left: Vec<_> = std::fs::read_dir(job.join("results/round-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_rerun_skips_complete_files_and_fetches_only_a_missing_one() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "100"],
        &[],
    );
    let first = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    let n = first["fetched"].as_u64().unwrap();
    assert!(n >= 3);
    let (_, path) = first_output(&job);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let again = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(again["fetched"], 0);
    assert_eq!(again["skipped"].as_u64().unwrap(), n);
    assert_eq!(again["lines"], first["lines"]);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    // A result file that went missing (or was cut) is fetched again, alone.
    std::fs::remove_file(&path).unwrap();
    let third = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(third["fetched"], 1);
    assert_eq!(third["skipped"].as_u64().unwrap(), n - 1);
    check_results(&job);
}

#[test]
fn a_download_dropped_mid_file_resumes_with_range_and_is_byte_identical() {
    // The first content call is cut after 20,000 bytes of its body.
    let server = Serve::echo(&["--faults", "content:drop=20000@1"]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "200", "--max-bytes", "100MB"],
        &[],
    );
    let sum = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    let files = sum["files"].as_array().unwrap();
    // The shards are downloaded in ledger order: the first file's first call dropped.
    let f = &files[0];
    let bytes = f["bytes"].as_u64().unwrap();
    assert!(
        bytes > 40_000,
        "the file is long enough to be cut midway: {bytes}"
    );
    assert_eq!(f["retries"], 1, "{f}");
    assert_eq!(f["restarts"], 0, "{f}");
    // Resumed, not started over: the bytes came once.
    assert_eq!(f["received_bytes"].as_u64().unwrap(), bytes, "{f}");
    assert!(files[1..].iter().all(|f| f["retries"] == 0));
    let (id, path) = first_output(&job);
    assert_eq!(std::fs::read(&path).unwrap(), content(&server, &id));
    check_results(&job);
}

#[test]
fn errors_500_and_429_on_content_are_retried() {
    let server = Serve::echo(&["--faults", "content:500@1,content:429/1@2,content:503/0@3"]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "200"],
        &[],
    );
    let sum = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(sum["retries"], 3, "{sum}");
    assert_eq!(sum["files"][0]["retries"], 3);
    let (id, path) = first_output(&job);
    assert_eq!(std::fs::read(&path).unwrap(), content(&server, &id));
    check_results(&job);
}

#[test]
fn a_400_on_content_is_not_retried_and_says_what_happened() {
    let server = Serve::echo(&["--faults", "content:404@1-"]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "200"],
        &[],
    );
    let t0 = Instant::now();
    let out = bl(dir.path(), &server, &["download", "job"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("no such file"), "{err}");
    // Not retried: no backoff waits.
    assert!(t0.elapsed() < Duration::from_secs(20));
    // Nothing recorded as complete, no result file.
    for s in shards(&job) {
        assert!(
            s["downloads"]["output"].is_null() || s["downloads"]["output"]["complete"] == false
        );
    }
    assert!(!first_output(&job).1.exists());
}

/// Polls until `pred` holds (every 10 ms, at most `limit`).
fn wait_until(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !pred() {
        assert!(t0.elapsed() < limit, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` has an established TCP connection to 127.0.0.1:`port`
/// (its socket inodes looked up in /proc/net/tcp).
fn connected(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let remote = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[2] == remote && f[3] == "01" && inodes.iter().any(|i| i == f[9])
        })
}

#[cfg(target_os = "linux")]
#[test]
fn a_download_killed_midway_resumes_from_its_partial_file_and_a_wrong_tail_starts_over() {
    // One output file. Run 1: call 1 is cut after 30,000 bytes and call 2 (the resume)
    // never answers, so the partial file stays at 30,000 bytes until the kill. Run 2
    // (call 3) resumes. Run 3 is cut and killed the same way (calls 4 and 5); run 4
    // finds a partial file whose tail is not the server's.
    let server = Serve::echo(&[
        "--faults",
        "content:drop=30000@1,content:hang@2,content:drop=30000@4,content:hang@5",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let requests = one_shard_requests(dir.path());
    let job = submitted_job(dir.path(), &server, requests, &[], &[]);
    assert_eq!(shards(&job).len(), 1);
    let (id, path) = first_output(&job);
    let part = path.with_file_name(format!(
        ".{}.part",
        path.file_name().unwrap().to_string_lossy()
    ));
    let want = content(&server, &id);
    assert!(want.len() > 100_000);

    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let kill_at_part = |part: &Path| {
        let mut child = cmd(dir.path(), &server, &["download", "job", "-q"])
            .spawn()
            .unwrap();
        // The cut call's connection is closed; a connection open again is the resume
        // (call 2), which hangs: kill then, so that the next run's calls are 3 and on.
        wait_until(
            Duration::from_secs(60),
            "the partial file holds 30000 bytes and the resume is in flight",
            || {
                std::fs::metadata(part).is_ok_and(|m| m.len() == 30_000)
                    && connected(child.id(), port)
            },
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    };
    kill_at_part(&part);
    assert!(!path.exists());
    let sum = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    let f = &sum["files"][0];
    assert_eq!(f["resumed_bytes"], 30_000, "{f}");
    // The rest, plus the 30,000 bytes read again to check the kept tail (< 64 KiB).
    assert_eq!(
        f["received_bytes"].as_u64().unwrap(),
        want.len() as u64,
        "{f}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert!(!part.exists());

    // Again, but the partial file's bytes are not the server's any more: started over.
    std::fs::remove_file(&path).unwrap();
    kill_at_part(&part);
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[29_990..].copy_from_slice(b"XXXXXXXXXX");
    std::fs::write(&part, &bytes).unwrap();
    let sum = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    let f = &sum["files"][0];
    assert_eq!(f["restarts"], 1, "{f}");
    assert_eq!(f["resumed_bytes"], 0, "{f}");
    assert_eq!(std::fs::read(&path).unwrap(), want);
    check_results(&job);
}

#[test]
fn an_expired_batch_keeps_its_partial_results_and_the_counts_match() {
    // Each request takes 50 ms, one at a time: the 1 s window ends midway.
    let server = Serve::echo(&["--window", "1s", "--latency-ms", "50", "--concurrency", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let job = submitted_job(
        dir.path(),
        &server,
        REQUESTS,
        &["--max-requests", "200"],
        &[],
    );
    let out = bl(dir.path(), &server, &["download", "job", "--json"]);
    let sum = json(ok(&out));
    assert_eq!(sum["mismatched"], 0, "{sum}");
    let expired: Vec<Value> = shards(&job)
        .into_iter()
        .filter(|s| s["batch"]["status"] == "expired")
        .collect();
    assert!(!expired.is_empty(), "no batch expired");
    let (ok_lines, err_lines) = check_results(&job);
    assert!(ok_lines > 0 && err_lines > 0, "{ok_lines} {err_lines}");
    // The requests that never ran are `batch_expired` lines of the error file.
    let s = &expired[0];
    let stem = s["name"].as_str().unwrap().strip_suffix(".jsonl").unwrap();
    let errs = lines(&job.join(format!("results/round-0/{stem}.error.jsonl")));
    assert!(errs.iter().any(|e| e["error"]["code"] == "batch_expired"));
}

#[test]
fn a_cancelled_batch_keeps_its_partial_results_and_wait_download_fetches_them() {
    let server = Serve::echo(&["--latency-ms", "30", "--concurrency", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job");
    ok(&bl(
        dir.path(),
        &server,
        &[
            "shard",
            REQUESTS,
            "--out-dir",
            "job",
            "-q",
            "--max-requests",
            "200",
        ],
    ));
    ok(&bl(dir.path(), &server, &["submit", "job", "-q"]));
    // Cancel once some requests were answered (the server's counts are the event).
    server.wait_for(None, Duration::from_secs(60), |batches| {
        batches
            .iter()
            .any(|b| b["request_counts"]["completed"].as_u64().unwrap_or(0) >= 5)
    });
    ok(&bl(dir.path(), &server, &["cancel", "job", "-q"]));
    let out = bl(
        dir.path(),
        &server,
        &["wait", "job", "--poll", "0.05", "--download", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = json(&out);
    let d = &sum["download"];
    assert_eq!(d["mismatched"], 0, "{sum}");
    assert!(d["fetched"].as_u64().unwrap() >= 1, "{sum}");
    let cancelled = shards(&job)
        .iter()
        .filter(|s| s["batch"]["status"] == "cancelled")
        .count();
    assert!(cancelled >= 1);
    let (ok_lines, err_lines) = check_results(&job);
    assert!(ok_lines >= 5 && err_lines > 0, "{ok_lines} {err_lines}");
    // Nothing left to do.
    let again = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(again["fetched"], 0);
}

#[test]
fn wait_download_fetches_each_batch_as_it_ends() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    ok(&bl(
        dir.path(),
        &server,
        &[
            "shard",
            REQUESTS,
            "--out-dir",
            "job",
            "-q",
            "--max-requests",
            "50",
        ],
    ));
    ok(&bl(dir.path(), &server, &["submit", "job", "-q"]));
    let out = ok(&bl(
        dir.path(),
        &server,
        &["wait", "job", "--poll", "0.05", "--download"],
    ))
    .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".output.jsonl: fetched"), "{err}");
    assert!(err.contains("files fetched"), "{err}");
    let (ok_lines, err_lines) = check_results(&dir.path().join("job"));
    assert_eq!(ok_lines + err_lines, 200);
}

#[test]
fn submit_wait_download_runs_the_whole_job_in_one_command() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    ok(&bl(
        dir.path(),
        &server,
        &[
            "shard",
            REQUESTS,
            "--out-dir",
            "job",
            "-q",
            "--max-requests",
            "50",
        ],
    ));
    let out = ok(&bl(
        dir.path(),
        &server,
        &["submit", "job", "--wait", "--poll", "0.05", "--download"],
    ))
    .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".output.jsonl: fetched"), "{err}");
    assert!(!err.contains("not ended"), "every batch ended: {err}");
    let (ok_lines, err_lines) = check_results(&dir.path().join("job"));
    assert_eq!(ok_lines + err_lines, 200);
    // --download without --wait is a usage error (exit 2), nothing sent.
    let out = bl(dir.path(), &server, &["submit", "job", "--download"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn download_before_submit_is_a_usage_error() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    ok(&bl(
        dir.path(),
        &server,
        &["shard", REQUESTS, "--out-dir", "job", "-q"],
    ));
    let out = bl(dir.path(), &server, &["download", "job"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("submit"));
}

/// A server that ignores `Range` (always 200 with the whole body) and cuts its first
/// answer after `cut` bytes: the downloader must skip what it already has.
fn range_ignoring_server(
    body: Vec<u8>,
    cut: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut ranges = Vec::new();
        for call in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut range = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("range:") {
                    range = line.trim().to_string();
                }
            }
            ranges.push(range);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            let n = if call == 0 { cut } else { body.len() };
            let _ = s.write_all(&body[..n]);
            let _ = s.flush();
            // Dropping the socket cuts the answer short of its content-length.
        }
        ranges
    });
    (url, h)
}

#[test]
fn a_server_that_ignores_range_is_read_from_the_start_and_its_first_bytes_skipped() {
    use batchline::api::download::{download, Target};
    use batchline::api::{Client, Provider, RetryPolicy};
    use std::sync::atomic::AtomicBool;

    let body: Vec<u8> = (0..5000u32)
        .flat_map(|i| format!("{{\"custom_id\":\"r{i}\",\"x\":{}}}\n", i * 7).into_bytes())
        .collect();
    let (url, server) = range_ignoring_server(body.clone(), 10_000);
    let client = Client::with_policy(
        Provider {
            base_url: format!("{url}/v1"),
            key_env: "OPENAI_API_KEY".into(),
            ..Provider::default()
        },
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.jsonl");
    let f = download(
        &client,
        &Target {
            file_id: "file-x",
            dest: &dest,
            expected_bytes: Some(body.len() as u64),
        },
        true,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let ranges = server.join().unwrap();
    assert_eq!(
        ranges,
        vec![String::new(), "range: bytes=10000-".to_string()]
    );
    assert_eq!(f.range_ignored, 1);
    assert_eq!(f.retries, 1);
    assert_eq!(f.restarts, 0);
    assert_eq!(f.bytes, body.len() as u64);
    assert_eq!(f.lines, 5000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_file_renamed_into_place_before_the_ledger_said_so_is_recorded_not_fetched() {
    let server = Serve::echo(&[]);
    let dir = tempfile::tempdir().unwrap();
    let requests = one_shard_requests(dir.path());
    let job = submitted_job(dir.path(), &server, requests, &[], &[]);
    let first = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(first["fetched"], 1);
    // The state a crash between the rename and the ledger write leaves: the entry
    // written before the download (file id, not complete), the file in place.
    let mut l = ledger(&job);
    let entry = &mut l["rounds"][0]["shards"][0]["downloads"]["output"];
    entry["complete"] = Value::Bool(false);
    entry["lines"] = Value::from(0);
    std::fs::write(job.join("ledger.json"), serde_json::to_vec(&l).unwrap()).unwrap();
    let again = json(ok(&bl(dir.path(), &server, &["download", "job", "--json"])));
    assert_eq!(again["fetched"], 0, "{again}");
    assert_eq!(again["files"][0]["action"], "recorded", "{again}");
    check_results(&job);
}
