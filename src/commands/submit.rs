//! `batchline submit JOB`: upload each shard of a job directory and create its batch,
//! recording every step in `JOB/ledger.json` so that a rerun (after a crash at any
//! point) does only what is left and never creates a second batch for a shard. With an
//! enqueued budget (`--max-enqueued-tokens`, `--max-enqueued-requests`, per model) only
//! the shards that fit beside the job's unfinished batches go now; the rest stay queued
//! for `wait`. `--dry-run` prints the plan and sends nothing; `--wait` goes on as `wait`.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::lifecycle::{
    read_manifest, round_zero, JobOptions, Session, Totals, META_JOB, META_ROUND, META_SHA256,
    META_SHARD,
};
use super::wait::{self, WaitConfig, WaitSummary};
use crate::commands::{Outcome, Summary};
use crate::error::{Error, Result};
use crate::job::{JobSettings, Ledger, ProviderInfo, ShardState};

#[derive(Debug, Clone)]
pub struct SubmitConfig {
    pub job: JobOptions,
    /// Print the plan, send nothing.
    pub dry_run: bool,
    /// Go on as `wait` with this poll interval and timeout.
    pub wait: Option<(Duration, Option<Duration>)>,
    /// With `wait`: download each batch's files as it ends (`wait --download`).
    pub download: bool,
    /// `--metadata KEY=VALUE` pairs for every batch (checked here).
    pub metadata: Vec<(String, String)>,
    pub max_enqueued_tokens: Option<u64>,
    pub max_enqueued_requests: Option<u64>,
}

/// One shard in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub round: u32,
    pub shard: String,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    /// `submit` (goes now), `queued` (the budget holds it back), `done` (already
    /// submitted or ended), `uncertain` (a create whose answer was lost: looked up first).
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmitSummary {
    pub job: String,
    pub job_id: String,
    pub dry_run: bool,
    pub shards: u64,
    pub requests: u64,
    pub prompt_tokens: u64,
    /// Shards submitted by this run.
    pub submitted: u64,
    /// Shards submitted (or ended) by earlier runs.
    pub already: u64,
    /// Shards held back by the enqueued budget (`wait` submits them).
    pub queued: u64,
    pub plan: Vec<PlanLine>,
    /// The cost estimate of the job (`--dry-run`): see [`dry_run_cost`].
    pub cost_estimate: Option<Value>,
    /// With `--wait`: how the wait ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitSummary>,
    /// Ctrl-C (or SIGTERM) stopped the run between two calls; the ledger is whole.
    pub interrupted: bool,
}

impl Summary for SubmitSummary {
    fn human(&self) -> String {
        if let Some(w) = &self.wait {
            return format!("submit: {} shards submitted; {}", self.submitted, w.human());
        }
        if self.dry_run {
            return format!(
                "submit --dry-run {}: {} shards, {} requests, {} prompt tokens; {} would be submitted now, {} queued by the budget, {} already submitted; nothing was sent",
                self.job,
                self.shards,
                self.requests,
                self.prompt_tokens,
                self.plan.iter().filter(|p| p.action == "submit" || p.action == "uncertain").count(),
                self.queued,
                self.already
            );
        }
        let mut s = format!(
            "submit {} ({}): {} shards submitted now, {} earlier",
            self.job, self.job_id, self.submitted, self.already
        );
        if self.interrupted {
            s.push_str(" (interrupted; the ledger is up to date: rerun to go on)");
        }
        if self.queued > 0 {
            s.push_str(&format!(
                ", {} queued by the enqueued budget (`batchline wait {}` submits them as batches end)",
                self.queued, self.job
            ));
        }
        s
    }

    fn outcome(&self) -> Outcome {
        if self.interrupted {
            return Outcome::Interrupted;
        }
        match &self.wait {
            Some(w) => w.outcome(),
            None => Outcome::Clean,
        }
    }

    fn data_on_stdout(&self) -> bool {
        // The table goes to stdout only without --json; the JSON takes its place.
        false
    }

    fn stdout_text(&self) -> Option<String> {
        if !self.dry_run {
            return None;
        }
        let mut s =
            String::from("round\tshard\tendpoint\tmodel\trequests\tprompt_tokens\taction\n");
        for p in &self.plan {
            s.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                p.round, p.shard, p.endpoint, p.model, p.requests, p.prompt_tokens, p.action
            ));
        }
        match &self.cost_estimate {
            Some(c) => s.push_str(&format!("{}\n", cost_line(c))),
            None => s.push_str("cost estimate: not available (see `batchline estimate`)\n"),
        }
        Some(s)
    }
}

/// `--dry-run`'s cost estimate: `batchline estimate JOB` at the shipped prices (the
/// groups and totals of [`crate::commands::estimate::Estimate`]); None when the shards
/// cannot be read.
pub fn dry_run_cost(job: &std::path::Path, _plan: &[PlanLine]) -> Option<Value> {
    crate::commands::estimate::dry_run_value(job, &crate::batch::prices::Prices::builtin())
}

/// One human line of an estimate's totals: batch-price bounds, what is unpriced.
fn cost_line(c: &Value) -> String {
    let t = &c["totals"];
    let money = |v: &Value| match v.as_f64() {
        Some(x) if x >= 0.01 || x == 0.0 => format!("${x:.2}"),
        Some(x) => format!("${x:.6}"),
        None => "unknown".to_string(),
    };
    let mut line = format!(
        "cost estimate at the batch price: {} to {} (output {}..{} tokens)",
        money(&t["batch_cost_min"]),
        money(&t["batch_cost_max"]),
        t["output_tokens_min"],
        t["output_tokens_max"]
            .as_u64()
            .map_or("unknown".to_string(), |v| v.to_string()),
    );
    let unpriced = t["unpriced_requests"].as_u64().unwrap_or(0);
    if unpriced > 0 {
        line.push_str(&format!(
            "; {unpriced} requests of unpriced models not included"
        ));
    }
    let unlimited = t["requests_without_limit"].as_u64().unwrap_or(0);
    if unlimited > 0 {
        line.push_str(&format!(
            "; {unlimited} requests without an output limit (upper bound unknown)"
        ));
    }
    line
}

/// Checks `--metadata` pairs against the API's limits (at most 16 pairs in all, keys of
/// at most 64 characters, values of at most 512), batchline's four keys included.
pub fn check_metadata(pairs: &[(String, String)]) -> Result<Map<String, Value>> {
    let ours = [META_JOB, META_ROUND, META_SHARD, META_SHA256];
    let mut m = Map::new();
    for (k, v) in pairs {
        if k.is_empty() || k.chars().count() > 64 {
            return Err(Error::Usage(format!(
                "--metadata {k:?}: a key is 1 to 64 characters"
            )));
        }
        if v.chars().count() > 512 {
            return Err(Error::Usage(format!(
                "--metadata {k}: the value is {} characters, over the API's 512",
                v.chars().count()
            )));
        }
        if ours.contains(&k.as_str()) {
            return Err(Error::Usage(format!(
                "--metadata {k}: batchline sets this key itself"
            )));
        }
        m.insert(k.clone(), Value::from(v.clone()));
    }
    if m.len() + ours.len() > 16 {
        return Err(Error::Usage(format!(
            "--metadata: {} pairs, but a batch takes 16 and batchline uses 4 of them",
            m.len()
        )));
    }
    Ok(m)
}

fn settings_of(cfg: &SubmitConfig, old: Option<&JobSettings>) -> Result<JobSettings> {
    let mut s = old.cloned().unwrap_or_default();
    if cfg.max_enqueued_tokens.is_some() {
        s.max_enqueued_tokens = cfg.max_enqueued_tokens;
    }
    if cfg.max_enqueued_requests.is_some() {
        s.max_enqueued_requests = cfg.max_enqueued_requests;
    }
    if !cfg.metadata.is_empty() {
        s.metadata = check_metadata(&cfg.metadata)?;
    }
    Ok(s)
}

/// A shard's line in the plan; `fits`: whether the budget lets it go now.
fn plan_line(r: u32, s: &crate::job::ShardEntry, fits: &mut dyn FnMut() -> bool) -> PlanLine {
    let action = match s.state {
        ShardState::Submitted | ShardState::Ended => "done",
        ShardState::Creating => "uncertain",
        _ if s.queued_reason.as_deref() == Some("cancelled") => "cancelled",
        _ if fits() => "submit",
        _ => "queued",
    };
    PlanLine {
        round: r,
        shard: s.name.clone(),
        endpoint: s.endpoint.clone(),
        model: s.model.clone(),
        requests: s.requests,
        prompt_tokens: s.prompt_tokens,
        action: action.to_string(),
    }
}

/// The plan of a dry run: what would go now beside what already runs (the budget
/// simulated in order; nothing is written or sent).
fn dry_run(cfg: &SubmitConfig) -> Result<SubmitSummary> {
    let job = &cfg.job.job;
    let manifest = read_manifest(job)?;
    let mut ledger = match Ledger::load(job)? {
        Some(l) => l,
        None => {
            let mut l = Ledger::new(ProviderInfo {
                base_url: cfg.job.provider.base_url.clone(),
                azure: cfg.job.provider.azure,
            });
            l.rounds.push(round_zero(job, &manifest)?);
            l
        }
    };
    ledger.settings = Some(settings_of(cfg, ledger.settings.as_ref())?);
    let settings = ledger.settings.clone().unwrap_or_default();
    // Shards that would go count as enqueued for the ones after them.
    let mut enq: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for (_, s) in ledger.shards() {
        if s.is_enqueued() {
            let e = enq.entry(s.model.clone()).or_default();
            e.0 += s.prompt_tokens;
            e.1 += s.requests;
        }
    }
    let now = crate::job::ledger::now();
    let mut plan = Vec::new();
    for (r, s) in ledger.shards() {
        let line = plan_line(r, s, &mut || {
            if s.not_before.is_some_and(|nb| nb > now) {
                return false;
            }
            let e = enq.entry(s.model.clone()).or_default();
            let ok = |max: Option<u64>, q: u64, mine: u64| match max {
                None => true,
                Some(m) => q + mine <= m || (q == 0 && mine > m),
            };
            let go = ok(settings.max_enqueued_tokens, e.0, s.prompt_tokens)
                && ok(settings.max_enqueued_requests, e.1, s.requests);
            if go {
                e.0 += s.prompt_tokens;
                e.1 += s.requests;
            }
            go
        });
        plan.push(line);
    }
    Ok(summary_of(cfg, &ledger, plan, 0, true))
}

fn summary_of(
    cfg: &SubmitConfig,
    ledger: &Ledger,
    plan: Vec<PlanLine>,
    submitted: u64,
    dry: bool,
) -> SubmitSummary {
    let t = Totals::of(ledger);
    let cost = if dry {
        dry_run_cost(&cfg.job.job, &plan)
    } else {
        None
    };
    SubmitSummary {
        job: cfg.job.job.display().to_string(),
        job_id: ledger.job_id.clone(),
        dry_run: dry,
        shards: t.shards,
        requests: t.requests,
        prompt_tokens: ledger.shards().map(|(_, s)| s.prompt_tokens).sum(),
        submitted,
        already: plan.iter().filter(|p| p.action == "done").count() as u64,
        queued: plan.iter().filter(|p| p.action == "queued").count() as u64,
        plan,
        cost_estimate: cost,
        wait: None,
        interrupted: false,
    }
}

pub fn run(cfg: &SubmitConfig) -> Result<SubmitSummary> {
    if cfg.dry_run {
        return dry_run(cfg);
    }
    let mut session = Session::open(&cfg.job, true, false)?;
    if let Some((poll, _)) = cfg.wait {
        session.requeue_base = poll.max(Duration::from_millis(100));
    }
    let settings = settings_of(cfg, session.ledger.settings.as_ref())?;
    session.ledger.settings = Some(settings);
    let before: Vec<bool> = session
        .ledger
        .shards()
        .map(|(_, s)| matches!(s.state, ShardState::Submitted | ShardState::Ended))
        .collect();
    session.save()?;
    // Batches of an earlier run may have ended: their room in the budget is free.
    let step = session.refresh().and_then(|_| session.submit_ready());
    let (made, interrupted) = match step {
        Ok(m) => (m, false),
        // Stopped between two calls: what was done is in the ledger.
        Err(Error::Interrupted) => (Vec::new(), true),
        Err(e) => return Err(e),
    };
    for c in &made {
        session.common.note(&format!("submitted {}", c.line()));
    }
    let plan: Vec<PlanLine> = session
        .ledger
        .shards()
        .map(|(r, s)| plan_line(r, s, &mut || session.fits(r, s)))
        .collect();
    let already = before.iter().filter(|b| **b).count() as u64;
    let sent_now = session
        .ledger
        .shards()
        .filter(|(_, s)| matches!(s.state, ShardState::Submitted | ShardState::Ended))
        .count() as u64
        - already;
    let mut summary = summary_of(cfg, &session.ledger, plan, sent_now, false);
    summary.already = already;
    if interrupted {
        summary.interrupted = true;
        return Ok(summary);
    }
    if let Some((poll, timeout)) = cfg.wait {
        let wcfg = WaitConfig {
            job: cfg.job.clone(),
            poll,
            timeout,
            download: cfg.download,
        };
        let w = wait::wait_session(&mut session, &wcfg, made.len() as u64)?;
        summary.wait = Some(wait::finish(w)?);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits_are_checked() {
        let ok = check_metadata(&[("team".into(), "data".into())]).unwrap();
        assert_eq!(ok["team"], "data");
        assert!(check_metadata(&[("k".repeat(65), "v".into())]).is_err());
        assert!(check_metadata(&[("k".into(), "v".repeat(513))]).is_err());
        assert!(check_metadata(&[(META_JOB.into(), "x".into())]).is_err());
        let many: Vec<(String, String)> = (0..13).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_metadata(&many).is_err());
        assert!(check_metadata(&many[..12]).is_ok());
    }
}
