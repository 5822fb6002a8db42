//! `batchline cancel` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::cancel::CancelConfig;
use batchline::Error;

use super::provider::ProviderArgs;
use super::submit::JobArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline cancel job/
  batchline cancel job/ chat-gpt-4o-mini-00002.jsonl

Cancelled batches keep what they finished (their output files); `wait` records
their final counts. Queued shards are taken out of the queue.

Exit status: 0 done; 2 usage or fatal error, or another process holds the job.")]
pub struct CancelArgs {
    /// The job directory.
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    /// Only these shards (file names, with or without .jsonl); default: all.
    #[arg(value_name = "SHARD")]
    pub shards: Vec<String>,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

impl CancelArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<CancelConfig, Error> {
        let job = JobArgs {
            job: self.job,
            provider: self.provider,
        };
        Ok(CancelConfig {
            job: job.options(g)?,
            shards: self.shards,
        })
    }
}
