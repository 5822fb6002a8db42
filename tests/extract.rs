//! Integration tests of `batchline extract`, running the real binary on the fixtures
//! under fixtures/results/ (written by make_results.py) and on generated result files.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::{json, Value};

fn results(name: &str) -> String {
    fixture(&format!("results/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs extract with stdout as output and the rejects in `dir/rej.jsonl`; returns the
/// records, the rejects and the process output.
fn extract(dir: &Path, args: &[&str]) -> (Vec<Value>, Vec<Value>, Output) {
    let mut all = vec!["extract", "--rejects", "rej.jsonl", "-q"];
    all.extend_from_slice(args);
    let o = run_in(dir, &all, None);
    assert!(o.status.code().unwrap_or(9) <= 1, "{}", stderr(&o));
    let rejects = std::fs::read_to_string(dir.join("rej.jsonl")).unwrap_or_default();
    (parse_lines(&stdout(&o)), parse_lines(&rejects), o)
}

fn by_id<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["custom_id"] == id).collect()
}

fn reject_reason(rejects: &[Value], id: &str) -> Vec<String> {
    rejects
        .iter()
        .filter(|r| r["custom_id"] == id)
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect()
}

/// Key order of a JSON object line as written.
fn keys_of(line: &str) -> Vec<String> {
    let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    // serde_json without preserve_order sorts keys: read them from the text instead.
    let mut keys: Vec<(usize, String)> = v
        .keys()
        .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn chat_completions_every_case() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, o) = extract(tmp.path(), &[&results("chat.jsonl")]);
    assert_eq!(o.status.code(), Some(1), "rejects give exit status 1");
    let out = stdout(&o);
    // Raw compact value text, numbers as written, key order kept.
    assert!(
        out.contains(r#""value":{"name":"Ada","age":36,"id":12345678901234567890}"#),
        "{out}"
    );
    assert!(
        out.contains(r#"[{"q":"2+2","a":4.0},{"q":"1e5","a":1e5}]"#),
        "{out}"
    );
    assert_eq!(
        keys_of(out.lines().next().unwrap()),
        ["custom_id", "choice", "value", "repairs", "truncated"]
    );
    let fence = &by_id(&rec, "chat-fence")[0];
    assert_eq!(
        fence["repairs"],
        json!(["code_fence", "prose", "trailing_comma"])
    );

    let two = by_id(&rec, "chat-two-choices");
    assert_eq!(two.len(), 2);
    assert_eq!(
        (two[0]["choice"].as_u64(), two[1]["choice"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(two[1]["value"], json!({"label": "negative", "sure": true}));

    let tools = by_id(&rec, "chat-tools");
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["tool"], "get_weather");
    assert_eq!(tools[0]["tool_call"], 0);
    assert_eq!(tools[1]["tool_call"], 1);
    assert_eq!(tools[1]["value"], json!({"tz": "Europe/Paris"}));

    let cut = &by_id(&rec, "chat-truncated")[0];
    assert_eq!(cut["truncated"], true);
    // The cut element is dropped whole: its string is never completed or replaced by
    // "", and no partial record is returned.
    assert_eq!(cut["value"], json!([{"id": 1, "text": "complete"}]));

    assert_eq!(
        by_id(&rec, "chat-parts")[0]["value"],
        json!({"parts": [1, 2]})
    );
    let several = by_id(&rec, "chat-several");
    assert_eq!(several.len(), 3);
    for (i, r) in several.iter().enumerate() {
        assert_eq!(r["part"], i);
        assert_eq!(r["value"], json!({"n": i + 1}));
    }
    assert_eq!(
        by_id(&rec, "chat-think")[0]["value"],
        json!({"final": "yes"})
    );

    assert_eq!(reject_reason(&rej, "chat-refusal"), ["refusal"]);
    let refusal = rej
        .iter()
        .find(|r| r["custom_id"] == "chat-refusal")
        .unwrap();
    assert_eq!(refusal["text"], "I'm sorry, but I can't help with that.");
    assert_eq!(reject_reason(&rej, "chat-filtered"), ["no_text"]);
    assert_eq!(reject_reason(&rej, "chat-prose"), ["no_json"]);
    assert_eq!(reject_reason(&rej, "chat-percent"), ["percent"]);
    assert_eq!((rec.len(), rej.len()), (12, 4), "{rec:?} {rej:?}");
}

#[test]
fn responses_completions_anthropic_errors_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, _) = extract(
        tmp.path(),
        &[
            &results("responses.jsonl"),
            &results("completions.jsonl"),
            &results("anthropic.jsonl"),
            &results("errors.jsonl"),
            &results("embeddings.jsonl"),
        ],
    );
    let one = |id: &str| {
        let v = by_id(&rec, id);
        assert_eq!(v.len(), 1, "{id}: {v:?}");
        v[0].clone()
    };
    assert_eq!(
        one("resp-ok")["value"],
        json!({"city": "Lyon", "pop": 522250})
    );
    let inc = one("resp-incomplete");
    assert_eq!(inc["value"], json!({"items": ["a", "b"]}));
    assert_eq!(inc["truncated"], true);
    assert_eq!(one("resp-function")["tool"], "lookup");
    assert_eq!(reject_reason(&rej, "resp-refusal"), ["refusal"]);

    let c = by_id(&rec, "cmpl-1");
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["value"], json!({"answer": 42}));
    // `{"answer": 4` cut: the number is never completed, and `{}` is no data: refused.
    assert_eq!(reject_reason(&rej, "cmpl-1"), ["truncated"]);

    assert_eq!(
        one("anth-ok")["value"],
        json!({"title": "Dune", "year": 1965})
    );
    let mt = one("anth-max-tokens");
    assert_eq!(mt["truncated"], true);
    assert_eq!(mt["value"], json!([{"k": 1}, {"k": 2}]));
    let tool = one("anth-tool");
    assert_eq!(tool["tool"], "record");
    let raw = stdout_line_of(&rec, "anth-tool");
    assert!(raw.contains("12345678901234567890"), "{raw}");

    for (id, code) in [
        ("anth-errored", "invalid_request_error"),
        ("anth-canceled", "canceled"),
        ("anth-expired", "expired"),
        ("err-400", "integer_above_max_value"),
        ("err-expired", "batch_expired"),
        ("err-500", "server_error"),
    ] {
        let r = rej.iter().find(|r| r["custom_id"] == id).unwrap();
        assert_eq!(r["reason"], "api_error", "{id}");
        assert_eq!(r["error_code"], code, "{id}");
        assert!(!r["message"].as_str().unwrap().is_empty());
        assert!(
            r["file"].is_string(),
            "several inputs: rejects name their file"
        );
    }
    let e400 = rej.iter().find(|r| r["custom_id"] == "err-400").unwrap();
    assert_eq!(e400["status_code"], 400);
    assert!(e400["message"]
        .as_str()
        .unwrap()
        .contains("integer above maximum value"));
    assert_eq!(reject_reason(&rej, "emb-1"), ["no_text"]);
}

fn stdout_line_of(records: &[Value], id: &str) -> String {
    serde_json::to_string(by_id(records, id)[0]).unwrap()
}

#[test]
fn rejects_have_the_shared_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, rej, _) = extract(tmp.path(), &[&results("bad.jsonl")]);
    assert_eq!(rej.len(), 2, "{rej:?}");
    for r in &rej {
        for k in ["file", "line", "offset", "reason", "message", "text"] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    // Not JSON: the shared code; JSON but not a result line: extract's own.
    assert_eq!(rej[0]["reason"], "invalid_json");
    assert_eq!(rej[1]["reason"], "bad_line");
    let text = std::fs::read_to_string(fixture("results/bad.jsonl")).unwrap();
    for r in &rej {
        let off = r["offset"].as_u64().unwrap() as usize;
        let line = r["line"].as_u64().unwrap() as usize;
        let src = text.lines().nth(line - 1).unwrap();
        assert!(text[off..].starts_with(src));
        assert_eq!(r["text"], src);
    }
    // custom_id only where known (the shape of every command's rejects).
    assert_eq!(rej[0].get("custom_id"), None);
    assert_eq!(rej[1]["custom_id"], "no-response");
    let all = std::fs::read_to_string(tmp.path().join("rej.jsonl")).unwrap();
    let mut lines = all.lines();
    assert_eq!(
        keys_of(lines.next().unwrap()),
        ["file", "line", "offset", "reason", "message", "text"]
    );
    assert_eq!(
        keys_of(lines.next().unwrap()),
        [
            "file",
            "line",
            "offset",
            "reason",
            "message",
            "custom_id",
            "text"
        ]
    );
}

#[test]
fn strict_accepts_only_stripping_repairs() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, _) = extract(tmp.path(), &["--strict", &results("chat.jsonl")]);
    for r in &rec {
        for rep in r["repairs"].as_array().unwrap() {
            let rep = rep.as_str().unwrap();
            assert!(
                [
                    "code_fence",
                    "tag_block",
                    "prose",
                    "think_block",
                    "bom",
                    "several_values"
                ]
                .contains(&rep),
                "{r}"
            );
        }
        assert_eq!(r["truncated"], false);
    }
    assert_eq!(reject_reason(&rej, "chat-fence"), ["not_strict"]);
    assert_eq!(reject_reason(&rej, "chat-truncated"), ["not_strict"]);
    // choice 0 is clean JSON, choice 1 needs single quotes and Python literals.
    assert_eq!(by_id(&rec, "chat-two-choices").len(), 1);
    assert_eq!(reject_reason(&rej, "chat-two-choices"), ["not_strict"]);
    assert_eq!(by_id(&rec, "chat-think").len(), 1);
}

#[test]
fn explode_root_pointer_and_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, _) = extract(tmp.path(), &[&results("scenarios.jsonl"), "--explode"]);
    let arr = by_id(&rec, "sc-array");
    assert_eq!(arr.len(), 2);
    assert_eq!(
        (arr[0]["index"].as_u64(), arr[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(arr[1]["value"], json!({"prompt": "p2", "answer": "a2"}));
    // One object per line is a list by its form.
    let lines = by_id(&rec, "sc-lines");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["index"], 1);
    // A double-encoded array where --explode expects one is decoded once, and says so.
    let dbl = by_id(&rec, "sc-double");
    assert_eq!(dbl[0]["value"], json!({"prompt": "p8", "answer": "a8"}));
    assert!(dbl[0]["repairs"]
        .as_array()
        .unwrap()
        .contains(&json!("double_encoded")));
    // A cut array: the cut element is dropped whole; the last kept element carries
    // `truncated` (the list was cut after it).
    let cut = by_id(&rec, "sc-cut");
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["truncated"], true);
    assert_eq!(cut[0]["value"], json!({"prompt": "p9", "answer": "a9"}));
    assert_eq!(reject_reason(&rej, "sc-wrapped"), ["not_array"]);
    assert_eq!(reject_reason(&rej, "sc-empty"), ["empty_array"]);

    let (rec, rej, _) = extract(
        tmp.path(),
        &["--explode", "/scenarios", &results("scenarios.jsonl")],
    );
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["custom_id"], "sc-wrapped");
    assert_eq!(rec[0]["index"], 0);
    assert!(rej.iter().all(|r| r["reason"] == "not_array"));
    // `--explode FILE`: the value is not a pointer, so it is an input.
    let (rec2, _, _) = extract(tmp.path(), &["--explode", &results("scenarios.jsonl")]);
    assert!(rec2.len() > 5);
}

#[test]
fn schema_validates_and_decodes_double_encoded() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, _) = extract(
        tmp.path(),
        &[
            &results("scenarios.jsonl"),
            "--schema",
            &results("scenarios.schema.json"),
        ],
    );
    let dbl = by_id(&rec, "sc-double");
    assert_eq!(dbl[0]["value"], json!([{"prompt": "p8", "answer": "a8"}]));
    assert_eq!(dbl[0]["repairs"], json!(["double_encoded"]));
    let bad = rej.iter().find(|r| r["custom_id"] == "sc-bad").unwrap();
    assert_eq!(bad["reason"], "schema");
    let detail = bad["message"].as_str().unwrap();
    assert!(
        detail.contains("/0/answer") && detail.contains("string"),
        "{detail}"
    );
    assert_eq!(bad["value"][0]["answer"], 6);
    assert_eq!(reject_reason(&rej, "sc-wrapped"), ["schema"]);

    // Per element with --explode; strict refuses the decoding.
    let (rec, rej, _) = extract(
        tmp.path(),
        &[
            &results("scenarios.jsonl"),
            "--explode",
            "--schema",
            &results("scenario.schema.json"),
        ],
    );
    assert_eq!(by_id(&rec, "sc-bad").len(), 1);
    assert_eq!(by_id(&rec, "sc-bad")[0]["index"], 1);
    // The cut element was dropped whole, so what is left is complete and valid.
    assert!(reject_reason(&rej, "sc-cut").is_empty());
    assert_eq!(by_id(&rec, "sc-cut").len(), 1);
    let (_, rej, _) = extract(
        tmp.path(),
        &[
            &results("scenarios.jsonl"),
            "--strict",
            "--schema",
            &results("scenarios.schema.json"),
        ],
    );
    assert_eq!(reject_reason(&rej, "sc-double"), ["not_strict"]);
}

#[test]
fn schema_decodes_nested_double_encoded_fields_keeping_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = json!({
        "type": "object",
        "properties": {"data": {"type": "object", "properties": {"n": {"type": "integer"}}},
                       "note": {"type": "string"}}
    });
    std::fs::write(tmp.path().join("s.json"), schema.to_string()).unwrap();
    let content =
        r#"{"data": "{\"n\": 12345678901234567890, \"x\": 1e5}", "note": "{\"not\": 1}"}"#;
    let line = json!({"custom_id": "n1", "response": {"status_code": 200, "body": {
        "choices": [{"index": 0, "message": {"content": content}, "finish_reason": "stop"}]}}});
    std::fs::write(tmp.path().join("in.jsonl"), format!("{line}\n")).unwrap();
    let (rec, rej, o) = extract(tmp.path(), &["in.jsonl", "--schema", "s.json"]);
    assert!(rej.is_empty(), "{rej:?}");
    let out = stdout(&o);
    assert!(
        out.contains(
            r#""value":{"data":{"n":12345678901234567890,"x":1e5},"note":"{\"not\": 1}"}"#
        ),
        "{out}"
    );
    assert_eq!(rec[0]["repairs"], json!(["double_encoded"]));
}

#[test]
fn text_field_reads_any_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let (rec, rej, _) = extract(
        tmp.path(),
        &[
            &results("other.jsonl"),
            "--text-field",
            "/output/text",
            "--id-field",
            "/id",
        ],
    );
    assert_eq!(rec.len(), 2);
    assert_eq!(rec[0]["custom_id"], "7");
    assert_eq!(rec[0]["value"], json!({"ok": true}));
    assert_eq!(rec[1]["value"], json!({"already": ["json"]}));
    assert_eq!(reject_reason(&rej, "x8"), ["no_json"]);
    assert_eq!(reject_reason(&rej, "10"), ["no_text"]);
    let o = run_in(
        tmp.path(),
        &["extract", &results("other.jsonl"), "--text-field", "output"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "a pointer must start with /");
}

#[test]
fn stdin_zstd_output_file_and_threads_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = std::fs::read(fixture("results/chat.jsonl")).unwrap();
    let base = run_in(tmp.path(), &["extract", "-q", &results("chat.jsonl")], None);
    let piped = run_in(tmp.path(), &["extract", "-q", "-"], Some(&chat));
    assert_eq!(stdout(&base), stdout(&piped));
    std::fs::write(
        tmp.path().join("c.jsonl.zst"),
        zstd::encode_all(&chat[..], 3).unwrap(),
    )
    .unwrap();
    let z = run_in(tmp.path(), &["extract", "-q", "c.jsonl.zst"], None);
    assert_eq!(stdout(&base), stdout(&z));
    let one = run_in(
        tmp.path(),
        &["--threads", "1", "extract", "-q", &results("chat.jsonl")],
        None,
    );
    assert_eq!(stdout(&base), stdout(&one));
    let f = run_in(
        tmp.path(),
        &[
            "extract",
            "-q",
            &results("chat.jsonl"),
            "-o",
            "out.jsonl.zst",
        ],
        None,
    );
    assert_eq!(f.status.code(), Some(1));
    let written =
        zstd::decode_all(&std::fs::read(tmp.path().join("out.jsonl.zst")).unwrap()[..]).unwrap();
    assert_eq!(String::from_utf8(written).unwrap(), stdout(&base));
    // A missing second input fails before anything is written.
    let m = run_in(
        tmp.path(),
        &[
            "extract",
            &results("chat.jsonl"),
            "nope.jsonl",
            "-o",
            "m.jsonl",
        ],
        None,
    );
    assert_eq!(m.status.code(), Some(2));
    assert!(!tmp.path().join("m.jsonl").exists());
    // Writing to a device keeps it a device.
    let d = run_in(
        tmp.path(),
        &[
            "extract",
            "-q",
            &results("chat.jsonl"),
            "--rejects",
            "/dev/null",
        ],
        None,
    );
    assert_eq!(d.status.code(), Some(1));
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
}

#[test]
fn clean_input_exits_zero_and_summary_is_json() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "extract",
            "--json",
            &results("responses.jsonl"),
            "-o",
            "out.jsonl",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["command"], "extract");
    assert_eq!(s["lines"], 4);
    assert_eq!(s["texts"], 4);
    assert_eq!(s["records"], 3);
    assert_eq!(s["rejected"], 1);
    assert_eq!(s["rejects"]["refusal"], 1);
    assert_eq!(s["truncated"], 1);
    assert_eq!(s["repairs"]["code_fence"], 1);
    let ok = json!({"custom_id": "z", "response": {"status_code": 200, "body": {
        "choices": [{"index": 0, "message": {"content": "[1, 2]"}, "finish_reason": "stop"}]}}});
    let o = run_in(
        tmp.path(),
        &["extract", "-"],
        Some(format!("{ok}\n\n").as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("extract: 2 lines (1 blank)"),
        "{}",
        stderr(&o)
    );
}

fn gen(dir: &Path, lines: u32) -> (PathBuf, PathBuf) {
    let tool = generator();
    let req = dir.join("r.jsonl");
    let st = std::process::Command::new("python3")
        .arg(&tool)
        .args(["requests", "--lines", &lines.to_string()])
        .stdout(std::fs::File::create(&req).unwrap())
        .status()
        .expect("python3");
    assert!(st.success());
    let (out, err) = (dir.join("o.jsonl"), dir.join("e.jsonl"));
    let st = std::process::Command::new("python3")
        .arg(&tool)
        .args(["results", req.to_str().unwrap(), "--out"])
        .arg(&out)
        .arg("--err")
        .arg(&err)
        .status()
        .unwrap();
    assert!(st.success());
    (out, err)
}

/// Every generated line ends as records or rejects; the summary adds up; a clean answer
/// comes out equal to what the model wrote.
#[test]
#[ignore = "needs python3 and ../shared/tools/gen_batch.py (scripts/test.sh runs this)"]
fn generated_results_are_all_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = gen(tmp.path(), 300);
    let o = run_in(
        tmp.path(),
        &[
            "--json",
            "extract",
            out.to_str().unwrap(),
            err.to_str().unwrap(),
            "-o",
            "rec.jsonl",
            "--rejects",
            "rej.jsonl",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let rec = parse_lines(&std::fs::read_to_string(tmp.path().join("rec.jsonl")).unwrap());
    let rej = parse_lines(&std::fs::read_to_string(tmp.path().join("rej.jsonl")).unwrap());
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(n("records"), rec.len() as u64);
    assert_eq!(n("rejected"), rej.len() as u64);
    assert_eq!(
        n("lines"),
        n("blank") + n("lines_with_records") + n("lines_rejected")
    );
    let by_reason: u64 = s["rejects"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, n("rejected"));

    let mut ids: HashSet<String> = HashSet::new();
    let mut lines = 0;
    let mut contents: HashMap<String, String> = HashMap::new();
    for f in [&out, &err] {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let id = v["custom_id"].as_str().unwrap().to_string();
            if let Some(c) = v
                .pointer("/response/body/choices/0/message/content")
                .and_then(Value::as_str)
            {
                contents.insert(id.clone(), c.to_string());
            }
            ids.insert(id);
            lines += 1;
        }
    }
    assert_eq!(n("lines"), lines);
    let seen: HashSet<String> = rec
        .iter()
        .chain(rej.iter())
        .map(|r| r["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ids, "every line ends as records or rejects");
    // Never invents: a strict-JSON answer comes out as exactly that value.
    let mut checked = 0;
    for r in &rec {
        let id = r["custom_id"].as_str().unwrap();
        if let Some(Ok(v)) = contents.get(id).map(|c| serde_json::from_str::<Value>(c)) {
            assert_eq!(r["value"], v, "{id}");
            assert_eq!(r["repairs"], json!([]));
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(
        s["api_errors"]["batch_expired"].as_u64().unwrap_or(0)
            + s["api_errors"]["integer_above_max_value"]
                .as_u64()
                .unwrap_or(0)
            == s["rejects"]["api_error"].as_u64().unwrap()
    );

    // --explode: every record is one scenario object.
    let o = run_in(
        tmp.path(),
        &["extract", "-q", out.to_str().unwrap(), "--explode"],
        None,
    );
    for r in parse_lines(&stdout(&o)) {
        let v = r["value"].as_object().unwrap_or_else(|| panic!("{r}"));
        assert!(r["index"].is_u64());
        if r["truncated"] == false {
            assert!(
                v.contains_key("prompt")
                    && v.contains_key("single_token")
                    && v.contains_key("multi_token"),
                "{r}"
            );
        }
    }
}
