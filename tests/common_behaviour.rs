//! The behaviour every command shares (README "Common behaviour"), tested on the real
//! binary: outputs never replace inputs or each other, commits are all-or-nothing, a
//! closed pipe is never a crash, a shrinking input is an error, signals give their
//! exit status. Tests are named after issue 10's items.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn requests(n: usize) -> String {
    (0..n)
        .map(|i| chat_line(&format!("r{i}"), "m", &format!("question {i}")) + "\n")
        .collect()
}

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .args(args)
        .env("BATCHLINE_THREADS", "2")
        .stdin(Stdio::null());
    c
}

/// Hidden temporary files left in `dir` (outputs are written as `.NAME.*.tmp`).
fn temp_files(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn issue10_1_an_output_that_is_an_input_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = requests(3);
    std::fs::write(d.join("s.jsonl"), &text).unwrap();
    std::fs::hard_link(d.join("s.jsonl"), d.join("hard.jsonl")).unwrap();
    std::os::unix::fs::symlink(d.join("s.jsonl"), d.join("soft.jsonl")).unwrap();
    std::fs::copy(fixture("prompts.jsonl"), d.join("p.jsonl")).unwrap();
    for alias in ["s.jsonl", "hard.jsonl", "soft.jsonl", "./s.jsonl"] {
        let cases: Vec<Vec<&str>> = vec![
            vec![
                "shard",
                "s.jsonl",
                "--out-dir",
                "d",
                "--on-error",
                "skip",
                "--rejects",
                alias,
            ],
            vec!["join", "s.jsonl", "s.jsonl", "-o", "o.jsonl"],
            vec!["join", "p.jsonl", "s.jsonl", "--missing", alias],
            vec!["extract", "s.jsonl", "-o", alias],
            vec!["extract", "s.jsonl", "-o", "x.jsonl", "--rejects", alias],
            vec!["validate", "s.jsonl", "--rule", "true", "--report", alias],
            vec!["build", "s.jsonl", "-m", "m", "-o", alias],
        ];
        for args in cases {
            let o = run_in(d, &args, None);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(
                err.contains("refusing to overwrite") || err.contains("REQUESTS and as RESULTS"),
                "{args:?}: {err}"
            );
            assert_eq!(std::fs::read_to_string(d.join("s.jsonl")).unwrap(), text);
        }
    }
    assert!(
        !d.join("d").exists(),
        "a refused shard run leaves no directory"
    );
}

#[test]
fn issue10_1_two_outputs_on_one_file_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(3) + "not json\n").unwrap();
    // The rejects file would be replaced by the first shard.
    let o = run_in(
        d,
        &[
            "shard",
            "s.jsonl",
            "--out-dir",
            "d",
            "--on-error",
            "skip",
            "--rejects",
            "d/chat_completions.m.0000.jsonl",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("two outputs"), "{}", stderr(&o));
    assert!(!d.join("d").exists());
    // The same file under two spellings, for build's sidecar and rejects.
    std::fs::copy(fixture("prompts.jsonl"), d.join("p.jsonl")).unwrap();
    let o = run_in(
        d,
        &[
            "build",
            "p.jsonl",
            "-m",
            "m",
            "--sidecar",
            "side.jsonl",
            "-o",
            "./side.jsonl",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(files_in(d).iter().all(|f| f != "side.jsonl"));
}

#[test]
fn issue10_2_a_failed_manifest_write_leaves_no_shards() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 40 one-request shards of ~150 bytes; their manifest is ~10 kB.
    std::fs::write(d.join("s.jsonl"), requests(40)).unwrap();
    let mut c = cmd(
        d,
        &[
            "shard",
            "s.jsonl",
            "--out-dir",
            "out",
            "--max-requests",
            "1",
        ],
    );
    // SAFETY: setrlimit and signal are async-signal-safe; run in the child before exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        !d.join("out").exists(),
        "the directory this run created must go: {:?}",
        files_in(&d.join("out"))
    );
}

#[test]
fn issue10_2_force_removes_the_old_manifest_before_new_shards_land() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(3)).unwrap();
    let o = run_in(
        d,
        &[
            "shard",
            "s.jsonl",
            "--out-dir",
            "out",
            "--max-requests",
            "1",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // An old shard that cannot be removed (a non-empty directory in its place) makes
    // the rerun fail after its new shards were renamed in: the old manifest must not
    // be left beside them.
    std::fs::write(d.join("s.jsonl"), requests(2)).unwrap();
    let stale = d.join("out/chat_completions.m.0002.jsonl");
    std::fs::remove_file(&stale).unwrap();
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("keep"), "x").unwrap();
    let o = run_in(
        d,
        &[
            "shard",
            "s.jsonl",
            "--out-dir",
            "out",
            "--max-requests",
            "1",
            "--force",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let left = files_in(&d.join("out"));
    assert!(!left.contains(&"manifest.json".to_string()), "{left:?}");
    assert!(temp_files(&d.join("out")).is_empty(), "{left:?}");
}

#[test]
fn issue10_3_a_closed_stdout_still_gets_the_side_files_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run_closed = |args: &[&str]| {
        let mut child = cmd(d, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away at once, like `| head -c 0`
        child.wait_with_output().unwrap()
    };
    // Each run once with stdout read (the reference), then with stdout closed: the
    // side files must come out the same, and the exit status must be 0.
    let side_files_of = |args: &[&str], side: &[&str], closed: bool| -> Vec<String> {
        for f in side {
            let _ = std::fs::remove_file(d.join(f));
        }
        let o = if closed {
            run_closed(args)
        } else {
            run_in(d, args, None)
        };
        let want = if closed { Some(0) } else { o.status.code() };
        assert_eq!(o.status.code(), want, "{args:?}: {}", stderr(&o));
        side.iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
            .collect()
    };
    let req = fixture("requests.jsonl");
    let out = fixture("results/batch_out.jsonl");
    let p = fixture("prompts.jsonl");
    let chat = fixture("results/chat.jsonl");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "join",
                req.to_str().unwrap(),
                out.to_str().unwrap(),
                "--missing",
                "missing.jsonl",
                "--retry",
                "retry.jsonl",
            ],
            vec!["missing.jsonl", "retry.jsonl"],
        ),
        (
            vec![
                "build",
                p.to_str().unwrap(),
                "-m",
                "m",
                "--sidecar",
                "side.jsonl",
            ],
            vec!["side.jsonl"],
        ),
        (
            vec!["extract", chat.to_str().unwrap(), "--rejects", "rej.jsonl"],
            vec!["rej.jsonl"],
        ),
    ];
    for (args, side) in cases {
        let want = side_files_of(&args, &side, false);
        assert!(
            want.iter().all(|t| !t.is_empty()),
            "{args:?}: empty side file"
        );
        assert_eq!(side_files_of(&args, &side, true), want, "{args:?}");
    }
}

#[test]
fn issue10_3_validate_with_an_unwritable_report_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = run_in(
        d,
        &[
            "validate",
            fixture("scenarios.jsonl").to_str().unwrap(),
            "--rule",
            "true",
            "-o",
            "o.jsonl",
            "--report",
            "nodir/r.json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nodir"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(".tmp"), "{}", stderr(&o));
    assert!(files_in(d).is_empty(), "{:?}", files_in(d));
}

/// Runs `args` with its stdout blocked (not read) until the first line arrives, then
/// cuts the input file short, then drains the rest: the input shrinks while mapped.
fn shrink_while_running(d: &Path, input: &Path, args: &[&str]) -> std::process::Output {
    let mut child = cmd(d, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "the run wrote nothing");
    std::fs::OpenOptions::new()
        .write(true)
        .open(input)
        .unwrap()
        .set_len(100)
        .unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    std::process::Output {
        status,
        stdout: rest,
        stderr: err.into_bytes(),
    }
}

#[test]
fn issue10_4_an_input_that_shrinks_while_mapped_is_an_error_in_build_and_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 64 MB: far more than the chunks in flight when stdout blocks.
    let record = format!(
        "{{\"id\": \"x\", \"text\": \"{}\"}}\n",
        "some prompt text ".repeat(30)
    );
    let big: String = record.repeat((64 << 20) / record.len());
    let input = d.join("in.jsonl");
    std::fs::write(&input, &big).unwrap();
    let o = shrink_while_running(
        d,
        &input,
        &["build", "in.jsonl", "-m", "m", "--sidecar", "side.jsonl"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in.jsonl") && stderr(&o).contains("shrank"),
        "{}",
        stderr(&o)
    );
    assert!(temp_files(d).is_empty(), "{:?}", files_in(d));
    assert!(!d.join("side.jsonl").exists());

    // shard writes no stdout: its rejects go there instead (every other line is bad).
    let line = chat_line("ID", "m", &"a question ".repeat(30));
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 64 << 20 {
        text.push_str(&line.replace("\"ID\"", &format!("\"r{i}\"")));
        text.push_str("\nnot json at all\n");
        i += 1;
    }
    std::fs::write(&input, &text).unwrap();
    let o = shrink_while_running(
        d,
        &input,
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out",
            "--on-error",
            "skip",
            "--rejects",
            "/dev/stdout",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("shrank"), "{}", stderr(&o));
    assert!(!d.join("out").exists(), "{:?}", files_in(&d.join("out")));
}

#[test]
fn issue10_5_a_dangling_symlink_as_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::os::unix::fs::symlink(d.join("nowhere/x.jsonl"), d.join("link.jsonl")).unwrap();
    let p = fixture("prompts.jsonl");
    let o = run_in(
        d,
        &["build", p.to_str().unwrap(), "-m", "m", "-o", "link.jsonl"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
    let m = std::fs::symlink_metadata(d.join("link.jsonl")).unwrap();
    assert!(m.file_type().is_symlink(), "the link must stay a link");
}

#[test]
fn issue10_8_closed_pipes_never_exit_101() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(2000)).unwrap();
    let base = ["shard", "s.jsonl", "--check", "--max-requests", "1"];
    // The plan (one line a file), and a JSON summary far past 64 KiB.
    for extra in [&[][..], &["--json"][..]] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let mut child = cmd(d, &args).stdout(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
    // A closed stderr: the summary line and rejected-line echoes go nowhere, quietly.
    std::fs::write(d.join("bad.jsonl"), "nope\n".repeat(10)).unwrap();
    let mut child = cmd(d, &["shard", "bad.jsonl", "--check", "--on-error", "skip"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
fn issue10_9_json_summaries_are_the_same_on_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut text = String::new();
    for i in 0..20 {
        let id = match i % 3 {
            0 => format!("ok-{i}"),
            1 => format!("with space {i}"),
            _ => format!("{}{i}", "long".repeat(20)),
        };
        text.push_str(&chat_line(&id, "m", "q"));
        text.push('\n');
    }
    std::fs::write(d.join("s.jsonl"), text).unwrap();
    let runs: Vec<String> = (0..6)
        .map(|_| {
            let o = run_in(d, &["shard", "s.jsonl", "--check", "--json"], None);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            v.as_object_mut().unwrap().remove("throughput");
            v.to_string()
        })
        .collect();
    assert!(runs[0].contains("custom_id longer"), "{}", runs[0]);
    assert!(runs.iter().all(|r| r == &runs[0]), "{runs:#?}");
}

#[test]
fn issue10_15_shard_check_needs_no_out_dir_and_shows_no_empty_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(3)).unwrap();
    let o = run_in(d, &["shard", "s.jsonl", "--check", "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("sha256"), "{}", stdout(&o));
    assert_eq!(files_in(d), ["s.jsonl"]);
    let o = run_in(d, &["shard", "s.jsonl"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn issue10_15_the_default_rejects_file_is_not_a_shard_and_goes_on_a_clean_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(3) + "bad\n").unwrap();
    let o = run_in(
        d,
        &["shard", "s.jsonl", "-o", "out", "--on-error", "skip"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let names = files_in(&d.join("out"));
    assert!(names.contains(&"rejects.ndjson".to_string()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".jsonl")).count(),
        1,
        "{names:?}"
    );
    std::fs::write(d.join("s.jsonl"), requests(3)).unwrap();
    let o = run_in(d, &["shard", "s.jsonl", "-o", "out", "--force"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!files_in(&d.join("out")).contains(&"rejects.ndjson".to_string()));
}

#[test]
fn issue10_15_sigterm_exits_143_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Reads stdin, which stays open and silent: the run waits until signalled.
    let mut child = cmd(d, &["shard", "-", "--out-dir", "out"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    // The event: the process has its SIGTERM handler (SigCgt in /proc lists it).
    let status_path = format!("/proc/{}/status", child.id());
    loop {
        let s = std::fs::read_to_string(&status_path).unwrap_or_default();
        let caught = s
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGTERM - 1)) != 0 {
            break;
        }
        std::thread::yield_now();
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(!d.join("out").exists());
}

#[test]
fn issue10_on_error_fail_stops_extract_and_validate_at_the_first_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let chat = fixture("results/chat.jsonl");
    let o = run_in(
        d,
        &[
            "extract",
            chat.to_str().unwrap(),
            "-o",
            "x.jsonl",
            "--on-error",
            "fail",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("chat.jsonl:5:"), "{}", stderr(&o));
    assert!(files_in(d).is_empty(), "{:?}", files_in(d));
    std::fs::write(d.join("in.jsonl"), "{\"a\": 1}\nnot json\n{\"a\": 2}\n").unwrap();
    let args = ["validate", "in.jsonl", "--rule", "true", "-o", "v.jsonl"];
    let o = run_in(d, &args, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    std::fs::remove_file(d.join("v.jsonl")).unwrap();
    let mut fail = args.to_vec();
    fail.extend(["--on-error", "fail"]);
    let o = run_in(d, &fail, None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("in.jsonl:2:"), "{}", stderr(&o));
    assert_eq!(files_in(d), ["in.jsonl"]);
}

#[test]
fn issue10_15_the_reject_hint_points_to_a_rejects_file_only_when_one_was_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lines: String = (0..8)
        .map(|i| {
            serde_json::json!({"custom_id": format!("c{i}"), "response": {"status_code": 200,
                "body": {"choices": [{"message": {"content": "no json here"}}]}}})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(d.join("r.jsonl"), lines).unwrap();
    let o = run_in(d, &["extract", "r.jsonl", "-o", "x.jsonl"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("see the rejects file"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("more rejected lines"), "{}", stderr(&o));
    let o = run_in(
        d,
        &[
            "extract",
            "r.jsonl",
            "-o",
            "x.jsonl",
            "--rejects",
            "rej.jsonl",
        ],
        None,
    );
    assert!(
        stderr(&o).contains("see the rejects file"),
        "{}",
        stderr(&o)
    );
}
