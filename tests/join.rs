//! End-to-end tests of `batchline join`, running the binary in temporary directories.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use proptest::prelude::*;
use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_batchline"));
    c.env("BATCHLINE_THREADS", "2");
    c
}

fn req(id: &str) -> String {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("hi {id}")}]}})
    .to_string()
}

fn ok(id: &str, content: &str) -> String {
    json!({"id": "batch_req_1", "custom_id": id, "response": {"status_code": 200, "request_id": "r",
           "body": {"choices": [{"message": {"content": content}}]}}, "error": null})
    .to_string()
}

fn http_err(id: &str, status: u64, code: &str) -> String {
    json!({"id": "batch_req_2", "custom_id": id, "response": {"status_code": status, "request_id": "r",
           "body": {"error": {"message": format!("{code} happened"), "type": "invalid_request_error", "param": null, "code": code}}},
           "error": null})
    .to_string()
}

fn batch_err(id: &str, code: &str) -> String {
    json!({"id": "batch_req_3", "custom_id": id, "response": null, "error": {"code": code, "message": "window passed"}}).to_string()
}

fn write(path: &Path, lines: &[String]) -> PathBuf {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn values(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    c.arg("join");
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

/// Runs join with `--json` to a file and returns (joined lines, summary).
fn join_to_file(
    dir: &Path,
    requests: &Path,
    results: &[&Path],
    extra: &[&str],
) -> (Vec<Value>, Value) {
    let out = dir.join("joined.jsonl");
    let mut c = bin();
    c.arg("join")
        .arg(requests)
        .args(results)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .args(extra);
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "join failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    (values(&std::fs::read_to_string(&out).unwrap()), summary)
}

fn status_of(v: &[Value]) -> Vec<(String, String)> {
    v.iter()
        .map(|x| {
            (
                x["custom_id"].as_str().unwrap().to_string(),
                x["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn shuffled_results_come_back_in_request_order() {
    let d = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("req-{i}")).collect();
    let requests = write(
        &d.path().join("req.jsonl"),
        &ids.iter().map(|i| req(i)).collect::<Vec<_>>(),
    );
    let mut oks: Vec<String> = ids
        .iter()
        .filter(|i| !i.ends_with('7'))
        .map(|i| ok(i, &format!("answer {i}")))
        .collect();
    let mut errs: Vec<String> = ids
        .iter()
        .filter(|i| i.ends_with('7'))
        .map(|i| http_err(i, 400, "bad_thing"))
        .collect();
    oks.reverse();
    oks.swap(3, 100);
    errs.reverse();
    let out = write(&d.path().join("out.jsonl"), &oks);
    let err = write(&d.path().join("err.jsonl"), &errs);
    let (joined, s) = join_to_file(d.path(), &requests, &[&err, &out], &[]);
    assert_eq!(joined.len(), 300);
    for (i, v) in joined.iter().enumerate() {
        let id = &ids[i];
        assert_eq!(v["custom_id"], json!(id));
        assert_eq!(
            v["request"]["messages"][0]["content"],
            json!(format!("hi {id}"))
        );
        if id.ends_with('7') {
            assert_eq!(v["status"], "failed");
            assert_eq!(
                v["error"],
                json!({"code": "bad_thing", "message": "bad_thing happened", "status_code": 400})
            );
            assert!(v.get("response").is_none());
        } else {
            assert_eq!(v["status"], "ok");
            assert_eq!(
                v["response"]["choices"][0]["message"]["content"],
                json!(format!("answer {id}"))
            );
            assert!(v.get("error").is_none());
        }
    }
    assert_eq!(
        (
            s["requests"].as_u64(),
            s["ok"].as_u64(),
            s["failed"].as_u64(),
            s["missing"].as_u64()
        ),
        (Some(300), Some(270), Some(30), Some(0))
    );
    assert_eq!(s["error_codes"], json!({"bad_thing": 30}));
    assert_eq!(s["results"], 300);
    assert_eq!(s["result_files"], 2);
}

#[test]
fn bodies_are_copied_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let r = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{ "model" : "m", "x":1.50e3, "s":"\u00e9\n" }}"#;
    let requests = write(&d.path().join("req.jsonl"), &[r.to_string()]);
    let res = r#"{"custom_id":"a","response":{"status_code":200,"body":{"n": 1.0, "t":"caf\u00e9"}},"error":null}"#;
    let out = write(&d.path().join("out.jsonl"), &[res.to_string()]);
    let o = run(&[&requests, &out, &"-q"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "{\"custom_id\":\"a\",\"status\":\"ok\",\"request\":{ \"model\" : \"m\", \"x\":1.50e3, \"s\":\"\\u00e9\\n\" },\"response\":{\"n\": 1.0, \"t\":\"caf\\u00e9\"}}\n"
    );
}

#[test]
fn directories_and_repeated_files() {
    let d = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("id{i}")).collect();
    let requests = write(
        &d.path().join("req.jsonl"),
        &ids.iter().map(|i| req(i)).collect::<Vec<_>>(),
    );
    let res = d.path().join("results");
    write(
        &res.join("batch_a/output.jsonl"),
        &ids[..10].iter().map(|i| ok(i, "a")).collect::<Vec<_>>(),
    );
    write(
        &res.join("batch_a/errors.jsonl"),
        &ids[10..15]
            .iter()
            .map(|i| batch_err(i, "batch_expired"))
            .collect::<Vec<_>>(),
    );
    write(
        &res.join("batch_b/output.jsonl"),
        &ids[15..30].iter().map(|i| ok(i, "b")).collect::<Vec<_>>(),
    );
    std::fs::write(res.join("batch_b/notes.txt"), "not json").unwrap();
    std::fs::write(res.join(".hidden.jsonl"), "garbage").unwrap();
    let single = write(
        &d.path().join("more.jsonl"),
        &ids[30..35].iter().map(|i| ok(i, "c")).collect::<Vec<_>>(),
    );
    // The same file named twice (directly and inside the directory) counts once.
    let again = res.join("batch_b/output.jsonl");
    let (joined, s) = join_to_file(d.path(), &requests, &[&res, &single, &again], &[]);
    assert_eq!(s["result_files"], 4);
    assert_eq!(s["duplicate_results"], 0);
    assert_eq!(
        (
            s["ok"].as_u64(),
            s["failed"].as_u64(),
            s["missing"].as_u64()
        ),
        (Some(30), Some(5), Some(5))
    );
    assert_eq!(joined[12]["error"]["code"], "batch_expired");
    assert_eq!(joined[36]["status"], "missing");
}

#[test]
fn partial_batches_feed_retry_failed_and_missing() {
    let d = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    // One request line with CRLF and extra spaces: side files copy it byte for byte.
    let mut req_lines: Vec<String> = ids.iter().map(|i| req(i)).collect();
    req_lines[4] = format!("{}  ", req_lines[4]);
    let requests = write(&d.path().join("req.jsonl"), &req_lines);
    let results = write(
        &d.path().join("res.jsonl"),
        &[
            ok("r0", "x"),
            http_err("r1", 400, "invalid_value"),
            http_err("r2", 429, "rate_limit_exceeded"),
            http_err("r3", 500, "server_error"),
            batch_err("r4", "batch_expired"),
            batch_err("r5", "batch_cancelled"),
            http_err("r6", 404, "model_not_found"),
            ok("r7", "y"),
            // r8, r9 missing
        ],
    );
    let p = |n: &str| d.path().join(n);
    let (joined, s) = join_to_file(
        d.path(),
        &requests,
        &[&results],
        &[
            "--retry",
            p("retry.jsonl").to_str().unwrap(),
            "--failed",
            p("failed.jsonl").to_str().unwrap(),
            "--missing",
            p("missing.jsonl").to_str().unwrap(),
        ],
    );
    let pick = |idx: &[usize]| {
        idx.iter()
            .map(|&i| req_lines[i].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&p("retry.jsonl")), pick(&[2, 3, 4, 5, 8, 9]));
    assert_eq!(lines(&p("failed.jsonl")), pick(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(lines(&p("missing.jsonl")), pick(&[8, 9]));
    assert_eq!(s["retry"], 6);
    assert_eq!(s["error_codes"]["batch_expired"], 1);
    assert_eq!(s["error_codes"]["model_not_found"], 1);
    assert_eq!(
        joined[4]["error"],
        json!({"code": "batch_expired", "message": "window passed", "status_code": null})
    );
    assert_eq!(joined[2]["error"]["status_code"], 429);

    // --retry-all takes every failure.
    let (_, s) = join_to_file(
        d.path(),
        &requests,
        &[&results],
        &["--retry-all", "--retry", p("retry.jsonl").to_str().unwrap()],
    );
    assert_eq!(lines(&p("retry.jsonl")), pick(&[1, 2, 3, 4, 5, 6, 8, 9]));
    assert_eq!(s["retry"], 8);

    // The retry file is a valid input for shard.
    let o = bin()
        .args([
            "shard",
            p("retry.jsonl").to_str().unwrap(),
            "-o",
            p("again").to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn duplicates_success_wins_else_last() {
    let d = tempfile::tempdir().unwrap();
    let requests = write(&d.path().join("req.jsonl"), &["a", "b", "c", "d"].map(req));
    let first = write(
        &d.path().join("batch1.jsonl"),
        &[
            ok("a", "first a"),
            batch_err("b", "batch_expired"),
            http_err("c", 500, "server_error"),
            ok("d", "d1"),
        ],
    );
    let second = write(
        &d.path().join("batch2.jsonl"),
        &[
            http_err("a", 429, "rate_limit_exceeded"),
            ok("b", "second b"),
            http_err("c", 400, "later_code"),
            ok("d", "d2"),
        ],
    );
    let (joined, s) = join_to_file(d.path(), &requests, &[&first, &second], &[]);
    assert_eq!(
        joined[0]["response"]["choices"][0]["message"]["content"],
        "first a"
    );
    assert_eq!(
        joined[1]["response"]["choices"][0]["message"]["content"],
        "second b"
    );
    assert_eq!(joined[2]["error"]["code"], "later_code");
    assert_eq!(
        joined[3]["response"]["choices"][0]["message"]["content"],
        "d2"
    );
    assert_eq!(s["duplicate_results"], 4);
    assert_eq!(s["results"], 8);
    assert_eq!(s["orphans"], 0);
}

#[test]
fn orphans_are_counted_and_written() {
    let d = tempfile::tempdir().unwrap();
    let requests = write(&d.path().join("req.jsonl"), &["a", "b"].map(req));
    let res = [
        ok("zz", "orphan"),
        ok("a", "x"),
        batch_err("yy", "batch_expired"),
        ok("b", "y"),
    ];
    let results = write(&d.path().join("res.jsonl"), &res);
    let orphans = d.path().join("orphans.jsonl");
    let (_, s) = join_to_file(
        d.path(),
        &requests,
        &[&results],
        &["--orphans", orphans.to_str().unwrap()],
    );
    assert_eq!(s["orphans"], 2);
    assert_eq!(lines(&orphans), vec![res[0].clone(), res[2].clone()]);

    // Without --orphans they are still counted, and a warning says so.
    let o = run(&[&requests, &results, &"-o", &d.path().join("j.jsonl")]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 results match no request"), "{err}");
    assert!(err.contains("2 orphans"), "{err}");
}

#[test]
fn stdin_requests_and_fields() {
    let d = tempfile::tempdir().unwrap();
    let results = write(
        &d.path().join("res.jsonl"),
        &[ok("b", "B"), http_err("a", 401, "invalid_api_key")],
    );
    let mut child = bin()
        .args([
            "join",
            "-",
            results.to_str().unwrap(),
            "--fields",
            "status,custom_id,response,result",
            "-q",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{}\n\n{}\n{}\n", req("a"), req("b"), req("c"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    let v = values(&text);
    assert_eq!(v.len(), 3);
    assert!(
        text.starts_with("{\"status\":\"failed\",\"custom_id\":\"a\",\"result\":{"),
        "{text}"
    );
    assert_eq!(
        v[1],
        json!({"status": "ok", "custom_id": "b", "response": {"choices": [{"message": {"content": "B"}}]},
                            "result": serde_json::from_str::<Value>(&ok("b", "B")).unwrap()})
    );
    assert_eq!(v[2], json!({"status": "missing", "custom_id": "c"}));
}

#[test]
fn results_from_stdin_and_pipes() {
    let d = tempfile::tempdir().unwrap();
    let requests = write(&d.path().join("req.jsonl"), &["a", "b", "c"].map(req));
    let out_lines = [ok("b", "B"), ok("a", "A")];
    let errs = write(
        &d.path().join("err.jsonl"),
        &[batch_err("c", "batch_expired")],
    );
    let from_file = write(&d.path().join("out.jsonl"), &out_lines);
    let (want, _) = join_to_file(d.path(), &requests, &[&from_file, &errs], &[]);
    // `-` and `/dev/stdin` (what `<(...)` and `zstd -dc x | batchline join req /dev/stdin`
    // give) are read once and kept in a temporary copy.
    for name in ["-", "/dev/stdin"] {
        let out = d.path().join("piped.jsonl");
        let mut child = bin()
            .args(["join", "-q", "-o"])
            .arg(&out)
            .arg(&requests)
            .arg(name)
            .arg(&errs)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", out_lines.join("\n")).as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{name}");
        assert_eq!(
            values(&std::fs::read_to_string(&out).unwrap()),
            want,
            "{name}"
        );
    }
    // Stdin redirected from a regular file is mapped like any file.
    let out = d.path().join("redirected.jsonl");
    let o = bin()
        .args(["join", "-q", "-o"])
        .arg(&out)
        .arg(&requests)
        .arg("-")
        .arg(&errs)
        .stdin(std::fs::File::open(&from_file).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(values(&std::fs::read_to_string(&out).unwrap()), want);
    // Requests and results cannot both be stdin, nor one file be both.
    for args in [vec!["-", "-"], vec!["/dev/stdin", "-"]] {
        let o = bin()
            .arg("join")
            .args(&args)
            .stdin(std::fs::File::open(&from_file).unwrap())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("given both as REQUESTS and as RESULTS")
        );
    }
    let o = run(&[&requests, &requests]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn zst_results_and_requests() {
    let d = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2000).map(|i| format!("z{i}")).collect();
    let zst = |name: &str, lines: &[String]| {
        let p = d.path().join(name);
        let text = lines.join("\n") + "\n";
        std::fs::write(&p, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        p
    };
    let requests = zst(
        "req.jsonl.zst",
        &ids.iter().map(|i| req(i)).collect::<Vec<_>>(),
    );
    let out = zst(
        "out.jsonl.zst",
        &ids.iter()
            .rev()
            .filter(|i| !i.ends_with('5'))
            .map(|i| ok(i, &i.repeat(50)))
            .collect::<Vec<_>>(),
    );
    let err = zst(
        "err.jsonl.zst",
        &ids.iter()
            .filter(|i| i.ends_with("05"))
            .map(|i| batch_err(i, "batch_cancelled"))
            .collect::<Vec<_>>(),
    );
    let joined_path = d.path().join("joined.jsonl.zst");
    let o = run(&[&requests, &out, &err, &"-o", &joined_path, &"-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text =
        String::from_utf8(zstd::decode_all(std::fs::File::open(&joined_path).unwrap()).unwrap())
            .unwrap();
    let v = values(&text);
    assert_eq!(v.len(), 2000);
    for (i, x) in v.iter().enumerate() {
        let id = &ids[i];
        let want = if !id.ends_with('5') {
            "ok"
        } else if id.ends_with("05") {
            "failed"
        } else {
            "missing"
        };
        assert_eq!(x["status"], want, "{id}");
        if want == "ok" {
            assert_eq!(
                x["response"]["choices"][0]["message"]["content"],
                json!(id.repeat(50))
            );
        }
    }
    // The decompressed copies were anonymous temporary files: nothing left behind.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
}

#[test]
fn shard_directory_as_requests() {
    let d = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
    let requests = write(
        &d.path().join("req.jsonl"),
        &ids.iter().map(|i| req(i)).collect::<Vec<_>>(),
    );
    let shards = d.path().join("shards");
    let o = bin()
        .args([
            "shard",
            requests.to_str().unwrap(),
            "-o",
            shards.to_str().unwrap(),
            "--max-requests",
            "7",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let results = write(
        &d.path().join("res.jsonl"),
        &ids.iter().rev().map(|i| ok(i, i)).collect::<Vec<_>>(),
    );
    let (joined, s) = join_to_file(d.path(), &shards, &[&results], &[]);
    assert_eq!(s["requests"], 25);
    assert_eq!(
        status_of(&joined),
        ids.iter()
            .map(|i| (i.clone(), "ok".to_string()))
            .collect::<Vec<_>>()
    );

    // A directory without a manifest is refused.
    let o = run(&[&d.path().join("nothing-here"), &results]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let o = run(&[&d.path().join("empty"), &results]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest.json"));
}

#[test]
fn sidecar_records_are_the_request() {
    let d = tempfile::tempdir().unwrap();
    let sidecar = write(
        &d.path().join("sidecar.jsonl"),
        &[
            json!({"custom_id": "a", "record": {"title": "A", "n": 1}}).to_string(),
            json!({"custom_id": "b", "meta": 2}).to_string(),
        ],
    );
    let results = write(&d.path().join("res.jsonl"), &[ok("a", "x"), ok("b", "y")]);
    let (joined, _) = join_to_file(
        d.path(),
        &sidecar,
        &[&results],
        &["--fields", "custom_id,request"],
    );
    assert_eq!(
        joined[0],
        json!({"custom_id": "a", "request": {"title": "A", "n": 1}})
    );
    // A line without body or record is shown whole.
    assert_eq!(
        joined[1],
        json!({"custom_id": "b", "request": {"custom_id": "b", "meta": 2}})
    );
}

#[test]
fn anthropic_results() {
    let d = tempfile::tempdir().unwrap();
    let requests = write(&d.path().join("req.jsonl"), &["a", "b", "c"].map(req));
    let results = write(
        &d.path().join("res.jsonl"),
        &[
            json!({"custom_id": "a", "result": {"type": "succeeded", "message": {"content": [{"type": "text", "text": "hi"}]}}}).to_string(),
            json!({"custom_id": "b", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}}).to_string(),
            json!({"custom_id": "c", "result": {"type": "expired"}}).to_string(),
        ],
    );
    let (joined, s) = join_to_file(d.path(), &requests, &[&results], &[]);
    assert_eq!(joined[0]["response"]["content"][0]["text"], "hi");
    assert_eq!(
        joined[1]["error"],
        json!({"code": "overloaded_error", "message": "busy", "status_code": null})
    );
    assert_eq!(joined[2]["error"]["code"], "expired");
    assert_eq!(s["retry"], 2);
}

#[test]
fn duplicate_request_ids_are_an_error_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    for (name, results) in [
        ("found", vec![ok("a", "x"), ok("b", "y")]),
        ("missing", vec![ok("a", "x")]),
    ] {
        let requests = write(&d.path().join("req.jsonl"), &["a", "b", "c", "b"].map(req));
        let results = write(&d.path().join("res.jsonl"), &results);
        let out = d.path().join("joined.jsonl");
        let o = run(&[
            &requests,
            &results,
            &"-o",
            &out,
            &"--retry",
            &d.path().join("retry.jsonl"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("req.jsonl:4:") && err.contains("duplicate custom_id \"b\""),
            "{name}: {err}"
        );
        assert!(
            !out.exists() && !d.path().join("retry.jsonl").exists(),
            "{name}"
        );
    }
}

#[test]
fn bad_lines_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let requests = write(&d.path().join("req.jsonl"), &["a"].map(req));
    let results = write(
        &d.path().join("res.jsonl"),
        &[ok("a", "x"), "{not json".to_string()],
    );
    let o = run(&[&requests, &results]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("res.jsonl:2:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let results = write(&d.path().join("res.jsonl"), &[ok("a", "x")]);
    let requests = write(
        &d.path().join("req.jsonl"),
        &[req("a"), r#"{"custom_id": 5}"#.to_string()],
    );
    let o = run(&[&requests, &results]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("req.jsonl:2:"));

    // A result line that looks right at both ends but is broken inside is caught when
    // it is joined.
    let broken = r#"{"id": "x", "custom_id": "a", "response": {"status_code": 200, "body": {"x": [}}, "error": null}"#;
    let bad = write(&d.path().join("bad.jsonl"), &[broken.to_string()]);
    let o = run(&[&requests, &bad]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:1:0: invalid JSON")
            && err.contains("(the result for ")
            && err.contains("req.jsonl:1)"),
        "{err}"
    );

    // Such a line fails the run wherever it is: also when a good duplicate replaces it,
    // whichever comes first, and when it is an orphan (named by its own line).
    let sneaky = |id: &str| {
        format!(
            r#"{{"id": "x", "custom_id": "{id}", "response": {{"status_code": 200, "body": {{"x": "a{}b"}}}}, "error": null}}"#,
            '\u{1}'
        )
    };
    let requests = write(&d.path().join("req.jsonl"), &["a", "b"].map(req));
    for lines in [
        vec![ok("a", "x"), sneaky("b"), ok("b", "y")],
        vec![ok("a", "x"), ok("b", "y"), sneaky("b")],
        vec![ok("a", "x"), ok("b", "y"), sneaky("zz")],
    ] {
        let bad = write(&d.path().join("sneaky.jsonl"), &lines);
        let line = 1 + lines.iter().position(|l| l.contains('\u{1}')).unwrap();
        let out = d.path().join("sneaky-joined.jsonl");
        let o = run(&[&requests, &bad, &"-o", &out]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("sneaky.jsonl:{line}:")) && err.contains("control character"),
            "{err}"
        );
        assert!(!out.exists());
    }

    // Request lines that are not JSON are refused with the byte where that shows: a raw
    // tab inside a string, a missing comma, a second value after the object.
    for (bad, why) in [
        (
            "{\"custom_id\": \"a\", \"body\": {\"x\": \"a\tb\"}}",
            "control character in a string at byte 35",
        ),
        (
            "{\"custom_id\": \"a\" \"body\": {}}",
            "expected `,` or `}` at byte 18",
        ),
        (
            "{\"custom_id\": \"a\", \"body\": {}} {}",
            "trailing characters after the value at byte 31",
        ),
        (
            "{\"custom_id\": \"a\", \"custom_id\": \"b\"}",
            "duplicate key `custom_id`",
        ),
    ] {
        let requests = write(&d.path().join("req.jsonl"), &[bad.to_string()]);
        let o = run(&[&requests, &results]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("req.jsonl:1:") && err.contains(why),
            "{bad}: {err}"
        );
    }

    // An output may not overwrite an input.
    let o = run(&[&requests, &results, &"--orphans", &results]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
}

#[test]
#[ignore = "needs python3 and ../shared/tools/gen_batch.py (scripts/test.sh runs this)"]
fn generated_data_matches_the_generator() {
    let gen = common::generator();
    let d = tempfile::tempdir().unwrap();
    let requests = d.path().join("req.jsonl");
    let o = Command::new("python3")
        .arg(&gen)
        .args(["requests", "--lines", "500"])
        .output()
        .unwrap();
    std::fs::write(&requests, o.stdout).unwrap();
    let (out, err) = (d.path().join("out.jsonl"), d.path().join("err.jsonl"));
    let o = Command::new("python3")
        .arg(&gen)
        .args([
            "results",
            requests.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--err",
            err.to_str().unwrap(),
            "--fail",
            "0.1",
            "--missing",
            "0.05",
        ])
        .status()
        .unwrap();
    assert!(o.success());
    let (joined, s) = join_to_file(d.path(), &requests, &[&out, &err], &[]);
    assert_eq!(joined.len(), 500);
    let n = |f: &Path| lines(f).len() as u64;
    assert_eq!(s["failed"].as_u64().unwrap(), n(&err));
    assert_eq!(s["ok"].as_u64().unwrap(), n(&out));
    assert_eq!(s["missing"].as_u64().unwrap(), 500 - n(&out) - n(&err));
    let reqs = values(&std::fs::read_to_string(&requests).unwrap());
    for (j, r) in joined.iter().zip(&reqs) {
        assert_eq!(j["custom_id"], r["custom_id"]);
        assert_eq!(j["request"], r["body"]);
    }
}

/// What happens to one request id in a generated case.
#[derive(Clone, Debug)]
enum Fate {
    Missing,
    Results(Vec<bool>), // true = success, false = failure, in file order
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Missing),
        prop::collection::vec(any::<bool>(), 1..4).prop_map(Fate::Results)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// requests = ok + failed + missing; results = ok + failed + orphans + duplicates;
    /// one output line per request, in order, with the expected status.
    #[test]
    fn conservation(fates in prop::collection::vec(fate(), 0..40), orphans in 0usize..5, files in 1usize..4, seed in any::<u64>()) {
        let d = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..fates.len()).map(|i| format!("p{i}")).collect();
        let requests = write(&d.path().join("req.jsonl"), &ids.iter().map(|i| req(i)).collect::<Vec<_>>());
        let mut per_file: Vec<Vec<String>> = vec![Vec::new(); files];
        let mut expect = Vec::new();
        let mut n_results = 0u64;
        for (i, f) in fates.iter().enumerate() {
            match f {
                Fate::Missing => expect.push("missing"),
                Fate::Results(rs) => {
                    // Results of one id go to files in order, so "last" is well defined.
                    for (k, &success) in rs.iter().enumerate() {
                        let file = (k * files / rs.len().max(1)).min(files - 1);
                        per_file[file].push(if success { ok(&ids[i], "x") } else { http_err(&ids[i], 503, "server_error") });
                        n_results += 1;
                    }
                    expect.push(if rs.iter().any(|&s| s) { "ok" } else { "failed" });
                }
            }
        }
        for o in 0..orphans {
            per_file[o % files].push(batch_err(&format!("orphan{o}"), "batch_expired"));
            n_results += 1;
        }
        // Shuffle each file: the expected status does not depend on the order (a success
        // wins; failures of one id all carry the same code).
        let mut paths = Vec::new();
        for (k, lines_k) in per_file.iter_mut().enumerate() {
            let mut rng = seed.wrapping_add(k as u64);
            let len = lines_k.len();
            for i in (1..len).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (rng >> 33) as usize % (i + 1);
                lines_k.swap(i, j);
            }
            paths.push(write(&d.path().join(format!("res{k}.jsonl")), lines_k));
        }
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let (joined, s) = join_to_file(d.path(), &requests, &refs, &[]);
        let g = |k: &str| s[k].as_u64().unwrap();
        prop_assert_eq!(g("requests"), fates.len() as u64);
        prop_assert_eq!(g("requests"), g("ok") + g("failed") + g("missing"));
        prop_assert_eq!(g("results"), n_results);
        prop_assert_eq!(g("results"), g("ok") + g("failed") + g("orphans") + g("duplicate_results"));
        prop_assert_eq!(g("orphans"), orphans as u64);
        let got: Vec<String> = joined.iter().map(|v| v["status"].as_str().unwrap().to_string()).collect();
        prop_assert_eq!(got, expect.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let got_ids: Vec<&str> = joined.iter().map(|v| v["custom_id"].as_str().unwrap()).collect();
        prop_assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
