//! `batchline resubmit JOB`: the requests of a job whose latest outcome is retryable,
//! expired or missing become the job's next round, written, recorded and submitted.
//!
//! The outcome of every request of round 0's manifest is what `batchline join JOB`
//! finds in the downloaded results of every round (the latest round's result wins),
//! decided by the one classifier (`batch::classify`, through join's `--retry`): HTTP
//! 429 and 5xx, `batch_expired`, `batch_cancelled` and requests without any result are
//! sent again; a request that failed for a final reason (a 400 `invalid_request_error`,
//! say) is not, and the summary counts both. The requests go through the shard
//! library code into `JOB/rounds/round-N/` (its own manifest, cut to round 0's
//! limits), the round is appended to the ledger, and its shards are submitted by the
//! lifecycle's own code ([`Session::submit_ready`]: the same two-phase creates, budget
//! and metadata as `submit`).
//!
//! Never twice, never lost:
//! - nothing is decided while a batch of the job is still running, or while an ended
//!   batch's result files are not all downloaded (its requests would look missing and
//!   be paid for again): resubmit says what to run first and creates nothing;
//! - a rerun after the new round was recorded submits what is left of it (it does not
//!   make another round); a rerun after a crash between writing the round's shards
//!   and recording it writes the same shards again (same requests, same bytes);
//! - nothing to resubmit: said so, no empty round.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::join::{self, JoinConfig};
use super::lifecycle::{round_zero, JobOptions, Session};
use super::shard::{self, ShardConfig};
use super::{CommonOptions, Outcome, Summary};
use crate::batch::manifest::Manifest;
use crate::error::{Error, Result};
use crate::io::input::InputSpec;
use crate::io::output::OutputSpec;
use crate::job::ShardState;

#[derive(Debug, Clone)]
pub struct ResubmitConfig {
    pub job: JobOptions,
}

/// What `resubmit` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResubmitSummary {
    pub job: String,
    /// `submitted` (a new round), `continued` (an earlier resubmit's round was
    /// submitted further), `running` (batches have not ended: nothing done),
    /// `nothing` (no request to resubmit).
    pub action: &'static str,
    /// The round made or continued.
    pub round: Option<u32>,
    /// Requests of round 0 and their latest outcomes.
    pub requests: u64,
    pub ok: u64,
    pub missing: u64,
    /// Failed for a reason worth retrying (429, 5xx, expired, cancelled).
    pub retryable: u64,
    /// Failed for a final reason: not resubmitted.
    pub final_failed: u64,
    /// Requests in the new round (`missing + retryable`).
    pub resubmitted: u64,
    /// Failures per error code (retryable and final).
    pub error_codes: std::collections::BTreeMap<String, u64>,
    /// Shards of the round, and those submitted by this run.
    pub shards: u64,
    pub submitted: u64,
    /// Shards still queued by the enqueued budget (`wait` submits them).
    pub queued: u64,
    /// Shards of the job whose batches have not ended (action `running`).
    pub running: u64,
}

impl Summary for ResubmitSummary {
    fn human(&self) -> String {
        let counts = format!(
            "{} requests: {} ok, {} retryable, {} missing, {} failed for good (not resubmitted)",
            self.requests, self.ok, self.retryable, self.missing, self.final_failed
        );
        match self.action {
            "running" => format!(
                "resubmit {}: {} batches of round {} have not ended; nothing resubmitted (run `batchline wait {}` and `batchline download {}` first)",
                self.job,
                self.running,
                self.round.unwrap_or(0),
                self.job,
                self.job
            ),
            "nothing" => format!("resubmit {}: nothing to resubmit; {counts}", self.job),
            _ => {
                let mut s = format!(
                    "resubmit {}: round {} ({} requests in {} shards): {} shards submitted now",
                    self.job,
                    self.round.unwrap_or(0),
                    self.resubmitted,
                    self.shards,
                    self.submitted
                );
                if self.queued > 0 {
                    s.push_str(&format!(
                        ", {} queued by the enqueued budget (`batchline wait {}` submits them)",
                        self.queued, self.job
                    ));
                }
                if self.action == "submitted" {
                    s.push_str(&format!("; {counts}"));
                }
                s
            }
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome::Clean
    }

    fn data_on_stdout(&self) -> bool {
        false
    }
}

fn quiet(common: &CommonOptions) -> CommonOptions {
    let mut c = common.clone();
    c.verbose = false;
    c.engine.progress = false;
    c
}

/// The result directories of every round, in round order, that hold files.
fn result_dirs(job: &Path) -> Result<Vec<PathBuf>> {
    match join::job_results(job) {
        Ok(d) => Ok(d),
        Err(Error::Usage(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Runs `resubmit`.
pub fn run(cfg: &ResubmitConfig) -> Result<ResubmitSummary> {
    let mut session = Session::open(&cfg.job, false, false)?;
    let job = cfg.job.job.clone();
    let mut summary = ResubmitSummary {
        job: job.display().to_string(),
        action: "nothing",
        round: None,
        requests: 0,
        ok: 0,
        missing: 0,
        retryable: 0,
        final_failed: 0,
        resubmitted: 0,
        error_codes: Default::default(),
        shards: 0,
        submitted: 0,
        queued: 0,
        running: 0,
    };
    session.refresh()?;
    let latest = session
        .ledger
        .rounds
        .iter()
        .map(|r| r.round)
        .max()
        .unwrap_or(0);
    // An earlier resubmit recorded this round but did not submit all of it: go on.
    if latest > 0 {
        let round = session
            .ledger
            .rounds
            .iter()
            .find(|r| r.round == latest)
            .expect("latest round");
        if round.shards.iter().any(unsent) {
            summary.shards = round.shards.len() as u64;
            summary.resubmitted = round.shards.iter().map(|s| s.requests).sum();
            (summary.submitted, summary.queued) = submit_round(&mut session, latest)?;
            summary.action = "continued";
            summary.round = Some(latest);
            return Ok(summary);
        }
    }
    // Batches still running (or queued): their outcomes are not known yet.
    let running = session
        .ledger
        .shards()
        .filter(|(_, s)| !session_done(s))
        .count() as u64;
    if running > 0 {
        summary.action = "running";
        summary.round = Some(latest);
        summary.running = running;
        return Ok(summary);
    }
    // Every result file of every ended batch must be here, whole.
    let mut absent = Vec::new();
    for (round, s) in session.ledger.shards() {
        let Some(b) = &s.batch else { continue };
        for (kind, id, got) in [
            ("output", &b.output_file_id, &s.downloads.output),
            ("error", &b.error_file_id, &s.downloads.error),
        ] {
            if let Some(id) = id {
                if !got.as_ref().is_some_and(|d| d.complete && &d.file_id == id) {
                    absent.push(format!("{} ({kind}, round {round})", s.name));
                }
            }
        }
    }
    if !absent.is_empty() {
        return Err(Error::Usage(format!(
            "{}: {} result files of ended batches are not downloaded yet ({}{}); run `batchline download {}` first: their requests would look missing and be paid for twice",
            job.display(),
            absent.len(),
            absent.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if absent.len() > 3 { ", ..." } else { "" },
            job.display()
        )));
    }
    let next = latest + 1;
    let rounds_dir = job.join("rounds");
    std::fs::create_dir_all(&rounds_dir).map_err(|e| Error::io(&rounds_dir, e))?;
    // The requests to send again, as join's --retry writes them (request lines, byte
    // for byte, in request order), in a temporary file removed in every case.
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".round-{next}-"))
        .tempdir_in(&rounds_dir)
        .map_err(|e| Error::io(&rounds_dir, e))?;
    let retry = scratch.path().join("retry.jsonl");
    let mut results = result_dirs(&job)?;
    if results.is_empty() {
        // No result at all yet: every request is missing.
        let none = scratch.path().join("no-results.jsonl");
        std::fs::write(&none, b"").map_err(|e| Error::io(&none, e))?;
        results.push(none);
    }
    let mut jcfg = JoinConfig::new(InputSpec::Path(job.clone()), results);
    jcfg.output = OutputSpec::parse("/dev/null");
    // Only the side file matters: write the least into the joined output.
    jcfg.fields = vec![join::Field::Status];
    jcfg.retry = Some(retry.clone());
    jcfg.temp_dir = Some(scratch.path().to_path_buf());
    jcfg.common = quiet(&session.common);
    let joined = join::run(&jcfg)?;
    summary.requests = joined.requests;
    summary.ok = joined.ok;
    summary.missing = joined.missing;
    summary.retryable = joined.retry.saturating_sub(joined.missing);
    summary.final_failed = joined.failed.saturating_sub(summary.retryable);
    summary.resubmitted = joined.retry;
    summary.error_codes = joined.error_codes.clone();
    if joined.retry == 0 {
        summary.round = Some(latest);
        return Ok(summary);
    }
    // Round N's shards, cut to round 0's limits by the shard command's own code.
    let m0 = Manifest::read(&job)?.ok_or_else(|| {
        Error::Other(format!(
            "{}: the job's manifest.json is gone",
            job.display()
        ))
    })?;
    let out_dir = rounds_dir.join(format!("round-{next}"));
    let mut scfg = ShardConfig::new(InputSpec::Path(retry), Some(out_dir.clone()));
    scfg.max_requests = m0.limits.max_requests;
    scfg.max_bytes = m0.limits.max_bytes;
    scfg.max_tokens = m0.limits.max_tokens;
    scfg.max_embedding_inputs = m0.limits.max_embedding_inputs;
    // A directory left by a crash before the round was recorded: the same requests
    // give the same shards, written over it.
    scfg.force = true;
    scfg.common = quiet(&session.common);
    shard::run(&scfg)?;
    drop(scratch);
    let manifest = Manifest::read(&out_dir)?.ok_or_else(|| {
        Error::Other(format!(
            "{}: shard wrote no manifest.json",
            out_dir.display()
        ))
    })?;
    let mut round = round_zero(&out_dir, &manifest)?;
    round.round = next;
    round.dir = format!("rounds/round-{next}");
    summary.shards = round.shards.len() as u64;
    session.ledger.rounds.push(round);
    session.save()?;
    (summary.submitted, summary.queued) = submit_round(&mut session, next)?;
    summary.action = "submitted";
    summary.round = Some(next);
    Ok(summary)
}

/// Whether a shard is still to be sent (not cancelled before it was).
fn unsent(s: &crate::job::ShardEntry) -> bool {
    s.state != ShardState::Ended
        && s.state != ShardState::Submitted
        && s.queued_reason.as_deref() != Some("cancelled")
}

/// Submits what the budget lets go now (the rest stays queued for `wait`), noting each
/// batch made; returns (submitted, still queued in round `n`).
fn submit_round(session: &mut Session, n: u32) -> Result<(u64, u64)> {
    let made = session.submit_ready()?;
    for c in &made {
        session.common.note(&format!("submitted {}", c.line()));
    }
    let queued = session
        .ledger
        .rounds
        .iter()
        .find(|r| r.round == n)
        .map_or(0, |r| r.shards.iter().filter(|s| unsent(s)).count() as u64);
    Ok((made.len() as u64, queued))
}

/// Whether nothing more will happen to this shard: its batch ended, or it was
/// cancelled before it was sent.
fn session_done(s: &crate::job::ShardEntry) -> bool {
    s.state == ShardState::Ended || s.queued_reason.as_deref() == Some("cancelled")
}
