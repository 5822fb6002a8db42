//! Command-line arguments (clap derive): the only module that knows about clap. Each
//! subcommand's arguments are turned into the library's plain config struct here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use batchline::commands::{self, ErrorMode};
use batchline::engine::EngineConfig;
use batchline::io::input::InputSpec;
use batchline::report::SummaryMode;

/// Fast, correct tools for the JSONL files of LLM Batch APIs.
///
/// Every INPUT is a path or `-` for stdin (`.zst` and `.gz` are decompressed); every
/// output is written atomically. Exit status: 0 success, 1 finished but some lines were
/// rejected, 2 usage or fatal error.
#[derive(Parser, Debug)]
#[command(name = "batchline", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// No progress bar and no summary line.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print the summary as one JSON object (on stdout, or on stderr when the data
    /// goes to stdout).
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker threads (default: BATCHLINE_THREADS or the number of cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
}

impl GlobalArgs {
    pub fn summary_mode(&self) -> SummaryMode {
        if self.json {
            SummaryMode::Json
        } else if self.quiet {
            SummaryMode::Quiet
        } else {
            SummaryMode::Human
        }
    }

    pub fn engine(&self) -> EngineConfig {
        let mut e = EngineConfig::default();
        if let Some(t) = self.threads {
            e.threads = t.max(1);
        }
        e.progress = !self.quiet;
        e
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Split request files into Batch API input files within the provider's limits.
    Shard(ShardArgs),
    /// Join Batch API results back onto their requests, in request order: every
    /// request comes out `ok`, `failed` or `missing`.
    Join(JoinArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnError {
    /// Stop at the first bad line and leave no output behind.
    Fail,
    /// Write bad lines to the rejects file and go on.
    Skip,
}

impl From<OnError> for ErrorMode {
    fn from(o: OnError) -> ErrorMode {
        match o {
            OnError::Fail => ErrorMode::Fail,
            OnError::Skip => ErrorMode::Skip,
        }
    }
}

/// Parses a size: `200000000`, `200MB`, `200M`, `190MiB`, `1G`, `64k` (decimal units
/// unless `i` is given).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.replace('_', "").parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use k, M, G, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size too large: {s:?}"))
}

#[derive(Args, Debug)]
pub struct ShardArgs {
    /// Request file (JSONL), or `-` for stdin.
    pub input: String,
    /// Directory for the shards and manifest.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Requests per file.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub max_requests: u64,
    /// Bytes per file (200MB = 200,000,000 bytes; units k, M, G, KiB, MiB, GiB).
    #[arg(long, default_value = "200MB", value_parser = parse_size, value_name = "SIZE")]
    pub max_bytes: u64,
    /// Prompt tokens per file, counted with the model's OpenAI encoding.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// Embedding inputs per embeddings file.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub max_embedding_inputs: u64,
    /// What to do with a bad line.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error: OnError,
    /// Rejects file for `--on-error skip` (default: OUT_DIR/rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Check every line and print the plan; write nothing.
    #[arg(long)]
    pub check: bool,
    /// Write into a directory that already holds files (stale shards of an earlier
    /// manifest are removed).
    #[arg(long)]
    pub force: bool,
}

impl ShardArgs {
    pub fn into_config(self, g: &GlobalArgs) -> commands::shard::ShardConfig {
        let mut c = commands::shard::ShardConfig::new(InputSpec::parse(&self.input), self.out_dir);
        c.max_requests = self.max_requests;
        c.max_bytes = self.max_bytes;
        c.max_tokens = self.max_tokens;
        c.max_embedding_inputs = self.max_embedding_inputs;
        c.on_error = self.on_error.into();
        c.rejects = self.rejects;
        c.check = self.check;
        c.force = self.force;
        c.summary = g.summary_mode();
        c.engine = g.engine();
        c
    }
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// Requests: a request file, `-` for stdin, a shard directory (read through its
    /// manifest.json), or any JSONL with `custom_id` (such as a build sidecar).
    pub requests: String,
    /// Result files (output and error files, `.zst`/`.gz` allowed), or directories
    /// searched recursively for `*.jsonl`, `*.jsonl.zst`, `*.jsonl.gz`; any order.
    #[arg(required = true, num_args = 1..)]
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
}

#[derive(Clone, Debug)]
pub struct FieldList(pub Vec<commands::join::Field>);

fn parse_fields(s: &str) -> Result<FieldList, String> {
    commands::join::Field::parse_list(s).map(FieldList)
}

impl JoinArgs {
    pub fn into_config(self, g: &GlobalArgs) -> commands::join::JoinConfig {
        let mut c = commands::join::JoinConfig::new(InputSpec::parse(&self.requests), self.results);
        c.output = batchline::io::output::OutputSpec::parse(&self.output);
        c.fields = self.fields.0;
        c.retry = self.retry;
        c.retry_all = self.retry_all;
        c.failed = self.failed;
        c.missing = self.missing;
        c.orphans = self.orphans;
        c.temp_dir = self.temp_dir;
        c.summary = g.summary_mode();
        c.engine = g.engine();
        c
    }
}
