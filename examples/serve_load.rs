//! A small load client for `benches/serve_bench.sh`: POSTs the same chat completion to
//! `URL/v1/chat/completions` from CONNECTIONS concurrent workers for SECONDS and prints
//! `requests=N seconds=S rps=R errors=E p50_ms=.. p99_ms=..`.
//!
//!     cargo run --release --example serve_load -- URL [CONNECTIONS] [SECONDS]

use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1) else {
        eprintln!("usage: serve_load URL [CONNECTIONS] [SECONDS]");
        std::process::exit(2);
    };
    let conns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let url = format!("{}/v1/chat/completions", url.trim_end_matches('/'));
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Translate to French: the quick brown fox jumps over the lazy dog."}]})
    .to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .expect("client");
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let took = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "requests={} seconds={took:.2} rps={:.0} errors={errors} p50_ms={:.2} p99_ms={:.2}",
        all.len(),
        all.len() as f64 / took,
        pct(0.5),
        pct(0.99)
    );
}
