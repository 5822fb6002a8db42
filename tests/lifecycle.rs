//! The batch lifecycle end to end: the real binary (`shard`, `submit`, `wait`,
//! `status`, `cancel`, `list`) against a real `batchline serve` on 127.0.0.1. Waits are
//! on events (the server's state, a process's exit), never on fixed sleeps.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::serve::Serve;
use common::{bin, chat_line, read_json, stderr, stdout};
use serde_json::Value;

/// Runs batchline with `args` and `env` (OPENAI_* variables cleared first).
fn bl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env("BATCHLINE_THREADS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run batchline")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A job directory: `n` chat requests of one model, sharded `per` to a file, with
/// prompt tokens in the manifest.
fn job(dir: &Path, n: usize, per: usize) -> PathBuf {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            chat_line(
                &format!("r{i:04}"),
                "gpt-4o-mini",
                &format!("Say something about the number {i}, please."),
            )
        })
        .collect();
    let req = dir.join("requests.jsonl");
    std::fs::write(&req, lines.join("\n") + "\n").unwrap();
    let job = dir.join("job");
    let o = bl(
        &[
            "shard",
            req.to_str().unwrap(),
            "--out-dir",
            job.to_str().unwrap(),
            "--max-requests",
            &per.to_string(),
            "--max-tokens",
            "100000000",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    job
}

fn ledger(job: &Path) -> Value {
    read_json(&job.join("ledger.json"))
}

fn shards(job: &Path) -> Vec<Value> {
    ledger(job)["rounds"][0]["shards"]
        .as_array()
        .unwrap()
        .clone()
}

fn manifest_tokens(job: &Path) -> Vec<u64> {
    read_json(&job.join("manifest.json"))["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tokens"].as_u64().unwrap())
        .collect()
}

/// Batches on the server per shard name (by batchline's metadata).
fn batches_of(all: &[Value], shard: &str) -> Vec<Value> {
    all.iter()
        .filter(|b| b["metadata"]["batchline_shard"] == shard)
        .cloned()
        .collect()
}

#[test]
fn shard_submit_wait_status_and_a_rerun_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 25, 10);
    let s = Serve::echo(&[]);
    let base = s.base();
    let j = job.to_str().unwrap();
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            &base,
            "--metadata",
            "team=data",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let sum: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(sum["submitted"], 3);
    assert_eq!(sum["queued"], 0);
    let l = ledger(&job);
    assert!(l["job_id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(l["provider"]["base_url"], base);
    for sh in shards(&job) {
        assert_eq!(sh["state"], "submitted", "{sh}");
        assert!(sh["file_id"].as_str().unwrap().starts_with("file-"));
    }
    // The batches carry the job's metadata and the user's.
    let all = s.batches(None);
    assert_eq!(all.len(), 3);
    for b in &all {
        assert_eq!(b["metadata"]["batchline_job"], l["job_id"]);
        assert_eq!(b["metadata"]["batchline_round"], "0");
        assert_eq!(b["metadata"]["team"], "data");
        assert_eq!(b["completion_window"], "24h");
    }
    let o = bl(&["wait", j, "--base-url", &base, "--poll", "0.05"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("3 completed"), "{}", stderr(&o));
    let o = bl(&["status", j, "--base-url", &base], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let table = stdout(&o);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.lines().skip(1).all(|l| l.contains("\tcompleted\t")),
        "{table}"
    );
    assert!(
        table.contains("10/0/10") && table.contains("5/0/5"),
        "{table}"
    );
    assert!(stderr(&o).contains("tokens used:"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cost at the batch price: $"),
        "{}",
        stderr(&o)
    );
    let o = bl(&["status", j, "--base-url", &base, "--json"], &[]);
    let st: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["totals"]["completed"], 3);
    assert_eq!(st["totals"]["requests_completed"], 25);
    let used: u64 = manifest_tokens(&job).iter().sum();
    assert_eq!(
        st["totals"]["input_tokens"], used,
        "usage = the prompt tokens counted by shard"
    );
    // The cost of the tokens used, at the batch price of the one price table.
    let (i, o_) = (
        st["totals"]["input_tokens"].as_u64().unwrap(),
        st["totals"]["output_tokens"].as_u64().unwrap(),
    );
    let want = batchline::batch::prices::Prices::builtin()
        .lookup("gpt-4o-mini", None)
        .unwrap()
        .cost(i, o_, true);
    let got = st["cost_used"]["batch_cost"].as_f64().unwrap();
    assert!(want > 0.0 && (got - want).abs() < 1e-12, "{got} vs {want}");
    for sh in shards(&job) {
        assert_eq!(sh["state"], "ended");
        assert_eq!(sh["batch"]["status"], "completed");
        assert!(sh["batch"]["output_file_id"].is_string());
    }
    // A rerun of submit creates nothing.
    let o = bl(&["submit", j, "--base-url", &base, "--json"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let sum: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(sum["submitted"], 0);
    assert_eq!(sum["already"], 3);
    assert_eq!(s.batches(None).len(), 3);
    // `list` shows the account's batches, paged.
    let o = bl(&["list", "--base-url", &base, "--limit", "2"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 3);
    assert!(stderr(&o).contains("more"), "{}", stderr(&o));
    let o = bl(&["list", "--base-url", &base, "--json"], &[]);
    let lj: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(lj["batches"].as_array().unwrap().len(), 3);
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 9, 3);
    let s = Serve::echo(&[]);
    let t = manifest_tokens(&job);
    let budget = (t[0] + t[1]).to_string();
    let o = bl(
        &[
            "submit",
            job.to_str().unwrap(),
            "--base-url",
            &s.base(),
            "--dry-run",
            "--max-enqueued-tokens",
            &budget,
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let plan = stdout(&o);
    assert_eq!(plan.matches("\tsubmit\n").count(), 2, "{plan}");
    assert_eq!(plan.matches("\tqueued\n").count(), 1, "{plan}");
    assert!(
        plan.contains("cost estimate at the batch price: $"),
        "{plan}"
    );
    assert!(stderr(&o).contains("nothing was sent"), "{}", stderr(&o));
    // The dry run's cost is `batchline estimate JOB`'s, figure for figure.
    let dry = bl(
        &[
            "submit",
            job.to_str().unwrap(),
            "--base-url",
            &s.base(),
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let dry: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap();
    let est = bl(&["estimate", job.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code(&est), 0, "{}", stderr(&est));
    let est: serde_json::Value = serde_json::from_str(&stdout(&est)).unwrap();
    assert_eq!(dry["cost_estimate"]["totals"], est["totals"], "{dry}");
    assert!(
        est["totals"]["batch_cost_min"].as_f64().unwrap() > 0.0,
        "{est}"
    );
    assert!(s.batches(None).is_empty());
    assert!(
        !job.join("ledger.json").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn the_token_budget_queues_shards_until_batches_end() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 12, 3);
    let t = manifest_tokens(&job);
    assert_eq!(t.len(), 4);
    let max = *t.iter().max().unwrap();
    // Room for two shards at a time, on the server and in the budget.
    let limit = (2 * max).to_string();
    let s = Serve::echo(&[
        "--enqueued-token-limit",
        &limit,
        "--latency-ms",
        "100",
        "--concurrency",
        "1",
    ]);
    let j = job.to_str().unwrap();
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            &s.base(),
            "--max-enqueued-tokens",
            &limit,
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let sum: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(sum["submitted"], 2, "{sum}");
    assert_eq!(sum["queued"], 2, "{sum}");
    let queued: Vec<Value> = shards(&job)
        .into_iter()
        .filter(|s| s["state"] == "pending")
        .collect();
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|s| s["queued_reason"] == "token budget"));
    let o = bl(&["status", j, "--base-url", &s.base()], &[]);
    assert!(
        stdout(&o).contains("queued (token budget)"),
        "{}",
        stdout(&o)
    );
    // wait submits the rest as the first batches end; the server never refuses one.
    let o = bl(&["wait", j, "--base-url", &s.base(), "--poll", "0.05"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let all = s.batches(None);
    assert_eq!(all.len(), 4, "one batch per shard: {all:?}");
    assert!(all.iter().all(|b| b["status"] == "completed"), "{all:?}");
    assert!(shards(&job).iter().all(|s| s["token_limit_retries"] == 0));
}

#[test]
fn token_limit_exceeded_goes_back_to_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 12, 3);
    let t = manifest_tokens(&job);
    let max = *t.iter().max().unwrap();
    // The server takes one shard at a time; the budget claims room for all four.
    let limit = (max + max / 2).to_string();
    let s = Serve::echo(&[
        "--enqueued-token-limit",
        &limit,
        "--latency-ms",
        "150",
        "--concurrency",
        "1",
    ]);
    let j = job.to_str().unwrap();
    let budget = (10 * max).to_string();
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            &s.base(),
            "--max-enqueued-tokens",
            &budget,
            "--wait",
            "--poll",
            "0.05",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("token_limit_exceeded"),
        "{}",
        stderr(&o)
    );
    let all = s.batches(None);
    let refused = all
        .iter()
        .filter(|b| {
            b["status"] == "failed" && b["errors"]["data"][0]["code"] == "token_limit_exceeded"
        })
        .count();
    assert!(refused >= 1, "the server refused none: {all:?}");
    let sh = shards(&job);
    for s0 in &sh {
        let name = s0["name"].as_str().unwrap();
        let completed: Vec<Value> = batches_of(&all, name)
            .into_iter()
            .filter(|b| b["status"] == "completed")
            .collect();
        assert_eq!(completed.len(), 1, "{name}: {all:?}");
        assert_eq!(s0["batch_id"], completed[0]["id"]);
        assert_eq!(s0["state"], "ended");
    }
    let retries: u64 = sh
        .iter()
        .map(|s| s["token_limit_retries"].as_u64().unwrap())
        .sum();
    assert_eq!(retries as usize, refused, "each refusal was one re-queue");
}

#[test]
fn expired_batches_keep_their_partial_results_and_wait_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 20, 20);
    let s = Serve::echo(&[
        "--window",
        "1s",
        "--latency-ms",
        "200",
        "--concurrency",
        "1",
    ]);
    let j = job.to_str().unwrap();
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            &s.base(),
            "--wait",
            "--poll",
            "0.1",
        ],
        &[],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("1 expired"), "{}", stderr(&o));
    let sh = &shards(&job)[0];
    assert_eq!(sh["state"], "ended");
    assert_eq!(sh["batch"]["status"], "expired");
    let c = &sh["batch"]["request_counts"];
    let done = c["completed"].as_u64().unwrap();
    assert!((1..20).contains(&done), "{c}");
    assert!(sh["batch"]["output_file_id"].is_string(), "{sh}");
}

#[test]
fn cancel_keeps_what_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 40, 20);
    let s = Serve::echo(&["--latency-ms", "100", "--concurrency", "1"]);
    let j = job.to_str().unwrap();
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Once both batches answered a request, cancel one shard, then the rest.
    s.wait_for(None, Duration::from_secs(60), |b| {
        b.len() == 2
            && b.iter()
                .all(|b| b["request_counts"]["completed"].as_u64() >= Some(1))
    });
    let first = shards(&job)[0]["name"].as_str().unwrap().to_string();
    let o = bl(
        &[
            "cancel",
            j,
            first.trim_end_matches(".jsonl"),
            "--base-url",
            &s.base(),
            "--json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(c["cancelled"].as_array().unwrap().len(), 1);
    let o = bl(
        &["cancel", j, "no-such-shard", "--base-url", &s.base()],
        &[],
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no shard"), "{}", stderr(&o));
    let o = bl(&["cancel", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = bl(&["wait", j, "--base-url", &s.base(), "--poll", "0.05"], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    for sh in shards(&job) {
        assert_eq!(sh["batch"]["status"], "cancelled", "{sh}");
        let c = &sh["batch"]["request_counts"];
        assert!(c["completed"].as_u64().unwrap() >= 1, "{c}");
        assert!(sh["batch"]["output_file_id"].is_string(), "{sh}");
    }
}

#[test]
fn injected_429s_and_500s_on_uploads_and_creates_are_retried_without_a_second_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 6, 3);
    let s = Serve::echo(&[
        "--faults",
        "files.create:429/0@1,files.create:500@2,batches.create:429/0@1,batches.create:500@2,batches.create:503/0@3",
    ]);
    let j = job.to_str().unwrap();
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            &s.base(),
            "--wait",
            "--poll",
            "0.05",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let all = s.batches(None);
    assert_eq!(all.len(), 2, "{all:?}");
    for sh in shards(&job) {
        assert_eq!(batches_of(&all, sh["name"].as_str().unwrap()).len(), 1);
    }
}

#[test]
fn sigkill_after_the_server_created_a_batch_leaves_exactly_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 6, 3);
    // The first create is carried out, but its answer never comes.
    let s = Serve::echo(&["--faults", "batches.create:hang@1"]);
    let j = job.to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["submit", j, "--base-url", &s.base()])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The event: a batch exists on the server.
    s.wait_for(None, Duration::from_secs(60), |b| !b.is_empty());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let sh = shards(&job);
    assert_eq!(
        sh[0]["state"], "creating",
        "the intent was recorded before the call"
    );
    assert!(sh[0]["batch_id"].is_null());
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("found its batch"), "{}", stderr(&o));
    let all = s.batches(None);
    assert_eq!(all.len(), 2, "{all:?}");
    for s0 in shards(&job) {
        let mine = batches_of(&all, s0["name"].as_str().unwrap());
        assert_eq!(mine.len(), 1, "exactly one batch for {}", s0["name"]);
        assert_eq!(s0["batch_id"], mine[0]["id"]);
    }
}

#[test]
fn a_second_process_on_a_locked_job_stops_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 3, 3);
    let s = Serve::echo(&[]);
    let j = job.to_str().unwrap();
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A running `wait` holds the job: one that waits for a batch that never ends.
    let slow = Serve::echo(&["--latency-ms", "100000"]);
    let tmp2 = tempfile::tempdir().unwrap();
    let job2 = self::job(tmp2.path(), 3, 3);
    let j2 = job2.to_str().unwrap();
    let o = bl(&["submit", j2, "--base-url", &slow.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut waiter = Command::new(bin())
        .args(["wait", j2, "--base-url", &slow.base(), "--poll", "0.05"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The event: the waiter holds a flock (seen in /proc/locks, without touching it).
    let pid = waiter.id().to_string();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("FLOCK") && l.split_whitespace().nth(4) == Some(pid.as_str()))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "wait never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let slow_base = slow.base();
    for args in [vec!["submit", j2], vec!["wait", j2], vec!["cancel", j2]] {
        let mut a = args.clone();
        a.extend(["--base-url", slow_base.as_str()]);
        let o = bl(&a, &[]);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("another batchline process is working on this job"),
            "{}",
            stderr(&o)
        );
    }
    // status still shows the job, read-only.
    let o = bl(&["status", j2, "--base-url", &slow.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without writing the ledger"),
        "{}",
        stderr(&o)
    );
    // Ctrl-C stops the waiter with 130 and a whole ledger.
    unsafe { libc::kill(waiter.id() as i32, libc::SIGINT) };
    let st = waiter.wait().unwrap();
    assert_eq!(st.code(), Some(130));
    assert_eq!(
        ledger(&job2)["rounds"][0]["shards"][0]["state"],
        "submitted"
    );
    // A wait that passes its --timeout ends with exit 2 and says how to go on.
    let o = bl(
        &[
            "wait",
            j2,
            "--base-url",
            &slow_base,
            "--poll",
            "0.05",
            "--timeout",
            "300ms",
        ],
        &[],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("timed out with 1 batches running"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn azure_form_api_version_and_api_key_header() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 4, 2);
    let s = Serve::start(
        &["--echo", "--api-key-env", "SERVE_KEY"],
        &[("SERVE_KEY", "azure-key-1")],
    );
    let j = job.to_str().unwrap();
    let base = format!("{}/openai/v1", s.url);
    let args = [
        "submit",
        j,
        "--base-url",
        &base,
        "--api-version",
        "2024-10-21",
        "--wait",
        "--poll",
        "0.05",
    ];
    // A wrong key: exit 2, and the error names the variable to fix.
    let o = bl(&args, &[("AZURE_OPENAI_API_KEY", "wrong-key-9")]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("AZURE_OPENAI_API_KEY"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("wrong-key-9"));
    // No key at all: the message says so.
    let o = bl(&args, &[]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no API key was sent"), "{}", stderr(&o));
    let o = bl(&args, &[("AZURE_OPENAI_API_KEY", "azure-key-1")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(ledger(&job)["provider"]["azure"], true);
    assert_eq!(s.batches(Some("azure-key-1")).len(), 2);
    // A wrong base URL is a 404 that says what to check.
    let o = bl(
        &["list", "--base-url", &format!("{}/nope/v1", s.url)],
        &[("OPENAI_API_KEY", "azure-key-1")],
    );
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("HTTP 404") && stderr(&o).contains("check the base URL"),
        "{}",
        stderr(&o)
    );
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_key_is_never_written_anywhere() {
    const KEY: &str = "sk-batchline-test-RECOGNISABLE-4f1c9e";
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 6, 3);
    let s = Serve::start(
        &["--echo", "--api-key-env", "SERVE_KEY", "--latency-ms", "20"],
        &[("SERVE_KEY", KEY)],
    );
    let j = job.to_str().unwrap();
    let base = s.base();
    let env = [("OPENAI_API_KEY", KEY)];
    let mut outputs = Vec::new();
    for args in [
        vec!["submit", j, "--dry-run"],
        vec!["submit", j, "--json"],
        vec!["status", j, "--json"],
        vec!["cancel", j, "--json"],
        vec!["wait", j, "--poll", "0.05", "--json"],
        vec!["status", j],
        vec!["list", "--json"],
        vec!["list"],
    ] {
        let mut a = args.clone();
        a.extend(["--base-url", &base]);
        let o = bl(&a, &env);
        assert!(
            code(&o) == 0 || (args[0] == "wait" && code(&o) == 1),
            "{args:?}: {}",
            stderr(&o)
        );
        outputs.push(o);
    }
    // A wrong key shown back by the server must not be repeated either.
    let o = bl(
        &["list", "--base-url", &base],
        &[("OPENAI_API_KEY", "sk-wrong-RECOGNISABLE-77")],
    );
    assert_eq!(code(&o), 2);
    assert!(!stderr(&o).contains("sk-wrong-RECOGNISABLE-77"));
    for o in &outputs {
        assert!(!stdout(o).contains(KEY) && !stderr(o).contains(KEY));
    }
    let mut files = Vec::new();
    all_files(&job, &mut files);
    assert!(files.iter().any(|f| f.ends_with("ledger.json")));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "{} holds the key",
            f.display()
        );
    }
}

#[test]
fn final_4xx_answers_say_what_to_do_and_are_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 2, 2);
    let j = job.to_str().unwrap();
    let s = Serve::echo(&["--faults", "files.create:413@1,batches.create:403@1"]);
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HTTP 413") && stderr(&o).contains("shard --max-bytes"),
        "{}",
        stderr(&o)
    );
    // The upload is repeated by the rerun (it was never done); the create's 403 is
    // final and leaves the shard uploaded, with no batch.
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HTTP 403") && stderr(&o).contains("permissions"),
        "{}",
        stderr(&o)
    );
    assert_eq!(shards(&job)[0]["state"], "uploaded");
    assert!(s.batches(None).is_empty());
    // One upload reached the server (the 413 was refused before storing anything).
    let files = s.get("/v1/files", None);
    assert_eq!(files["data"].as_array().unwrap().len(), 1, "{files}");
    // The uploaded file disappears (deleted, or expired while queued): the rerun
    // uploads the shard again instead of failing on the missing file.
    let gone = shards(&job)[0]["file_id"].as_str().unwrap().to_string();
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/files/{gone}", s.url))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("uploading the shard again"),
        "{}",
        stderr(&o)
    );
    let all = s.batches(None);
    assert_eq!(all.len(), 1);
    assert_ne!(all[0]["input_file_id"], gone.as_str());
    assert_eq!(shards(&job)[0]["file_id"], all[0]["input_file_id"]);
}

#[test]
fn ctrl_c_during_submit_exits_130_and_the_rerun_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 4, 2);
    let j = job.to_str().unwrap();
    // Each create takes a second: time to be interrupted in the middle of one.
    let s = Serve::echo(&["--faults", "batches.create:slow=1s"]);
    let child = Command::new(bin())
        .args(["submit", j, "--base-url", &s.base()])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The event: the first create is on its way (recorded before the call).
    let t0 = std::time::Instant::now();
    loop {
        let l = std::fs::read(job.join("ledger.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if l.is_some_and(|l| l["rounds"][0]["shards"][0]["state"] == "creating") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no create started");
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    // The create in flight finished and was recorded; nothing after it was sent.
    let sh = shards(&job);
    assert_eq!(sh[0]["state"], "submitted", "{sh:?}");
    assert!(sh[0]["batch_id"].is_string());
    // The next shard got as far as its recorded intent (or not even that).
    assert!(
        sh[1]["state"] == "pending" || sh[1]["state"] == "uploading",
        "{sh:?}"
    );
    assert!(sh[1]["file_id"].is_null());
    assert_eq!(s.batches(None).len(), 1);
    let files = s.get("/v1/files", None);
    assert_eq!(files["data"].as_array().unwrap().len(), 1, "{files}");
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let all = s.batches(None);
    assert_eq!(all.len(), 2);
    for s0 in shards(&job) {
        assert_eq!(batches_of(&all, s0["name"].as_str().unwrap()).len(), 1);
    }
}

#[test]
fn a_submitted_job_is_never_resharded_and_a_changed_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 12, 5);
    let s = Serve::echo(&[]);
    let j = job.to_str().unwrap();
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = std::fs::read(job.join("manifest.json")).unwrap();

    // shard --force over a submitted job: refused, nothing touched.
    let req = tmp.path().join("requests.jsonl");
    let o = bl(
        &[
            "shard",
            req.to_str().unwrap(),
            "--out-dir",
            j,
            "--force",
            "--max-requests",
            "4",
        ],
        &[],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("submitted job"), "{}", stderr(&o));
    assert_eq!(std::fs::read(job.join("manifest.json")).unwrap(), before);

    // A manifest changed behind the ledger's back (here: another shard run's, copied in):
    // submit stops rather than reporting the old job as done and sending nothing.
    let other = tmp.path().join("other");
    let o = bl(
        &[
            "shard",
            req.to_str().unwrap(),
            "--out-dir",
            other.to_str().unwrap(),
            "--max-requests",
            "4",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::copy(other.join("manifest.json"), job.join("manifest.json")).unwrap();
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not match the job's ledger.json"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        s.batches(None).len(),
        3,
        "no batch was created by the refused runs"
    );
}

#[test]
fn no_key_for_a_hosted_api_is_a_usage_error_before_anything_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(tmp.path(), 3, 5);
    let j = job.to_str().unwrap();
    // The default base URL is api.openai.com: without a key, stop at once (exit 2),
    // naming the variable, rather than sending requests that can only answer 401.
    let o = bl(&["submit", j], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("set OPENAI_API_KEY"), "{}", stderr(&o));
    assert!(!job.join("ledger.json").exists(), "nothing was started");
    let o = bl(
        &[
            "submit",
            j,
            "--base-url",
            "https://res.openai.azure.com/openai/v1",
            "--api-version",
            "2024-10-21",
        ],
        &[],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("set AZURE_OPENAI_API_KEY"),
        "{}",
        stderr(&o)
    );
    // run reads the same provider flags.
    let req = tmp.path().join("requests.jsonl");
    let out = tmp.path().join("out.jsonl");
    let o = bl(
        &["run", req.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("set OPENAI_API_KEY"), "{}", stderr(&o));
    // A local server needs no key.
    let s = Serve::echo(&[]);
    let o = bl(&["submit", j, "--base-url", &s.base()], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}
