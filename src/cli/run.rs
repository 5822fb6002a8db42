//! `batchline run` arguments: where requests go, limits, and keys from the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use batchline::commands::run::{OutputOrder, RunConfig, DEFAULT_BASE_URL};
use batchline::exec::{AuthStyle, ExecConfig};
use batchline::io::input::InputSpec;
use batchline::serve::faults::parse_duration;
use batchline::Error;

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
    /// The API base, as the SDKs take it (default: OPENAI_BASE_URL, else
    /// https://api.openai.com/v1); `/v1/chat/completions` goes to BASE/chat/completions.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
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
    /// An extra header for every request (repeatable), e.g. 'OpenAI-Organization:org-1'.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Environment variable holding the key (default: OPENAI_API_KEY; with
    /// --api-version, AZURE_OPENAI_API_KEY). No key is sent when it is unset.
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Azure OpenAI: the api-version query parameter; the key goes in `api-key`.
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<String>,
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

fn env_key(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

impl RunArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<RunConfig, Error> {
        let base = self
            .base_url
            .clone()
            .or_else(|| env_key("OPENAI_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::Usage(format!(
                "--base-url {base:?}: expected an http:// or https:// URL"
            )));
        }
        let mut exec = ExecConfig::new(&base);
        exec.concurrency = self.concurrency.max(1);
        exec.max_attempts = self.max_attempts.max(1);
        exec.rpm = self.rpm;
        exec.tpm = self.tpm;
        exec.timeout = self.timeout;
        exec.api_version = self.api_version.clone();
        let azure = self.api_version.is_some();
        let (key, auth) = match &self.api_key_env {
            Some(name) => match env_key(name) {
                Some(k) => (Some(k), azure),
                None => {
                    return Err(Error::Usage(format!(
                        "--api-key-env {name}: the environment variable {name} is not set or empty"
                    )))
                }
            },
            None if azure => match env_key("AZURE_OPENAI_API_KEY") {
                Some(k) => (Some(k), true),
                None => (env_key("OPENAI_API_KEY"), true),
            },
            None => match env_key("OPENAI_API_KEY") {
                Some(k) => (Some(k), false),
                None => (env_key("AZURE_OPENAI_API_KEY"), true),
            },
        };
        exec.api_key = key;
        exec.auth = if auth {
            AuthStyle::ApiKey
        } else {
            AuthStyle::Bearer
        };
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| Error::Usage(format!("--header {h:?}: expected NAME:VALUE")))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::Usage(format!(
                    "--header {name:?}: a header name is letters, digits, '-' and '_'"
                )));
            }
            let value = value.trim();
            // What HTTP allows in a value (no control characters but tab): refused
            // here, or every request would fail to build and be retried as a
            // connection failure.
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            {
                return Err(Error::Usage(format!(
                    "--header {name:?}: the value has a control character"
                )));
            }
            exec.headers.push((name.to_string(), value.to_string()));
        }
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
