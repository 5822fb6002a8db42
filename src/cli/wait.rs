//! `batchline wait` arguments.

use std::time::Duration;

use clap::Args;

use batchline::commands::wait::WaitConfig;
use batchline::serve::faults::parse_duration;
use batchline::Error;

use super::submit::{parse_poll, JobArgs};
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline wait job/
  batchline wait job/ --poll 60 --timeout 25h

Shards queued by the enqueued budget are submitted as earlier batches end; a batch
refused with token_limit_exceeded goes back to the queue (with backoff, at most 10 times).

Exit status: 0 every batch completed; 1 some batch failed, expired or was cancelled;
2 usage or fatal error, --timeout passed, or another process holds the job;
130 interrupted (the ledger is whole: rerun to go on).")]
pub struct WaitArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Time between polls (seconds, or a duration such as 500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_poll, default_value = "10")]
    pub poll: Duration,
    /// Give up after this long (exit 2; rerun to go on).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Download each batch's output and error files as it ends (as `batchline
    /// download` does), into JOB/results/.
    #[arg(long)]
    pub download: bool,
}

impl WaitArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<WaitConfig, Error> {
        Ok(WaitConfig {
            job: self.job.options(g)?,
            poll: self.poll,
            timeout: self.timeout,
            download: self.download,
        })
    }
}
