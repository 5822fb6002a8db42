//! Integration tests of `batchline validate`, running the real binary with the committed
//! tokenizers (fixtures/tokenizers/claude.json, mistral-7b.json) and the embedded
//! o200k_base, on fixtures/scenarios.jsonl (200 records of `gen_batch.py scenarios --lines
//! 200 --seed 7`). fixtures/scenarios_golden.json holds the counts and the valid set
//! computed with the Python `tokenizers` library (scripts/golden_validate.py).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{json, Value};

const R_SINGLE: &str = r#"same(tokens(prompt + " " + single_token))"#;
const R_MULTI: &str = r#"same(tokens(prompt + " " + multi_token))"#;
const R_ONE: &str =
    r#"tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1"#;
const E_SINGLE: &str = r#"tokens(prompt + " " + single_token)"#;
const E_MULTI: &str = r#"tokens(prompt + " " + multi_token)"#;

fn tok_path(name: &str) -> String {
    fixture(&format!("tokenizers/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn scenarios() -> String {
    fixture("scenarios.jsonl").to_str().unwrap().to_string()
}

/// `--tokenizer` arguments for claude, mistral and o200k (the golden file's names).
fn three_tokenizers() -> Vec<String> {
    vec![
        "--tokenizer".into(),
        format!("claude={}", tok_path("claude.json")),
        "--tokenizer".into(),
        format!("mistral={}", tok_path("mistral-7b.json")),
        "--tokenizer".into(),
        "o200k=o200k_base".into(),
    ]
}

fn acceptance_rules() -> Vec<String> {
    [R_SINGLE, R_MULTI, R_ONE]
        .iter()
        .flat_map(|r| ["--rule".to_string(), r.to_string()])
        .collect()
}

fn run(dir: &Path, args: &[String], stdin: Option<&[u8]>) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in(dir, &args, stdin)
}

fn validate_args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["validate".into()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn id_of(v: &Value) -> (String, i64) {
    (
        v["custom_id"].as_str().unwrap().to_string(),
        v["index"].as_i64().unwrap(),
    )
}

fn golden() -> Value {
    read_json(&fixture("scenarios_golden.json"))
}

#[test]
fn acceptance_rules_match_python_tokenizers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = validate_args(&[
        &scenarios(),
        "-o",
        "valid.jsonl",
        "--rejects",
        "rej.jsonl",
        "--report",
        "report.json",
        "--annotate",
    ]);
    args.extend(three_tokenizers());
    args.extend(acceptance_rules());
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let g = golden();

    // The valid set, in input order, is the golden one.
    let valid = parse_lines(&std::fs::read_to_string(tmp.path().join("valid.jsonl")).unwrap());
    let got: Vec<(String, i64)> = valid.iter().map(id_of).collect();
    let want: Vec<(String, i64)> = g["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_i64().unwrap()))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // Every count of every record (annotations of the valid ones, rejects' counts of the
    // others) equals the Python library's.
    let rejects = parse_lines(&std::fs::read_to_string(tmp.path().join("rej.jsonl")).unwrap());
    assert_eq!(valid.len() + rejects.len(), 200);
    let mut counts: HashMap<(String, i64), Value> = HashMap::new();
    for v in &valid {
        counts.insert(id_of(v), v["_tokens"].clone());
    }
    for r in &rejects {
        let rec: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
        counts.insert(id_of(&rec), r["counts"].clone());
    }
    let mut sums: HashMap<&str, u64> = HashMap::new();
    for rec in g["records"].as_array().unwrap() {
        let c = &counts[&id_of(rec)];
        for name in ["claude", "mistral", "o200k"] {
            assert_eq!(c[E_SINGLE][name], rec["single"][name], "{rec}");
            assert_eq!(c[E_MULTI][name], rec["multi"][name], "{rec}");
            *sums.entry(name).or_default() +=
                rec["single"][name].as_u64().unwrap() + rec["multi"][name].as_u64().unwrap();
        }
    }

    // The report.
    let rep = read_json(&tmp.path().join("report.json"));
    assert_eq!(rep["records"], 200);
    assert_eq!(rep["valid"], want.len());
    assert_eq!(rep["invalid"], 200 - want.len());
    assert_eq!(rep["invalid_json"], 0);
    assert_eq!(rep["stopped_early"], false);
    let rate = rep["success_rate"].as_f64().unwrap();
    assert!((rate - want.len() as f64 / 200.0).abs() < 0.001);
    for name in ["claude", "mistral", "o200k"] {
        assert_eq!(rep["tokens"][name].as_u64().unwrap(), sums[name]);
    }
    let failures = rep["failures"].as_object().unwrap();
    assert_eq!(failures.len(), 3);
    for rule in [R_SINGLE, R_MULTI, R_ONE] {
        let n = rejects
            .iter()
            .filter(|r| {
                r["failed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["rule"] == rule)
            })
            .count();
        assert_eq!(failures[rule], n, "{rule}");
    }
    assert!(rep["throughput"]["bytes"].as_u64().unwrap() > 40_000);
    assert!(rep["records_per_s"].as_f64().is_some());
    assert_eq!(rep["tokenizers"][2]["source"], "o200k_base");
}

#[test]
fn valid_records_are_written_as_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = validate_args(&[&scenarios(), "-q"]);
    args.extend(three_tokenizers());
    args.extend(acceptance_rules());
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let input = std::fs::read_to_string(fixture("scenarios.jsonl")).unwrap();
    let wanted: Vec<(String, i64)> = golden()["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_i64().unwrap()))
        .collect();
    let expect: String = input
        .lines()
        .filter(|l| wanted.contains(&id_of(&serde_json::from_str(l).unwrap())))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout(&o), expect);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn stdin_and_zst_inputs_give_the_same_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(fixture("scenarios.jsonl")).unwrap();
    std::fs::write(
        tmp.path().join("in.jsonl.zst"),
        zstd::encode_all(&data[..], 3).unwrap(),
    )
    .unwrap();
    let with = |input: &str, stdin: Option<&[u8]>| {
        let mut args = validate_args(&[input, "-q"]);
        args.extend(three_tokenizers());
        args.extend(acceptance_rules());
        let o = run(tmp.path(), &args, stdin);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        stdout(&o)
    };
    let from_file = with(&scenarios(), None);
    assert_eq!(
        from_file.lines().count(),
        golden()["valid"].as_array().unwrap().len()
    );
    assert_eq!(with("-", Some(&data)), from_file);
    assert_eq!(with("in.jsonl.zst", None), from_file);
}

/// A ~10 MB input (three reader chunks) made of the fixture repeated, numbered anew.
fn big_input(dir: &Path) -> String {
    let input = std::fs::read_to_string(fixture("scenarios.jsonl")).unwrap();
    let mut out = String::new();
    let mut n = 0;
    for _ in 0..250 {
        for l in input.lines() {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["custom_id"] = json!(format!("r{n}"));
            out.push_str(&v.to_string());
            out.push('\n');
            n += 1;
        }
    }
    std::fs::write(dir.join("big.jsonl"), out).unwrap();
    "big.jsonl".into()
}

#[test]
fn target_is_deterministic_across_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let big = big_input(tmp.path());
    let claude = format!("claude={}", tok_path("claude.json"));
    let base = |extra: &[&str]| {
        let mut a = validate_args(&[&big, "--tokenizer", &claude, "--tokenizer", "o200k_base"]);
        a.extend(acceptance_rules());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Full run: every valid record.
    let o = run(
        tmp.path(),
        &base(&["-o", "all.jsonl", "--report", "all.json"]),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = read_lines(&tmp.path().join("all.jsonl"));
    let total = all.len();
    assert!(total > 1000, "{total}");
    // A target in the second reader chunk.
    let target = total * 3 / 5;
    let t = target.to_string();
    let mut outs = Vec::new();
    for threads in ["1", "4"] {
        let out = format!("t{threads}.jsonl");
        let rej = format!("r{threads}.jsonl");
        let rep = format!("p{threads}.json");
        let o = run(
            tmp.path(),
            &base(&[
                "--target",
                &t,
                "--threads",
                threads,
                "-o",
                &out,
                "--rejects",
                &rej,
                "--report",
                &rep,
            ]),
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("target of"), "{}", stderr(&o));
        let lines = read_lines(&tmp.path().join(&out));
        assert_eq!(lines.len(), target);
        assert_eq!(lines[..], all[..target]);
        let report = read_json(&tmp.path().join(&rep));
        assert_eq!(report["valid"], target);
        assert_eq!(report["stopped_early"], true);
        // Records read: up to the target-th valid record, whose line is the last one read.
        let last: Value = serde_json::from_str(&lines[target - 1]).unwrap();
        let last_n: u64 = last["custom_id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(report["records"], last_n + 1);
        assert_eq!(report["lines"], last_n + 1);
        let rejects = read_lines(&tmp.path().join(&rej));
        assert_eq!(rejects.len() + target, last_n as usize + 1);
        outs.push((
            std::fs::read(tmp.path().join(&out)).unwrap(),
            std::fs::read(tmp.path().join(&rej)).unwrap(),
            report["records"].clone(),
            report["failures"].clone(),
            report["tokens"].clone(),
        ));
    }
    assert!(outs[0] == outs[1], "1 and 4 threads differ");
    // Not reached: the run ends with the input and says so.
    let o = run(
        tmp.path(),
        &base(&["--target", &(total + 1).to_string(), "-o", "x.jsonl"]),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not reached"), "{}", stderr(&o));
    assert_eq!(read_lines(&tmp.path().join("x.jsonl")).len(), total);
}

#[test]
fn rules_file_with_names_and_comments() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("rules.txt"),
        format!(
            "# the acceptance rules\n\nsame_single: {R_SINGLE}\n   # indented comment\nsame_multi: {R_MULTI}\none_more: {R_ONE}\n"
        ),
    )
    .unwrap();
    let mut args = validate_args(&[
        &scenarios(),
        "--rules",
        "rules.txt",
        "--rejects",
        "rej.jsonl",
        "--json",
        "-o",
        "out.jsonl",
    ]);
    args.extend(three_tokenizers());
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // --json: the report on stdout (the data goes to a file).
    let rep: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let names: Vec<&String> = rep["failures"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["same_single", "same_multi", "one_more"]); // rule order (preserve_order)
    assert_eq!(rep["rules"][0]["name"], "same_single");
    assert_eq!(rep["rules"][0]["rule"], R_SINGLE);
    assert_eq!(rep["rules"][2]["name"], "one_more");
    assert_eq!(rep["valid"], golden()["valid"].as_array().unwrap().len());
    let rejects = parse_lines(&std::fs::read_to_string(tmp.path().join("rej.jsonl")).unwrap());
    let one_more: Vec<&Value> = rejects
        .iter()
        .filter(|r| {
            r["failed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["rule"] == "one_more")
        })
        .collect();
    assert_eq!(rep["failures"]["one_more"], one_more.len());
    assert!(one_more[0]["message"]
        .as_str()
        .unwrap()
        .contains("one_more"));
    assert_eq!(one_more[0]["reason"], "rules_failed");
    // Rule order in the summary's failures object is the rule order (raw text).
    let raw = stdout(&o);
    let p = |k: &str| raw.find(&format!("\"{k}\":")).unwrap();
    let f = raw.find("\"failures\"").unwrap();
    let (a, b, c) = (p("same_single"), p("same_multi"), p("one_more"));
    assert!(f < a && a < b && b < c, "{raw}");
}

#[test]
fn rule_syntax_errors_are_reported_with_their_position_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = validate_args(&[
        "-", // stdin is never read
        "-o",
        "out.jsonl",
        "--tokenizer",
        "o200k_base",
        "--rule",
        R_SINGLE,
        "--rule",
        r#"tokens(prompt + ) == 3"#,
    ]);
    args.push("--rules".into());
    args.push("nope.txt".into());
    let o = run(tmp.path(), &args, Some(b"not json at all\n"));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("rule 2, column 17:"), "{err}");
    assert!(
        err.contains("tokens(prompt + ) == 3\n                  ^"),
        "{err}"
    );
    assert!(!tmp.path().join("out.jsonl").exists());

    std::fs::write(
        tmp.path().join("rules.txt"),
        "# comment\nok: len(prompt) > 0\nbad: len(prompt) >> 0\n",
    )
    .unwrap();
    let args = validate_args(&[&scenarios(), "--rules", "rules.txt", "-o", "out.jsonl"]);
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("rules.txt line 3, column"), "{err}");
    assert!(err.contains("bad: len(prompt) >> 0\n"), "{err}");
    assert!(!tmp.path().join("out.jsonl").exists());

    // A rule that is a value, not a condition; no rule at all; tokens() without tokenizer.
    for (rule, msg) in [
        ("len(prompt)", "must be a condition"),
        (R_SINGLE, "no tokenizer"),
    ] {
        let args = validate_args(&[&scenarios(), "--rule", rule]);
        let o = run(tmp.path(), &args, None);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(msg), "{}", stderr(&o));
    }
    let o = run(tmp.path(), &validate_args(&[&scenarios()]), None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no rule given"), "{}", stderr(&o));
}

#[test]
fn missing_or_malformed_tokenizer_is_a_clear_error_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.json"), "{\"model\": 3}").unwrap();
    for (spec, msg) in [
        (
            "llama=/no/such/tokenizer.json",
            "cannot read tokenizer file /no/such/tokenizer.json",
        ),
        ("bad=bad.json", "malformed tokenizer file bad.json"),
    ] {
        let mut args = validate_args(&["-", "-o", "out.jsonl", "--tokenizer", spec]);
        args.extend(acceptance_rules());
        let o = run(tmp.path(), &args, Some(b"{\"prompt\": \"x\"}\n"));
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert!(err.contains(msg), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!tmp.path().join("out.jsonl").exists());
    }
}

#[test]
fn missing_fields_bad_lines_and_rejects_content() {
    let tmp = tempfile::tempdir().unwrap();
    let input = concat!(
        r#"{"custom_id": "a", "prompt": "Hello world", "single_token": "it", "multi_token": "itness"}"#,
        "\n",
        r#"{"custom_id": "b", "prompt": "Hello world", "single_token": "it"}"#,
        "\n\n",
        "not json\n",
        "[1, 2]\n",
        r#"{"custom_id": 7, "prompt": "Hello", "single_token": "x", "multi_token": 3}"#,
        "\n",
    );
    std::fs::write(tmp.path().join("in.jsonl"), input).unwrap();
    let claude = format!("claude={}", tok_path("claude.json"));
    let args = validate_args(&[
        "in.jsonl",
        "--tokenizer",
        &claude,
        "--tokenizer",
        "o200k_base",
        "--rule",
        "ok: tokens(prompt) >= 1",
        "--rule",
        &format!("one: {R_ONE}"),
        "--rejects",
        "rej.jsonl",
        "--report",
        "rep.json",
    ]);
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // The unreadable lines are echoed on stderr with their position.
    let err = stderr(&o);
    assert!(err.contains("in.jsonl:4:"), "{err}");
    assert!(err.contains("in.jsonl:5:"), "{err}");
    let rejects = parse_lines(&std::fs::read_to_string(tmp.path().join("rej.jsonl")).unwrap());
    assert_eq!(rejects.len(), 4, "{rejects:?}");

    let b = &rejects[0];
    assert_eq!(b["line"], 2);
    assert_eq!(b["custom_id"], "b");
    assert_eq!(b["reason"], "rules_failed");
    assert_eq!(b["message"], "failed: one");
    assert_eq!(b["file"], "in.jsonl");
    assert_eq!(b["failed"][0]["rule"], "one");
    assert!(
        b["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field multi_token"),
        "{b}"
    );
    // The counts that could be made are there (tokens(prompt) for rule ok).
    let cp = &b["counts"]["tokens(prompt)"];
    assert!(cp["claude"].as_u64().unwrap() >= 2, "{b}");
    assert!(cp["o200k_base"].as_u64().unwrap() >= 2, "{b}");
    assert_eq!(b["text"], input.lines().nth(1).unwrap());

    let nj = &rejects[1];
    assert_eq!(nj["line"], 4);
    assert_eq!(nj["reason"], "invalid_json");
    assert!(
        nj["message"].as_str().unwrap().starts_with("invalid JSON"),
        "{nj}"
    );
    // Unreadable lines have the shared shape only (no rules were evaluated).
    assert_eq!(nj.get("failed"), None);
    assert_eq!(nj["text"], "not json");
    assert!(nj.get("custom_id").is_none());
    let arr = &rejects[2];
    assert_eq!(
        arr["message"],
        "invalid JSON: the line is an array, not an object"
    );

    let seven = &rejects[3];
    assert_eq!(seven["custom_id"], "7");
    assert!(
        seven["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot add string and int"),
        "{seven}"
    );
    let out = stdout(&o);
    assert_eq!(out, format!("{}\n", input.lines().next().unwrap()));

    let rep = read_json(&tmp.path().join("rep.json"));
    assert_eq!(rep["lines"], 6);
    assert_eq!(rep["blank"], 1);
    assert_eq!(rep["records"], 5);
    assert_eq!(rep["valid"], 1);
    assert_eq!(rep["invalid"], 4);
    assert_eq!(rep["invalid_json"], 2);
    assert_eq!(rep["failures"]["one"], 2);
    assert_eq!(rep["failures"]["ok"], 0);
}

#[test]
fn annotate_adds_the_counts_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"prompt":"a b c","n":1.50,  "single_token": "x"}"#,
        r#"{"prompt": "a b c", "_tokens": {"old": 1}, "z": [1, 2]}"#,
    ];
    let input = format!("{}\r\n{}", lines[0], lines[1]);
    std::fs::write(tmp.path().join("in.jsonl"), &input).unwrap();
    let args = validate_args(&[
        "in.jsonl",
        "--tokenizer",
        "o200k_base",
        "--tokenizer",
        "cl=cl100k_base",
        "--rule",
        "same(tokens(prompt))",
        "--rule",
        "tokens(prompt) < 100 and len(prompt) == 5",
        "--annotate",
        "-q",
    ]);
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let got: Vec<&str> = out.lines().collect();
    let ann = r#"{"tokens(prompt)":{"o200k_base":3,"cl":3}}"#;
    assert_eq!(
        got,
        [
            format!(r#"{{"prompt":"a b c","n":1.50,  "single_token": "x","_tokens":{ann}}}"#),
            format!(r#"{{"prompt": "a b c", "_tokens": {ann}, "z": [1, 2]}}"#),
        ]
    );
    // An empty object is annotated too (with no rule using tokens, no counts).
    std::fs::write(tmp.path().join("e.jsonl"), "{}\n{ }\n").unwrap();
    let o = run(
        tmp.path(),
        &validate_args(&["e.jsonl", "--rule", "true", "--annotate", "-q"]),
        None,
    );
    assert_eq!(stdout(&o), "{\"_tokens\":{}}\n{ \"_tokens\":{}}\n");
}

#[test]
fn special_tokens_are_counted_with_special() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("in.jsonl"), "{\"p\": \"hello world\"}\n").unwrap();
    let mistral = format!("m={}", tok_path("mistral-7b.json"));
    let count = |special: bool| {
        let mut args = validate_args(&[
            "in.jsonl",
            "--tokenizer",
            &mistral,
            "--rule",
            "tokens(p) > 0",
            "--annotate",
            "-q",
        ]);
        if special {
            args.push("--special".into());
        }
        let o = run(tmp.path(), &args, None);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v["_tokens"]["tokens(p)"]["m"].as_u64().unwrap()
    };
    // Mistral's post-processor adds <s>.
    assert_eq!(count(true), count(false) + 1);
}

#[test]
fn outputs_must_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let args = validate_args(&[
        &scenarios(),
        "--rule",
        "true",
        "-o",
        "a.jsonl",
        "--rejects",
        "a.jsonl",
    ]);
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("two outputs"), "{}", stderr(&o));
    let args = validate_args(&[&scenarios(), "--rule", "true", "--target", "0"]);
    let o = run(tmp.path(), &args, None);
    assert_eq!(o.status.code(), Some(2));
}
