//! End-to-end tests of `batchline run` against `batchline serve --echo` started by each
//! test on `--port 0`. Waits are on events (the server's first stdout line, the number
//! of lines in OUT, a batch's status), polled with a bounded number of attempts; no
//! figure of speed is asserted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::serve::Serve;

const BIN: &str = env!("CARGO_BIN_EXE_batchline");

/// `serve --echo --port 0 --data-dir DIR/serve-data ARGS` (tests/common/serve.rs).
fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    Serve::start_in(&dir.join("serve-data"), &[&["--echo"], args].concat(), env)
}

fn chat_line(id: &str, text: &str) -> String {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 40}})
    .to_string()
}

fn write_requests(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("in.jsonl");
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&chat_line(&format!("req-{i}"), &format!("say {i}")));
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// `batchline run` with a clean environment (no key, no base URL from the caller's).
fn run_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run")
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    run_cmd(args).output().unwrap()
}

fn summary(o: &Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "no JSON summary on stdout: {text}\nstderr: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn read_lines(p: &Path) -> Vec<Value> {
    match std::fs::read_to_string(p) {
        Ok(t) => {
            assert!(
                t.is_empty() || t.ends_with('\n'),
                "{} ends mid-line",
                p.display()
            );
            t.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect()
        }
        Err(_) => vec![],
    }
}

fn count_lines(p: &Path) -> usize {
    std::fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Each of `n` custom_ids `req-0..` has exactly one line across the files.
fn assert_each_once(lines: &[Value], n: usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for l in lines {
        *seen
            .entry(l["custom_id"].as_str().unwrap_or("<null>").to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    assert_eq!(seen.len(), n, "distinct custom_ids answered");
    for i in 0..n {
        assert!(
            seen.contains_key(&format!("req-{i}")),
            "req-{i} has no line"
        );
    }
}

/// A TCP proxy in front of `target` that cuts every third connection right after the
/// first bytes of its first request arrive (the client sees a dropped connection), and
/// pipes the others both ways.
fn flaky_proxy(target: &str) -> (String, Arc<AtomicU64>) {
    let target = target.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let d = dropped.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut client) = conn else { continue };
            if i % 3 == 0 {
                let mut buf = [0u8; 64];
                let _ = client.read(&mut buf);
                let _ = client.shutdown(std::net::Shutdown::Both);
                d.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let Ok(up) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            let mut up = up;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (format!("http://{addr}"), dropped)
}

#[test]
fn every_request_is_answered_once_under_429s_500s_timeouts_and_drops() {
    let d = tempfile::tempdir().unwrap();
    let s = start(
        d.path(),
        &[
            "--faults",
            "chat:429@3-6,chat:500@10-13,chat:503@20,chat:hang@25",
        ],
        &[],
    );
    let (proxy, dropped) = flaky_proxy(&s.url);
    let input = write_requests(d.path(), 120);
    let out = d.path().join("out.jsonl");
    let err = d.path().join("err.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--errors",
        err.to_str().unwrap(),
        "--base-url",
        &format!("{proxy}/v1"),
        "--concurrency",
        "8",
        "--max-attempts",
        "8",
        "--timeout",
        "2s",
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    assert!(
        dropped.load(Ordering::SeqCst) >= 1,
        "the proxy dropped no connection"
    );
    let lines = read_lines(&out);
    assert!(read_lines(&err).is_empty());
    assert_each_once(&lines, 120);
    // Input order by default.
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..120).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, want);
    for l in &lines {
        assert_eq!(l["response"]["status_code"], 200);
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(l["attempts"].as_u64().unwrap() >= 1);
    }
    assert_eq!(sm["succeeded"], 120);
    assert_eq!(sm["rate_limited"], 4, "{sm}");
    // 4 x 429, 4 x 500, 1 x 503, 1 timeout, and at least one dropped connection.
    assert!(sm["retries"].as_u64().unwrap() >= 11, "{sm}");
    assert_eq!(
        sm["attempts"].as_u64().unwrap(),
        120 + sm["retries"].as_u64().unwrap()
    );
    let retried = lines
        .iter()
        .filter(|l| l["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried >= 1);
}

#[test]
fn failures_after_the_last_attempt_and_final_4xx_go_to_the_error_file() {
    let d = tempfile::tempdir().unwrap();
    let input = write_requests(d.path(), 3);
    let out = d.path().join("out.jsonl");
    let err = d.path().join("err.jsonl");
    let run_on = |s: &Serve| {
        let o = run(&[
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--errors",
            err.to_str().unwrap(),
            "--base-url",
            &s.base(),
            "--max-attempts",
            "3",
            "--json",
        ]);
        let sm = summary(&o);
        (o.status.code(), sm)
    };
    // Every call a 500: each request fails after its 3 attempts.
    let s500 = start(&d.path().join("a"), &["--faults", "chat:500"], &[]);
    let (code, sm) = run_on(&s500);
    assert_eq!(code, Some(1), "{sm}");
    let errs = read_lines(&err);
    assert_each_once(&errs, 3);
    assert!(errs
        .iter()
        .all(|l| l["response"]["status_code"] == 500 && l["attempts"] == 3));
    assert!(read_lines(&out).is_empty());
    assert_eq!(
        (sm["failed"].as_u64(), sm["retries"].as_u64()),
        (Some(3), Some(6))
    );
    // A rerun skips them: errors are not retried while the error file has them.
    let (_, sm) = run_on(&s500);
    assert_eq!(
        (sm["skipped"].as_u64(), sm["attempts"].as_u64()),
        (Some(3), Some(0))
    );
    // Without the error file they are sent again; a 400 is final at the first attempt.
    std::fs::remove_file(&err).unwrap();
    let s400 = start(&d.path().join("b"), &["--faults", "chat:400"], &[]);
    let (code, sm) = run_on(&s400);
    assert_eq!(code, Some(1), "{sm}");
    let errs = read_lines(&err);
    assert_each_once(&errs, 3);
    assert!(errs.iter().all(|l| l["response"]["status_code"] == 400
        && l["attempts"] == 1
        && l["response"]["body"]["error"]["message"].is_string()));
    assert_eq!(sm["retries"], 0);
    std::fs::remove_file(&err).unwrap();
    let ok = start(&d.path().join("c"), &[], &[]);
    let (code, sm) = run_on(&ok);
    assert_eq!(code, Some(0), "{sm}");
    assert_each_once(&read_lines(&out), 3);
}

#[test]
fn a_kill_9_loses_only_what_was_in_flight_and_a_rerun_finishes() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &["--latency-ms", "20ms"], &[]);
    let n = 400;
    let input = write_requests(d.path(), n);
    let out = d.path().join("out.jsonl");
    let args = [
        input.to_str().unwrap().to_string(),
        "-o".into(),
        out.to_str().unwrap().to_string(),
        "--base-url".into(),
        s.base(),
        "--concurrency".into(),
        "4".into(),
        "--quiet".into(),
    ];
    let mut child = run_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The event: OUT holds at least 40 lines (polled, bounded).
    let mut polls = 0;
    while count_lines(&out) < 40 {
        polls += 1;
        assert!(polls < 6000, "OUT never reached 40 lines");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = count_lines(&out);
    assert!(before < n, "the run finished before the kill");

    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    // Whole lines written before the kill are kept and skipped (a cut tail, if any, is
    // removed and its request sent again).
    let skipped = sm["skipped"].as_u64().unwrap() as usize;
    assert!(
        skipped + 1 >= before && skipped <= before,
        "{skipped} vs {before}"
    );
    assert_eq!(skipped + sm["succeeded"].as_u64().unwrap() as usize, n);
    assert_each_once(&read_lines(&out), n);
}

#[test]
fn ctrl_c_stops_sending_writes_what_finished_and_exits_130() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &["--latency-ms", "200ms"], &[]);
    let n = 200;
    let input = write_requests(d.path(), n);
    let out = d.path().join("out.jsonl");
    let child = run_cmd(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--concurrency",
        "4",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut polls = 0;
    while count_lines(&out) < 8 {
        polls += 1;
        assert!(polls < 6000, "OUT never reached 8 lines");
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sm = summary(&o);
    assert_eq!(sm["interrupted"], true);
    let lines = read_lines(&out);
    assert!(lines.len() < n);
    assert_eq!(lines.len() as u64, sm["succeeded"].as_u64().unwrap());
    // Nothing in flight was lost: the ones sent were all written (the drain is 30 s).
    assert_eq!(sm["attempts"].as_u64().unwrap(), lines.len() as u64);
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_each_once(&read_lines(&out), n);
}

/// A body without what differs between two answers to the same request.
fn strip_ids(mut body: Value) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.remove("id");
        o.remove("created");
        o.remove("created_at");
    }
    body
}

#[test]
fn results_equal_a_batch_through_serve_and_join_and_extract_agree() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &[], &[]);
    let input = d.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..30 {
        let line = json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "response_format": {"type": "json_object"},
                     "messages": [{"role": "user", "content": format!("item {i}")}]}});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&input, &text).unwrap();
    let out = d.path().join("run.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--unordered",
        "--quiet",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The same file as a batch.
    let http = reqwest::blocking::Client::new();
    let form = reqwest::blocking::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(text.into_bytes()).file_name("in.jsonl"),
        );
    let f: Value = http
        .post(format!("{}/v1/files", s.url))
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let b: Value = http
        .post(format!("{}/v1/batches", s.url))
        .json(&json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = b["id"].as_str().unwrap();
    let mut polls = 0;
    let done = loop {
        let b: Value = http
            .get(format!("{}/v1/batches/{id}", s.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if b["status"] == "completed" {
            break b;
        }
        polls += 1;
        assert!(polls < 1200, "batch never completed: {b}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let batch_text = http
        .get(format!(
            "{}/v1/files/{}/content",
            s.url,
            done["output_file_id"].as_str().unwrap()
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let batch_out = d.path().join("batch.jsonl");
    std::fs::write(&batch_out, &batch_text).unwrap();

    let by_id = |lines: Vec<Value>| -> HashMap<String, Value> {
        lines
            .into_iter()
            .map(|l| (l["custom_id"].as_str().unwrap().to_string(), l))
            .collect()
    };
    let run_lines = by_id(read_lines(&out));
    let batch_lines = by_id(read_lines(&batch_out));
    assert_eq!(run_lines.len(), 30);
    assert_eq!(batch_lines.len(), 30);
    for (cid, r) in &run_lines {
        let b = &batch_lines[cid];
        // The same Batch fields, in the same order of keys.
        let rk: Vec<&String> = r.as_object().unwrap().keys().collect();
        let bk: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(&rk[..4], &bk[..4], "{cid}");
        assert_eq!(r["error"], b["error"]);
        assert_eq!(r["response"]["status_code"], b["response"]["status_code"]);
        assert_eq!(
            strip_ids(r["response"]["body"].clone()),
            strip_ids(b["response"]["body"].clone()),
            "{cid}"
        );
    }

    // join and extract read both the same way.
    let tool = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(
            o.status.code() == Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let (jr, jb) = (
        d.path().join("join-run.jsonl"),
        d.path().join("join-batch.jsonl"),
    );
    let (er, eb) = (
        d.path().join("ext-run.jsonl"),
        d.path().join("ext-batch.jsonl"),
    );
    for (res, j, e) in [(&out, &jr, &er), (&batch_out, &jb, &eb)] {
        tool(&[
            "join",
            input.to_str().unwrap(),
            res.to_str().unwrap(),
            "-o",
            j.to_str().unwrap(),
            "--fields",
            "custom_id,status",
            "--quiet",
        ]);
        tool(&[
            "extract",
            res.to_str().unwrap(),
            "-o",
            e.to_str().unwrap(),
            "--quiet",
        ]);
    }
    assert_eq!(
        std::fs::read_to_string(&jr).unwrap(),
        std::fs::read_to_string(&jb).unwrap()
    );
    let joined = read_lines(&jr);
    assert_eq!(joined.len(), 30);
    assert!(joined.iter().all(|l| l["status"] == "ok"), "{joined:?}");
    let sorted = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let (xr, xb) = (sorted(&er), sorted(&eb));
    assert_eq!(xr.len(), 30);
    assert_eq!(xr, xb);
}

#[test]
fn the_rpm_limit_spaces_sends_as_the_server_sees_them() {
    let d = tempfile::tempdir().unwrap();
    // The server answers 429 beyond 240 requests a minute and says its limit in
    // x-ratelimit-* headers; run is given no --rpm: the first answer's headers set it.
    let s = start(d.path(), &["--rpm", "240"], &[]);
    let input = write_requests(d.path(), 14);
    let out = d.path().join("out.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--concurrency",
        "14",
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    assert_eq!(sm["rate_limited"], 0, "{sm}");
    // The server's clock, in its answers: at 4 a second no second holds more than 5,
    // and 14 requests spread over at least 3 seconds (a burst would put all in one).
    let mut per_sec: HashMap<u64, u64> = HashMap::new();
    for l in read_lines(&out) {
        *per_sec
            .entry(l["response"]["body"]["created"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert!(per_sec.values().all(|&c| c <= 5), "{per_sec:?}");
    let (lo, hi) = (per_sec.keys().min().unwrap(), per_sec.keys().max().unwrap());
    assert!(hi - lo >= 2, "{per_sec:?}");
}

#[test]
fn bad_lines_become_error_lines_naming_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &[], &[]);
    let input = d.path().join("in.jsonl");
    let lines = [
        chat_line("req-0", "a"),
        "not json".to_string(),
        String::new(),
        json!({"custom_id": "x", "method": "POST", "url": "/v1/nope", "body": {"model": "m"}}).to_string(),
        chat_line("req-1", "b"),
        chat_line("req-0", "again"),
        json!({"custom_id": "s", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "stream": true}}).to_string(),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = d.path().join("out.jsonl");
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ];
    let o = run(&args);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(1), "{sm}");
    assert_eq!(
        (sm["lines"].as_u64(), sm["blank"].as_u64()),
        (Some(7), Some(1))
    );
    assert_eq!(
        (sm["succeeded"].as_u64(), sm["bad_lines"].as_u64()),
        (Some(2), Some(4))
    );
    let got = read_lines(&out);
    // One line per non-blank input line, in input order (errors share OUT here).
    assert_eq!(got.len(), 6);
    let name = input.display().to_string();
    let msg = |i: usize| got[i]["error"]["message"].as_str().unwrap().to_string();
    assert_eq!(got[0]["custom_id"], "req-0");
    assert_eq!(got[1]["error"]["code"], "invalid_request_line", "{got:#?}");
    assert!(msg(1).starts_with(&format!("{name}:2:")), "{}", msg(1));
    assert_eq!(got[2]["custom_id"], "x");
    assert!(
        msg(2).starts_with(&format!("{name}:4:")) && msg(2).contains("url"),
        "{}",
        msg(2)
    );
    assert_eq!(got[3]["custom_id"], "req-1");
    assert_eq!(got[4]["custom_id"], Value::Null);
    assert!(
        msg(4).contains(":6:")
            && msg(4).contains("duplicate custom_id \"req-0\" (first on line 1)")
    );
    assert!(
        msg(5).contains(":7:") && msg(5).contains("stream"),
        "{}",
        msg(5)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{name}:2:")));
    // A rerun writes nothing again, bad lines included.
    let o = run(&args);
    let sm = summary(&o);
    assert_eq!(sm["skipped"], 6, "{sm}");
    assert_eq!(read_lines(&out).len(), 6);
}

#[test]
fn keys_come_from_the_environment_and_are_never_written() {
    let d = tempfile::tempdir().unwrap();
    let key = "sk-test-KEEP-THIS-SECRET-1234";
    let s = start(
        d.path(),
        &["--api-key-env", "SERVE_KEY"],
        &[("SERVE_KEY", key)],
    );
    let input = write_requests(d.path(), 6);
    let out = d.path().join("out.jsonl");
    let err = d.path().join("err.jsonl");
    let base = [
        input.to_str().unwrap().to_string(),
        "-o".into(),
        out.to_str().unwrap().to_string(),
        "--errors".into(),
        err.to_str().unwrap().to_string(),
        "--base-url".into(),
        s.base(),
        "--json".into(),
    ];
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let mut outputs = Vec::new();
    // A wrong key: 401s (final), written without either key.
    let wrong = "sk-test-WRONG-SECRET-5678";
    let o = run_cmd(&base)
        .env("OPENAI_API_KEY", wrong)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let errs = read_lines(&err);
    assert_eq!(errs.len(), 6);
    assert!(errs.iter().all(|l| l["response"]["status_code"] == 401));
    outputs.push(o);
    std::fs::remove_file(&err).unwrap();
    // The right key, as Bearer from OPENAI_API_KEY.
    let o = run_cmd(&base).env("OPENAI_API_KEY", key).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    outputs.push(o);
    assert_each_once(&read_lines(&out), 6);
    // Azure: api-key header, api-version parameter, /openai/v1 routes.
    let out2 = d.path().join("azure.jsonl");
    let o = run_cmd(&[
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--base-url",
        &format!("{}/openai/v1", s.url),
        "--api-version",
        "2024-10-21",
        "--json",
    ])
    .env("AZURE_OPENAI_API_KEY", key)
    .output()
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_each_once(&read_lines(&out2), 6);
    outputs.push(o);
    // A named variable that is not set is a usage error that names it, not the key.
    let o = run_cmd(&base)
        .args(["--api-key-env", "NO_SUCH_KEY_VAR"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NO_SUCH_KEY_VAR"));
    outputs.push(o);
    let mut everything = Vec::new();
    for o in &outputs {
        everything.extend_from_slice(&o.stdout);
        everything.extend_from_slice(&o.stderr);
    }
    for p in std::fs::read_dir(d.path()).unwrap() {
        let p = p.unwrap().path();
        if p.is_file() {
            everything.extend(std::fs::read(&p).unwrap());
        }
    }
    let all = String::from_utf8_lossy(&everything);
    assert!(!all.contains(key), "the key was written somewhere");
    assert!(!all.contains(wrong), "the wrong key was written somewhere");
}

#[test]
fn stdin_input_and_a_file_that_is_not_results_as_out() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &[], &[]);
    let input = write_requests(d.path(), 3);
    let out = d.path().join("out.jsonl");
    let mut child = run_cmd(&[
        "-",
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--quiet",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&input).unwrap())
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_each_once(&read_lines(&out), 3);
    // The request file as OUT: refused before anything is sent or appended.
    let before = std::fs::read(&input).unwrap();
    let o = run(&["-", "-o", input.to_str().unwrap(), "--base-url", &s.base()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a Batch API result line"));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn the_tpm_limit_spaces_sends_by_their_token_cost() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &[], &[]);
    // Each request costs its prompt (about 10 tokens) plus max_tokens 40: at 6,000
    // tokens a minute, about 2 requests a second.
    let input = write_requests(d.path(), 8);
    let out = d.path().join("out.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--concurrency",
        "8",
        "--tpm",
        "6000",
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    let mut per_sec: HashMap<u64, u64> = HashMap::new();
    for l in read_lines(&out) {
        *per_sec
            .entry(l["response"]["body"]["created"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert!(per_sec.values().all(|&c| c <= 3), "{per_sec:?}");
    let (lo, hi) = (per_sec.keys().min().unwrap(), per_sec.keys().max().unwrap());
    assert!(hi - lo >= 2, "{per_sec:?}");
    assert!(sm["tokens_in"].as_u64().unwrap() > 0);
}

#[test]
fn a_tpm_limit_learnt_from_the_headers_is_kept_by_counting_tokens() {
    // run is given no --tpm: the first answer's x-ratelimit-limit-tokens sets it, and
    // only from then on are requests' tokens counted (nothing reads them before).
    // Each request costs about 10 prompt tokens plus max_tokens 40: at 6,000 tokens a
    // minute, about 2 a second; sent uncounted, all 8 would leave in the same second.
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &["--tpm", "6000"], &[]);
    let input = write_requests(d.path(), 8);
    let out = d.path().join("out.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--concurrency",
        "8",
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    assert_eq!(sm["rate_limited"], 0, "{sm}");
    let mut per_sec: HashMap<u64, u64> = HashMap::new();
    for l in read_lines(&out) {
        *per_sec
            .entry(l["response"]["body"]["created"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert!(per_sec.values().all(|&c| c <= 3), "{per_sec:?}");
    let (lo, hi) = (per_sec.keys().min().unwrap(), per_sec.keys().max().unwrap());
    assert!(hi - lo >= 2, "{per_sec:?}");
}

#[test]
fn extra_headers_are_sent_and_bad_ones_refused() {
    // The server wants a key; run has none in its environment and sends it with
    // --header: every request passes only if the header went out.
    let d = tempfile::tempdir().unwrap();
    let key = "sk-test-HEADER-5678";
    let s = start(
        d.path(),
        &["--api-key-env", "SERVE_KEY"],
        &[("SERVE_KEY", key)],
    );
    let input = write_requests(d.path(), 5);
    let out = d.path().join("out.jsonl");
    let auth = format!("Authorization: Bearer {key}");
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--header",
        "OpenAI-Organization:org-1",
        "--header",
        &auth,
        "--json",
    ];
    let o = run(&args);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    assert_eq!(sm["succeeded"], 5, "{sm}");
    assert_each_once(&read_lines(&out), 5);
    // Without it: 401, final, in OUT (no error file given).
    let out2 = d.path().join("out2.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(read_lines(&out2)
        .iter()
        .all(|l| l["response"]["status_code"] == 401));
    // Malformed headers are usage errors (exit 2) before anything is sent.
    for bad in [
        "NoColon",
        "Bad Name:x",
        ":x",
        "X-Ok:line\nbreak",
        "X-Ok:\u{7f}",
    ] {
        let out3 = d.path().join("out3.jsonl");
        let o = run(&[
            input.to_str().unwrap(),
            "-o",
            out3.to_str().unwrap(),
            "--base-url",
            &s.base(),
            "--header",
            bad,
        ]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--header"),
            "{bad:?}"
        );
        assert_eq!(count_lines(&out3), 0, "{bad:?}");
    }
}

#[test]
fn the_summary_has_latency_percentiles_tokens_and_cost() {
    let d = tempfile::tempdir().unwrap();
    let s = start(d.path(), &[], &[]);
    let input = write_requests(d.path(), 20);
    let out = d.path().join("out.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(o.status.code(), Some(0), "{sm}");
    let keys: Vec<&str> = sm.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "input",
            "output",
            "errors",
            "lines",
            "blank",
            "skipped",
            "bad_lines",
            "succeeded",
            "failed",
            "unsent",
            "attempts",
            "retries",
            "rate_limited",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "unpriced",
            "seconds",
            "requests_per_s",
            "interrupted"
        ]
    );
    let lat = &sm["latency_ms"];
    let [p50, p90, p99, max] = ["p50", "p90", "p99", "max"].map(|k| lat[k].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{lat}");
    // Tokens are the answers' usage, summed.
    let lines = read_lines(&out);
    let sum = |k: &str| {
        lines
            .iter()
            .map(|l| l["response"]["body"]["usage"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sm["tokens_in"].as_u64().unwrap(), sum("prompt_tokens"));
    assert_eq!(sm["tokens_out"].as_u64().unwrap(), sum("completion_tokens"));
    // gpt-4o-mini has a list price: some cost, nothing unpriced.
    assert!(sm["cost_usd"].as_f64().unwrap() > 0.0, "{sm}");
    assert_eq!(sm["unpriced"], 0);
    // A model without a price: no cost, every answer counted as unpriced.
    let p = d.path().join("local.jsonl");
    let text: String = (0..3)
        .map(|i| {
            json!({"custom_id": format!("l{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "my-local-llama", "messages": [{"role": "user", "content": "hi"}]}})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&p, text).unwrap();
    let out2 = d.path().join("out2.jsonl");
    let o = run(&[
        p.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--base-url",
        &s.base(),
        "--json",
    ]);
    let sm = summary(&o);
    assert_eq!(sm["cost_usd"], Value::Null, "{sm}");
    assert_eq!(sm["unpriced"], 3, "{sm}");
    // The human summary names the percentiles and the cost.
    let out3 = d.path().join("out3.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out3.to_str().unwrap(),
        "--base-url",
        &s.base(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    for want in ["20 ok", "p50 ", "p90 ", "p99 ", "tokens ", "$", "req/s"] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
}

#[test]
fn requests_that_got_no_answer_are_retried_by_join() {
    // A port nobody listens on: every request fails as connection_failed, which the
    // one classifier takes as retryable, so `join --retry` hands back every request
    // line (byte for byte), ready to run again; a final 4xx is not handed back.
    let d = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let input = write_requests(d.path(), 4);
    let out = d.path().join("out.jsonl");
    let err = d.path().join("err.jsonl");
    let o = run(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--errors",
        err.to_str().unwrap(),
        "--base-url",
        &format!("http://127.0.0.1:{port}/v1"),
        "--max-attempts",
        "1",
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let errs = read_lines(&err);
    assert_eq!(errs.len(), 4);
    assert!(
        errs.iter()
            .all(|l| l["error"]["code"] == "connection_failed"),
        "{errs:?}"
    );
    // One more line: a final 400 for a fifth request, which must not be retried.
    let mut reqs = std::fs::read_to_string(&input).unwrap();
    reqs.push_str(&chat_line("req-4", "bad"));
    reqs.push('\n');
    std::fs::write(&input, &reqs).unwrap();
    let mut e = std::fs::read_to_string(&err).unwrap();
    e.push_str(
        &json!({"id": "batch_req_x", "custom_id": "req-4", "response": {"status_code": 400,
        "request_id": null, "body": {"error": {"message": "m", "type": "invalid_request_error",
        "code": "invalid_value"}}}, "error": null, "attempts": 1})
        .to_string(),
    );
    e.push('\n');
    std::fs::write(&err, e).unwrap();
    let retry = d.path().join("retry.jsonl");
    let o = Command::new(BIN)
        .args(["join", input.to_str().unwrap(), err.to_str().unwrap(), "-o"])
        .arg(d.path().join("joined.jsonl"))
        .arg("--retry")
        .arg(&retry)
        .arg("--json")
        .output()
        .unwrap();
    let sm = summary(&o);
    assert_eq!(sm["retry"], 4, "{sm}");
    let want: Vec<&str> = reqs.lines().take(4).collect();
    assert_eq!(
        std::fs::read_to_string(&retry)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        want
    );
}
