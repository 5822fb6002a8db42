//! `batchline wait JOB`: polls the job's batches until every shard ended and nothing is
//! queued, submitting queued shards as room frees up in the enqueued-token budget (and
//! re-queued ones once their backoff passed). Progress bars on a terminal; otherwise
//! one plain line per change. Ctrl-C stops between calls; the ledger is whole.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lifecycle::{change_of, Change, JobOptions, Session, Totals};
use crate::commands::{Outcome, Summary};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct WaitConfig {
    pub job: JobOptions,
    /// Time between polls.
    pub poll: Duration,
    /// Give up after this long (exit 2; rerun `wait` to go on).
    pub timeout: Option<Duration>,
    /// `--download`: download each batch's files as it ends (`commands::download`).
    pub download: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitSummary {
    pub job: String,
    pub job_id: String,
    #[serde(flatten)]
    pub totals: Totals,
    pub submitted: u64,
    pub polls: u64,
    pub seconds: f64,
    pub timed_out: bool,
    pub interrupted: bool,
    /// With `--download`: what was downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<super::download::DownloadSummary>,
}

impl Summary for WaitSummary {
    fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "wait {}: {} shards: {} completed, {} failed, {} expired, {} cancelled",
            self.job, t.shards, t.completed, t.failed, t.expired, t.cancelled
        );
        if t.running + t.queued > 0 {
            s.push_str(&format!(", {} running, {} queued", t.running, t.queued));
        }
        s.push_str(&format!(
            "; requests {} completed, {} failed of {}",
            t.requests_completed, t.requests_failed, t.requests
        ));
        if t.input_tokens + t.output_tokens > 0 {
            s.push_str(&format!(
                "; tokens {} in, {} out",
                t.input_tokens, t.output_tokens
            ));
        }
        s.push_str(&format!(" in {:.1} s", self.seconds));
        if let Some(d) = &self.download {
            s.push_str(&format!("; {}", d.brief()));
        }
        if self.timed_out {
            s.push_str(" (timed out: run `batchline wait` again to go on)");
        }
        if self.interrupted {
            s.push_str(" (interrupted; the ledger is up to date: rerun to go on)");
        }
        s
    }

    fn outcome(&self) -> Outcome {
        if self.interrupted {
            Outcome::Interrupted
        } else if self.totals.all_completed()
            && self.download.as_ref().is_none_or(|d| d.mismatched == 0)
        {
            Outcome::Clean
        } else {
            Outcome::WithRejects
        }
    }

    fn data_on_stdout(&self) -> bool {
        false
    }
}

pub fn run(cfg: &WaitConfig) -> Result<WaitSummary> {
    let mut session = Session::open(&cfg.job, false, false)?;
    session.requeue_base = cfg.poll.max(Duration::from_millis(100));
    let summary = wait_session(&mut session, cfg, 0)?;
    finish(summary)
}

/// A timed-out wait is an error (exit 2) after its summary line.
pub(crate) fn finish(summary: WaitSummary) -> Result<WaitSummary> {
    if summary.timed_out {
        return Err(Error::Other(format!(
            "{}; timed out with {} batches running and {} shards queued (run `batchline wait {}` again to go on)",
            summary.human(),
            summary.totals.running,
            summary.totals.queued,
            summary.job
        )));
    }
    Ok(summary)
}

/// Progress on a terminal: one bar per batch.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: HashMap<(u32, String), indicatif::ProgressBar>,
}

impl Bars {
    fn new(wanted: bool) -> Option<Bars> {
        use std::io::IsTerminal;
        if !wanted || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bars {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            ),
            bars: HashMap::new(),
        })
    }

    fn show(&mut self, c: &Change) {
        let key = (c.round, c.shard.clone());
        let bar = self.bars.entry(key).or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(c.total.max(1)));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:30!} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(c.shard.clone());
            b
        });
        bar.set_length(c.total.max(1));
        bar.set_position(c.completed + c.failed);
        bar.set_message(format!("{} ({} failed)", c.status, c.failed));
        if matches!(
            c.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        ) {
            bar.finish();
        }
    }
}

/// Polls until the job is done (or the timeout, or Ctrl-C). `submitted`: shards the
/// caller already submitted in this process (for the summary).
pub(crate) fn wait_session(
    session: &mut Session,
    cfg: &WaitConfig,
    submitted: u64,
) -> Result<WaitSummary> {
    let start = Instant::now();
    let mut bars = Bars::new(cfg.job.progress);
    let mut submitted = submitted;
    let mut polls = 0u64;
    let mut timed_out = false;
    let mut interrupted = false;
    let mut download = cfg
        .download
        .then(|| super::download::DownloadSummary::new(&session.job));
    if let Some(b) = bars.as_mut() {
        for (r, s) in session.ledger.shards() {
            b.show(&change_of(r, s));
        }
    }
    loop {
        let step = (|| -> Result<bool> {
            polls += 1;
            let mut changes = session.refresh()?;
            let made = session.submit_ready()?;
            submitted += made.len() as u64;
            changes.extend(made);
            for c in &changes {
                match bars.as_mut() {
                    Some(b) => b.show(c),
                    None => session.common.note(&c.line()),
                }
            }
            if let Some(d) = download.as_mut() {
                super::download::Files {
                    client: &session.client,
                    job: &session.job,
                    common: &session.common,
                    progress: false,
                    notes: bars.is_none(),
                }
                .download_ended(&mut session.ledger, d)?;
            }
            Ok(session.all_ended())
        })();
        match step {
            Ok(true) => break,
            Ok(false) => {}
            Err(Error::Interrupted) => {
                interrupted = true;
                break;
            }
            Err(e) => return Err(e),
        }
        if cfg.timeout.is_some_and(|t| start.elapsed() >= t) {
            timed_out = true;
            break;
        }
        let mut pause = cfg.poll;
        if let Some(t) = cfg.timeout {
            pause = pause.min(t.saturating_sub(start.elapsed()));
        }
        if session.client.sleep(pause).is_err() {
            interrupted = true;
            break;
        }
    }
    if let Some(b) = &bars {
        let _ = b.multi.clear();
    }
    session.save()?;
    Ok(WaitSummary {
        job: session.job.display().to_string(),
        job_id: session.ledger.job_id.clone(),
        totals: Totals::of(&session.ledger),
        submitted,
        polls,
        seconds: (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        timed_out,
        interrupted,
        download,
    })
}
