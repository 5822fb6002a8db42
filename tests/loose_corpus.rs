//! Runs every case of `fixtures/loose/cases.jsonl` through `loose::parse` and reports
//! every mismatch (value, exact text, repairs, truncated flag, refusal reason) before failing.

use batchline::loose::{parse, ParseOptions, Refusal, Repair};
use serde_json::Value;

#[test]
fn corpus() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/loose/cases.jsonl");
    let data = std::fs::read_to_string(path).expect("read corpus");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        n += 1;
        let case: Value = serde_json::from_str(line).expect("corpus line is JSON");
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let text = case["text"].as_str().expect("text");
        let opts = ParseOptions {
            strict: case["strict"].as_bool().unwrap_or(false),
            provider_truncated: case["provider_truncated"].as_bool().unwrap_or(false),
        };
        let got = parse(text, &opts);
        let mut errs = Vec::new();
        match (&got, case["refuse"].as_str()) {
            (Err(r), Some(want)) => {
                if r.reason != want {
                    errs.push(format!(
                        "refusal {:?} ({}), want {want:?}",
                        r.reason, r.detail
                    ));
                }
            }
            (Ok(vals), Some(want)) => {
                let shown: Vec<&str> = vals.iter().map(|v| v.json.as_str()).collect();
                errs.push(format!("got {shown:?}, want refusal {want:?}"));
            }
            (Err(r), None) => errs.push(format!("refused {r}")),
            (Ok(vals), None) => {
                let texts: Vec<&str> = vals.iter().map(|v| v.json.as_str()).collect();
                let parsed: Vec<Value> = vals
                    .iter()
                    .map(|v| {
                        serde_json::from_str(&v.json).unwrap_or_else(|e| {
                            Value::String(format!("INVALID JSON {e}: {}", v.json))
                        })
                    })
                    .collect();
                if let Some(want) = case["expect"].as_array() {
                    if &parsed != want {
                        errs.push(format!(
                            "values {texts:?}, want {}",
                            Value::Array(want.clone())
                        ));
                    }
                }
                if let Some(exact) = case["exact"].as_array() {
                    let want: Vec<&str> = exact.iter().filter_map(|v| v.as_str()).collect();
                    if texts != want {
                        errs.push(format!("text {texts:?}, want exactly {want:?}"));
                    }
                }
                for p in &parsed {
                    if let Value::String(s) = p {
                        if s.starts_with("INVALID JSON") {
                            errs.push(s.clone());
                        }
                    }
                }
                let want_trunc = case["truncated"].as_bool().unwrap_or(false);
                if vals.iter().any(|v| v.truncated) != want_trunc {
                    errs.push(format!("truncated {}, want {want_trunc}", !want_trunc));
                }
                if let Some(want) = case["repairs"].as_array() {
                    let mut want: Vec<&str> = want.iter().filter_map(|v| v.as_str()).collect();
                    want.sort();
                    for v in vals {
                        let mut got: Vec<&str> = v.repairs.iter().map(|r| r.name()).collect();
                        got.sort();
                        if got != want {
                            errs.push(format!("repairs {got:?}, want {want:?}"));
                            break;
                        }
                    }
                }
            }
        }
        if !errs.is_empty() {
            failures.push(format!("{name}: {}", errs.join("; ")));
        }
    }
    for f in &failures {
        eprintln!("MISMATCH {f}");
    }
    eprintln!("{} / {n} corpus cases pass", n - failures.len());
    assert!(n >= 120, "corpus has only {n} cases");
    assert!(failures.is_empty(), "{} corpus mismatches", failures.len());
}

/// Every documented repair and refusal reason is exercised by at least one corpus case.
#[test]
fn corpus_covers_every_repair_and_reason() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/loose/cases.jsonl");
    let data = std::fs::read_to_string(path).expect("read corpus");
    let cases: Vec<Value> = data
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut missing = Vec::new();
    for r in Repair::ALL {
        let hit = cases.iter().any(|c| {
            c["repairs"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == r.name()))
        });
        if !hit {
            missing.push(r.name());
        }
    }
    for reason in Refusal::REASONS {
        if !cases.iter().any(|c| c["refuse"] == *reason) {
            missing.push(reason);
        }
    }
    assert!(missing.is_empty(), "no corpus case for {missing:?}");
}
