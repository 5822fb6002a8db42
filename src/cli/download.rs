//! `batchline download` arguments.

use clap::Args;

use batchline::commands::download::DownloadConfig;
use batchline::Error;

use super::submit::JobArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline download job/
  batchline download job/ --json | jq '.files[] | select(.action == \"fetched\")'

Writes the output and error files of every ended batch of every round into
JOB/results/round-N/<shard>.output.jsonl and .error.jsonl, streamed, atomic, and
resumed with Range after a dropped connection (or, on a rerun, after a crash). Files
already complete are skipped. Line counts are checked against each batch's
request_counts.

Exit status: 0 done; 1 done, but some file's lines do not match its batch's
request_counts (see the warnings); 2 usage or fatal error; 130 interrupted (a rerun
resumes the file that was cut).")]
pub struct DownloadArgs {
    #[command(flatten)]
    pub job: JobArgs,
}

impl DownloadArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<DownloadConfig, Error> {
        Ok(DownloadConfig {
            job: self.job.options(g)?,
        })
    }
}
