//! `batchline serve` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::serve::ServeConfig;
use batchline::exec::ExecConfig;
use batchline::serve::faults::parse_duration;
use batchline::serve::{BackendChoice, Options};
use batchline::Error;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("backend").required(true).args(["echo", "upstream"])))]
#[command(after_help = "\
Examples:
  batchline serve --echo --port 0
  batchline serve --echo --data-dir /tmp/serve-state --latency-ms 200
  batchline serve --upstream http://localhost:8000/v1 --port 8080

The first line on stdout is `listening on http://HOST:PORT`. Ctrl-C or SIGTERM stops it
cleanly; the state in --data-dir is kept.

Exit status: 0 stopped by Ctrl-C or SIGTERM; 2 usage or fatal error (port in use, a
non-loopback --host without --api-key-env).")]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback address needs --api-key-env.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the first stdout line says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where files and batches are kept (they survive a restart).
    #[arg(long, value_name = "DIR", default_value = "batchline-serve-data")]
    pub data_dir: PathBuf,
    /// Answer with the built-in deterministic echo model.
    #[arg(long)]
    pub echo: bool,
    /// Send each request to this OpenAI-compatible server (e.g. http://127.0.0.1:8000).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Environment variable holding the key for --upstream.
    #[arg(long, value_name = "NAME")]
    pub upstream_key_env: Option<String>,
    /// Environment variable holding the key clients must send (Bearer or api-key).
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Echo model: time taken per request, in milliseconds (`200`), or a duration (`50ms`, `1s`).
    #[arg(long, value_name = "MS", value_parser = parse_millis, default_value = "0")]
    pub latency_ms: std::time::Duration,
    /// Completion window of new batches (OpenAI: 24h); requests not run by then expire.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub window: std::time::Duration,
    /// Prompt tokens per model that unfinished batches may hold (token_limit_exceeded).
    #[arg(long, value_name = "N")]
    pub enqueued_token_limit: Option<u64>,
    /// Requests per batch file.
    #[arg(long, value_name = "N", default_value_t = batchline::batch::limits::MAX_REQUESTS)]
    pub max_requests: u64,
    /// Requests in flight at once (per batch, and towards --upstream).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Attempts per upstream request (429, 5xx and dropped connections are retried).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_attempts: u32,
    /// Requests per minute sent to --upstream (spread evenly by a token bucket).
    #[arg(long, value_name = "N")]
    pub upstream_rpm: Option<u64>,
    /// Requests per minute of the direct endpoints (429 with Retry-After beyond).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Tokens per minute of the direct endpoints (prompt + max_tokens per request).
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Fault injection: ROUTE:ACTION[@CALLS],... (see the README), e.g.
    /// 'files.create:429@1,batches.create:hang@2,content:drop=1000,chat:500@3,*:slow=200ms'.
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub faults: String,
}

fn key_from_env(flag: &str, name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(k) if !k.trim().is_empty() => Ok(k.trim().to_string()),
        _ => Err(Error::Usage(format!(
            "{flag} {name}: the environment variable {name} is not set or empty"
        ))),
    }
}

impl ServeArgs {
    pub fn into_config(self) -> Result<ServeConfig, Error> {
        let backend = match &self.upstream {
            Some(url) => {
                let mut c = ExecConfig::new(url);
                c.concurrency = self.concurrency.max(1);
                c.max_attempts = self.max_attempts.max(1);
                c.rpm = self.upstream_rpm;
                if let Some(name) = &self.upstream_key_env {
                    c.api_key = Some(key_from_env("--upstream-key-env", name)?);
                }
                BackendChoice::Upstream(c)
            }
            None => BackendChoice::Echo,
        };
        let mut o = Options::new(self.data_dir, backend);
        o.latency = self.latency_ms;
        o.window = self.window;
        o.enqueued_token_limit = self.enqueued_token_limit;
        o.limits.max_requests = self.max_requests;
        o.concurrency = self.concurrency.max(1);
        o.rpm = self.rpm;
        o.tpm = self.tpm;
        batchline::serve::faults::Faults::parse(&self.faults).map_err(Error::Usage)?;
        o.faults = self.faults;
        if let Some(name) = &self.api_key_env {
            o.api_key = Some(key_from_env("--api-key-env", name)?);
        }
        Ok(ServeConfig {
            host: self.host,
            port: self.port,
            options: o,
        })
    }
}

/// `--latency-ms`: a bare number is milliseconds, as the flag's name says; a number with
/// a unit is read as any other duration.
fn parse_millis(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(ms) => Ok(std::time::Duration::from_millis(ms)),
        Err(_) => parse_duration(s),
    }
}
