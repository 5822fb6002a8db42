//! `JOB/ledger.json`: THE state of a job (see the job directory contract in the README's
//! lifecycle section). Version 1. Written atomically (temp + fsync + rename + fsync of
//! the directory), so after a crash it is either the old or the new state, whole. Fields
//! this version does not know (written by a later one, or by another command) are kept
//! as they are on every rewrite. Never holds a key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::{Batch, BatchErrorItem, RequestCounts};
use crate::batch::manifest::ShardFile;
use crate::error::{Error, Result};
use crate::io::output::{sync_dir, AtomicFile};

/// The ledger's file name inside the job directory.
pub const LEDGER_NAME: &str = "ledger.json";
/// The version this code writes and reads.
pub const LEDGER_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub version: u32,
    pub job_id: String,
    pub created_at: u64,
    pub provider: ProviderInfo,
    pub rounds: Vec<Round>,
    /// What `submit` was told that `wait` needs later (budget, metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<JobSettings>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The submit flags that outlive one process: `wait` submits queued shards with them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobSettings {
    /// `--max-enqueued-tokens`: prompt tokens per model in unfinished batches.
    pub max_enqueued_tokens: Option<u64>,
    /// `--max-enqueued-requests`: requests per model in unfinished batches.
    pub max_enqueued_requests: Option<u64>,
    /// The user's `--metadata KEY=VALUE` pairs, sent with every batch.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Where the job's batches live (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderInfo {
    pub base_url: String,
    pub azure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub round: u32,
    /// The round's shard directory, relative to the job (`.` for round 0).
    pub dir: String,
    pub shards: Vec<ShardEntry>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a shard is in its life: each step is recorded before the call that moves it
/// on (`uploading`, `creating`) and after it (`uploaded`, `submitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    /// Nothing sent yet (or queued by the token budget, see `queued_reason`).
    Pending,
    /// An upload was started; its file id is not known.
    Uploading,
    /// Uploaded: `file_id` is set.
    Uploaded,
    /// A create was sent; until `batch_id` is set, the batch may or may not exist.
    Creating,
    /// The batch exists: `batch_id` is set.
    Submitted,
    /// The batch reached a terminal status (`batch.status`).
    Ended,
}

impl ShardState {
    pub fn name(self) -> &'static str {
        match self {
            ShardState::Pending => "pending",
            ShardState::Uploading => "uploading",
            ShardState::Uploaded => "uploaded",
            ShardState::Creating => "creating",
            ShardState::Submitted => "submitted",
            ShardState::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardEntry {
    pub name: String,
    pub sha256: String,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub state: ShardState,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    pub batch: Option<BatchSnapshot>,
    pub queued_reason: Option<String>,
    #[serde(default)]
    pub token_limit_retries: u32,
    pub not_before: Option<u64>,
    #[serde(default)]
    pub downloads: Downloads,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the ledger keeps of the batch object (its last known state).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchSnapshot {
    pub status: String,
    pub request_counts: Option<RequestCounts>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub usage: Option<Value>,
    pub created_at: Option<u64>,
    pub ended_at: Option<u64>,
    pub errors: Option<Vec<BatchErrorItem>>,
}

impl BatchSnapshot {
    pub fn of(b: &Batch) -> BatchSnapshot {
        BatchSnapshot {
            status: b.status.clone(),
            request_counts: b.request_counts,
            output_file_id: b.output_file_id.clone(),
            error_file_id: b.error_file_id.clone(),
            usage: b.usage.clone().filter(|u| !u.is_null()),
            created_at: b.created_at,
            ended_at: b.ended_at(),
            errors: b
                .errors
                .as_ref()
                .map(|e| e.data.clone())
                .filter(|d| !d.is_empty()),
        }
    }

    pub fn is_terminal(&self) -> bool {
        crate::api::batches::is_terminal_status(&self.status)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Downloads {
    pub output: Option<DownloadEntry>,
    pub error: Option<DownloadEntry>,
}

/// A result file downloaded into the job (written by `download`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DownloadEntry {
    pub file_id: String,
    pub path: String,
    pub bytes: u64,
    pub lines: u64,
    pub complete: bool,
}

impl ShardEntry {
    /// The batch's request counts as last seen (zeros before the batch exists).
    pub fn request_counts(&self) -> RequestCounts {
        self.batch
            .as_ref()
            .and_then(|b| b.request_counts)
            .unwrap_or_default()
    }

    /// A new, pending entry for a manifest file with `prompt_tokens` counted.
    pub fn from_manifest(f: &ShardFile, sha256: String, prompt_tokens: u64) -> ShardEntry {
        ShardEntry {
            name: f.name.clone(),
            sha256,
            endpoint: f.endpoint.clone(),
            model: f.model.clone(),
            requests: f.requests,
            prompt_tokens,
            state: ShardState::Pending,
            file_id: None,
            batch_id: None,
            batch: None,
            queued_reason: None,
            token_limit_retries: 0,
            not_before: None,
            downloads: Downloads::default(),
            extra: Map::new(),
        }
    }

    /// The last known batch status (`None` before the batch exists).
    pub fn status(&self) -> Option<&str> {
        self.batch.as_ref().map(|b| b.status.as_str())
    }

    /// Whether the shard holds room in the provider's queue: a batch that exists (or
    /// may) and has not ended.
    pub fn is_enqueued(&self) -> bool {
        match self.state {
            ShardState::Creating => true,
            ShardState::Submitted => !self.batch.as_ref().is_some_and(|b| b.is_terminal()),
            _ => false,
        }
    }

    /// Whether nothing more will happen to this shard in this round.
    pub fn is_done(&self) -> bool {
        self.state == ShardState::Ended
    }
}

impl Ledger {
    /// A new ledger with a fresh job id and no rounds.
    pub fn new(provider: ProviderInfo) -> Ledger {
        Ledger {
            version: LEDGER_VERSION,
            job_id: new_job_id(),
            created_at: now(),
            provider,
            rounds: Vec::new(),
            settings: None,
            extra: Map::new(),
        }
    }

    pub fn path(job: &Path) -> PathBuf {
        job.join(LEDGER_NAME)
    }

    /// Reads `JOB/ledger.json`; `Ok(None)` when there is none yet.
    pub fn load(job: &Path) -> Result<Option<Ledger>> {
        let path = Ledger::path(job);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::Other(format!("{}: not a job ledger: {e}", path.display())))?;
        let version = v.get("version").and_then(Value::as_u64).unwrap_or(0);
        if version != LEDGER_VERSION as u64 {
            return Err(Error::Other(format!(
                "{}: ledger version {version}, but this batchline reads version {LEDGER_VERSION}; \
                 use the batchline that wrote it",
                path.display()
            )));
        }
        let ledger: Ledger = serde_json::from_value(v)
            .map_err(|e| Error::Other(format!("{}: not a job ledger: {e}", path.display())))?;
        // The states promise ids (an edited or damaged ledger must not be trusted).
        for (round, s) in ledger.shards() {
            let missing = match s.state {
                ShardState::Uploaded | ShardState::Creating if s.file_id.is_none() => "file_id",
                ShardState::Submitted if s.batch_id.is_none() => "batch_id",
                _ => continue,
            };
            return Err(Error::Other(format!(
                "{}: round {round}, shard {}: state \"{}\" without a {missing}; the ledger was \
                 edited or damaged (set the shard's state to \"pending\" to send it again, \
                 after checking `batchline list` for its batch)",
                path.display(),
                s.name,
                s.state.name()
            )));
        }
        Ok(Some(ledger))
    }

    /// Writes the ledger atomically; with `sync`, fsyncs the file before the rename
    /// and the directory after it, so the new state survives a power cut.
    pub fn save(&self, job: &Path, sync: bool) -> Result<()> {
        let path = Ledger::path(job);
        let mut text = serde_json::to_vec_pretty(self).expect("ledger serialises");
        text.push(b'\n');
        let mut f = AtomicFile::create(&path, sync)?;
        f.write_all(&text)?;
        f.commit()?;
        if sync {
            sync_dir(job)?;
        }
        Ok(())
    }

    /// Every shard of every round, with its round number.
    pub fn shards(&self) -> impl Iterator<Item = (u32, &ShardEntry)> {
        self.rounds
            .iter()
            .flat_map(|r| r.shards.iter().map(move |s| (r.round, s)))
    }

    /// The shard `name` of round `round`.
    pub fn shard_mut(&mut self, round: u32, name: &str) -> Option<&mut ShardEntry> {
        self.rounds
            .iter_mut()
            .find(|r| r.round == round)?
            .shards
            .iter_mut()
            .find(|s| s.name == name)
    }

    /// The directory of round `round`'s shards.
    pub fn round_dir(&self, job: &Path, round: u32) -> Option<PathBuf> {
        let r = self.rounds.iter().find(|r| r.round == round)?;
        Some(if r.dir == "." || r.dir.is_empty() {
            job.to_path_buf()
        } else {
            job.join(&r.dir)
        })
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `job_` and 16 random hex digits (std's random hasher keys, the time and the pid).
pub fn new_job_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("job_{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str) -> ShardEntry {
        let f = ShardFile {
            name: name.into(),
            endpoint: "/v1/chat/completions".into(),
            model: "gpt-4o-mini".into(),
            requests: 3,
            bytes: 100,
            tokens: None,
            embedding_inputs: None,
            sha256: Some("ab".repeat(32)),
            first_custom_id: "a".into(),
            last_custom_id: "c".into(),
        };
        ShardEntry::from_manifest(&f, "ab".repeat(32), 42)
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::new(ProviderInfo {
            base_url: "http://127.0.0.1:1/v1".into(),
            azure: false,
        });
        l.rounds.push(Round {
            round: 0,
            dir: ".".into(),
            shards: vec![shard("a.jsonl"), shard("b.jsonl")],
            extra: Map::new(),
        });
        l
    }

    #[test]
    fn job_ids_are_16_hex_digits_and_differ() {
        let a = new_job_id();
        let b = new_job_id();
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("job_") && a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn round_trip_keeps_every_field_and_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = ledger();
        l.extra.insert("later".into(), Value::from(1));
        let s = l.shard_mut(0, "b.jsonl").unwrap();
        s.state = ShardState::Submitted;
        s.file_id = Some("file-1".into());
        s.batch_id = Some("batch_1".into());
        s.extra.insert("note".into(), Value::from("kept"));
        l.save(dir.path(), true).unwrap();
        let back = Ledger::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.job_id, l.job_id);
        assert_eq!(back.extra["later"], 1);
        let b = &back.rounds[0].shards[1];
        assert_eq!(b.state, ShardState::Submitted);
        assert_eq!(b.batch_id.as_deref(), Some("batch_1"));
        assert_eq!(b.extra["note"], "kept");
        // The fixed field names of the contract are what is on disk.
        let raw: Value =
            serde_json::from_slice(&std::fs::read(Ledger::path(dir.path())).unwrap()).unwrap();
        let s0 = &raw["rounds"][0]["shards"][0];
        for key in [
            "name",
            "sha256",
            "endpoint",
            "model",
            "requests",
            "prompt_tokens",
            "state",
            "file_id",
            "batch_id",
            "batch",
            "queued_reason",
            "token_limit_retries",
            "not_before",
            "downloads",
        ] {
            assert!(s0.get(key).is_some(), "missing {key} in {s0}");
        }
        assert_eq!(s0["state"], "pending");
        assert_eq!(raw["rounds"][0]["dir"], ".");
        assert_eq!(raw["version"], 1);
    }

    #[test]
    fn a_missing_ledger_is_none_and_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Ledger::load(dir.path()).unwrap().is_none());
        std::fs::write(Ledger::path(dir.path()), r#"{"version":2}"#).unwrap();
        let err = Ledger::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        std::fs::write(Ledger::path(dir.path()), "{not json").unwrap();
        let err = Ledger::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a job ledger"), "{err}");
    }

    #[test]
    fn a_state_without_its_id_is_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        for (state, missing) in [
            (ShardState::Submitted, "batch_id"),
            (ShardState::Creating, "file_id"),
            (ShardState::Uploaded, "file_id"),
        ] {
            let mut l = ledger();
            l.rounds[0].shards[1].state = state;
            l.save(dir.path(), false).unwrap();
            let err = Ledger::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("b.jsonl") && err.contains(missing), "{err}");
        }
        let mut l = ledger();
        l.rounds[0].shards[1].state = ShardState::Submitted;
        l.rounds[0].shards[1].file_id = Some("file-1".into());
        l.rounds[0].shards[1].batch_id = Some("batch_1".into());
        l.save(dir.path(), false).unwrap();
        assert!(Ledger::load(dir.path()).unwrap().is_some());
    }

    #[test]
    fn save_replaces_whole_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = ledger();
        l.save(dir.path(), false).unwrap();
        l.rounds[0].shards.pop();
        l.save(dir.path(), false).unwrap();
        let back = Ledger::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.rounds[0].shards.len(), 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![LEDGER_NAME.to_string()]);
    }

    #[test]
    fn enqueued_shards_are_those_whose_batch_may_still_run() {
        let mut s = shard("a.jsonl");
        assert!(!s.is_enqueued());
        s.state = ShardState::Creating;
        assert!(s.is_enqueued());
        s.state = ShardState::Submitted;
        s.batch = Some(BatchSnapshot {
            status: "in_progress".into(),
            ..Default::default()
        });
        assert!(s.is_enqueued());
        s.batch.as_mut().unwrap().status = "completed".into();
        assert!(!s.is_enqueued());
    }
}
