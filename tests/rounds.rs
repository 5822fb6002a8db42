//! Rounds end to end: the real binary (`shard`, `submit`, `wait`, `download`, `join`,
//! `resubmit`) against a real `batchline serve --echo` on 127.0.0.1 whose fault
//! injection fails some batch lines retryably (500) and one for good (400). Waits are
//! on events (`wait` polls the server until the batches ended), never on sleeps.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::serve::Serve;
use common::{bin, chat_line, read_json, read_lines, stderr, stdout};
use serde_json::Value;

/// Runs batchline with `args` (OPENAI_* variables cleared).
fn bl(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env("BATCHLINE_THREADS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run batchline")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", stdout(o), stderr(o)))
}

/// `n` chat requests sharded `per` to a file.
fn job(dir: &Path, n: usize, per: usize) -> PathBuf {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            chat_line(
                &format!("r{i:04}"),
                "gpt-4o-mini",
                &format!("Tell me about {i}."),
            )
        })
        .collect();
    let req = dir.join("requests.jsonl");
    std::fs::write(&req, lines.join("\n") + "\n").unwrap();
    let job = dir.join("job");
    let o = bl(&[
        "shard",
        req.to_str().unwrap(),
        "--out-dir",
        job.to_str().unwrap(),
        "--max-requests",
        &per.to_string(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    job
}

/// wait (until every batch ended) then download, both against `base`.
fn wait_and_download(j: &str, base: &str) {
    let o = bl(&[
        "wait",
        j,
        "--base-url",
        base,
        "--poll",
        "0.05",
        "--timeout",
        "120s",
    ]);
    assert_eq!(code(&o), 0, "wait: {}", stderr(&o));
    let o = bl(&["download", j, "--base-url", base]);
    assert_eq!(code(&o), 0, "download: {}", stderr(&o));
}

fn join_job(j: &str, out: &Path) -> (Value, Vec<Value>) {
    let o = bl(&["join", j, "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!(code(&o), 0, "join: {}", stderr(&o));
    let lines = read_lines(out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (json_of(&o), lines)
}

fn rounds(job: &Path) -> Vec<Value> {
    read_json(&job.join("ledger.json"))["rounds"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn resubmit_sends_the_retryable_failures_again_and_join_ends_all_ok_but_the_final_one() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 24, 10);
    let j = job.to_str().unwrap();
    // Calls 2 to 4 of the batch lines answer 500 (retryable), call 7 answers 400 (final).
    let s = Serve::echo(&["--faults", "batch.line:500@2-4,batch.line:400@7"]);
    let base = s.base();

    // Nothing submitted yet: resubmit has no ledger to work on.
    let o = bl(&["resubmit", j, "--base-url", &base]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("submit"), "{}", stderr(&o));

    let o = bl(&["submit", j, "--base-url", &base]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = bl(&[
        "wait",
        j,
        "--base-url",
        &base,
        "--poll",
        "0.05",
        "--timeout",
        "120s",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Ended but not downloaded: resubmit refuses (those requests would look missing).
    let o = bl(&["resubmit", j, "--base-url", &base]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("download"), "{}", stderr(&o));
    assert_eq!(rounds(&job).len(), 1);
    assert!(!job.join("rounds/round-1").exists());
    // join JOB without downloads says what to do.
    let o = bl(&["join", j]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("batchline download"), "{}", stderr(&o));

    let o = bl(&["download", j, "--base-url", &base]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (sum, lines) = join_job(j, &tmp.path().join("joined0.jsonl"));
    assert_eq!(
        (
            sum["ok"].as_u64(),
            sum["failed"].as_u64(),
            sum["missing"].as_u64()
        ),
        (Some(20), Some(4), Some(0))
    );
    assert_eq!(sum["retry"], 3);
    assert_eq!(lines.len(), 24);

    // Round 1: the three 500s, not the 400.
    let o = bl(&["resubmit", j, "--base-url", &base, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = json_of(&o);
    assert_eq!(r["action"], "submitted");
    assert_eq!(r["round"], 1);
    assert_eq!(r["resubmitted"], 3);
    assert_eq!(r["retryable"], 3);
    assert_eq!(r["missing"], 0);
    assert_eq!(r["final_failed"], 1);
    assert_eq!(r["ok"], 20);
    assert_eq!(r["submitted"], 1);
    let l = rounds(&job);
    assert_eq!(l.len(), 2);
    assert_eq!(l[1]["round"], 1);
    assert_eq!(l[1]["dir"], "rounds/round-1");
    let m1 = read_json(&job.join("rounds/round-1/manifest.json"));
    assert_eq!(m1["totals"]["requests"], 3);
    assert_eq!(m1["limits"]["max_requests"], 10, "round 0's limits");
    // Round 1 holds the original request lines of the failed requests, byte for byte.
    let originals = read_lines(&tmp.path().join("requests.jsonl"));
    let failed_ids: Vec<String> = lines
        .iter()
        .filter(|l| l["status"] == "failed" && l["error"]["status_code"] == 500)
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed_ids.len(), 3);
    let shard1 = job
        .join("rounds/round-1")
        .join(m1["files"][0]["name"].as_str().unwrap());
    let sent: Vec<String> = read_lines(&shard1);
    let expected: Vec<String> = originals
        .iter()
        .filter(|o| failed_ids.iter().any(|id| o.contains(&format!("\"{id}\""))))
        .cloned()
        .collect();
    assert_eq!(sent, expected);
    let on_server = s.batches(None).len();
    assert_eq!(on_server, 4, "3 batches of round 0 and 1 of round 1");
    let round1: Vec<Value> = s
        .batches(None)
        .into_iter()
        .filter(|b| b["metadata"]["batchline_round"] == "1")
        .collect();
    assert_eq!(round1.len(), 1);
    assert_eq!(
        round1[0]["metadata"]["batchline_shard"], m1["files"][0]["name"],
        "round 1's batch is named in its metadata"
    );

    // A rerun before round 1 was waited for and downloaded makes no other round.
    let o = bl(&["resubmit", j, "--base-url", &base, "--json"]);
    assert!(code(&o) == 0 || code(&o) == 2, "{}", stderr(&o));
    if code(&o) == 0 {
        assert_eq!(json_of(&o)["action"], "running");
    } else {
        assert!(stderr(&o).contains("not downloaded"), "{}", stderr(&o));
    }
    assert_eq!(rounds(&job).len(), 2);
    assert!(!job.join("rounds/round-2").exists());
    assert_eq!(s.batches(None).len(), on_server);

    wait_and_download(j, &base);
    assert!(job.join("results/round-1").is_dir());
    let (sum, lines) = join_job(j, &tmp.path().join("joined1.jsonl"));
    assert_eq!(sum["requests"], 24);
    assert_eq!(sum["ok"], 23);
    assert_eq!(sum["failed"], 1);
    assert_eq!(sum["missing"], 0);
    assert_eq!(sum["retry"], 0);
    // In request order, every request once; the final failure stays failed.
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..24).map(|i| format!("r{i:04}")).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    let bad: Vec<&Value> = lines.iter().filter(|l| l["status"] != "ok").collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["error"]["status_code"], 400);
    for id in &failed_ids {
        let l = lines
            .iter()
            .find(|l| l["custom_id"] == id.as_str())
            .unwrap();
        assert_eq!(l["status"], "ok", "{id} was resubmitted and answered");
    }

    // Nothing left worth sending: said so, no empty round.
    let o = bl(&["resubmit", j, "--base-url", &base, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = json_of(&o);
    assert_eq!(r["action"], "nothing");
    assert_eq!(r["final_failed"], 1);
    assert_eq!(r["resubmitted"], 0);
    assert_eq!(rounds(&job).len(), 2);
    assert!(!job.join("rounds/round-2").exists());
    assert_eq!(s.batches(None).len(), on_server);
    let o = bl(&["resubmit", j, "--base-url", &base]);
    assert!(stderr(&o).contains("nothing to resubmit"), "{}", stderr(&o));
}

#[test]
fn join_job_still_takes_explicit_results_and_side_files() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 12, 5);
    let j = job.to_str().unwrap();
    let s = Serve::echo(&["--faults", "batch.line:503@1-2"]);
    let base = s.base();
    let o = bl(&["submit", j, "--base-url", &base]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    wait_and_download(j, &base);
    // join JOB: manifest checks, --retry and --failed still work on a job directory.
    let retry = tmp.path().join("retry.jsonl");
    let failed = tmp.path().join("failed.jsonl");
    let o = bl(&[
        "join",
        j,
        "-o",
        "/dev/null",
        "--retry",
        retry.to_str().unwrap(),
        "--failed",
        failed.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_of(&o)["retry"], 2);
    assert_eq!(read_lines(&retry).len(), 2);
    assert_eq!(read_lines(&failed).len(), 2);
    // Explicit RESULTS are used as given (only round 0's here).
    let o = bl(&[
        "join",
        j,
        job.join("results/round-0").to_str().unwrap(),
        "-o",
        "/dev/null",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_of(&o)["failed"], 2);
    // A changed shard is still caught by the manifest check.
    let m = read_json(&job.join("manifest.json"));
    let first = job.join(m["files"][0]["name"].as_str().unwrap());
    let mut text = std::fs::read(&first).unwrap();
    text.extend_from_slice(b"\n");
    std::fs::write(&first, text).unwrap();
    let o = bl(&["join", j, "-o", "/dev/null"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn expired_requests_go_round_after_round_until_every_request_is_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 14, 14);
    let j = job.to_str().unwrap();
    // One request at a time, 150 ms each, batches expire after 1 s: each round answers
    // a few requests and the rest come back `batch_expired` (retryable).
    let s = Serve::echo(&[
        "--window",
        "1s",
        "--latency-ms",
        "150",
        "--concurrency",
        "1",
    ]);
    let base = s.base();
    let o = bl(&["submit", j, "--base-url", &base]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut expired_rounds = 0;
    let mut last_round = 0;
    for _ in 0..10 {
        // wait exits 1 when a batch expired, 0 when all completed.
        let o = bl(&[
            "wait",
            j,
            "--base-url",
            &base,
            "--poll",
            "0.05",
            "--timeout",
            "120s",
        ]);
        assert!(code(&o) == 0 || code(&o) == 1, "wait: {}", stderr(&o));
        if code(&o) == 1 {
            expired_rounds += 1;
        }
        let o = bl(&["download", j, "--base-url", &base]);
        assert_eq!(code(&o), 0, "download: {}", stderr(&o));
        let o = bl(&["resubmit", j, "--base-url", &base, "--json"]);
        assert_eq!(code(&o), 0, "resubmit: {}", stderr(&o));
        let r = json_of(&o);
        assert_eq!(r["final_failed"], 0, "{r}");
        if r["action"] == "nothing" {
            break;
        }
        assert_eq!(r["action"], "submitted", "{r}");
        assert_eq!(r["missing"], 0, "{r}");
        assert!(
            r["error_codes"]["batch_expired"].as_u64().unwrap() >= 1,
            "{r}"
        );
        last_round = r["round"].as_u64().unwrap();
    }
    assert!(
        expired_rounds >= 1 && last_round >= 1,
        "the window cut round 0 short"
    );
    let l = rounds(&job);
    assert_eq!(l.len() as u64, last_round + 1);
    for (i, r) in l.iter().enumerate() {
        assert_eq!(r["round"], i as u64);
        if i > 0 {
            assert!(job
                .join(format!("rounds/round-{i}/manifest.json"))
                .is_file());
            assert!(job.join(format!("results/round-{i}")).is_dir());
        }
    }
    let (sum, lines) = join_job(j, &tmp.path().join("joined.jsonl"));
    assert_eq!(sum["ok"], 14, "{sum}");
    assert_eq!(sum["missing"], 0);
    assert_eq!(sum["failed"], 0);
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..14).map(|i| format!("r{i:04}")).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    // The batch_expired lines of earlier rounds are there, superseded by the later
    // rounds' answers (not counted as outcomes).
    assert!(sum["duplicate_results"].as_u64().unwrap() >= 1, "{sum}");
}

#[test]
fn job_results_are_taken_in_round_order_numerically() {
    let tmp = tempfile::tempdir().unwrap();
    for n in [10, 2, 0, 1] {
        let d = tmp.path().join(format!("results/round-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x.output.jsonl"), "").unwrap();
    }
    // A round without result files (all its batches failed validation) is left out.
    std::fs::create_dir_all(tmp.path().join("results/round-3")).unwrap();
    let dirs = batchline::commands::join::job_results(tmp.path()).unwrap();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["round-0", "round-1", "round-2", "round-10"]);
    let none = tempfile::tempdir().unwrap();
    let e = batchline::commands::join::job_results(none.path()).unwrap_err();
    assert!(e.to_string().contains("batchline download"), "{e}");
}
