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

/// The bad input of each offline command: a good line, a line that is not JSON, a line
/// that is not UTF-8, and (where the command reads requests) a duplicate custom_id.
fn bad_input_of(command: &str) -> Vec<u8> {
    let good = match command {
        "shard" | "join" => chat_line("a", "m", "hi"),
        "build" => r#"{"text":"hi","id":"a"}"#.to_string(),
        "extract" => serde_json::json!({"custom_id": "a", "response": {"status_code": 200,
            "body": {"choices": [{"message": {"content": "{\"x\": 1}"}}]}}})
        .to_string(),
        "validate" => r#"{"custom_id":"a","prompt":"hi"}"#.to_string(),
        _ => unreachable!(),
    };
    let mut data = format!("{good}\n{{nope\n").into_bytes();
    data.extend_from_slice(b"{\"text\":\"\xff\"}\n");
    data
}

fn command_args<'a>(command: &str, input: &'a str) -> Vec<&'a str> {
    match command {
        "shard" => vec!["shard", input, "--out-dir", "d"],
        "build" => vec!["build", input, "-m", "m", "-t", "{text}", "-o", "o.jsonl"],
        "extract" => vec!["extract", input, "-o", "o.jsonl"],
        "validate" => vec!["validate", input, "--rule", "true", "-o", "o.jsonl"],
        "join" => vec!["join", input, "res.jsonl", "-o", "o.jsonl"],
        _ => unreachable!(),
    }
}

/// Issue 10, one piece each: every offline command's rejects come from one writer, in
/// one shape (`file, line, offset, reason, message, [custom_id], ..., text, [text_cut]`),
/// with the same reason codes for the same fault, and `--on-error fail` stops at the
/// first bad line with exactly the message the rejects file would hold.
#[test]
fn issue10_rejects_have_one_shape_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // join's results: one for the good request.
    let result = serde_json::json!({"custom_id": "a", "response": {"status_code": 200,
        "body": {"choices": [{"message": {"content": "hi"}}]}}});
    std::fs::write(d.join("res.jsonl"), format!("{result}\n")).unwrap();
    for command in ["shard", "build", "extract", "validate", "join"] {
        let data = bad_input_of(command);
        std::fs::write(d.join("in.jsonl"), &data).unwrap();
        let mut args = command_args(command, "in.jsonl");
        args.extend(["--on-error", "skip", "--rejects", "r.jsonl"]);
        let o = run_in(d, &args, None);
        assert_eq!(o.status.code(), Some(1), "{command}: {}", stderr(&o));
        let raw = std::fs::read_to_string(d.join("r.jsonl")).unwrap();
        let rejects: Vec<serde_json::Value> = raw
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rejects.len(), 2, "{command}: {raw}");
        let text = String::from_utf8_lossy(&data).into_owned();
        for (r, line) in raw.lines().zip(&rejects) {
            // The keys, in order: the shared head, then the text.
            let keys: Vec<String> =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(r)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap();
            assert_eq!(
                keys[..5],
                ["file", "line", "offset", "reason", "message"],
                "{command}: {r}"
            );
            assert_eq!(keys.last().unwrap(), "text", "{command}: {r}");
            assert_eq!(line["file"], "in.jsonl", "{command}");
            // line and offset point at the line, and text is the line.
            let n = line["line"].as_u64().unwrap() as usize;
            let off = line["offset"].as_u64().unwrap() as usize;
            let src = text.lines().nth(n - 1).unwrap();
            assert!(text[off..].starts_with(src), "{command}: {r}");
            assert_eq!(line["text"], src, "{command}");
        }
        let codes: Vec<(u64, &str)> = rejects
            .iter()
            .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(
            codes,
            [(2, "invalid_json"), (3, "invalid_utf8")],
            "{command}"
        );
        // Without --rejects: counted and echoed (file:line:offset: message), not written.
        std::fs::remove_file(d.join("r.jsonl")).unwrap();
        let _ = std::fs::remove_dir_all(d.join("d"));
        let mut args = command_args(command, "in.jsonl");
        args.extend(["--on-error", "skip"]);
        let o = run_in(d, &args, None);
        assert_eq!(o.status.code(), Some(1), "{command}: {}", stderr(&o));
        let err = stderr(&o);
        for r in &rejects {
            let want = format!(
                "in.jsonl:{}:{}: {}",
                r["line"],
                r["offset"],
                r["message"].as_str().unwrap()
            );
            assert!(err.contains(&want), "{command}: {want} not in {err}");
        }
        assert!(!d.join("r.jsonl").exists());
        // --on-error fail: the first bad line's message, exit 2, no output.
        let _ = std::fs::remove_dir_all(d.join("d"));
        let _ = std::fs::remove_file(d.join("o.jsonl"));
        assert_eq!(files_in(d), ["in.jsonl", "res.jsonl"], "{command}");
        let mut args = command_args(command, "in.jsonl");
        args.extend(["--on-error", "fail"]);
        let o = run_in(d, &args, None);
        assert_eq!(o.status.code(), Some(2), "{command}: {}", stderr(&o));
        let want = format!(
            "in.jsonl:2:{}: {}",
            rejects[0]["offset"],
            rejects[0]["message"].as_str().unwrap()
        );
        assert!(
            stderr(&o).contains(&want),
            "{command}: {want} not in {}",
            stderr(&o)
        );
        assert_eq!(files_in(d), ["in.jsonl", "res.jsonl"], "{command}");
    }
}

/// What a shard directory says about itself: `None` without a manifest, else the
/// manifest's input, after checking that every file it lists is there with its size
/// and sha256, and that no other shard lies beside them.
fn check_shard_dir(dir: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let text = match std::fs::read_to_string(dir.join("manifest.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{e}"),
    };
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut listed = Vec::new();
    for f in m["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name} is listed but {e}: {:?}", files_in(dir)));
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap(), "{name}");
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            f["sha256"].as_str().unwrap(),
            "{name}: a shard that is not the manifest's"
        );
        listed.push(name.to_string());
    }
    let mut shards: Vec<String> = files_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    shards.sort();
    listed.sort();
    assert_eq!(
        shards, listed,
        "a shard beside the manifest that it does not list"
    );
    Some(m["input"].as_str().unwrap().to_string())
}

/// Issue 10 item 2 under a real SIGKILL: `shard --force` over an older run is killed
/// (kill -9) at every step of its commit in turn (the debug-build hook
/// BATCHLINE_TEST_PAUSE_AT=commit:N announces the step on stderr and waits there). After
/// each kill a directory with a manifest is complete (every listed file with its size
/// and sha256, no stale shard of the old run beside it), and rerunning the same command
/// completes and leaves nothing of the killed run (no stale shard, rejects file, temp
/// file or journal).
#[test]
fn issue10_2_shard_force_killed_at_every_commit_step_keeps_the_manifest_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let old: String = (0..5)
        .map(|i| chat_line(&format!("old{i}"), "m", &format!("old question {i}")) + "\n")
        .chain(["{broken\n".to_string()])
        .collect();
    let new: String = (0..3)
        .map(|i| chat_line(&format!("new{i}"), "m", &format!("new question {i}")) + "\n")
        .collect();
    let new_args = [
        "shard",
        "new.jsonl",
        "--out-dir",
        "out",
        "--max-requests",
        "1",
        "--force",
    ];
    let out = d.join("out");
    let mut killed = 0;
    for n in 0.. {
        assert!(n < 100, "the commit never ended");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::write(d.join("old.jsonl"), &old).unwrap();
        std::fs::write(d.join("new.jsonl"), &new).unwrap();
        let o = run_in(
            d,
            &[
                "shard",
                "old.jsonl",
                "--out-dir",
                "out",
                "--max-requests",
                "1",
                "--on-error",
                "skip",
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(check_shard_dir(&out).as_deref(), Some("old.jsonl"));
        assert!(out.join("rejects.ndjson").exists());

        let mut child = cmd(d, &new_args)
            .env("BATCHLINE_TEST_PAUSE_AT", format!("commit:{n}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let want = format!("test pause at commit:{n}");
        let mut paused = false;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            if line.unwrap().contains(&want) {
                paused = true;
                break;
            }
        }
        if !paused {
            // Past the last step: the run completed.
            assert!(child.wait().unwrap().success());
            assert_eq!(check_shard_dir(&out).as_deref(), Some("new.jsonl"));
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed += 1;
        // The promise at the instant of the kill.
        match check_shard_dir(&out).as_deref() {
            None => {}
            Some("old.jsonl") => assert!(out.join("rejects.ndjson").exists(), "step {n}"),
            Some("new.jsonl") => assert!(!out.join("rejects.ndjson").exists(), "step {n}"),
            Some(other) => panic!("{other}"),
        }
        // Rerunning the same command completes, and nothing of either run is left over.
        let o = run_in(d, &new_args, None);
        assert_eq!(o.status.code(), Some(0), "step {n}: {}", stderr(&o));
        assert_eq!(
            check_shard_dir(&out).as_deref(),
            Some("new.jsonl"),
            "step {n}"
        );
        let mut left = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        left.sort();
        assert_eq!(
            left,
            [
                "chat_completions.m.0000.jsonl",
                "chat_completions.m.0001.jsonl",
                "chat_completions.m.0002.jsonl",
                "manifest.json"
            ],
            "step {n}"
        );
    }
    // The manifest's temp file, the journal, the old manifest's removal, 3 renames, 2
    // stale shards (0003, 0004) and the old rejects file removed, the new manifest, the
    // journal's removal: a kill after each.
    assert_eq!(killed, 11);
}

/// A commit killed in a directory that the run created: rerunning the same command
/// (without --force) completes, since what it finds there is its own.
#[test]
fn issue10_2_a_first_shard_run_killed_mid_commit_can_be_rerun_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.jsonl"), requests(3)).unwrap();
    let args = [
        "shard",
        "s.jsonl",
        "--out-dir",
        "out",
        "--max-requests",
        "1",
    ];
    // Step 4: the journal is written, and two shards are renamed into place.
    let mut child = cmd(d, &args)
        .env("BATCHLINE_TEST_PAUSE_AT", "commit:4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("test pause at commit:4")));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(check_shard_dir(&d.join("out")), None);
    assert!(
        files_in(&d.join("out")).len() >= 2,
        "{:?}",
        files_in(&d.join("out"))
    );
    let o = run_in(d, &args, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(check_shard_dir(&d.join("out")).as_deref(), Some("s.jsonl"));
    assert!(temp_files(&d.join("out")).is_empty());
    // Files that are not its own still need --force.
    std::fs::write(d.join("out/mine.txt"), "x").unwrap();
    std::fs::remove_file(d.join("out/manifest.json")).unwrap();
    let o = run_in(d, &args, None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
}

/// join with `--on-error skip`: unreadable request lines, duplicate request custom_ids
/// and unusable result lines go to the rejects file (each naming its own file), the
/// rest is joined; a request whose only result was set aside is `missing`.
#[test]
fn issue10_join_on_error_skip_sets_bad_lines_aside_and_accounts_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let reqs: String = ["a", "b", "c", "a"]
        .iter()
        .map(|id| chat_line(id, "m", "hi") + "\n")
        .chain(["{nope\n".to_string()])
        .collect();
    std::fs::write(d.join("req.jsonl"), &reqs).unwrap();
    let ok = serde_json::json!({"custom_id": "a", "response": {"status_code": 200,
        "body": {"choices": [{"message": {"content": "hi"}}]}}});
    std::fs::write(
        d.join("res.jsonl"),
        format!("{ok}\n{{\"custom_id\":\"b\",\"response\":7}}\n{{broken\n"),
    )
    .unwrap();
    let args = ["join", "req.jsonl", "res.jsonl", "-o", "o.jsonl", "--json"];
    let o = run_in(d, &args, None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("res.jsonl:2:"), "{}", stderr(&o));
    let mut skip = args.to_vec();
    skip.extend(["--on-error", "skip", "--rejects", "rej.jsonl"]);
    let o = run_in(d, &skip, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (
            s["requests"].as_u64(),
            s["ok"].as_u64(),
            s["missing"].as_u64()
        ),
        (Some(3), Some(1), Some(2)),
        "{s}"
    );
    assert_eq!(
        (
            s["rejected_requests"].as_u64(),
            s["rejected_results"].as_u64()
        ),
        (Some(2), Some(2)),
        "{s}"
    );
    let out: Vec<serde_json::Value> = read_lines(&d.join("o.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = out
        .iter()
        .map(|v| {
            (
                v["custom_id"].as_str().unwrap(),
                v["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("a", "ok"), ("b", "missing"), ("c", "missing")]);
    let rej: Vec<serde_json::Value> = read_lines(&d.join("rej.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, u64, &str)> = rej
        .iter()
        .map(|r| {
            (
                r["file"].as_str().unwrap(),
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("res.jsonl", 2, "bad_line"),
            ("res.jsonl", 3, "invalid_json"),
            ("req.jsonl", 4, "duplicate_custom_id"),
            ("req.jsonl", 5, "invalid_json"),
        ]
    );
    assert_eq!(rej[2]["custom_id"], "a");
    assert_eq!(rej[3]["text"], "{nope");
}
