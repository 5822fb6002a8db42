//! A job directory's state: `JOB/ledger.json` (what was sent, created and downloaded,
//! per round and shard) and `JOB/.lock` (one lifecycle command at a time). Knows
//! files, not HTTP: the commands call the API and record each step here, durably,
//! before and after every call that creates something.

pub mod ledger;
pub mod lock;

pub use ledger::{
    BatchSnapshot, DownloadEntry, Downloads, JobSettings, Ledger, ProviderInfo, Round, ShardEntry,
    ShardState, LEDGER_NAME, LEDGER_VERSION,
};
pub use lock::JobLock;
