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
    /// Do not fsync outputs before renaming them into place (faster; still atomic
    /// against a crash of batchline, not against a power cut).
    #[arg(long, global = true)]
    pub no_sync: bool,
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
    /// Turn prompt records (JSONL, or text lines) into Batch API request lines.
    Build(BuildArgs),
    /// Parse the model answers of result files into JSON records, never inventing data.
    Extract(ExtractArgs),
    /// Join Batch API results back onto their requests, in request order: every
    /// request comes out `ok`, `failed` or `missing`.
    Join(JoinArgs),
    /// Keep the records whose rules hold with every tokenizer (token counts, same(...)).
    Validate(ValidateArgs),
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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EndpointArg {
    /// /v1/chat/completions (body.messages)
    Chat,
    /// /v1/responses (body.input, --system as instructions)
    Responses,
    /// /v1/embeddings (body.input)
    Embeddings,
    /// /v1/completions (body.prompt)
    Completions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum IdArg {
    /// Prefix (default "req-") and line number.
    Line,
    /// Prefix and a stable hash of endpoint and body (xxh3-128, 32 hex digits).
    Hash,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Prompt records (JSONL objects, or text lines with --text), or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: String,
    /// Request file (`.zst`/`.gz` compressed), or `-` for stdout.
    #[arg(
        long,
        short = 'o',
        value_name = "OUT",
        default_value = "-",
        conflicts_with = "out_dir"
    )]
    pub output: String,
    /// Model name for every request (body.model).
    #[arg(long, short = 'm')]
    pub model: String,
    /// Each non-blank input line is one prompt, available as {text}.
    #[arg(long)]
    pub text: bool,
    /// Endpoint: sets the url and the body shape.
    #[arg(long, value_enum, default_value = "chat")]
    pub endpoint: EndpointArg,
    /// System prompt (literal text, no placeholders), or @FILE.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub system: Option<String>,
    /// User prompt template with {field}, {a.b}, {{ and }}, or @FILE (default "{text}").
    #[arg(long, short = 't', value_name = "TEXT|@FILE")]
    pub template: Option<String>,
    /// Field holding a ready messages array (instead of --template).
    #[arg(long, value_name = "FIELD", conflicts_with_all = ["template", "text"])]
    pub messages_field: Option<String>,
    /// body.max_tokens (max_output_tokens for responses).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// body.temperature (0 to 2).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Extra body parameter (repeatable); VALUE is JSON when it parses, else a string.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = batchline::commands::build::parse_param)]
    pub params: Vec<(String, serde_json::Value)>,
    /// json_object, text, or @schema.json (json_schema, strict).
    #[arg(long, value_name = "FORMAT")]
    pub response_format: Option<String>,
    /// custom_id from this field (string or number; must be unique).
    #[arg(long, value_name = "FIELD", conflicts_with_all = ["id_template", "id"])]
    pub id_field: Option<String>,
    /// custom_id from a template such as "{lang}-{id}" (must be unique).
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "id")]
    pub id_template: Option<String>,
    /// custom_id from the line number (default) or a hash of the request.
    #[arg(long, value_enum)]
    pub id: Option<IdArg>,
    /// Prefix of every custom_id (default "req-" with --id line, else none).
    #[arg(long, value_name = "PREFIX")]
    pub id_prefix: Option<String>,
    /// N requests per record, custom_ids suffixed -0 .. -N-1.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Write one file per value of this field into --out-dir.
    #[arg(long, value_name = "FIELD", requires = "out_dir")]
    pub split_by: Option<String>,
    /// Directory for the --split-by files.
    #[arg(long, value_name = "DIR", requires = "split_by")]
    pub out_dir: Option<PathBuf>,
    /// Cap on records written: N for every group, VALUE=N for one (repeatable).
    #[arg(long, value_name = "N|VALUE=N", num_args = 1.., value_parser = batchline::commands::build::parse_limit)]
    pub limit: Vec<batchline::commands::build::Limit>,
    /// Write {"custom_id","line","record"} per request, to join results back later.
    #[arg(long, value_name = "FILE")]
    pub sidecar: Option<PathBuf>,
    /// Rejects file (needs --on-error skip).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// What to do with a bad record.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error: OnError,
    /// Write into a non-empty --out-dir.
    #[arg(long)]
    pub force: bool,
}

impl BuildArgs {
    pub fn into_config(
        self,
        g: &GlobalArgs,
    ) -> Result<commands::build::BuildConfig, batchline::Error> {
        use batchline::batch::Endpoint;
        use commands::build::{load_text_arg, parse_response_format, IdMode};
        let mut c = commands::build::BuildConfig::new(InputSpec::parse(&self.input), self.model);
        c.output = batchline::io::output::OutputSpec::parse(&self.output);
        c.out_dir = self.out_dir;
        c.text = self.text;
        c.endpoint = match self.endpoint {
            EndpointArg::Chat => Endpoint::ChatCompletions,
            EndpointArg::Responses => Endpoint::Responses,
            EndpointArg::Embeddings => Endpoint::Embeddings,
            EndpointArg::Completions => Endpoint::Completions,
        };
        c.system = self
            .system
            .map(|s| load_text_arg("--system", &s))
            .transpose()?;
        c.template = self
            .template
            .map(|s| load_text_arg("--template", &s))
            .transpose()?;
        c.messages_field = self.messages_field;
        c.max_tokens = self.max_tokens;
        c.temperature = self.temperature;
        c.params = self.params;
        c.response_format = self
            .response_format
            .map(|s| parse_response_format(&s))
            .transpose()?;
        c.id = match (self.id_field, self.id_template, self.id) {
            (Some(f), _, _) => IdMode::Field(f),
            (_, Some(t), _) => IdMode::Template(t),
            (_, _, Some(IdArg::Hash)) => IdMode::Hash,
            _ => IdMode::Line,
        };
        c.id_prefix = self.id_prefix;
        c.repeat = self.repeat;
        c.split_by = self.split_by;
        c.limits = self.limit;
        c.sidecar = self.sidecar;
        c.rejects = self.rejects;
        c.on_error = self.on_error.into();
        c.force = self.force;
        c.summary = g.summary_mode();
        c.engine = g.engine();
        Ok(c)
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
        let is_input =
            |e: &String| !e.is_empty() && (!e.starts_with('/') || self.inputs.is_empty());
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

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Records (JSONL objects), or `-` for stdin (`.zst`/`.gz` are decompressed).
    #[arg(value_name = "RECORDS")]
    pub input: String,
    /// Valid records (default: stdout), in input order, as read.
    #[arg(long, short = 'o', value_name = "OUT", default_value = "-")]
    pub output: String,
    /// Tokenizer (repeatable): NAME=PATH of an HF tokenizer.json, or o200k_base /
    /// cl100k_base (embedded), optionally NAME=o200k_base.
    #[arg(long = "tokenizer", value_name = "NAME=PATH")]
    pub tokenizers: Vec<String>,
    /// Rule (repeatable), `EXPR` or `NAME: EXPR`, e.g.
    /// 'same(tokens(prompt + " " + single_token))'.
    #[arg(long = "rule", value_name = "RULE", allow_hyphen_values = true)]
    pub rules: Vec<String>,
    /// File of rules, one per line (`NAME: EXPR` or `EXPR`; `#` comments).
    #[arg(long = "rules", value_name = "FILE")]
    pub rules_file: Option<PathBuf>,
    /// tokens(...) counts the special tokens the tokenizer adds (BOS, ...).
    #[arg(long)]
    pub special: bool,
    /// Add the counts to each valid record as "_tokens": {EXPR: {NAME: N}}.
    #[arg(long)]
    pub annotate: bool,
    /// Stop after N valid records (the first N in input order).
    #[arg(long, value_name = "N")]
    pub target: Option<u64>,
    /// Invalid records, with the failed rules and the counts per tokenizer.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<String>,
    /// Write the report (records, valid, failures per rule, tokens...) as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

impl ValidateArgs {
    pub fn into_config(
        self,
        g: &GlobalArgs,
    ) -> Result<commands::validate::ValidateConfig, batchline::Error> {
        use batchline::io::output::OutputSpec;
        let mut c = commands::validate::ValidateConfig::new(
            InputSpec::parse(&self.input),
            OutputSpec::parse(&self.output),
        );
        c.tokenizers = self
            .tokenizers
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, batchline::tokenize::TokenizeError>>()
            .map_err(|e| batchline::Error::Usage(e.to_string()))?;
        c.rules = self.rules;
        c.rules_file = self.rules_file;
        c.special = self.special;
        c.annotate = self.annotate;
        c.target = self.target;
        c.rejects = self.rejects.as_deref().map(OutputSpec::parse);
        c.report = self.report;
        c.summary = g.summary_mode();
        c.quiet = g.quiet;
        c.engine = g.engine();
        Ok(c)
    }
}
