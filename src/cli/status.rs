//! `batchline status` arguments.

use clap::Args;

use batchline::commands::status::StatusConfig;
use batchline::Error;

use super::submit::JobArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline status job/
  batchline status job/ --json | jq '.totals'

One line per shard on stdout (shard, batch id, status, completed/failed/total, age),
the totals on stderr. Refreshes from the API and updates JOB/ledger.json (read-only
while another process, such as a wait, holds the job).

Exit status: 0 shown; 2 usage or fatal error.")]
pub struct StatusArgs {
    #[command(flatten)]
    pub job: JobArgs,
}

impl StatusArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<StatusConfig, Error> {
        Ok(StatusConfig {
            job: self.job.options(g)?,
        })
    }
}
