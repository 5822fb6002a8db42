//! `batchline status JOB`: one line per shard (batch id, status, completed/failed/total,
//! age), the totals, what is queued and, when batches carry `usage`, the tokens used.
//! Refreshes from the API and writes the ledger (read-only when another batchline
//! process holds the job, e.g. a `wait` in another terminal).

use serde::Serialize;

use super::lifecycle::{age, JobOptions, Session, Totals};
use crate::batch::prices::Prices;
use crate::commands::{Outcome, Summary};
use crate::error::Result;
use crate::job::ledger::now;

#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub job: JobOptions,
}

/// One shard as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusLine {
    pub round: u32,
    pub shard: String,
    pub model: String,
    pub state: String,
    pub batch_id: Option<String>,
    pub status: Option<String>,
    pub completed: u64,
    pub failed: u64,
    pub total: u64,
    pub age_seconds: Option<u64>,
    pub queued_reason: Option<String>,
    pub not_before: Option<u64>,
    pub token_limit_retries: u32,
    pub usage: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusSummary {
    pub job: String,
    pub job_id: String,
    pub shards: Vec<StatusLine>,
    pub totals: Totals,
    /// The tokens the batches report in `usage`, at the batch price of the shipped
    /// table (`None` when no batch reports usage yet).
    pub cost_used: Option<CostUsed>,
    /// False when another process held the job (nothing was written).
    pub ledger_updated: bool,
}

/// What the job's tokens cost so far, from the batches' `usage`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CostUsed {
    /// Dollars at the batch price for the models in the price table.
    pub batch_cost: f64,
    /// Tokens of models without a price (not in `batch_cost`), and those models.
    pub unpriced_input_tokens: u64,
    pub unpriced_output_tokens: u64,
    pub unpriced_models: Vec<String>,
}

impl CostUsed {
    fn of(shards: &[StatusLine], prices: &Prices) -> Option<CostUsed> {
        let mut c = CostUsed::default();
        let mut any = false;
        for l in shards {
            let Some(u) = &l.usage else { continue };
            let get = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let (i, o) = (get("input_tokens"), get("output_tokens"));
            any = true;
            match prices.lookup(&l.model, None) {
                Ok(p) => c.batch_cost += p.cost(i, o, true),
                Err(_) => {
                    c.unpriced_input_tokens += i;
                    c.unpriced_output_tokens += o;
                    if !c.unpriced_models.contains(&l.model) {
                        c.unpriced_models.push(l.model.clone());
                    }
                }
            }
        }
        any.then_some(c)
    }
}

impl Summary for StatusSummary {
    fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "status {} ({}): {} shards: {} completed, {} failed, {} expired, {} cancelled, {} running, {} queued; requests {} completed, {} failed of {}",
            self.job, self.job_id, t.shards, t.completed, t.failed, t.expired, t.cancelled, t.running, t.queued,
            t.requests_completed, t.requests_failed, t.requests
        );
        if t.input_tokens + t.output_tokens > 0 {
            s.push_str(&format!(
                "; tokens used: {} in, {} out",
                t.input_tokens, t.output_tokens
            ));
        }
        if let Some(c) = &self.cost_used {
            let money = if c.batch_cost >= 0.01 || c.batch_cost == 0.0 {
                format!("${:.2}", c.batch_cost)
            } else {
                format!("${:.6}", c.batch_cost)
            };
            s.push_str(&format!("; cost at the batch price: {money}"));
            if !c.unpriced_models.is_empty() {
                s.push_str(&format!(
                    " (not counted: {} in, {} out of {}, no price; see `batchline estimate --prices`)",
                    c.unpriced_input_tokens,
                    c.unpriced_output_tokens,
                    c.unpriced_models.join(", ")
                ));
            }
        }
        s
    }

    fn outcome(&self) -> Outcome {
        Outcome::Clean
    }

    fn data_on_stdout(&self) -> bool {
        // The table goes to stdout only without --json; the JSON takes its place.
        false
    }

    fn stdout_text(&self) -> Option<String> {
        let mut s = String::from("shard\tbatch\tstatus\tcompleted/failed/total\tage\n");
        for l in &self.shards {
            let name = if l.round > 0 {
                format!("round-{}/{}", l.round, l.shard)
            } else {
                l.shard.clone()
            };
            let status = match (&l.status, &l.queued_reason) {
                (Some(st), _) => st.clone(),
                (None, Some(q)) => format!("queued ({q})"),
                (None, None) => l.state.clone(),
            };
            s.push_str(&format!(
                "{name}\t{}\t{status}\t{}/{}/{}\t{}\n",
                l.batch_id.as_deref().unwrap_or("-"),
                l.completed,
                l.failed,
                l.total,
                l.age_seconds.map(age).unwrap_or_else(|| "-".into())
            ));
        }
        Some(s)
    }
}

pub fn run(cfg: &StatusConfig) -> Result<StatusSummary> {
    let mut session = Session::open(&cfg.job, false, true)?;
    session.refresh()?;
    Ok(summary(&session))
}

pub(crate) fn summary(session: &Session) -> StatusSummary {
    let t = now();
    let shards = session
        .ledger
        .shards()
        .map(|(r, s)| {
            let counts = s.request_counts();
            StatusLine {
                round: r,
                shard: s.name.clone(),
                model: s.model.clone(),
                state: s.state.name().to_string(),
                batch_id: s.batch_id.clone(),
                status: s.status().map(str::to_string),
                completed: counts.completed,
                failed: counts.failed,
                total: if counts.total > 0 {
                    counts.total
                } else {
                    s.requests
                },
                age_seconds: s
                    .batch
                    .as_ref()
                    .and_then(|b| b.created_at)
                    .map(|c| b_end(s).unwrap_or(t).saturating_sub(c)),
                queued_reason: s.queued_reason.clone(),
                not_before: s.not_before,
                token_limit_retries: s.token_limit_retries,
                usage: s.batch.as_ref().and_then(|b| b.usage.clone()),
            }
        })
        .collect::<Vec<_>>();
    StatusSummary {
        job: session.job.display().to_string(),
        job_id: session.ledger.job_id.clone(),
        cost_used: CostUsed::of(&shards, &Prices::builtin()),
        shards,
        totals: Totals::of(&session.ledger),
        ledger_updated: session.writable(),
    }
}

/// The age of a batch runs to its end, if it ended.
fn b_end(s: &crate::job::ShardEntry) -> Option<u64> {
    s.batch.as_ref().and_then(|b| b.ended_at)
}
