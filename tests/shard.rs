//! Integration tests of `batchline shard`, running the real binary.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

fn lines_of_groups(dir: &Path) -> HashMap<(String, String), Vec<String>> {
    let manifest = read_json(&dir.join("manifest.json"));
    let mut groups: HashMap<(String, String), Vec<String>> = HashMap::new();
    for f in manifest["files"].as_array().unwrap() {
        let key = (
            f["endpoint"].as_str().unwrap().to_string(),
            f["model"].as_str().unwrap().to_string(),
        );
        groups
            .entry(key)
            .or_default()
            .extend(read_lines(&dir.join(f["name"].as_str().unwrap())));
    }
    groups
}

#[test]
fn shards_the_shipped_fixture_and_accounts_for_every_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            input.to_str().unwrap(),
            "--out-dir",
            "out",
            "--max-requests",
            "40",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let input_lines = std::fs::read_to_string(&input).unwrap().lines().count() as u64;
    assert_eq!(m["totals"]["requests"].as_u64().unwrap(), input_lines);
    assert_eq!(m["totals"]["lines"].as_u64().unwrap(), input_lines);
    let mut written = 0;
    for f in m["files"].as_array().unwrap() {
        let path = tmp.path().join("out").join(f["name"].as_str().unwrap());
        let lines = read_lines(&path);
        assert!(lines.len() <= 40);
        assert_eq!(lines.len() as u64, f["requests"].as_u64().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            f["bytes"].as_u64().unwrap()
        );
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["url"], f["endpoint"]);
            assert_eq!(v["body"]["model"], f["model"]);
        }
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["custom_id"], f["first_custom_id"]);
        written += lines.len();
        // sha256 of the file as written
        use sha2::Digest;
        let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(f["sha256"].as_str().unwrap(), hex);
    }
    assert_eq!(written as u64, input_lines);
}

#[test]
fn the_50000th_line_stays_and_the_next_starts_a_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..50_001 {
        data.push_str(&chat_line(&format!("r{i}"), "gpt-4o-mini", "hi"));
        data.push('\n');
    }
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = read_lines(
        &tmp.path()
            .join("out/chat_completions.gpt-4o-mini.0000.jsonl"),
    );
    let b = read_lines(
        &tmp.path()
            .join("out/chat_completions.gpt-4o-mini.0001.jsonl"),
    );
    assert_eq!(a.len(), 50_000);
    assert!(a[49_999].contains("\"r49999\""));
    assert_eq!(b.len(), 1);
    assert!(b[0].contains("\"r50000\""));
}

#[test]
fn no_file_exceeds_max_bytes_and_a_line_that_fills_a_file_exactly_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let l = chat_line("a", "m", "x");
    let n = l.len() as u64 + 1;
    let mut data = String::new();
    for i in 0..10 {
        data.push_str(&chat_line(&format!("{}", (b'a' + i) as char), "m", "x"));
        data.push('\n');
    }
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    let max = (3 * n).to_string();
    let o = run_in(
        tmp.path(),
        &["shard", "in.jsonl", "--out-dir", "out", "--max-bytes", &max],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let sizes: Vec<u64> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![3 * n, 3 * n, 3 * n, n]);
}

#[test]
fn groups_by_endpoint_and_model_in_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        chat_line("1", "gpt-4o", "a"),
        embed_line("2", "text-embedding-3-small", &["x"]),
        chat_line("3", "gpt-4o-mini", "b"),
        chat_line("4", "gpt-4o", "c"),
        embed_line("5", "text-embedding-3-small", &["y", "z"]),
    ];
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = lines_of_groups(&tmp.path().join("out"));
    assert_eq!(g.len(), 3);
    assert_eq!(
        g[&("/v1/chat/completions".into(), "gpt-4o".into())],
        vec![lines[0].clone(), lines[3].clone()]
    );
    assert_eq!(
        g[&("/v1/embeddings".into(), "text-embedding-3-small".into())],
        vec![lines[1].clone(), lines[4].clone()]
    );
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let emb = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["endpoint"] == "/v1/embeddings")
        .unwrap();
    assert_eq!(emb["embedding_inputs"], 3);
}

/// One file holds one exact url string: Azure's `/chat/completions` and
/// `/v1/chat/completions` for one model go to two files, each listed with its own url
/// (issue 10, item 6).
#[test]
fn one_file_holds_one_exact_url() {
    let tmp = tempfile::tempdir().unwrap();
    let azure = chat_line("2", "gpt-4o", "b").replace("/v1/chat/completions", "/chat/completions");
    let lines = [
        chat_line("1", "gpt-4o", "a"),
        azure.clone(),
        chat_line("3", "gpt-4o", "c"),
    ];
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = lines_of_groups(&tmp.path().join("out"));
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!(
        g[&("/v1/chat/completions".into(), "gpt-4o".into())],
        vec![lines[0].clone(), lines[2].clone()]
    );
    assert_eq!(
        g[&("/chat/completions".into(), "gpt-4o".into())],
        vec![azure]
    );
}

#[test]
fn embedding_inputs_are_capped_per_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5)
        .map(|i| embed_line(&format!("e{i}"), "text-embedding-3-small", &["a", "b", "c"]))
        .collect();
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out",
            "--max-embedding-inputs",
            "7",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let inputs: Vec<u64> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["embedding_inputs"].as_u64().unwrap())
        .collect();
    assert_eq!(inputs, vec![6, 6, 3]);
}

#[test]
fn a_later_duplicate_is_rejected_and_the_first_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        chat_line("a", "m", "first"),
        chat_line("b", "m", "x"),
        chat_line("a", "m", "second"),
    ];
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    // Default: the duplicate stops the run, naming file, line and offset.
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert_eq!(o.status.code(), Some(2));
    let offset = lines[0].len() + lines[1].len() + 2;
    assert!(
        stderr(&o).contains(&format!(
            "in.jsonl:3:{offset}: duplicate custom_id \"a\" (first at line 1)"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(files_in(&tmp.path().join("out")), Vec::<String>::new());
    // Skip: written to the rejects file with its custom_id, and exit status 1.
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out2",
            "--on-error",
            "skip",
            "--rejects",
            "rej.jsonl",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = read_lines(&tmp.path().join("out2/chat_completions.m.0000.jsonl"));
    assert_eq!(out, vec![lines[0].clone(), lines[1].clone()]);
    let rej = read_lines(&tmp.path().join("rej.jsonl"));
    assert_eq!(rej.len(), 1);
    let r: serde_json::Value = serde_json::from_str(&rej[0]).unwrap();
    assert_eq!(r["line"], 3);
    assert_eq!(r["offset"], offset);
    assert_eq!(r["custom_id"], "a");
    assert_eq!(r["text"], lines[2]);
    let m = read_json(&tmp.path().join("out2/manifest.json"));
    assert_eq!(m["totals"]["duplicates"], 1);
    assert_eq!(m["totals"]["rejected"], 1);
}

#[test]
fn every_kind_of_bad_line_is_rejected_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let good = chat_line("ok", "m", "fine");
    let mut data: Vec<u8> = Vec::new();
    let bad: Vec<(&[u8], &str)> = vec![
        (b"{not json", "invalid JSON"),
        (b"[1,2,3]", "invalid JSON"),
        (b"{\"custom_id\":\"x\xff\",\"method\":\"POST\"}", "invalid UTF-8"),
        (br#"{"custom_id":"d","custom_id":"e","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#, "duplicate key `custom_id`"),
        (br#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#, "custom_id must be a non-empty string, found missing"),
        (br#"{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#, "custom_id is empty"),
        (br#"{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#, "found a number"),
        (br#"{"custom_id":"g","method":"GET","url":"/v1/chat/completions","body":{"model":"m"}}"#, "method must be \"POST\""),
        (br#"{"custom_id":"u","method":"POST","url":"/v1/nope","body":{"model":"m"}}"#, "unknown url"),
        (br#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":"x"}"#, "body must be an object"),
        (br#"{"custom_id":"mm","method":"POST","url":"/v1/chat/completions","body":{"model":3}}"#, "body.model must be a string"),
        (br#"{"custom_id":"s","method":"POST","url":"/v1/chat/completions","body":{"model":"m","stream":true}}"#, "body.stream is true"),
    ];
    data.extend_from_slice(good.as_bytes());
    data.extend_from_slice(b"\r\n\r\n   \n");
    for (line, _) in &bad {
        data.extend_from_slice(line);
        data.push(b'\n');
    }
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out",
            "--on-error",
            "skip",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(summary["lines"], 3 + bad.len() as u64);
    assert_eq!(summary["blank"], 2);
    assert_eq!(summary["requests"], 1);
    assert_eq!(summary["rejected"], bad.len() as u64);
    let rej = read_lines(&tmp.path().join("out/rejects.ndjson"));
    assert_eq!(rej.len(), bad.len());
    for (i, (r, (_, want))) in rej.iter().zip(&bad).enumerate() {
        let r: serde_json::Value = serde_json::from_str(r).unwrap();
        assert_eq!(r["line"], 4 + i as u64);
        assert_eq!(r["file"], "in.jsonl");
        assert!(
            r["message"].as_str().unwrap().contains(want),
            "line {}: {} does not say {want}",
            i + 4,
            r["message"]
        );
        let code = match i {
            0 | 1 | 3 => "invalid_json",
            2 => "invalid_utf8",
            _ => "invalid_request",
        };
        assert_eq!(r["reason"], code, "line {}", i + 4);
    }
    // CRLF was stripped from the copied line.
    assert_eq!(
        read_lines(&tmp.path().join("out/chat_completions.m.0000.jsonl")),
        vec![good]
    );
}

#[test]
fn bom_crlf_and_a_last_line_without_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (chat_line("a", "m", "x"), chat_line("b", "m", "y"));
    let data = format!("\u{feff}{a}\r\n{b}");
    std::fs::write(tmp.path().join("in.jsonl"), data).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let got =
        std::fs::read_to_string(tmp.path().join("out/chat_completions.m.0000.jsonl")).unwrap();
    assert_eq!(got, format!("{a}\n{b}\n"));
}

#[test]
fn a_line_longer_than_max_bytes_is_rejected_from_a_file_and_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let long = chat_line("long", "m", &"x".repeat(5000));
    let data = format!(
        "{}\n{long}\n{}\n",
        chat_line("a", "m", "x"),
        chat_line("b", "m", "y")
    );
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    for (src, stdin) in [("in.jsonl", None), ("-", Some(data.as_bytes()))] {
        let dir = format!("out-{}", src.len());
        let o = run_in(
            tmp.path(),
            &[
                "shard",
                src,
                "--out-dir",
                &dir,
                "--max-bytes",
                "2000",
                "--on-error",
                "skip",
            ],
            stdin,
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let rej = read_lines(&tmp.path().join(&dir).join("rejects.ndjson"));
        assert_eq!(rej.len(), 1);
        let r: serde_json::Value = serde_json::from_str(&rej[0]).unwrap();
        assert_eq!(r["line"], 2);
        assert_eq!(r["reason"], "line_too_long");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("over the limit of 2000 bytes (--max-bytes)"),
            "{}",
            r["reason"]
        );
        // The rejected line is kept whole (up to 1 MiB), so nothing is lost.
        assert_eq!(r["text"].as_str().unwrap(), long, "{src}");
        assert!(r.get("text_cut").is_none_or(|c| c == false), "{src}");
        let ok = read_lines(&tmp.path().join(&dir).join("chat_completions.m.0000.jsonl"));
        assert_eq!(ok.len(), 2);
    }
}

#[test]
fn stdin_and_file_give_identical_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let data = std::fs::read(&input).unwrap();
    let a = run_in(
        tmp.path(),
        &[
            "shard",
            input.to_str().unwrap(),
            "--out-dir",
            "a",
            "--max-requests",
            "17",
        ],
        None,
    );
    let b = run_in(
        tmp.path(),
        &["shard", "-", "--out-dir", "b", "--max-requests", "17"],
        Some(&data),
    );
    assert!(a.status.success() && b.status.success());
    let fa = files_in(&tmp.path().join("a"));
    assert_eq!(fa, files_in(&tmp.path().join("b")));
    assert!(fa.len() > 5);
    for f in fa.iter().filter(|f| *f != "manifest.json") {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(f)).unwrap(),
            std::fs::read(tmp.path().join("b").join(f)).unwrap(),
            "{f}"
        );
    }
    let (ma, mb) = (
        read_json(&tmp.path().join("a/manifest.json")),
        read_json(&tmp.path().join("b/manifest.json")),
    );
    assert_eq!(ma["files"], mb["files"]);
}

#[test]
fn same_input_gives_byte_identical_output_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let i = input.to_str().unwrap();
    for (dir, threads) in [("t1", "1"), ("t3", "3")] {
        let o = run_in(
            tmp.path(),
            &[
                "shard",
                i,
                "--out-dir",
                dir,
                "--max-requests",
                "9",
                "--threads",
                threads,
            ],
            None,
        );
        assert!(o.status.success());
    }
    for f in files_in(&tmp.path().join("t1")) {
        assert_eq!(
            std::fs::read(tmp.path().join("t1").join(&f)).unwrap(),
            std::fs::read(tmp.path().join("t3").join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn zstd_input_is_decompressed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(fixture("requests.jsonl")).unwrap();
    std::fs::write(
        tmp.path().join("in.jsonl.zst"),
        zstd::encode_all(&data[..], 3).unwrap(),
    )
    .unwrap();
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    let a = run_in(
        tmp.path(),
        &["shard", "in.jsonl.zst", "--out-dir", "z"],
        None,
    );
    let b = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "p"], None);
    assert!(a.status.success() && b.status.success(), "{}", stderr(&a));
    assert_eq!(
        read_json(&tmp.path().join("z/manifest.json"))["files"],
        read_json(&tmp.path().join("p/manifest.json"))["files"]
    );
}

#[test]
fn a_failure_leaves_no_shard_and_no_temp_file_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..3000 {
        data.push_str(&chat_line(&format!("r{i}"), "m", "hello"));
        data.push('\n');
    }
    data.push_str("{broken\n");
    std::fs::write(tmp.path().join("in.jsonl"), &data).unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out",
            "--max-requests",
            "100",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("in.jsonl:3001:"), "{}", stderr(&o));
    // Not even the directory this run created is left.
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn check_writes_nothing_and_prints_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            input.to_str().unwrap(),
            "--out-dir",
            "out",
            "--check",
            "--max-requests",
            "50",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!tmp.path().join("out").exists());
    let plan = stdout(&o);
    assert!(plan.lines().count() >= 4, "{plan}");
    assert!(plan.contains("chat_completions."));
}

#[test]
fn refuses_a_non_empty_directory_without_force_and_removes_stale_shards_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let i = input.to_str().unwrap();
    assert!(run_in(
        tmp.path(),
        &["shard", i, "--out-dir", "out", "--max-requests", "10"],
        None
    )
    .status
    .success());
    let many = files_in(&tmp.path().join("out")).len();
    let o = run_in(tmp.path(), &["shard", i, "--out-dir", "out"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not empty"));
    let o = run_in(
        tmp.path(),
        &["shard", i, "--out-dir", "out", "--force"],
        None,
    );
    assert!(o.status.success());
    let after = files_in(&tmp.path().join("out"));
    assert!(after.len() < many);
    let m = read_json(&tmp.path().join("out/manifest.json"));
    assert_eq!(after.len(), m["files"].as_array().unwrap().len() + 1);
}

#[test]
fn max_tokens_caps_each_file_with_real_counts() {
    let tmp = tempfile::tempdir().unwrap();
    // "hello world" is 2 tokens in o200k_base; each request counts 3 + 1 + 2 + 3 = 9.
    let lines: Vec<String> = (0..10)
        .map(|i| chat_line(&format!("t{i}"), "gpt-4o", "hello world"))
        .collect();
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out",
            "--max-tokens",
            "30",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let toks: Vec<u64> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(toks, vec![27, 27, 27, 9]);
    assert_eq!(m["totals"]["tokens"], 90);
    // A single request over the cap is rejected, not written.
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            "in.jsonl",
            "--out-dir",
            "out2",
            "--max-tokens",
            "8",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("9 prompt tokens, over --max-tokens 8"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn file_names_are_sanitised_and_stay_inside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        chat_line("1", "../../etc/passwd", "x"),
        chat_line("2", "a/b", "x"),
        chat_line("3", "a_b", "x"),
    ];
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = files_in(&tmp.path().join("out"));
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        assert!(
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{f}"
        );
    }
    assert!(files.contains(&"chat_completions.a_b.0000.jsonl".to_string()));
}

#[test]
fn custom_id_warnings_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "x".repeat(65);
    let lines = [
        chat_line(&long, "m", "x"),
        chat_line("has space", "m", "x"),
        chat_line("fine-id_1", "m", "x"),
    ];
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(
        tmp.path(),
        &["shard", "in.jsonl", "--out-dir", "out", "--json"],
        None,
    );
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["warnings"], 2);
    assert_eq!(s["requests"], 3);
}

#[test]
fn ctrl_c_while_waiting_on_stdin_exits_130_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .current_dir(tmp.path())
        .args(["shard", "-", "--out-dir", "out"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    stdin
        .write_all(chat_line("a", "m", "x").as_bytes())
        .unwrap();
    stdin.write_all(b"\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(&tmp.path().join("out")), Vec::<String>::new());
}

#[test]
fn names_stay_unique_when_suffixes_and_case_collide() {
    let tmp = tempfile::tempdir().unwrap();
    // The suffix of "a/b" must not collide with a model literally named like it.
    let probe = run_in(
        tmp.path(),
        &["shard", "-", "--out-dir", "p"],
        Some(
            format!(
                "{}\n{}\n",
                chat_line("1", "a_b", "x"),
                chat_line("2", "a/b", "x")
            )
            .as_bytes(),
        ),
    );
    assert!(probe.status.success());
    let suffixed = files_in(&tmp.path().join("p"))
        .into_iter()
        .find(|f| f.contains("a_b-"))
        .unwrap();
    let literal = suffixed
        .trim_start_matches("chat_completions.")
        .trim_end_matches(".0000.jsonl")
        .to_string();
    let models = ["a_b", literal.as_str(), "a/b", "a b", "A_B"];
    let lines: Vec<String> = models
        .iter()
        .enumerate()
        .map(|(i, m)| chat_line(&format!("id{i}"), m, "x"))
        .collect();
    std::fs::write(tmp.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let o = run_in(tmp.path(), &["shard", "in.jsonl", "--out-dir", "out"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_json(&tmp.path().join("out/manifest.json"));
    let names: std::collections::HashSet<String> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    let mut seen = 0;
    for f in m["files"].as_array().unwrap() {
        seen += read_lines(&tmp.path().join("out").join(f["name"].as_str().unwrap())).len();
    }
    assert_eq!(seen, 5);
}

#[test]
fn rejects_name_the_custom_id_when_the_line_has_one() {
    let tmp = tempfile::tempdir().unwrap();
    let good = chat_line("ok-1", "m", "x");
    let get = good.replace("ok-1", "get-1").replace("\"POST\"", "\"GET\"");
    let no_model = r#"{"custom_id": "nm-1", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}"#;
    let not_json = r#"{"custom_id": "broken-1", "method": "POST""#;
    let data = format!("{good}\n{get}\n{no_model}\n{not_json}\n");
    let o = run_in(
        tmp.path(),
        &["shard", "-", "--out-dir", "out", "--on-error", "skip"],
        Some(data.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rej: Vec<serde_json::Value> = read_lines(&tmp.path().join("out/rejects.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<Option<&str>> = rej.iter().map(|r| r["custom_id"].as_str()).collect();
    assert_eq!(ids, [Some("get-1"), Some("nm-1"), None]);
}
