//! `batchline build` arguments.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use batchline::commands::{self};
use batchline::io::input::InputSpec;

use super::{GlobalArgs, OnError};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline build prompts.jsonl -m gpt-4o-mini -t 'Summarise: {text}' -o requests.jsonl
  batchline build --text seeds.txt -m gpt-4o-mini --repeat 5 --response-format @scenario.json
  batchline build slices.jsonl -m gpt-4o-mini -t @t.txt --split-by type --out-dir by-type/ \\
      --sidecar join.jsonl

Exit status: 0 success; 1 finished, but some records were rejected (--on-error skip);
2 usage or fatal error (with --on-error fail: the first bad record); 130 interrupted.")]
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
    pub rejects: Option<String>,
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
        c.force = self.force;
        c.common = g.common(self.on_error, self.rejects.as_deref());
        Ok(c)
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
