//! Benchmark: the three acceptance rules over a scenarios JSONL file, single thread and
//! N threads, like `batchline validate` will run them.
//!
//! ```text
//! cargo run --release --example validate_bench -- /tmp/scen.jsonl \
//!     llama3=/tmp/batchline-tokenizers/llama3.json qwen3=/tmp/batchline-tokenizers/qwen3.json \
//!     claude=fixtures/tokenizers/claude.json [--threads 2] [--only] [--out valid.jsonl] [--verify] [--full]
//! ```
//! `--verify` checks every count against the full pipeline (`Tokenizer::count`);
//! `--only` runs just the N-thread pass; `--full` times the plain baseline (full pipeline on each text, no memo) instead.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use batchline::tokenize::{Rule, RuleSet, TokenizerSet, TokenizerSpec};
use serde_json::Value;

const RULES: [&str; 3] = [
    r#"same(tokens(prompt + " " + single_token))"#,
    r#"same(tokens(prompt + " " + multi_token))"#,
    r#"tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1"#,
];

/// Evaluates `records` on `threads` threads (chunks of 512 taken in turn); returns the
/// valid flags in input order.
fn run(rs: &RuleSet, records: &[Value], threads: usize) -> Vec<bool> {
    let next = AtomicUsize::new(0);
    const CHUNK: usize = 512;
    let parts: Vec<Vec<(usize, Vec<bool>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut cache = rs.new_cache();
                    let mut out = Vec::new();
                    loop {
                        let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if start >= records.len() {
                            return out;
                        }
                        let end = (start + CHUNK).min(records.len());
                        let flags = records[start..end]
                            .iter()
                            .map(|r| rs.evaluate(r, &mut cache).valid)
                            .collect();
                        out.push((start, flags));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut valid = vec![false; records.len()];
    for (start, flags) in parts.into_iter().flatten() {
        valid[start..start + flags.len()].copy_from_slice(&flags);
    }
    valid
}

/// Baseline: the full pipeline on each text, no memo, no chunking.
fn run_full(set: &TokenizerSet, records: &[Value]) -> Vec<bool> {
    records
        .iter()
        .map(|r| {
            let p = r["prompt"].as_str().unwrap();
            let a = format!("{p} {}", r["single_token"].as_str().unwrap());
            let b = format!("{p} {}", r["multi_token"].as_str().unwrap());
            let ca: Vec<usize> = set
                .tokenizers()
                .iter()
                .map(|t| t.count(&a, false))
                .collect();
            let cb: Vec<usize> = set
                .tokenizers()
                .iter()
                .map(|t| t.count(&b, false))
                .collect();
            ca.windows(2).all(|w| w[0] == w[1])
                && cb.windows(2).all(|w| w[0] == w[1])
                && cb[0] == ca[0] + 1
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = 2;
    let mut out_path = None;
    let mut verify = false;
    let mut full = false;
    let mut only = false;
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().unwrap().parse().unwrap(),
            "--out" => out_path = it.next(),
            "--verify" => verify = true,
            "--full" => full = true,
            "--only" => only = true,
            _ => positional.push(a),
        }
    }
    let path = positional.remove(0);
    let t0 = Instant::now();
    let specs: Vec<TokenizerSpec> = positional.iter().map(|s| s.parse().unwrap()).collect();
    let set = TokenizerSet::load(&specs).unwrap_or_else(|e| panic!("{e}"));
    let t_load = t0.elapsed();
    let rules = RULES
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::parse_arg(i + 1, r).unwrap())
        .collect();
    let rs = RuleSet::new(rules, set.clone(), false).unwrap();

    let t1 = Instant::now();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let t_parse = t1.elapsed();
    let mb = text.len() as f64 / 1e6;
    eprintln!(
        "tokenizers {:?} (chunkable: {:?}), load {:.2}s; {} records, {:.1} MB, read+parse {:.2}s",
        set.names(),
        set.tokenizers()
            .iter()
            .map(|t| t.is_chunkable())
            .collect::<Vec<_>>(),
        t_load.as_secs_f64(),
        records.len(),
        mb,
        t_parse.as_secs_f64()
    );

    if full {
        let t = Instant::now();
        let valid = run_full(&set, &records);
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "full pipeline, 1 thread: valid={} eval {:.2}s ({:.0} rec/s)",
            valid.iter().filter(|v| **v).count(),
            s,
            records.len() as f64 / s
        );
        return;
    }

    let mut reference: Option<Vec<bool>> = None;
    let runs = if only {
        vec![threads]
    } else {
        vec![1, threads]
    };
    for n in runs {
        let t = Instant::now();
        let valid = run(&rs, &records, n);
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "{n} thread(s): valid={} eval {:.2}s ({:.0} rec/s, {:.1} MB/s of records); with load+parse {:.2}s",
            valid.iter().filter(|v| **v).count(),
            s,
            records.len() as f64 / s,
            mb / s,
            s + t_load.as_secs_f64() + t_parse.as_secs_f64()
        );
        if let Some(r) = &reference {
            assert_eq!(r, &valid, "thread counts disagree");
        }
        reference = Some(valid);
    }
    let valid = reference.unwrap();
    if !only {
        // Where the time goes: a cold cache pays one full-pipeline call per distinct chunk.
        let mut cache = rs.new_cache();
        let t = Instant::now();
        records
            .iter()
            .for_each(|r| drop(rs.evaluate(r, &mut cache)));
        let cold = t.elapsed().as_secs_f64();
        let t = Instant::now();
        records
            .iter()
            .for_each(|r| drop(rs.evaluate(r, &mut cache)));
        let warm = t.elapsed().as_secs_f64();
        eprintln!(
            "1 thread: cold cache {cold:.2}s, warm cache {warm:.2}s; {} distinct chunks memoised",
            cache.count_cache().len()
        );
        for spec in &specs {
            let t = Instant::now();
            let _ = batchline::tokenize::Tokenizer::load(spec).unwrap();
            eprintln!(
                "load {} alone: {:.2}s",
                spec.name,
                t.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(p) = out_path {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        for (line, ok) in lines.iter().zip(&valid) {
            if *ok {
                writeln!(f, "{line}").unwrap();
            }
        }
    }
    if verify {
        let t = Instant::now();
        let mut cache = rs.new_cache();
        let mut checked = 0;
        for r in &records {
            let v = rs.evaluate(r, &mut cache);
            for (expr, counts) in &v.counts {
                let field = if expr.contains("single_token") {
                    "single_token"
                } else {
                    "multi_token"
                };
                let text = format!(
                    "{} {}",
                    r["prompt"].as_str().unwrap(),
                    r[field].as_str().unwrap()
                );
                for (t, &c) in set.tokenizers().iter().zip(counts) {
                    assert_eq!(t.count(&text, false), c, "{} on {text:?}", t.name());
                    checked += 1;
                }
            }
        }
        eprintln!(
            "verify: {checked} counts equal the full pipeline ({:.1}s)",
            t.elapsed().as_secs_f64()
        );
    }
}
