//! `batchline estimate` arguments.

use std::path::{Path, PathBuf};

use clap::Args;

use batchline::batch::prices::Prices;
use batchline::commands::estimate::{EstimateConfig, EstimateSource};
use batchline::io::input::InputSpec;
use batchline::Error;

use super::{GlobalArgs, OnError};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline estimate requests.jsonl
  batchline estimate shards/ --json | jq .totals
  batchline estimate requests.jsonl.zst --prices my-prices.csv

Price file (JSON): {\"MODEL\": {\"input\": 0.15, \"output\": 0.6}} in $ per 1M tokens, optional
cached_input, batch_input, batch_output (default: half the direct price). CSV: a header
model,input[,output,cached_input,batch_input,batch_output] and one row per model.

Exit status: 0 success; 1 finished, but some lines were not valid requests; 2 usage or
fatal error; 130 interrupted.")]
pub struct EstimateArgs {
    /// A request file (JSONL, `.zst`/`.gz`), `-` for stdin, or a shard directory (read
    /// through its manifest.json).
    pub input: String,
    /// Prices that extend or override the built-in table (JSON, or CSV when named
    /// `.csv`).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

impl EstimateArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<EstimateConfig, Error> {
        let prices = match &self.prices {
            Some(p) => Prices::with_file(p)?,
            None => Prices::builtin(),
        };
        let source = if self.input != "-" && Path::new(&self.input).is_dir() {
            EstimateSource::Job(PathBuf::from(&self.input))
        } else {
            EstimateSource::File(InputSpec::parse(&self.input))
        };
        Ok(EstimateConfig {
            source,
            prices,
            common: g.common(OnError::Skip, None),
        })
    }
}
