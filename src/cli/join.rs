//! `batchline join` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::{self};
use batchline::io::input::InputSpec;

use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline join requests.jsonl output.jsonl errors.jsonl -o joined.jsonl
  batchline join shards/ results/ -o joined.jsonl.zst --retry retry.jsonl --orphans orphans.jsonl
  batchline join job/ -o joined.jsonl

A job directory without RESULTS: its downloaded results of every round, the latest wins.

Exit status: 0 the join completed, whatever the requests' statuses (ok, failed, missing);
1 completed, but lines were set aside (--on-error skip); 2 usage or fatal error; 130
interrupted.")]
pub struct JoinArgs {
    /// Requests: a request file, `-` for stdin, a shard directory (read through its
    /// manifest.json), or any JSONL with `custom_id` (such as a build sidecar).
    pub requests: String,
    /// Result files (output and error files, `.zst`/`.gz` allowed), or directories
    /// searched recursively for `*.jsonl`, `*.jsonl.zst`, `*.jsonl.gz`; any order.
    /// Without RESULTS, REQUESTS must be a job directory: its downloaded results of
    /// every round (JOB/results/round-N/, in round order: the latest round wins).
    #[arg(num_args = 0..)]
    pub results: Vec<PathBuf>,
    /// Joined output, one line per request in request order (`-`: stdout).
    #[arg(long, short = 'o', default_value = "-", value_name = "OUT")]
    pub output: String,
    /// Fields to write, in this order (custom_id, status, request, response, error,
    /// result = the raw result line).
    #[arg(long, value_name = "LIST", default_value = "custom_id,status,request,response,error",
          value_parser = parse_fields)]
    pub fields: FieldList,
    /// Write the original request lines of the missing and the retryable failed
    /// requests (429, 5xx, expired, cancelled) here, ready for `shard`.
    #[arg(long, value_name = "FILE")]
    pub retry: Option<PathBuf>,
    /// `--retry` takes every failed request, not only the retryable ones.
    #[arg(long)]
    pub retry_all: bool,
    /// Write the original request lines of the failed requests here.
    #[arg(long, value_name = "FILE")]
    pub failed: Option<PathBuf>,
    /// Write the original request lines of the requests without a result here.
    #[arg(long, value_name = "FILE")]
    pub missing: Option<PathBuf>,
    /// Write the results whose custom_id matches no request here (raw lines).
    #[arg(long, value_name = "FILE")]
    pub orphans: Option<PathBuf>,
    /// Where compressed results are decompressed for re-reading (default: the
    /// output's directory, or the system temporary directory for stdout).
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// What to do with an unreadable request line, a duplicate request custom_id or an
    /// unusable result line: `fail` (stop at the first, write nothing, exit 2) or `skip`
    /// (set it aside, exit 1; a request whose result was set aside is `missing`).
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error: super::OnError,
    /// Rejects file for `--on-error skip` (the shape every command shares).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FieldList(pub Vec<commands::join::Field>);

fn parse_fields(s: &str) -> Result<FieldList, String> {
    commands::join::Field::parse_list(s).map(FieldList)
}

impl JoinArgs {
    pub fn into_config(
        self,
        g: &GlobalArgs,
    ) -> Result<commands::join::JoinConfig, batchline::Error> {
        let results = if self.results.is_empty() {
            let job = std::path::Path::new(&self.requests);
            if self.requests == "-" || !job.is_dir() {
                return Err(batchline::Error::Usage(
                    "RESULTS are needed unless REQUESTS is a job directory (its results/round-N/ are used)".into(),
                ));
            }
            commands::join::job_results(job)?
        } else {
            self.results
        };
        let mut c = commands::join::JoinConfig::new(InputSpec::parse(&self.requests), results);
        c.output = batchline::io::output::OutputSpec::parse(&self.output);
        c.fields = self.fields.0;
        c.retry = self.retry;
        c.retry_all = self.retry_all;
        c.failed = self.failed;
        c.missing = self.missing;
        c.orphans = self.orphans;
        c.temp_dir = self.temp_dir;
        c.common = g.common(self.on_error, self.rejects.as_deref());
        Ok(c)
    }
}
