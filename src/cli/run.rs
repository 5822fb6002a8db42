//! `batchline run` arguments: where requests go, limits, and keys from the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use batchline::commands::run::{OutputOrder, RunConfig};
use batchline::exec::{AuthStyle, ExecConfig};
use batchline::io::input::InputSpec;
use batchline::serve::faults::parse_duration;
use batchline::Error;

use super::provider::ProviderArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline run requests.jsonl -o results.jsonl --errors errors.jsonl --rpm 5000 --tpm 2000000
  batchline run requests.jsonl -o results.jsonl --base-url http://localhost:8000/v1 --concurrency 256
  batchline run - -o results.jsonl --base-url https://NAME.openai.azure.com/openai/v1 --api-version 2024-10-21

The key comes from OPENAI_API_KEY (Azure: AZURE_OPENAI_API_KEY, or --api-key-env NAME).
OUT is appended to: a rerun skips the custom_ids it (and --errors) already holds.

Exit status: 0 every request succeeded; 1 some failed or were not valid requests (see
the error file); 2 usage or fatal error; 130 interrupted (what finished is kept).")]
pub struct RunArgs {
    /// Batch request lines (as `build` writes them), or `-` for stdin.
    #[arg(value_name = "REQUESTS")]
    pub requests: String,
    /// Result lines are appended here; a rerun skips the custom_ids already in it.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Failed requests and bad lines go here (default: OUT).
    #[arg(long, value_name = "ERRFILE")]
    pub errors: Option<PathBuf>,
    #[command(flatten)]
    pub provider: ProviderArgs,
    /// Requests in flight at most.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per minute, spread evenly (the server's x-ratelimit headers may lower it).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Tokens per minute: prompt tokens plus max_tokens of each request, spread evenly.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Attempts per request; 429, 5xx, timeouts and dropped connections are retried.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_attempts: u32,
    /// Write results as they arrive instead of in input order.
    #[arg(long)]
    pub unordered: bool,
    /// Longest wait for one answer (then it is retried).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
    /// After Ctrl-C, how long requests in flight may take to finish.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub drain: Duration,
    /// Reorder window: requests after the oldest unwritten one (default: 4 x
    /// concurrency, at least 1024).
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
}

impl RunArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<RunConfig, Error> {
        let provider = self.provider.resolve()?;
        let mut exec = ExecConfig::new(&provider.base_url);
        exec.concurrency = self.concurrency.max(1);
        exec.max_attempts = self.max_attempts.max(1);
        exec.rpm = self.rpm;
        exec.tpm = self.tpm;
        exec.timeout = self.timeout;
        exec.api_version = provider.api_version.clone();
        exec.api_key = provider.key.clone();
        exec.auth = if provider.azure {
            AuthStyle::ApiKey
        } else {
            AuthStyle::Bearer
        };
        exec.headers = provider.headers.clone();
        let mut cfg = RunConfig::new(InputSpec::parse(&self.requests), self.output, exec);
        cfg.errors = self.errors;
        cfg.order = if self.unordered {
            OutputOrder::Arrival
        } else {
            OutputOrder::Input
        };
        if let Some(w) = self.window {
            cfg.window = w.max(1);
        }
        cfg.drain = self.drain;
        cfg.progress = !g.quiet && !g.json;
        cfg.quiet = g.quiet;
        cfg.sync = !g.no_sync;
        cfg.cancel = g.cancel.clone();
        cfg.common = g.common(super::OnError::Skip, None);
        Ok(cfg)
    }
}
