//! `batchline cancel JOB [SHARD...]`: cancels the unfinished batches of a job (or of the
//! shards named) and takes its queued shards out of the queue. The batches go through
//! `cancelling` to `cancelled`; what they finished stays in their output files, and
//! `wait` records the final counts.

use serde::Serialize;

use super::lifecycle::{JobOptions, Session, Totals};
use crate::commands::{Outcome, Summary};
use crate::error::{Error, Result};
use crate::job::ShardState;

#[derive(Debug, Clone)]
pub struct CancelConfig {
    pub job: JobOptions,
    /// Shard names (with or without `.jsonl`); empty: every shard.
    pub shards: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CancelSummary {
    pub job: String,
    pub job_id: String,
    /// Batches asked to cancel.
    pub cancelled: Vec<String>,
    /// Queued shards taken out of the queue.
    pub unqueued: Vec<String>,
    /// Shards whose batch had already ended.
    pub already_ended: u64,
    pub totals: Totals,
}

impl Summary for CancelSummary {
    fn human(&self) -> String {
        format!(
            "cancel {}: {} batches cancelling, {} queued shards taken out of the queue, {} already ended (`batchline wait {}` records the final counts)",
            self.job,
            self.cancelled.len(),
            self.unqueued.len(),
            self.already_ended,
            self.job
        )
    }

    fn outcome(&self) -> Outcome {
        Outcome::Clean
    }

    fn data_on_stdout(&self) -> bool {
        false
    }
}

pub fn run(cfg: &CancelConfig) -> Result<CancelSummary> {
    let mut session = Session::open(&cfg.job, false, false)?;
    let all: Vec<(u32, String)> = session
        .ledger
        .shards()
        .map(|(r, s)| (r, s.name.clone()))
        .collect();
    let chosen: Vec<(u32, String)> = if cfg.shards.is_empty() {
        all.clone()
    } else {
        let mut v = Vec::new();
        for want in &cfg.shards {
            let hits: Vec<_> = all
                .iter()
                .filter(|(_, n)| n == want || n.strip_suffix(".jsonl") == Some(want.as_str()))
                .cloned()
                .collect();
            if hits.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no shard {want:?} in this job (its shards: {})",
                    cfg.job.job.display(),
                    all.iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            v.extend(hits);
        }
        v
    };
    session.refresh()?;
    let mut cancelled = Vec::new();
    let mut unqueued = Vec::new();
    let mut already_ended = 0;
    for (round, name) in chosen {
        let s = session.shard(round, &name).clone();
        match s.state {
            ShardState::Ended => already_ended += 1,
            ShardState::Submitted => {
                let id = s.batch_id.clone().expect("submitted has a batch id");
                match session.client.cancel_batch(&id) {
                    Ok(b) => {
                        let sh = session.shard_mut(round, &name);
                        sh.batch = Some(crate::job::BatchSnapshot::of(&b));
                        if b.is_terminal() {
                            sh.state = ShardState::Ended;
                        }
                        cancelled.push(id);
                    }
                    // 409: it ended meanwhile; the next refresh records how.
                    Err(e) if e.kind == crate::api::ApiErrorKind::Status(409) => already_ended += 1,
                    Err(e) => return Err(Error::Other(format!("{name}: {}", e.message))),
                }
                session.save()?;
            }
            ShardState::Creating => {
                // Its batch may exist: find it first, then cancel it.
                match session.find_batch(round, &name)? {
                    Some(b) => {
                        session.client.cancel_batch(&b.id).map_err(Error::from)?;
                        let sh = session.shard_mut(round, &name);
                        sh.batch_id = Some(b.id.clone());
                        sh.batch = Some(crate::job::BatchSnapshot::of(&b));
                        sh.state = ShardState::Submitted;
                        cancelled.push(b.id);
                    }
                    None => {
                        let sh = session.shard_mut(round, &name);
                        sh.state = if sh.file_id.is_some() {
                            ShardState::Uploaded
                        } else {
                            ShardState::Pending
                        };
                        sh.queued_reason = Some("cancelled".into());
                        unqueued.push(name.clone());
                    }
                }
                session.save()?;
            }
            _ => {
                session.shard_mut(round, &name).queued_reason = Some("cancelled".into());
                session.save()?;
                unqueued.push(name.clone());
            }
        }
    }
    Ok(CancelSummary {
        job: session.job.display().to_string(),
        job_id: session.ledger.job_id.clone(),
        cancelled,
        unqueued,
        already_ended,
        totals: Totals::of(&session.ledger),
    })
}
