//! Settings and limits that used to be ignored silently (issue 10, item 14): each is now
//! a usage error or a documented rule, checked here through the real binary.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn bad_thread_counts_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("r.jsonl"), "{\"x\":1}\n").unwrap();
    let args = [
        "validate",
        "r.jsonl",
        "--rule",
        "true",
        "-q",
        "-o",
        "out.jsonl",
    ];
    for (env, flag) in [
        (Some("abc"), None),
        (Some("0"), None),
        (None, Some("0")),
        (None, Some("-2")),
        (Some("4"), Some("x")),
    ] {
        let mut c = Command::new(bin());
        c.current_dir(d.path())
            .args(args)
            .env_remove("BATCHLINE_THREADS");
        if let Some(e) = env {
            c.env("BATCHLINE_THREADS", e);
        }
        if let Some(f) = flag {
            c.arg(format!("--threads={f}"));
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{env:?} {flag:?}");
        assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
        assert!(!d.path().join("out.jsonl").exists());
    }
    // A good value from either source works.
    let o = Command::new(bin())
        .current_dir(d.path())
        .args(args)
        .env("BATCHLINE_THREADS", "3")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn extract_id_field_needs_text_field() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("r.jsonl"), "{\"t\":\"[1]\",\"k\":\"a\"}\n").unwrap();
    let o = run_in(d.path(), &["extract", "r.jsonl", "--id-field", "/k"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--text-field"), "{}", stderr(&o));
    let o = run_in(
        d.path(),
        &[
            "extract",
            "r.jsonl",
            "--text-field",
            "/t",
            "--id-field",
            "/k",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"custom_id\":\"a\""), "{}", stdout(&o));
}

#[test]
fn extract_reads_a_file_named_twice_once() {
    let d = tempfile::tempdir().unwrap();
    let line = r#"{"custom_id":"a","response":{"status_code":200,"body":{"choices":[{"index":0,"message":{"content":"{\"v\":1}"},"finish_reason":"stop"}]}},"error":null}"#;
    std::fs::write(d.path().join("r.jsonl"), format!("{line}\n")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("r.jsonl", d.path().join("link.jsonl")).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(d.path().join("r.jsonl"), d.path().join("link.jsonl")).unwrap();
    let mut args = vec!["extract", "r.jsonl", "./r.jsonl"];
    if cfg!(unix) {
        args.push("link.jsonl");
    }
    args.extend(["--json", "-o", "out.jsonl"]);
    let o = run_in(d.path(), &args, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read_lines(&d.path().join("out.jsonl")).len(), 1);
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["lines"], 1, "{s}");
}

/// `build` and `validate` accept exactly the same nesting: one depth limit.
#[test]
fn build_and_validate_share_one_depth_limit() {
    let d = tempfile::tempdir().unwrap();
    let max = batchline::json::MAX_DEPTH;
    // The record's own braces are one level.
    let record = |depth: usize| {
        let inner = depth - 1;
        format!(
            "{{\"t\":\"x\",\"a\":{}1{}}}\n",
            "[".repeat(inner),
            "]".repeat(inner)
        )
    };
    for (depth, ok) in [(max, true), (max + 1, false)] {
        std::fs::write(d.path().join("in.jsonl"), record(depth)).unwrap();
        let b = run_in(
            d.path(),
            &["build", "in.jsonl", "-m", "m", "-t", "{t}", "-o", "b.jsonl"],
            None,
        );
        let v = run_in(
            d.path(),
            &[
                "validate", "in.jsonl", "--rule", "true", "-q", "-o", "v.jsonl",
            ],
            None,
        );
        assert_eq!(
            b.status.code() == Some(0),
            ok,
            "build at {depth}: {}",
            stderr(&b)
        );
        assert_eq!(
            v.status.code() == Some(0),
            ok,
            "validate at {depth}: {}",
            stderr(&v)
        );
        if !ok {
            assert!(stderr(&b).contains("deeper than"), "{}", stderr(&b));
        }
    }
}

#[test]
fn failed_rules_are_counted_against_their_own_rule() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("r.jsonl"), "{\"x\":1}\n{\"x\":2}\n").unwrap();
    let o = run_in(
        d.path(),
        &[
            "validate",
            "r.jsonl",
            "--rule",
            "first: x > 0",
            "--rule",
            "second: x > 1",
            "--json",
            "-o",
            "v.jsonl",
        ],
        None,
    );
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["failures"]["first"], 0, "{s}");
    assert_eq!(s["failures"]["second"], 1, "{s}");
}
