//! Integration tests of `batchline estimate`, running the real binary (and the library
//! function `submit --dry-run` calls).

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use serde_json::Value;

fn estimate_json(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (Value, i32) {
    let mut a = vec!["estimate"];
    a.extend_from_slice(args);
    a.push("--json");
    let o = run_in(dir, &a, stdin);
    let code = o.status.code().unwrap();
    assert!(code == 0 || code == 1, "exit {code}: {}", stderr(&o));
    (
        serde_json::from_slice(&o.stdout).expect("JSON summary"),
        code,
    )
}

fn group<'a>(v: &'a Value, endpoint: &str, model: &str) -> &'a Value {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["endpoint"] == endpoint && g["model"] == model)
        .unwrap_or_else(|| panic!("no group {endpoint} {model} in {v}"))
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{a} is not a number"));
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn chat(id: &str, model: &str, text: &str, limits: Value) -> String {
    let mut body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]});
    for (k, v) in limits.as_object().unwrap() {
        body[k] = v.clone();
    }
    serde_json::json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

#[test]
fn prompt_tokens_equal_what_shard_max_tokens_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let o = run_in(
        tmp.path(),
        &[
            "shard",
            input.to_str().unwrap(),
            "-o",
            "job",
            "--max-tokens",
            "1000000000",
            "--max-requests",
            "20",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = read_json(&tmp.path().join("job/manifest.json"));
    let mut shard_tokens: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for f in manifest["files"].as_array().unwrap() {
        let e = shard_tokens
            .entry((
                f["endpoint"].as_str().unwrap().into(),
                f["model"].as_str().unwrap().into(),
            ))
            .or_default();
        e.0 += f["tokens"].as_u64().unwrap();
        e.1 += f["requests"].as_u64().unwrap();
    }
    assert!(shard_tokens.len() >= 5);
    let (from_file, code) = estimate_json(tmp.path(), &[input.to_str().unwrap()], None);
    assert_eq!(code, 0);
    let (from_dir, _) = estimate_json(tmp.path(), &["job"], None);
    let text = std::fs::read(&input).unwrap();
    let (from_stdin, _) = estimate_json(tmp.path(), &["-"], Some(&text));
    for v in [&from_file, &from_dir, &from_stdin] {
        assert_eq!(v["groups"].as_array().unwrap().len(), shard_tokens.len());
        for ((endpoint, model), (tokens, requests)) in &shard_tokens {
            let g = group(v, endpoint, model);
            assert_eq!(
                g["prompt_tokens"].as_u64().unwrap(),
                *tokens,
                "{endpoint} {model}"
            );
            assert_eq!(
                g["requests"].as_u64().unwrap(),
                *requests,
                "{endpoint} {model}"
            );
        }
        assert_eq!(
            v["totals"]["prompt_tokens"], manifest["totals"]["tokens"],
            "totals"
        );
        assert_eq!(v["totals"]["requests"], manifest["totals"]["requests"]);
    }
    // The library function `submit --dry-run` calls gives the same figures.
    let prices = batchline::batch::prices::Prices::builtin();
    let lib =
        batchline::commands::estimate::estimate_job(&tmp.path().join("job"), &prices).unwrap();
    assert_eq!(
        lib.totals.prompt_tokens,
        manifest["totals"]["tokens"].as_u64().unwrap()
    );
    assert_eq!(
        serde_json::to_value(&lib.groups).unwrap(),
        from_dir["groups"]
    );
    let v = batchline::commands::estimate::dry_run_value(&tmp.path().join("job"), &prices).unwrap();
    assert_eq!(v["groups"], from_dir["groups"]);
    assert_eq!(v["totals"], from_dir["totals"]);
}

#[test]
fn cost_bounds_are_the_hand_computed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    // "hello world" is 2 o200k tokens; a one-message chat prompt is 3 + 1 (role) + 2 + 3 = 9.
    let lines = [
        chat(
            "a",
            "gpt-4o-mini",
            "hello world",
            serde_json::json!({"max_tokens": 500000}),
        ),
        String::new(),
        chat(
            "b",
            "gpt-4o-mini",
            "hello world",
            serde_json::json!({"max_completion_tokens": 125000, "n": 2}),
        ),
    ];
    std::fs::write(tmp.path().join("r.jsonl"), lines.join("\n") + "\n").unwrap();
    let (v, code) = estimate_json(tmp.path(), &["r.jsonl"], None);
    assert_eq!(code, 0);
    let g = group(&v, "/v1/chat/completions", "gpt-4o-mini");
    assert_eq!(g["requests"], 2);
    assert_eq!(g["prompt_tokens"], 18);
    // at least 1 token per choice: 1 + 2; at most 500000 + 2 x 125000
    assert_eq!(g["output_tokens_min"], 3);
    assert_eq!(g["output_tokens_max"], 750000);
    // gpt-4o-mini: $0.15 in / $0.60 out per 1M direct, half at the Batch price.
    close(&g["batch_cost_min"], (18.0 * 0.075 + 3.0 * 0.30) / 1e6);
    close(&g["batch_cost_max"], (18.0 * 0.075 + 750000.0 * 0.30) / 1e6);
    close(&g["direct_cost_min"], (18.0 * 0.15 + 3.0 * 0.60) / 1e6);
    close(&g["direct_cost_max"], (18.0 * 0.15 + 750000.0 * 0.60) / 1e6);
    close(&v["totals"]["batch_cost_max"], 0.22500135);
    assert_eq!(v["totals"]["complete"], true);
    assert_eq!(v["lines"], 3);
    assert_eq!(v["blank"], 1);

    // A request without any limit: no upper bound, said so.
    std::fs::write(
        tmp.path().join("r2.jsonl"),
        format!(
            "{}\n{}\n",
            lines[0],
            chat("c", "gpt-4o-mini", "hello world", serde_json::json!({}))
        ),
    )
    .unwrap();
    let (v, _) = estimate_json(tmp.path(), &["r2.jsonl"], None);
    let g = group(&v, "/v1/chat/completions", "gpt-4o-mini");
    assert_eq!(g["requests_without_limit"], 1);
    assert_eq!(g["output_tokens_max"], Value::Null);
    assert_eq!(g["batch_cost_max"], Value::Null);
    close(&g["batch_cost_min"], (18.0 * 0.075 + 2.0 * 0.30) / 1e6);
    assert_eq!(v["totals"]["batch_cost_max"], Value::Null);
    assert_eq!(v["totals"]["complete"], false);
    let o = run_in(tmp.path(), &["estimate", "r2.jsonl"], None);
    assert!(
        stdout(&o).contains("1 requests without max_tokens: no upper bound"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("without an output limit"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_prices_file_overrides_and_extends_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        chat(
            "a",
            "gpt-4o-mini",
            "hello world",
            serde_json::json!({"max_tokens": 1000}),
        ),
        chat(
            "b",
            "my-model",
            "hello world",
            serde_json::json!({"max_tokens": 1000}),
        ),
    ];
    std::fs::write(tmp.path().join("r.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(
        tmp.path().join("p.json"),
        r#"{"gpt-4o-mini": {"input": 1.0, "output": 2.0}, "my-model": {"input": 10, "output": 20, "batch_input": 10, "batch_output": 20}}"#,
    )
    .unwrap();
    let (v, _) = estimate_json(tmp.path(), &["r.jsonl", "--prices", "p.json"], None);
    let g = group(&v, "/v1/chat/completions", "gpt-4o-mini");
    assert_eq!(g["price"]["source"], "p.json");
    close(&g["batch_cost_max"], (9.0 * 0.5 + 1000.0 * 1.0) / 1e6);
    let m = group(&v, "/v1/chat/completions", "my-model");
    close(&m["batch_cost_max"], (9.0 * 10.0 + 1000.0 * 20.0) / 1e6);
    assert_eq!(v["totals"]["unpriced_requests"], 0);

    std::fs::write(
        tmp.path().join("p.csv"),
        "model,input,output\nmy-model,3,6\n",
    )
    .unwrap();
    let (v, _) = estimate_json(tmp.path(), &["r.jsonl", "--prices", "p.csv"], None);
    let m = group(&v, "/v1/chat/completions", "my-model");
    close(&m["direct_cost_max"], (9.0 * 3.0 + 1000.0 * 6.0) / 1e6);
    close(&m["batch_cost_max"], (9.0 * 1.5 + 1000.0 * 3.0) / 1e6);
    // The built-in price still applies to the others.
    let g = group(&v, "/v1/chat/completions", "gpt-4o-mini");
    assert_eq!(g["price"]["source"], "built-in");

    // A broken price file is a usage error naming the file and line.
    std::fs::write(
        tmp.path().join("bad.csv"),
        "model,input,output\nmy-model,x,6\n",
    )
    .unwrap();
    let o = run_in(
        tmp.path(),
        &["estimate", "r.jsonl", "--prices", "bad.csv"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.csv:2"), "{}", stderr(&o));
}

#[test]
fn unknown_models_azure_deployments_and_bad_lines_are_named_not_priced() {
    let tmp = tempfile::tempdir().unwrap();
    let azure = serde_json::json!({"custom_id": "z", "method": "POST", "url": "/chat/completions",
        "body": {"model": "my-deployment", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}});
    let lines = [
        chat(
            "a",
            "llama-3-70b",
            "hello world",
            serde_json::json!({"max_tokens": 10}),
        ),
        chat(
            "b",
            "gpt-4o-mini",
            "hello world",
            serde_json::json!({"max_tokens": 10}),
        ),
        chat(
            "c",
            "gpt-4o-2024-05-13",
            "hello world",
            serde_json::json!({"max_tokens": 10}),
        ),
        azure.to_string(),
        "{not json".to_string(),
    ];
    std::fs::write(tmp.path().join("r.jsonl"), lines.join("\n") + "\n").unwrap();
    let (v, code) = estimate_json(tmp.path(), &["r.jsonl"], None);
    assert_eq!(code, 1, "an invalid line gives exit status 1");
    assert_eq!(v["invalid"], 1);
    let u = group(&v, "/v1/chat/completions", "llama-3-70b");
    assert_eq!(u["price"], Value::Null);
    assert_eq!(u["batch_cost_min"], Value::Null);
    assert!(
        u["unpriced"]
            .as_str()
            .unwrap()
            .contains("no price for model"),
        "{u}"
    );
    let s = group(&v, "/v1/chat/completions", "gpt-4o-2024-05-13");
    assert!(s["unpriced"].as_str().unwrap().contains("snapshot"), "{s}");
    let z = group(&v, "/chat/completions", "my-deployment");
    assert!(z["unpriced"].as_str().unwrap().contains("Azure"), "{z}");
    assert_eq!(v["totals"]["unpriced_requests"], 3);
    assert_eq!(v["totals"]["requests"], 4);
    // The cost totals are those of the priced group alone.
    close(
        &v["totals"]["batch_cost_max"],
        (9.0 * 0.075 + 10.0 * 0.30) / 1e6,
    );
    assert_eq!(v["totals"]["complete"], false);

    let o = run_in(tmp.path(), &["estimate", "r.jsonl"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("llama-3-70b: 1 requests") && stdout(&o).contains("not priced"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("r.jsonl:5:"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 requests not priced"),
        "{}",
        stderr(&o)
    );

    // A directory without a manifest is not a job.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let o = run_in(tmp.path(), &["estimate", "empty"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a shard directory"),
        "{}",
        stderr(&o)
    );
}
