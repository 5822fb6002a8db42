//! `batchline resubmit` arguments.

use clap::Args;

use batchline::commands::resubmit::ResubmitConfig;
use batchline::Error;

use super::submit::JobArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline resubmit job/
  batchline resubmit job/ --base-url http://127.0.0.1:8080/v1
  batchline resubmit job/ --json | jq .final_failed

The requests of round 0 whose latest outcome is retryable (HTTP 429 and 5xx, expired,
cancelled) or missing become round N+1 in JOB/rounds/round-N/, recorded in the ledger and
submitted like `submit` does. Requests that failed for a final reason (e.g. a 400) are
not resubmitted; the summary counts both. Nothing is done while a batch of the job is
running or its result files are not downloaded. Join every round with `join JOB`.

Exit status: 0 done (a new round, nothing to resubmit, or batches still running);
2 usage or fatal error, or another process holds the job; 130 interrupted
(the ledger is whole: rerun to go on).")]
pub struct ResubmitArgs {
    #[command(flatten)]
    pub job: JobArgs,
}

impl ResubmitArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<ResubmitConfig, Error> {
        Ok(ResubmitConfig {
            job: self.job.options(g)?,
        })
    }
}
