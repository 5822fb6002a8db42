//! Command-line arguments (clap derive): the only module that knows about clap. Each
//! subcommand's arguments are turned into the library's plain config struct here.

use clap::{Args, Parser, Subcommand, ValueEnum};

use batchline::commands::{CommonOptions, ErrorMode, Notes};
use batchline::engine::{Cancel, EngineConfig};
use batchline::io::output::OutputSpec;
use batchline::report::SummaryMode;

mod build;
mod download;
mod estimate;
mod extract;
mod join;
mod provider;
mod resubmit;
mod run;
mod serve;
mod shard;
pub mod shell;
mod validate;
// The batch lifecycle.
mod cancel;
mod list;
mod status;
mod submit;
mod wait;

pub use build::BuildArgs;
pub use download::DownloadArgs;
pub use estimate::EstimateArgs;
pub use extract::ExtractArgs;
pub use join::JoinArgs;
pub use resubmit::ResubmitArgs;
pub use run::RunArgs;
pub use serve::ServeArgs;
pub use shard::ShardArgs;
pub use validate::ValidateArgs;
// The batch lifecycle.
pub use cancel::CancelArgs;
pub use list::ListArgs;
pub use status::StatusArgs;
pub use submit::SubmitArgs;
pub use wait::WaitArgs;

/// Fast, correct tools for the JSONL files of LLM Batch APIs.
///
/// Every INPUT is a path or `-` for stdin (`.zst` and `.gz` are decompressed); every
/// output is written atomically. Exit status: 0 success, 1 finished but some lines were
/// rejected, 2 usage or fatal error.
#[derive(Parser, Debug)]
#[command(name = "batchline", version, about, long_about = None, after_help = "\
Examples:
  batchline build prompts.jsonl -m gpt-4o-mini -t @t.txt | batchline shard - --out-dir shards/
  batchline join requests.jsonl output.jsonl errors.jsonl -o joined.jsonl
  batchline COMMAND --help

Exit status: 0 success; 1 finished, but some lines were rejected; 2 usage or fatal error;
130 interrupted (no partial output is kept).")]
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
    /// Do not fsync outputs before renaming them into place (faster; still atomic
    /// against a crash of batchline, not against a power cut).
    #[arg(long, global = true)]
    pub no_sync: bool,
    /// Worker threads (default: BATCHLINE_THREADS or the number of cores).
    #[arg(long, global = true, value_name = "N", env = "BATCHLINE_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// The run's cancellation token (set by main's signal handler).
    #[arg(skip)]
    pub cancel: Cancel,
    /// Where the run's messages go (main writes them to stderr).
    #[arg(skip)]
    pub notes: Notes,
}

/// `--threads` / `BATCHLINE_THREADS`: a whole number of at least 1, or a usage error
/// (never silently the default).
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number of threads")),
    }
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
            e.threads = t;
        }
        e.progress = !self.quiet;
        e.cancel = self.cancel.clone();
        e
    }

    /// The options every command shares, with the command's `--on-error` and
    /// `--rejects` (`-` is stdout).
    pub fn common(&self, on_error: OnError, rejects: Option<&str>) -> CommonOptions {
        CommonOptions {
            engine: self.engine(),
            on_error: on_error.into(),
            rejects: rejects.map(OutputSpec::parse),
            sync: !self.no_sync,
            verbose: !self.quiet,
            notes: self.notes.clone(),
        }
    }
}

// Parsed once per run: the size of the small variants (completions, man) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Turn prompt records (JSONL, or text lines) into Batch API request lines.
    Build(BuildArgs),
    /// Split request files into Batch API input files within the provider's limits.
    Shard(ShardArgs),
    /// Estimate the tokens and cost of a request file or shard directory (batch and
    /// direct price, lower and upper bound).
    Estimate(EstimateArgs),
    /// Upload a job's shards and create their batches (never twice; the job's ledger
    /// records every step), within an enqueued-token budget.
    Submit(SubmitArgs),
    /// One line per batch of a job: status, counts, age; the totals and the queue.
    Status(StatusArgs),
    /// Poll a job until every batch ended, submitting queued shards as room frees up.
    Wait(WaitArgs),
    /// Download the output and error files of a job's ended batches (streamed,
    /// resumable, checked against request_counts).
    Download(DownloadArgs),
    /// Cancel a job's batches (or some shards'), keeping what they finished.
    Cancel(CancelArgs),
    /// The account's batches, newest first.
    List(ListArgs),
    /// Send a job's retryable, expired and missing requests again as its next round
    /// (final failures are not resent).
    Resubmit(ResubmitArgs),
    /// Join Batch API results back onto their requests, in request order: every
    /// request comes out `ok`, `failed` or `missing`.
    Join(JoinArgs),
    /// Parse the model answers of result files into JSON records, never inventing data.
    Extract(ExtractArgs),
    /// Keep the records whose rules hold with every tokenizer (token counts, same(...)).
    Validate(ValidateArgs),
    /// Send a Batch request file directly to an OpenAI-compatible endpoint and write
    /// Batch-format results (resumable, rate-limited, retried).
    Run(RunArgs),
    /// A local OpenAI Files + Batches API (and chat/embeddings/responses), answered by
    /// the echo model or an OpenAI-compatible upstream.
    Serve(ServeArgs),
    /// Print shell completions (bash, zsh, fish, powershell, elvish) to stdout.
    Completions(shell::CompletionsArgs),
    /// Print the man page of batchline, or of one command, to stdout.
    Man(shell::ManArgs),
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
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit in {s:?} (use k, M, G, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}
