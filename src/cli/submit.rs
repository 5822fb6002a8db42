//! `batchline submit` arguments, and the job arguments every lifecycle command shares.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use batchline::commands::lifecycle::JobOptions;
use batchline::commands::submit::SubmitConfig;
use batchline::serve::faults::parse_duration;
use batchline::Error;

use super::provider::ProviderArgs;
use super::GlobalArgs;

/// The job directory and where its API is.
#[derive(Args, Debug, Clone)]
pub struct JobArgs {
    /// The job directory: a `batchline shard` output directory (its manifest.json).
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

impl JobArgs {
    pub fn options(&self, g: &GlobalArgs) -> Result<JobOptions, Error> {
        Ok(JobOptions {
            job: self.job.clone(),
            provider: self.provider.resolve()?,
            common: g.common(super::OnError::Fail, None),
            progress: !g.quiet && !g.json,
        })
    }
}

/// `--poll` of wait and submit --wait: seconds (`10`, `0.5`) or a duration (`500ms`).
pub fn parse_poll(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Duration::from_secs_f64(v),
        _ => parse_duration(s)?,
    };
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline submit job/ --wait
  batchline submit job/ --dry-run --max-enqueued-tokens 2000000 --metadata team=data
  batchline submit job/ --base-url https://NAME.openai.azure.com/openai/v1 --api-version 2024-10-21

JOB is a `shard` output directory (`shard requests.jsonl --out-dir job/ --max-tokens N`).

The key comes from OPENAI_API_KEY (Azure: AZURE_OPENAI_API_KEY, or --api-key-env NAME).
The job's state is JOB/ledger.json: a rerun (after a crash, Ctrl-C or kill -9) does only
what is left and never creates a second batch for a shard.

Exit status: 0 submitted (with --wait: every batch completed); 1 with --wait, some batch
failed, expired or was cancelled; 2 usage or fatal error, or another process
holds the job; 130 interrupted (the ledger is whole: rerun to go on).")]
pub struct SubmitArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Print the plan (shards, requests, prompt tokens, what the budget would queue)
    /// and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on as `batchline wait` does once the shards are submitted.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: time between polls (seconds, or a duration such as 500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_poll, default_value = "10")]
    pub poll: Duration,
    /// With --wait: give up waiting after this long (exit 2; rerun `wait` to go on).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// With --wait: download each batch's output and error files as it ends (as
    /// `wait --download` does), into JOB/results/.
    #[arg(long, requires = "wait")]
    pub download: bool,
    /// Metadata for every batch (repeatable; at most 12 pairs: batchline uses 4 of 16).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Prompt tokens per model that the job's unfinished batches may hold (the
    /// provider's enqueued-token limit); other shards wait in the queue.
    #[arg(long, value_name = "N")]
    pub max_enqueued_tokens: Option<u64>,
    /// Requests per model that the job's unfinished batches may hold.
    #[arg(long, value_name = "N")]
    pub max_enqueued_requests: Option<u64>,
}

impl SubmitArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<SubmitConfig, Error> {
        if self.wait && self.dry_run {
            return Err(Error::Usage(
                "--dry-run sends nothing: it cannot --wait".into(),
            ));
        }
        Ok(SubmitConfig {
            job: self.job.options(g)?,
            dry_run: self.dry_run,
            wait: self.wait.then_some((self.poll, self.timeout)),
            download: self.download,
            metadata: self.metadata,
            max_enqueued_tokens: self.max_enqueued_tokens,
            max_enqueued_requests: self.max_enqueued_requests,
        })
    }
}
