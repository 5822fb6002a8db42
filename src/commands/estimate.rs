//! `batchline estimate`: what a request file or a shard directory will cost before it
//! is submitted.
//!
//! Per (url, model) group: the requests, their prompt tokens counted with the model's
//! real OpenAI encoding exactly as `shard --max-tokens` counts them
//! ([`tokens::prompt_tokens`]), and the output tokens they may write, bounded by each
//! request's `max_completion_tokens` / `max_tokens` / `max_output_tokens` (times `n`):
//! at least 1 per choice, at most the limit. A request without a limit has no known
//! upper bound; the group's upper bound (and its cost) is then `None` and the count of
//! such requests is reported. Embeddings and moderations write nothing. The cost
//! bounds are given at the Batch price and, for comparison, at the direct price, from
//! [`Prices`] (the built-in table plus `--prices`); a model without a price is named
//! with the reason, never given an invented cost. No prompt-cache discount is assumed.
//!
//! Lines go through the ordered parallel engine like every offline command (files are
//! memory-mapped, stdin and `.zst`/`.gz` streamed); a shard directory is read through
//! its manifest, shard after shard. A line that is not a valid request is counted as
//! `invalid` (the first few are shown; exit status 1) and priced at nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{check_accounting, CommonOptions, Outcome, RejectEcho, Summary};
use crate::batch::manifest::{Manifest, MANIFEST_NAME};
use crate::batch::prices::{Price, Prices};
use crate::batch::{parse_request, tokens, Endpoint};
use crate::engine::{self, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::report::Throughput;

/// What to estimate.
#[derive(Clone, Debug)]
pub enum EstimateSource {
    /// A request file or `-`.
    File(InputSpec),
    /// A shard directory: the shards listed in its manifest.json.
    Job(PathBuf),
}

#[derive(Clone, Debug)]
pub struct EstimateConfig {
    pub source: EstimateSource,
    pub prices: Prices,
    pub common: CommonOptions,
}

/// One (url, model) group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupEstimate {
    /// The url as the request lines write it.
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub output_tokens_min: u64,
    /// `None` when some request has no output limit.
    pub output_tokens_max: Option<u64>,
    pub requests_without_limit: u64,
    /// The price used, or `None` with `unpriced` saying why.
    pub price: Option<Price>,
    pub unpriced: Option<String>,
    pub batch_cost_min: Option<f64>,
    pub batch_cost_max: Option<f64>,
    pub direct_cost_min: Option<f64>,
    pub direct_cost_max: Option<f64>,
}

/// Sums over every group; the costs cover the priced groups only (`unpriced_requests`
/// says how many are left out), and a maximum is `None` when any priced request has no
/// output limit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EstimateTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub output_tokens_min: u64,
    pub output_tokens_max: Option<u64>,
    pub requests_without_limit: u64,
    pub unpriced_requests: u64,
    pub batch_cost_min: f64,
    pub batch_cost_max: Option<f64>,
    pub direct_cost_min: f64,
    pub direct_cost_max: Option<f64>,
    /// Every request priced and bounded: the bounds are the whole job's.
    pub complete: bool,
}

/// The estimate, also `estimate`'s summary.
#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    pub command: &'static str,
    pub input: String,
    pub groups: Vec<GroupEstimate>,
    pub totals: EstimateTotals,
    pub lines: u64,
    pub blank: u64,
    pub invalid: u64,
    pub throughput: Throughput,
}

/// A group's raw counts, summed by workers and then by the consumer.
#[derive(Clone, Debug, Default)]
struct Counts {
    requests: u64,
    prompt_tokens: u64,
    out_min: u64,
    out_max: u64,
    unlimited: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.prompt_tokens += o.prompt_tokens;
        self.out_min += o.out_min;
        self.out_max = self.out_max.saturating_add(o.out_max);
        self.unlimited += o.unlimited;
    }
}

/// The output limits of a request body, read straight from the line.
#[derive(Deserialize)]
struct LineLimits {
    body: BodyLimits,
}

#[derive(Deserialize)]
struct BodyLimits {
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    n: Option<u64>,
}

/// (min, max) output tokens of one request; max `None` when it has no limit.
fn output_bounds(endpoint: Endpoint, line: &str) -> (u64, Option<u64>) {
    let writes = matches!(
        endpoint,
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses
    );
    if !writes {
        return (0, Some(0));
    }
    let l = serde_json::from_str::<LineLimits>(line)
        .ok()
        .map(|l| l.body);
    let (limit, n) = match (endpoint, l) {
        (_, None) => (None, 1),
        (Endpoint::Responses, Some(b)) => (b.max_output_tokens, 1),
        (Endpoint::ChatCompletions, Some(b)) => (
            b.max_completion_tokens.or(b.max_tokens),
            b.n.unwrap_or(1).max(1),
        ),
        (_, Some(b)) => (b.max_tokens, b.n.unwrap_or(1).max(1)),
    };
    match limit {
        Some(max) => (max.min(1).saturating_mul(n), Some(max.saturating_mul(n))),
        None => (n, None),
    }
}

/// A worker's result for one chunk.
#[derive(Default)]
struct ChunkCounts {
    groups: Vec<((String, String), Endpoint, Counts)>,
    blank: u64,
    lines: u64,
    invalid: Vec<(u64, u64, String)>,
}

fn count_chunk(chunk: &Chunk) -> ChunkCounts {
    let mut out = ChunkCounts::default();
    for line in chunk.lines() {
        out.lines += 1;
        if line.is_blank() {
            out.blank += 1;
            continue;
        }
        let text = match line.text() {
            Ok(t) => t,
            Err(reason) => {
                out.invalid.push((line.number, line.offset, reason));
                continue;
            }
        };
        let req = match parse_request(text, true) {
            Ok(r) => r,
            Err(reason) => {
                out.invalid.push((line.number, line.offset, reason));
                continue;
            }
        };
        let prompt = tokens::prompt_tokens(&req);
        let (min, max) = output_bounds(req.endpoint, text);
        let i = match out
            .groups
            .iter()
            .position(|((u, m), ..)| *u == req.url && *m == req.model)
        {
            Some(i) => i,
            None => {
                out.groups.push((
                    (req.url.to_string(), req.model.to_string()),
                    req.endpoint,
                    Counts::default(),
                ));
                out.groups.len() - 1
            }
        };
        let c = &mut out.groups[i].2;
        c.requests += 1;
        c.prompt_tokens += prompt;
        c.out_min += min;
        match max {
            Some(m) => c.out_max = c.out_max.saturating_add(m),
            None => c.unlimited += 1,
        }
    }
    out
}

/// Everything read so far, in order of first appearance.
struct Tally {
    order: Vec<((String, String), Endpoint, Counts)>,
    index: HashMap<(String, String), usize>,
    lines: u64,
    blank: u64,
    invalid: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, file: &str, echo: &mut RejectEcho, c: ChunkCounts) {
        self.lines += c.lines;
        self.blank += c.blank;
        for (line, offset, reason) in c.invalid {
            self.invalid += 1;
            echo.echo(file, line, offset, &reason);
        }
        for (key, endpoint, counts) in c.groups {
            match self.index.get(&key) {
                Some(&i) => self.order[i].2.add(&counts),
                None => {
                    self.index.insert(key.clone(), self.order.len());
                    self.order.push((key, endpoint, counts));
                }
            }
        }
    }
}

fn read_input(
    input: OpenInput,
    common: &CommonOptions,
    tally: &mut Tally,
    echo: &mut RejectEcho,
) -> Result<()> {
    let name = input.name().to_string();
    let stats = engine::run(input, &common.engine, count_chunk, |_chunk, counts| {
        tally.add(&name, echo, counts);
        Ok(Flow::Continue)
    })?;
    tally.bytes += stats.bytes;
    Ok(())
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

fn group_estimate(
    (url, model): (String, String),
    endpoint: Endpoint,
    c: Counts,
    prices: &Prices,
) -> GroupEstimate {
    let out_max = (c.unlimited == 0).then_some(c.out_max);
    let looked = match endpoint {
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::Videos => Err(format!(
            "{} requests are priced per image or second, not by tokens: not estimated",
            endpoint.url()
        )),
        Endpoint::Moderations => Err("moderations are free of charge at OpenAI".to_string()),
        _ => prices.lookup(&model, Some(&url)),
    };
    let (price, unpriced) = match looked {
        Ok(p) => (Some(p), None),
        Err(why) => (None, Some(why)),
    };
    let cost = |batch: bool, out: Option<u64>| {
        price
            .as_ref()
            .zip(out)
            .map(|(p, o)| round9(p.cost(c.prompt_tokens, o, batch)))
    };
    GroupEstimate {
        batch_cost_min: cost(true, Some(c.out_min)),
        batch_cost_max: cost(true, out_max),
        direct_cost_min: cost(false, Some(c.out_min)),
        direct_cost_max: cost(false, out_max),
        endpoint: url,
        model,
        requests: c.requests,
        prompt_tokens: c.prompt_tokens,
        output_tokens_min: c.out_min,
        output_tokens_max: out_max,
        requests_without_limit: c.unlimited,
        price,
        unpriced,
    }
}

fn totals_of(groups: &[GroupEstimate]) -> EstimateTotals {
    let mut t = EstimateTotals {
        output_tokens_max: Some(0),
        batch_cost_max: Some(0.0),
        direct_cost_max: Some(0.0),
        ..Default::default()
    };
    for g in groups {
        t.requests += g.requests;
        t.prompt_tokens += g.prompt_tokens;
        t.output_tokens_min += g.output_tokens_min;
        t.output_tokens_max = t
            .output_tokens_max
            .zip(g.output_tokens_max)
            .map(|(a, b)| a + b);
        t.requests_without_limit += g.requests_without_limit;
        if g.price.is_none() {
            t.unpriced_requests += g.requests;
            continue;
        }
        t.batch_cost_min += g.batch_cost_min.unwrap_or(0.0);
        t.direct_cost_min += g.direct_cost_min.unwrap_or(0.0);
        t.batch_cost_max = t.batch_cost_max.zip(g.batch_cost_max).map(|(a, b)| a + b);
        t.direct_cost_max = t.direct_cost_max.zip(g.direct_cost_max).map(|(a, b)| a + b);
    }
    t.batch_cost_min = round9(t.batch_cost_min);
    t.direct_cost_min = round9(t.direct_cost_min);
    t.batch_cost_max = t.batch_cost_max.map(round9);
    t.direct_cost_max = t.direct_cost_max.map(round9);
    t.complete = t.unpriced_requests == 0 && t.requests_without_limit == 0;
    t
}

/// The shard files of a shard directory, from its manifest (an error when it has none).
fn job_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let manifest = Manifest::read(dir)?.ok_or_else(|| {
        Error::Other(format!(
            "{}: no {MANIFEST_NAME}: not a shard directory (run `batchline shard` first, or give a request file)",
            dir.display()
        ))
    })?;
    Ok(manifest.file_paths(dir))
}

/// Runs `estimate`.
pub fn run(cfg: &EstimateConfig) -> Result<Estimate> {
    let common = &cfg.common;
    let started = std::time::Instant::now();
    let (name, inputs) = match &cfg.source {
        EstimateSource::File(spec) => (spec.display_name(), vec![spec.clone()]),
        EstimateSource::Job(dir) => (
            dir.display().to_string(),
            job_files(dir)?.into_iter().map(InputSpec::Path).collect(),
        ),
    };
    let mut tally = Tally {
        order: Vec::new(),
        index: HashMap::new(),
        lines: 0,
        blank: 0,
        invalid: 0,
        bytes: 0,
    };
    let mut echo = RejectEcho::new(common, false);
    for spec in &inputs {
        read_input(OpenInput::open(spec)?, common, &mut tally, &mut echo)?;
    }
    if common.engine.cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    let requests: u64 = tally.order.iter().map(|g| g.2.requests).sum();
    check_accounting(
        "estimate",
        tally.lines,
        &[
            ("blank", tally.blank),
            ("requests", requests),
            ("invalid", tally.invalid),
        ],
    )?;
    let groups: Vec<GroupEstimate> = tally
        .order
        .into_iter()
        .map(|(k, e, c)| group_estimate(k, e, c, &cfg.prices))
        .collect();
    let totals = totals_of(&groups);
    Ok(Estimate {
        command: "estimate",
        input: name,
        groups,
        totals,
        lines: tally.lines,
        blank: tally.blank,
        invalid: tally.invalid,
        throughput: Throughput::new(tally.bytes, started.elapsed()),
    })
}

/// The estimate of a shard directory (as `submit --dry-run` shows it): its manifest's
/// shards, read on all cores, priced with `prices`. Nothing is printed.
pub fn estimate_job(dir: &Path, prices: &Prices) -> Result<Estimate> {
    let mut common = CommonOptions::default();
    common.engine.progress = false;
    common.verbose = false;
    run(&EstimateConfig {
        source: EstimateSource::Job(dir.to_path_buf()),
        prices: prices.clone(),
        common,
    })
}

/// The estimate of a shard directory as one JSON value (`groups` and `totals`), or
/// `None` when it cannot be made: what `submit --dry-run` shows as its cost estimate
/// (`submit::dry_run_cost` can return `estimate::dry_run_value(job, &Prices::builtin())`).
pub fn dry_run_value(dir: &Path, prices: &Prices) -> Option<serde_json::Value> {
    let e = estimate_job(dir, prices).ok()?;
    Some(serde_json::json!({"groups": e.groups, "totals": e.totals}))
}

fn money(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 1.0 => format!("${v:.2}"),
        Some(v) if v >= 0.01 || v == 0.0 => format!("${v:.4}"),
        Some(v) => format!("${v:.6}"),
        None => "unknown".to_string(),
    }
}

fn count(x: Option<u64>) -> String {
    x.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

impl Estimate {
    /// The per-group table (stdout of `estimate` without `--json`).
    pub fn table(&self) -> String {
        let mut s = String::new();
        for g in &self.groups {
            s.push_str(&format!(
                "{} {}: {} requests, {} prompt tokens, output {}..{} tokens",
                g.endpoint,
                g.model,
                g.requests,
                g.prompt_tokens,
                g.output_tokens_min,
                count(g.output_tokens_max)
            ));
            if g.requests_without_limit > 0 {
                s.push_str(&format!(
                    " ({} requests without max_tokens: no upper bound)",
                    g.requests_without_limit
                ));
            }
            match (&g.price, &g.unpriced) {
                (Some(_), _) => s.push_str(&format!(
                    "; batch {}..{} (direct {}..{})\n",
                    money(g.batch_cost_min),
                    money(g.batch_cost_max),
                    money(g.direct_cost_min),
                    money(g.direct_cost_max)
                )),
                (None, Some(why)) => s.push_str(&format!("; not priced: {why}\n")),
                (None, None) => s.push('\n'),
            }
        }
        s
    }
}

impl Summary for Estimate {
    fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "estimate: {} requests, {} prompt tokens, output {}..{} tokens; batch cost {}..{} (direct {}..{})",
            t.requests,
            t.prompt_tokens,
            t.output_tokens_min,
            count(t.output_tokens_max),
            money(Some(t.batch_cost_min)),
            money(t.batch_cost_max),
            money(Some(t.direct_cost_min)),
            money(t.direct_cost_max),
        );
        if t.unpriced_requests > 0 {
            s.push_str(&format!(
                "; {} requests not priced (left out of the cost)",
                t.unpriced_requests
            ));
        }
        if t.requests_without_limit > 0 {
            s.push_str(&format!(
                "; {} requests without an output limit (no upper bound)",
                t.requests_without_limit
            ));
        }
        if self.invalid > 0 {
            s.push_str(&format!("; {} invalid lines", self.invalid));
        }
        s.push_str(&format!("; {}", self.throughput.human()));
        s
    }

    fn outcome(&self) -> Outcome {
        Outcome::from_rejected(self.invalid)
    }

    fn data_on_stdout(&self) -> bool {
        false
    }

    fn stdout_text(&self) -> Option<String> {
        Some(self.table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_bounds_follow_the_limits() {
        let chat = |body: &str| {
            output_bounds(
                Endpoint::ChatCompletions,
                &format!(r#"{{"custom_id":"a","body":{body}}}"#),
            )
        };
        assert_eq!(chat(r#"{"max_tokens":100}"#), (1, Some(100)));
        assert_eq!(
            chat(r#"{"max_completion_tokens":7,"max_tokens":100,"n":3}"#),
            (3, Some(21))
        );
        assert_eq!(chat(r#"{"model":"m"}"#), (1, None));
        assert_eq!(chat(r#"{"max_tokens":0}"#), (0, Some(0)));
        let resp = output_bounds(
            Endpoint::Responses,
            r#"{"body":{"max_output_tokens":50,"max_tokens":9}}"#,
        );
        assert_eq!(resp, (1, Some(50)));
        assert_eq!(
            output_bounds(Endpoint::Embeddings, r#"{"body":{"input":"x"}}"#),
            (0, Some(0))
        );
    }
}
