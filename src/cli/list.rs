//! `batchline list` arguments.

use clap::Args;

use batchline::commands::list::ListConfig;
use batchline::Error;

use super::provider::ProviderArgs;
use super::GlobalArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline list --limit 50
  batchline list --json | jq '.batches[] | select(.status == \"in_progress\") | .id'

Exit status: 0 listed; 2 usage or fatal error.")]
pub struct ListArgs {
    /// Batches to show at most (newest first).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u64,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

impl ListArgs {
    pub fn into_config(self, g: &GlobalArgs) -> Result<ListConfig, Error> {
        Ok(ListConfig {
            provider: self.provider.resolve()?,
            limit: self.limit.max(1),
            cancel: g.cancel.clone(),
        })
    }
}
