//! `batchline download` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::api::RetryPolicy;
use batchline::commands::download::DownloadConfig;
use batchline::Error;

use super::provider::ProviderArgs;
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
    /// The job directory: a `batchline shard` output directory that was submitted.
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

impl DownloadArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<DownloadConfig, Error> {
        Ok(DownloadConfig {
            job: self.job,
            provider: self.provider.resolve()?,
            policy: RetryPolicy::default(),
            common: g.common(super::OnError::Fail, None),
            progress: !g.quiet && !g.json,
        })
    }
}
