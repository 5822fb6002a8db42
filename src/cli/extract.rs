//! `batchline extract` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::{self};
use batchline::io::input::InputSpec;

use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline extract batch_out.jsonl batch_err.jsonl -o records.jsonl --rejects rejects.jsonl
  batchline extract out.jsonl --explode --schema scenario.schema.json -o scenarios.jsonl
  batchline extract runs.jsonl --text-field /output/text --id-field /id

Exit status: 0 every line gave records; 1 some lines were rejected; 2 usage or I/O error
(nothing is written then); 130 interrupted.")]
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
    /// What to do with a line that gives no record: `skip` (set it aside, exit 1) or
    /// `fail` (stop at the first, write nothing, exit 2).
    #[arg(long, value_enum, default_value = "skip")]
    pub on_error: super::OnError,
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
        c.strict = self.strict;
        c.schema = self.schema;
        c.explode = self.explode;
        c.text_field = self.text_field;
        c.id_field = self.id_field;
        c.common = g.common(self.on_error, self.rejects.as_deref());
        c
    }
}
