//! One verdict per result line, whoever reads it: every line of every fixture under
//! fixtures/results/ goes through `join` (on its own, with a request of the same id)
//! and through `extract`, and both must say the same: ok, failed (with the same code),
//! or unusable. Then `extract` reads the line `join` wrote and must give the same
//! verdict and the same records as from the raw result line (issue 10, items 11, 13).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Failed(String),
    Unusable,
}

/// The id a request must carry to meet this result line (`custom_id`, else `key`).
fn id_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    for k in ["custom_id", "key"] {
        if let Some(s) = v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return s.to_string();
        }
    }
    "no-id".to_string()
}

struct Extracted {
    verdict: Verdict,
    /// Records without their custom_id (a joined line names it the same way).
    records: Vec<String>,
}

fn extract(dir: &Path, input: &str) -> Extracted {
    let _ = std::fs::remove_file(dir.join("rej.jsonl"));
    let o = run_in(
        dir,
        &[
            "extract",
            input,
            "-o",
            "rec.jsonl",
            "--rejects",
            "rej.jsonl",
            "-q",
        ],
        None,
    );
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "extract {input}: {}",
        stderr(&o)
    );
    let rejects: Vec<Value> = std::fs::read_to_string(dir.join("rej.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut verdict = Verdict::Ok;
    for r in &rejects {
        match r["reason"].as_str().unwrap() {
            "bad_line" | "invalid_json" | "invalid_utf8" | "line_too_long" => {
                verdict = Verdict::Unusable
            }
            "api_error" | "missing" => {
                verdict = Verdict::Failed(r["error_code"].as_str().unwrap().to_string())
            }
            _ => {}
        }
    }
    let records = read_lines(&dir.join("rec.jsonl"));
    Extracted { verdict, records }
}

#[test]
fn join_and_extract_give_every_fixture_line_one_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut files: Vec<_> = std::fs::read_dir(fixture("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let (mut lines, mut seen) = (0, std::collections::BTreeSet::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", file.display(), n + 1);
            let id = id_of(line);
            std::fs::write(d.join("res.jsonl"), format!("{line}\n")).unwrap();
            let req = serde_json::json!({"custom_id": id, "body": {"n": n}});
            std::fs::write(d.join("req.jsonl"), format!("{req}\n")).unwrap();
            let _ = std::fs::remove_file(d.join("retry.jsonl"));
            let o = run_in(
                d,
                &[
                    "join",
                    "req.jsonl",
                    "res.jsonl",
                    "-o",
                    "out.jsonl",
                    "--retry",
                    "retry.jsonl",
                    "-q",
                ],
                None,
            );
            let (joined, retry) = match o.status.code() {
                Some(0) => {
                    let out = read_lines(&d.join("out.jsonl"));
                    assert_eq!(out.len(), 1, "{at}");
                    let v: Value = serde_json::from_str(&out[0]).unwrap();
                    let verdict = match v["status"].as_str().unwrap() {
                        "ok" => Verdict::Ok,
                        "failed" => Verdict::Failed(v["error"]["code"].as_str().unwrap().into()),
                        s => panic!("{at}: status {s}"),
                    };
                    let retry = !read_lines(&d.join("retry.jsonl")).is_empty();
                    (verdict, retry)
                }
                Some(2) => {
                    assert!(stderr(&o).contains("res.jsonl:1"), "{at}: {}", stderr(&o));
                    (Verdict::Unusable, false)
                }
                c => panic!("{at}: join exit {c:?}: {}", stderr(&o)),
            };
            let raw = extract(d, "res.jsonl");
            assert_eq!(joined, raw.verdict, "{at}: join vs extract");
            seen.insert(format!("{joined:?}").split('(').next().unwrap().to_string());
            if joined == Verdict::Ok {
                assert!(!retry, "{at}: an ok line is not retried");
            }
            if joined != Verdict::Unusable {
                // extract reads join's line: same verdict, same records.
                let via_join = extract(d, "out.jsonl");
                assert_eq!(
                    via_join.verdict, raw.verdict,
                    "{at}: extract of join's line"
                );
                assert_eq!(via_join.records, raw.records, "{at}: records via join");
            }
            lines += 1;
        }
    }
    assert!(lines > 200, "{lines} lines");
    // The fixtures cover all three verdicts.
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn disputed_shapes_get_the_documented_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("results/disputed.jsonl")).unwrap();
    let want = [
        ("no-status", Verdict::Failed("missing_status_code".into())),
        ("body-error", Verdict::Failed("server_error".into())),
        ("body-error-null", Verdict::Ok),
        ("body-null", Verdict::Failed("missing_body".into())),
        ("no-body", Verdict::Failed("missing_body".into())),
        ("anth-no-message", Verdict::Failed("missing_message".into())),
        (
            "anth-message-null",
            Verdict::Failed("missing_message".into()),
        ),
        ("error-string", Verdict::Failed("error".into())),
        ("http-3xx", Verdict::Ok),
        ("gemini-ok", Verdict::Ok),
        ("gemini-max", Verdict::Ok),
        ("gemini-error", Verdict::Failed("400".into())),
        ("status-string", Verdict::Unusable),
        ("result-type-odd", Verdict::Failed("paused".into())),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), want.len());
    for (line, (id, verdict)) in lines.iter().zip(want) {
        assert_eq!(id_of(line), id);
        std::fs::write(dir.path().join("one.jsonl"), format!("{line}\n")).unwrap();
        assert_eq!(extract(dir.path(), "one.jsonl").verdict, verdict, "{id}");
    }
}
