//! `batchline shard` arguments.

use std::path::PathBuf;

use clap::Args;

use batchline::commands::{self};
use batchline::io::input::InputSpec;

use super::{parse_size, GlobalArgs, OnError};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline shard requests.jsonl --out-dir shards/
  batchline build prompts.jsonl -m gpt-4o-mini -t @t.txt | batchline shard - --out-dir shards/
  batchline shard requests.jsonl.zst -o shards/ --on-error skip --rejects bad.jsonl --check

Exit status: 0 success; 1 finished, but some lines were rejected (--on-error skip);
2 usage or fatal error (with --on-error fail: the first bad line); 130 interrupted.")]
pub struct ShardArgs {
    /// Request file (JSONL), or `-` for stdin.
    pub input: String,
    /// Directory for the shards and manifest.json (not needed with --check).
    #[arg(
        long,
        short = 'o',
        value_name = "DIR",
        required_unless_present = "check"
    )]
    pub out_dir: Option<PathBuf>,
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
    /// Rejects file for `--on-error skip` (default: OUT_DIR/rejects.ndjson).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<String>,
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
        c.check = self.check;
        c.force = self.force;
        c.common = g.common(self.on_error, self.rejects.as_deref());
        c
    }
}
