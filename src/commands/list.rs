//! `batchline list`: the account's batches, newest first, paged through
//! `GET /v1/batches` up to `--limit`.

use serde::Serialize;

use crate::api::{Batch, Client, Provider};
use crate::commands::{Outcome, Summary};
use crate::engine::Cancel;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ListConfig {
    pub provider: Provider,
    /// Batches to show at most.
    pub limit: u64,
    pub cancel: Cancel,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub batches: Vec<Batch>,
    /// Whether the account holds more than `limit`.
    pub more: bool,
}

impl Summary for ListSummary {
    fn human(&self) -> String {
        format!(
            "list: {} batches{}",
            self.batches.len(),
            if self.more {
                " (more: raise --limit)"
            } else {
                ""
            }
        )
    }

    fn outcome(&self) -> Outcome {
        Outcome::Clean
    }

    fn data_on_stdout(&self) -> bool {
        // The table goes to stdout only without --json; the JSON takes its place.
        false
    }

    fn stdout_text(&self) -> Option<String> {
        let mut s = String::from(
            "batch\tstatus\tendpoint\tcompleted/failed/total\tcreated_at\tjob/shard\n",
        );
        for b in &self.batches {
            let c = b.request_counts.unwrap_or_default();
            let tag = match (b.meta("batchline_job"), b.meta("batchline_shard")) {
                (Some(j), Some(sh)) => format!("{j}/{sh}"),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "{}\t{}\t{}\t{}/{}/{}\t{}\t{tag}\n",
                b.id,
                b.status,
                b.endpoint.as_deref().unwrap_or("-"),
                c.completed,
                c.failed,
                c.total,
                b.created_at
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
            ));
        }
        Some(s)
    }
}

pub fn run(cfg: &ListConfig) -> Result<ListSummary> {
    let client = Client::new(cfg.provider.clone())?.with_stop(cfg.cancel.flag());
    let mut batches = Vec::new();
    let mut more = false;
    let page = cfg.limit.clamp(1, 100) as u32;
    client.for_each_batch(page, &mut |b| {
        if batches.len() as u64 >= cfg.limit {
            more = true;
            return false;
        }
        batches.push(b.clone());
        true
    })?;
    Ok(ListSummary { batches, more })
}
