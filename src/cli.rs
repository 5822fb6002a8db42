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
    /// Parse the model answers of result files into JSON records, never inventing data.
    Extract(ExtractArgs),
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
pub struct ExtractArgs {
    /// Result files (Batch API output or error files, any JSONL with --text-field), or
    /// `-` for stdin.
    #[arg(value_name = "RESULTS")]
    pub inputs: Vec<String>,
    /// Records file (default: stdout; `.zst`/`.gz` compress).
    #[arg(long, short = 'o', value_name = "OUT", default_value = "-")]
    pub output: String,
    /// Rejects file: failed requests, refusals, texts without JSON, schema failures.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<String>,
    /// Accept only values that needed no repair beyond stripping fences, prose,
    /// <think> blocks and the like.
    #[arg(long)]
    pub strict: bool,
    /// Check every record's value against this JSON Schema; a string where the schema
    /// wants an object or array is decoded once (double-encoded JSON).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// One record per element of the array at POINTER (default: the value itself),
    /// with its `index`. Put it after RESULTS, or write `--explode=/pointer`.
    #[arg(long, value_name = "POINTER", num_args = 0..=1, default_missing_value = "")]
    pub explode: Option<String>,
    /// Read the text at this JSON pointer of each line (any JSONL) instead of finding
    /// it by result body shape.
    #[arg(long, value_name = "POINTER")]
    pub text_field: Option<String>,
    /// With --text-field: the JSON pointer of the line's id.
    #[arg(long, value_name = "POINTER", default_value = "/custom_id")]
    pub id_field: String,
}

impl ExtractArgs {
    pub fn into_config(mut self, g: &GlobalArgs) -> commands::extract::ExtractConfig {
        use batchline::io::output::OutputSpec;
        // `--explode FILE`: a JSON pointer is empty or starts with '/', so a value that
        // does not (or any value when no RESULTS follow) is an input file and --explode
        // splits the value itself. `--explode=/ptr` is never ambiguous.
        let is_input = |e: &String| !e.is_empty() && (!e.starts_with('/') || self.inputs.is_empty());
        if let Some(e) = self.explode.as_ref().filter(|e| is_input(e)) {
            self.inputs.insert(0, e.clone());
            self.explode = Some(String::new());
        }
        let inputs = self.inputs.iter().map(|i| InputSpec::parse(i)).collect();
        let mut c = commands::extract::ExtractConfig::new(inputs, OutputSpec::parse(&self.output));
        c.rejects = self.rejects.as_deref().map(OutputSpec::parse);
        c.strict = self.strict;
        c.schema = self.schema;
        c.explode = self.explode;
        c.text_field = self.text_field;
        c.id_field = self.id_field;
        c.summary = g.summary_mode();
        c.quiet = g.quiet;
        c.engine = g.engine();
        c
    }
}
