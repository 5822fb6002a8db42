//! End-to-end tests of `batchline build`, running the binary in temporary directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_batchline");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn batchline");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.map(|s| s.to_vec()).unwrap_or_default();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The `--json` summary, printed on stderr when the requests go to stdout.
fn summary(text: &str) -> Value {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"command\""))
        .expect("json summary");
    let v: Value = serde_json::from_str(line).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        n("records"),
        n("written") + n("rejected") + n("over_cap"),
        "figures add up: {v}"
    );
    assert_eq!(n("lines"), n("records") + n("blank"), "lines add up: {v}");
    v
}

const RECORDS: &str = r#"{"id":"p1","lang":"en","type":"function","text":"Say \"hi\"\n"}
{"id":"p2","lang":"fr","type":"class","text":"Bonjour é 😀"}

{"id":"p3","lang":"de","type":"function","text":"Hallo","meta":{"n":3,"tags":["a","b"]}}
"#;

#[test]
fn chat_request_lines_are_exact() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "--model",
            "gpt-4o-mini",
            "--system",
            "Be brief.",
            "--template",
            "[{lang}] {text}",
            "--max-tokens",
            "100",
            "--temperature",
            "0.7",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        r#"{"custom_id":"req-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"[en] Say \"hi\"\n"}],"max_tokens":100,"temperature":0.7}}"#
    );
    let v = lines(&r.stdout);
    assert_eq!(v.len(), 3);
    assert_eq!(v[1]["body"]["messages"][1]["content"], "[fr] Bonjour é 😀");
    assert_eq!(
        v[2]["custom_id"], "req-4",
        "ids follow line numbers, blank lines included"
    );
    let s = summary(&r.stderr);
    assert_eq!(
        (
            s["records"].as_u64(),
            s["blank"].as_u64(),
            s["written"].as_u64()
        ),
        (Some(3), Some(1), Some(3))
    );
}

#[test]
fn nested_fields_and_non_string_values() {
    let d = tmp();
    write(
        d.path(),
        "in.jsonl",
        r#"{"a":{"b":"x"},"n":1.5,"l":[1,"two"],"o":{"k" : true}}"#,
    );
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "-t",
            "{a.b}|{n}|{l}|{o}|{l.1}|{{lit}}",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = lines(&r.stdout);
    assert_eq!(
        v[0]["body"]["messages"][0]["content"],
        r#"x|1.5|[1,"two"]|{"k":true}|two|{lit}"#
    );
}

#[test]
fn template_and_system_from_files() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    write(d.path(), "t.txt", "Lang: {lang}\nText: {text}\n");
    write(d.path(), "s.txt", "System {not a field}\n");
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--template",
            "@t.txt",
            "--system",
            "@s.txt",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = lines(&r.stdout);
    assert_eq!(
        v[1]["body"]["messages"][0]["content"],
        "System {not a field}"
    );
    assert_eq!(
        v[1]["body"]["messages"][1]["content"],
        "Lang: fr\nText: Bonjour é 😀"
    );
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "--template", "@missing.txt"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing.txt"), "{}", r.stderr);
}

#[test]
fn text_mode_and_endpoints() {
    let d = tmp();
    let input = b"first prompt\n\n  \nsecond \"one\"\r\n";
    let r = run_in(
        d.path(),
        &["build", "--text", "-m", "m", "--json"],
        Some(input),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = lines(&r.stdout);
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[1]["body"]["messages"],
        json!([{"role": "user", "content": "second \"one\""}])
    );
    assert_eq!(v[1]["custom_id"], "req-4");
    assert_eq!(summary(&r.stderr)["blank"], 2);

    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "m",
            "--endpoint",
            "responses",
            "--system",
            "S",
            "--max-tokens",
            "9",
        ],
        Some(input),
    );
    let v = lines(&r.stdout);
    assert_eq!(v[0]["url"], "/v1/responses");
    assert_eq!(
        v[0]["body"],
        json!({"model": "m", "instructions": "S", "input": "first prompt", "max_output_tokens": 9})
    );

    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "e",
            "--endpoint",
            "embeddings",
            "--param",
            "dimensions=256",
        ],
        Some(input),
    );
    let v = lines(&r.stdout);
    assert_eq!(v[0]["url"], "/v1/embeddings");
    assert_eq!(
        v[0]["body"],
        json!({"model": "e", "input": "first prompt", "dimensions": 256})
    );

    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "c",
            "--endpoint",
            "completions",
            "-t",
            "Q: {text}\nA:",
        ],
        Some(input),
    );
    let v = lines(&r.stdout);
    assert_eq!(v[0]["url"], "/v1/completions");
    assert_eq!(
        v[0]["body"],
        json!({"model": "c", "prompt": "Q: first prompt\nA:"})
    );

    // Options that do not fit an endpoint are refused before anything is read.
    for args in [
        &["--endpoint", "embeddings", "--system", "x"][..],
        &["--endpoint", "embeddings", "--max-tokens", "5"],
        &[
            "--endpoint",
            "completions",
            "--response-format",
            "json_object",
        ],
        &["-t", "{other}"],
        &["--temperature", "3"],
    ] {
        let mut a = vec!["build", "--text", "-m", "m"];
        a.extend_from_slice(args);
        let r = run_in(d.path(), &a, Some(input));
        assert_eq!(r.code, 2, "{args:?} should be refused");
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn messages_field() {
    let d = tmp();
    write(
        d.path(),
        "in.jsonl",
        concat!(
            r#"{"msgs":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#,
            "\n",
            r#"{"msgs":[]}"#,
            "\n",
            r#"{"msgs":"nope"}"#,
            "\n",
            r#"{"msgs":[{"content":"no role"}]}"#,
            "\n",
            r#"{"other":1}"#,
            "\n",
        ),
    );
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--messages-field",
            "msgs",
            "--system",
            "S",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = lines(&r.stdout);
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0]["body"]["messages"],
        json!([{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    );
    let rej = lines(&read(d.path().join("rej.jsonl")));
    let got: Vec<u64> = rej.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(got, [2, 3, 4, 5]);
    assert!(rej[0]["message"]
        .as_str()
        .unwrap()
        .contains("empty messages array"));
    assert_eq!(rej[0]["reason"], "bad_record");
    assert!(rej[3]["message"]
        .as_str()
        .unwrap()
        .contains("record has no field \"msgs\""));
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--messages-field",
            "msgs",
            "-t",
            "{x}",
        ],
        None,
    );
    assert_eq!(r.code, 2);
}

#[test]
fn params_and_stream_refused() {
    let d = tmp();
    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "m",
            "--param",
            "top_p=0.5",
            "--param",
            "user=bob",
            "--param",
            "stop=[\"\\n\"]",
            "--param",
            "seed=007",
        ],
        Some(b"x\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = lines(&r.stdout);
    assert_eq!(v[0]["body"]["top_p"], 0.5);
    assert_eq!(v[0]["body"]["user"], "bob");
    assert_eq!(v[0]["body"]["stop"], json!(["\n"]));
    assert_eq!(v[0]["body"]["seed"], "007", "not JSON, so a string");
    assert!(
        r.stdout.contains(r#""top_p":0.5,"user":"bob""#),
        "params keep their order"
    );

    for p in ["stream=true", "stream=false", "stream_options={}"] {
        let r = run_in(
            d.path(),
            &["build", "--text", "-m", "m", "--param", p],
            Some(b"x\n"),
        );
        assert_eq!(r.code, 2, "{p}");
        assert!(r.stderr.contains("stream"), "{}", r.stderr);
    }
    for args in [
        &["--param", "model=x"][..],
        &["--param", "messages=[]"],
        &["--max-tokens", "5", "--param", "max_tokens=6"],
        &["--param", "a=1", "--param", "a=2"],
    ] {
        let mut a = vec!["build", "--text", "-m", "m"];
        a.extend_from_slice(args);
        assert_eq!(run_in(d.path(), &a, Some(b"x\n")).code, 2, "{args:?}");
    }
}

#[test]
fn response_formats() {
    let d = tmp();
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    write(d.path(), "my schema.v1.json", &schema.to_string());
    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "m",
            "--response-format",
            "json_object",
        ],
        Some(b"x\n"),
    );
    assert_eq!(
        lines(&r.stdout)[0]["body"]["response_format"],
        json!({"type": "json_object"})
    );
    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "m",
            "--response-format",
            "@my schema.v1.json",
        ],
        Some(b"x\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        lines(&r.stdout)[0]["body"]["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "my_schema_v1", "schema": schema, "strict": true}})
    );
    let r = run_in(
        d.path(),
        &[
            "build",
            "--text",
            "-m",
            "m",
            "--endpoint",
            "responses",
            "--response-format",
            "@my schema.v1.json",
        ],
        Some(b"x\n"),
    );
    assert_eq!(
        lines(&r.stdout)[0]["body"]["text"],
        json!({"format": {"type": "json_schema", "name": "my_schema_v1", "schema": schema, "strict": true}})
    );
    write(d.path(), "bad.json", "[1,2]");
    for f in ["@bad.json", "@nope.json", "yaml"] {
        assert_eq!(
            run_in(
                d.path(),
                &["build", "--text", "-m", "m", "--response-format", f],
                Some(b"x\n")
            )
            .code,
            2,
            "{f}"
        );
    }
}

#[test]
fn missing_field_is_rejected_with_line_and_field() {
    let d = tmp();
    write(
        d.path(),
        "in.jsonl",
        "{\"text\":\"a\",\"lang\":\"en\"}\n{\"text\":\"b\"}\n{\"text\":\"c\",\"lang\":\"de\"}\n",
    );
    // fail (the default): exit 2, message names file, line and field; no output file left.
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "-t",
            "{lang}: {text}",
            "-o",
            "out.jsonl",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("in.jsonl:2:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("record has no field \"lang\""),
        "{}",
        r.stderr
    );
    assert!(!d.path().join("out.jsonl").exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    // skip: exit 1, the others written, the reject recorded.
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "-t",
            "{lang}: {text}",
            "-o",
            "out.jsonl",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(lines(&read(d.path().join("out.jsonl"))).len(), 2);
    let rej = lines(&read(d.path().join("rej.jsonl")));
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0]["line"], 2);
    assert_eq!(rej[0]["text"], "{\"text\":\"b\"}");
    assert!(rej[0]["message"].as_str().unwrap().contains("\"lang\""));
    assert_eq!(rej[0]["reason"], "bad_record");
    assert_eq!(rej[0]["file"], "in.jsonl");
    let s = summary(&r.stdout);
    assert_eq!(
        (s["written"].as_u64(), s["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    // --rejects without skip is a usage error, not silently ignored.
    assert_eq!(
        run_in(
            d.path(),
            &["build", "in.jsonl", "-m", "m", "--rejects", "r.jsonl"],
            None
        )
        .code,
        2
    );
}

#[test]
fn bad_lines_are_rejected() {
    let d = tmp();
    let mut data =
        b"{\"text\":\"ok\"}\nnot json\n[1,2]\n{\"text\":\"a\",\"text\":\"b\"}\n{\"text\":\"\"}\n"
            .to_vec();
    data.extend_from_slice(b"{\"text\":\"\xff\"}\n{\"text\":\"fine\"}");
    let r = run_in(
        d.path(),
        &[
            "build",
            "-",
            "-m",
            "m",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
            "--json",
        ],
        Some(&data),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 2);
    let rej = lines(&read(d.path().join("rej.jsonl")));
    let reasons: Vec<(u64, String)> = rej
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let codes: Vec<&str> = rej.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        [
            "invalid_json",
            "invalid_json",
            "invalid_json",
            "bad_record",
            "invalid_utf8"
        ]
    );
    assert!(reasons[0].1.contains("invalid JSON") && reasons[0].0 == 2);
    assert!(reasons[1].1.contains("not a JSON object"));
    assert!(reasons[2].1.contains("duplicate key"));
    assert!(reasons[3].1.contains("empty prompt"));
    assert!(reasons[4].1.contains("invalid UTF-8") && reasons[4].0 == 6);
    assert_eq!(summary(&r.stderr)["rejected"], 5);
}

#[test]
fn id_field_and_duplicates() {
    let d = tmp();
    write(d.path(), "in.jsonl", "{\"k\":\"a\",\"text\":\"1\"}\n{\"k\":7,\"text\":\"2\"}\n{\"k\":\"a\",\"text\":\"3\"}\n{\"k\":null,\"text\":\"4\"}\n");
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--id-field",
            "k",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let ids: Vec<Value> = lines(&r.stdout)
        .into_iter()
        .map(|v| v["custom_id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("7")]);
    let rej = lines(&read(d.path().join("rej.jsonl")));
    assert_eq!(rej[0]["line"], 3);
    assert_eq!(rej[0]["custom_id"], "a");
    assert_eq!(rej[0]["reason"], "duplicate_custom_id");
    assert_eq!(
        rej[0]["message"],
        "duplicate custom_id \"a\" (first at line 1)"
    );
    assert!(rej[1]["message"].as_str().unwrap().contains("null"));
    let s = summary(&r.stderr);
    assert_eq!(
        (s["duplicates"].as_u64(), s["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    // fail mode stops at the duplicate.
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "--id-field", "k"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(":3:") && r.stderr.contains("duplicate custom_id"),
        "{}",
        r.stderr
    );
}

#[test]
fn id_template_prefix_and_warnings() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--id-template",
            "{lang}-{id}",
            "--id-prefix",
            "x_",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids: Vec<Value> = lines(&r.stdout)
        .into_iter()
        .map(|v| v["custom_id"].clone())
        .collect();
    assert_eq!(ids, [json!("x_en-p1"), json!("x_fr-p2"), json!("x_de-p3")]);
    assert_eq!(summary(&r.stderr)["warnings"], 0);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--id-template",
            "{lang}.{id}",
            "--json",
        ],
        None,
    );
    let s = summary(&r.stderr);
    assert_eq!(s["warnings"], 3);
    assert_eq!(
        s["warning_kinds"]["custom_id has characters outside [A-Za-z0-9_-]"],
        3
    );
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "--id-prefix", "job7-"],
        None,
    );
    assert_eq!(lines(&r.stdout)[0]["custom_id"], "job7-1");
    // Two records giving the same id: the second is a duplicate.
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "--id-template", "{type}"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("duplicate custom_id \"function\" (first at line 1)"),
        "{}",
        r.stderr
    );
}

#[test]
fn id_hash_is_stable_and_finds_identical_requests() {
    let d = tmp();
    write(
        d.path(),
        "in.jsonl",
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"a\"}\n",
    );
    let args = [
        "build",
        "in.jsonl",
        "-m",
        "m",
        "--id",
        "hash",
        "--on-error",
        "skip",
        "--rejects",
        "rej.jsonl",
    ];
    let r1 = run_in(d.path(), &args, None);
    let r2 = run_in(d.path(), &args, None);
    assert_eq!(r1.code, 1);
    assert_eq!(r1.stdout, r2.stdout);
    let v = lines(&r1.stdout);
    assert_eq!(v.len(), 2);
    let id = v[0]["custom_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // The documented definition: xxh3-128 of url, "\n", and the body as written.
    let line = r1.stdout.lines().next().unwrap();
    let body = &line[line.find(",\"body\":").unwrap() + 8..line.len() - 1];
    let h = xxhash_rust::xxh3::xxh3_128(format!("/v1/chat/completions\n{body}").as_bytes());
    assert_eq!(id, format!("{h:032x}"));
    let rej = lines(&read(d.path().join("rej.jsonl")));
    assert_eq!(rej[0]["line"], 3);
    assert!(rej[0]["message"]
        .as_str()
        .unwrap()
        .contains("(first at line 1)"));
    // A different model gives different ids.
    let r3 = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "other",
            "--id",
            "hash",
            "--on-error",
            "skip",
        ],
        None,
    );
    assert_ne!(lines(&r3.stdout)[0]["custom_id"], v[0]["custom_id"]);
}

#[test]
fn repeat_suffixes_ids() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--id-field",
            "id",
            "--repeat",
            "3",
            "--json",
            "--sidecar",
            "side.jsonl",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids: Vec<String> = lines(&r.stdout)
        .into_iter()
        .map(|v| v["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[..4], ["p1-0", "p1-1", "p1-2", "p2-0"]);
    assert_eq!(ids.len(), 9);
    let s = summary(&r.stderr);
    assert_eq!(
        (s["written"].as_u64(), s["requests"].as_u64()),
        (Some(3), Some(9))
    );
    assert_eq!(lines(&read(d.path().join("side.jsonl"))).len(), 9);
    assert_eq!(
        run_in(
            d.path(),
            &["build", "in.jsonl", "-m", "m", "--repeat", "0"],
            None
        )
        .code,
        2
    );
}

#[test]
fn sidecar_joins_back_to_records() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--id-field",
            "id",
            "--sidecar",
            "side.jsonl",
            "-o",
            "req.jsonl",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let side = lines(&read(d.path().join("side.jsonl")));
    let reqs = lines(&read(d.path().join("req.jsonl")));
    assert_eq!(side.len(), reqs.len());
    for (s, q) in side.iter().zip(&reqs) {
        assert_eq!(s["custom_id"], q["custom_id"]);
    }
    assert_eq!(
        side[2]["record"],
        json!({"id":"p3","lang":"de","type":"function","text":"Hallo","meta":{"n":3,"tags":["a","b"]}})
    );
    assert_eq!(side[2]["line"], 4);
    let r = run_in(
        d.path(),
        &["build", "--text", "-m", "m", "--sidecar", "t.jsonl"],
        Some(b"hello\n"),
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        lines(&read(d.path().join("t.jsonl")))[0],
        json!({"custom_id": "req-1", "line": 1, "record": {"text": "hello"}})
    );
}

#[test]
fn split_by_with_sanitised_collision_safe_names_and_limits() {
    let d = tmp();
    let mut data = String::new();
    for (i, g) in [
        "a/b", "a_b", "../up", "A", "a", "fn", "fn", "fn", "cls", "cls", "cls", "cls",
    ]
    .iter()
    .enumerate()
    {
        data.push_str(&json!({"g": g, "text": format!("t{i}")}).to_string());
        data.push('\n');
    }
    data.push_str("{\"g\":3,\"text\":\"n\"}\n{\"text\":\"no group\"}\n");
    write(d.path(), "in.jsonl", &data);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--split-by",
            "g",
            "--out-dir",
            "out",
            "--limit",
            "2",
            "--limit",
            "cls=1",
            "fn=3",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = summary(&r.stdout);
    assert_eq!(s["over_cap"], 3, "{s}");
    assert_eq!(s["rejected"], 1);
    assert_eq!(s["written"], 10);
    let mut names: Vec<String> = std::fs::read_dir(d.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.contains(&"a_b.jsonl".to_string()));
    assert!(names.contains(&"_._up.jsonl".to_string()));
    assert!(names.contains(&"A.jsonl".to_string()));
    assert!(names.contains(&"3.jsonl".to_string()));
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("a_b-") && n.ends_with(".jsonl")),
        "collision renamed: {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("a-") && n.ends_with(".jsonl")),
        "case collision renamed: {names:?}"
    );
    assert_eq!(lines(&read(d.path().join("out/fn.jsonl"))).len(), 3);
    assert_eq!(lines(&read(d.path().join("out/cls.jsonl"))).len(), 1);
    let groups = s["groups"].as_array().unwrap();
    let cls = groups.iter().find(|g| g["value"] == "cls").unwrap();
    assert_eq!(
        (
            cls["written"].as_u64(),
            cls["over_cap"].as_u64(),
            cls["limit"].as_u64()
        ),
        (Some(1), Some(3), Some(1))
    );
    let first = groups.iter().find(|g| g["value"] == "a/b").unwrap();
    assert_eq!(
        first["file"].as_str().unwrap(),
        Path::new("out").join("a_b.jsonl").display().to_string()
    );
    // Nothing of the data can escape the directory.
    assert!(!d.path().join("up.jsonl").exists());
    // A non-empty directory is refused without --force.
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "--split-by",
            "g",
            "--out-dir",
            "out",
            "--on-error",
            "skip",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    // With --force, a group file never replaces the input or the sidecar.
    write(
        d.path(),
        "out/fn.jsonl",
        "{\"g\":\"fn\",\"text\":\"x\"}\n{\"g\":\"sidecar\",\"text\":\"y\"}\n",
    );
    let r = run_in(
        d.path(),
        &[
            "build",
            "out/fn.jsonl",
            "-m",
            "m",
            "--split-by",
            "g",
            "--out-dir",
            "out",
            "--force",
            "--sidecar",
            "out/sidecar.jsonl",
            "--json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = summary(&r.stdout);
    for g in s["groups"].as_array().unwrap() {
        let f = g["file"].as_str().unwrap();
        assert!(
            !f.ends_with("/fn.jsonl") && !f.ends_with("/sidecar.jsonl"),
            "{f}"
        );
    }
    assert!(read(d.path().join("out/fn.jsonl")).starts_with("{\"g\":\"fn\""));
    assert_eq!(lines(&read(d.path().join("out/sidecar.jsonl"))).len(), 2);
    // --limit VALUE=N needs --split-by; --split-by needs --out-dir.
    assert_eq!(
        run_in(
            d.path(),
            &["build", "in.jsonl", "-m", "m", "--limit", "x=1"],
            None
        )
        .code,
        2
    );
    assert_eq!(
        run_in(
            d.path(),
            &["build", "in.jsonl", "-m", "m", "--split-by", "g"],
            None
        )
        .code,
        2
    );
}

#[test]
fn limit_without_split_counts_over_cap() {
    let d = tmp();
    let r = run_in(
        d.path(),
        &["build", "--text", "-m", "m", "--limit", "2", "--json"],
        Some(b"a\nb\n\nc\nd\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 2);
    let s = summary(&r.stderr);
    assert_eq!(
        (
            s["written"].as_u64(),
            s["over_cap"].as_u64(),
            s["blank"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    let r = run_in(
        d.path(),
        &["build", "--text", "-m", "m", "--limit", "2"],
        Some(b"a\nb\nc\n"),
    );
    assert!(r.stderr.contains("1 over cap"), "{}", r.stderr);
}

fn big_input(n: usize) -> String {
    let mut s = String::with_capacity(n * 600);
    for i in 0..n {
        let text: String =
            std::iter::once("#")
                .chain((0..60).map(|j| {
                    ["alpha ", "béta ", "\"q\" ", "tab\t", "😀 ", "x\\y "][(i * 7 + j) % 6]
                }))
                .collect::<String>()
                + &i.to_string();
        s.push_str(
            &json!({"id": format!("p{i}"), "lang": (["en", "fr", "de"][i % 3]), "text": text})
                .to_string(),
        );
        s.push('\n');
        if i % 1000 == 999 {
            s.push('\n');
        }
    }
    s
}

#[test]
fn deterministic_output_and_stdin_equals_file() {
    let d = tmp();
    // About 11 MB: several chunks, so workers really run in parallel.
    write(d.path(), "in.jsonl", &big_input(25_000));
    let args = |threads: &'static str, input: &'static str| {
        vec![
            "build",
            input,
            "-m",
            "m",
            "-t",
            "{lang}: {text}",
            "--id",
            "hash",
            "--threads",
            threads,
            "-q",
        ]
    };
    let a = run_in(d.path(), &args("1", "in.jsonl"), None);
    let b = run_in(d.path(), &args("4", "in.jsonl"), None);
    let data = std::fs::read(d.path().join("in.jsonl")).unwrap();
    let c = run_in(d.path(), &args("3", "-"), Some(&data));
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout.lines().count(), 25_000);
    assert!(a.stdout == b.stdout, "thread count changes nothing");
    assert!(a.stdout == c.stdout, "stdin gives the same as the file");
    // The same through a compressed output file.
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "-t",
            "{lang}: {text}",
            "--id",
            "hash",
            "-o",
            "out.jsonl.gz",
            "-q",
        ],
        None,
    );
    assert_eq!(r.code, 0);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(d.path().join("out.jsonl.gz")).unwrap(),
        ),
        &mut text,
    )
    .unwrap();
    assert!(text == a.stdout);
}

#[test]
fn pipes_into_shard() {
    let d = tmp();
    write(d.path(), "prompts.jsonl", &big_input(3_000));
    write(d.path(), "t.txt", "Write about this in {lang}:\n\n{text}\n");
    let mut build = Command::new(BIN)
        .args([
            "build",
            "prompts.jsonl",
            "--model",
            "gpt-4o-mini",
            "--template",
            "@t.txt",
            "--id-field",
            "id",
            "-q",
        ])
        .current_dir(d.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shard = Command::new(BIN)
        .args([
            "shard",
            "-",
            "--out-dir",
            "shards/",
            "--max-requests",
            "1000",
            "--json",
        ])
        .current_dir(d.path())
        .stdin(build.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(build.wait().unwrap().success());
    assert!(
        shard.status.success(),
        "{}",
        String::from_utf8_lossy(&shard.stderr)
    );
    let s: Value = serde_json::from_slice(&shard.stdout).unwrap();
    assert_eq!(s["requests"], 3000);
    assert_eq!(s["files"], 3);
    assert_eq!(s["rejected"], 0);
    let first = lines(&read(
        d.path()
            .join("shards/chat_completions.gpt-4o-mini.0000.jsonl"),
    ));
    assert_eq!(first[0]["custom_id"], "p0");
}

#[test]
fn outputs_may_not_overwrite_the_input() {
    let d = tmp();
    write(d.path(), "in.jsonl", RECORDS);
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "-o", "in.jsonl"],
        None,
    );
    assert_eq!(r.code, 2);
    assert_eq!(read(d.path().join("in.jsonl")), RECORDS);
    let r = run_in(
        d.path(),
        &["build", "in.jsonl", "-m", "m", "--sidecar", "in.jsonl"],
        None,
    );
    assert_eq!(r.code, 2);
    let r = run_in(
        d.path(),
        &[
            "build",
            "in.jsonl",
            "-m",
            "m",
            "-o",
            "x.jsonl",
            "--sidecar",
            "x.jsonl",
        ],
        None,
    );
    assert_eq!(r.code, 2);
}

/// A duplicate key inside a nested object is a line error wherever a path reads it
/// (issue 10, item 7: it used to exit 101), and also when no path reads it.
#[test]
fn nested_duplicate_keys_are_line_errors() {
    let d = tmp();
    write(
        d.path(),
        "in.jsonl",
        "{\"a\":{\"b\":1,\"b\":2},\"t\":\"x\"}\n",
    );
    let out = d.path().join("out");
    let out = out.to_str().unwrap();
    for args in [
        &["-t", "{a.b}"][..],
        &["-t", "{t}", "--id-field", "a.b"],
        &["-t", "{t}", "--id-template", "r-{a.b}"],
        &["-t", "{t}", "--split-by", "a.b", "--out-dir", out],
        &["-t", "{t}"],
    ] {
        let mut a = vec!["build", "in.jsonl", "-m", "m"];
        a.extend_from_slice(args);
        let r = run_in(d.path(), &a, None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("in.jsonl:1:") && r.stderr.contains("duplicate key \"b\""),
            "{args:?}: {}",
            r.stderr
        );
    }
}
