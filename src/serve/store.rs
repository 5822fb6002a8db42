//! The server's state in `--data-dir`: file objects and their bodies, batch objects and
//! their work files. Every JSON record is written atomically (temp + fsync + rename +
//! fsync of the folder), so a kill -9 at any moment leaves either the old or the new
//! record, never a torn one. The in-memory index is rebuilt from the folder at start.
//!
//! Layout: `files/ID.json` + `files/ID.data`, `batches/ID.json` (the batch object and
//! the private state that resuming needs), `batches/ID/` (output and error lines
//! appended as requests are answered: they are the durable progress record), `uploads/`
//! (bodies being received; emptied at start and at shutdown).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A file object, field for field as OpenAI sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileObject {
    pub id: String,
    pub object: String,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub purpose: String,
    pub status: String,
    pub expires_at: Option<u64>,
    pub status_details: Option<String>,
}

/// One entry of a batch's `errors.data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchErrors {
    pub object: String,
    pub data: Vec<BatchError>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct InputDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct OutputDetails {
    pub reasoning_tokens: u64,
}

/// The batch's token usage (batches created since late 2025 carry it).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

/// A batch object, field for field as OpenAI sends it (unset times are `null`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub object: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub request_counts: RequestCounts,
    pub metadata: Option<Map<String, Value>>,
    pub usage: Usage,
}

impl Batch {
    /// Whether the batch still has work to do (it counts against the enqueued-token
    /// limit and is resumed after a restart).
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "validating" | "in_progress" | "finalizing" | "cancelling"
        )
    }
}

/// What the server keeps about a batch besides the public object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchState {
    /// Milliseconds since the epoch when the window closes (finer than `expires_at`,
    /// so a test can use a window of one second).
    pub deadline_ms: u64,
    /// Prompt tokens of the whole input (for `--enqueued-token-limit`).
    pub prompt_tokens: u64,
    /// `output_expires_after.seconds`, for the result files.
    pub output_expires_after: Option<u64>,
    /// Ids chosen for the result files when finalizing starts, so that finishing the
    /// step again after a crash creates the same files, not new ones.
    pub result_ids: Option<(String, String)>,
    /// How the batch ends (`completed`, `expired`, `cancelled`) once its requests are
    /// settled: from then on only the result files are left to publish.
    pub ending: Option<String>,
}

/// A batch as stored: the public object and the private state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRec {
    pub batch: Batch,
    pub state: BatchState,
}

#[derive(Default)]
struct Index {
    files: BTreeMap<String, FileObject>,
    batches: BTreeMap<String, BatchRec>,
}

/// The data directory and its in-memory index.
pub struct Store {
    dir: PathBuf,
    index: Mutex<Index>,
    /// Held open with an exclusive `flock` for the server's life: two servers on one
    /// folder would overwrite each other's records. The kernel drops it at any exit,
    /// kill -9 included.
    _lock: File,
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A random 64-bit number (std's per-process random hash keys; ids need uniqueness, not
/// cryptographic strength).
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

/// A new id: `prefix` then a strictly increasing time stamp and a random part, so that
/// ids sort in creation order (lists are newest first) and never repeat, even across a
/// restart.
pub fn new_id(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut last = LAST_STAMP.load(Ordering::Relaxed);
    let stamp = loop {
        let next = nanos.max(last + 1);
        match LAST_STAMP.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    format!("{prefix}{stamp:016x}{:08x}", random_u64() as u32)
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync of
/// the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    let tmp = dir.join(format!(".{name}.{:x}.tmp", random_u64()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a folder so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Store {
    /// Opens (or creates) the data directory and loads every record in it.
    pub fn open(dir: &Path) -> io::Result<Store> {
        for sub in ["files", "batches", "uploads"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| with_path(e, &p))?;
        }
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| with_path(e, &lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another batchline serve is using this data directory",
            ));
        }
        let store = Store {
            dir: dir.to_path_buf(),
            index: Mutex::new(Index::default()),
            _lock: lock,
        };
        store.clear_uploads();
        let mut index = Index::default();
        for entry in fs::read_dir(dir.join("files"))? {
            let path = entry?.path();
            let Some(id) = record_id(&path) else { continue };
            let text = fs::read(&path).map_err(|e| with_path(e, &path))?;
            let obj: FileObject = serde_json::from_slice(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            // A record whose body is gone (deleted half-way) is not a file any more.
            if store.file_data(&id).exists() {
                index.files.insert(id, obj);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
        for entry in fs::read_dir(dir.join("batches"))? {
            let path = entry?.path();
            let Some(id) = record_id(&path) else { continue };
            let text = fs::read(&path).map_err(|e| with_path(e, &path))?;
            let rec: BatchRec = serde_json::from_slice(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            index.batches.insert(id, rec);
        }
        *store.index.lock().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(store)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic elsewhere must not take the whole server down with a poisoned lock.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes bodies of uploads that never finished.
    pub fn clear_uploads(&self) {
        if let Ok(rd) = fs::read_dir(self.dir.join("uploads")) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// A fresh path to receive an upload into.
    pub fn upload_path(&self) -> PathBuf {
        self.dir.join("uploads").join(new_id("up-"))
    }

    pub fn file_data(&self, id: &str) -> PathBuf {
        self.dir.join("files").join(format!("{id}.data"))
    }

    fn file_record(&self, id: &str) -> PathBuf {
        self.dir.join("files").join(format!("{id}.json"))
    }

    fn batch_record(&self, id: &str) -> PathBuf {
        self.dir.join("batches").join(format!("{id}.json"))
    }

    /// The folder of a batch's work files (created on demand).
    pub fn batch_dir(&self, id: &str) -> io::Result<PathBuf> {
        let p = self.dir.join("batches").join(id);
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// Moves a received body into place and records its file object (body first, so a
    /// record never points to a missing body).
    pub fn add_file(&self, body: &Path, obj: FileObject) -> io::Result<FileObject> {
        let data = self.file_data(&obj.id);
        fs::rename(body, &data)?;
        sync_dir(&self.dir.join("files"))?;
        write_atomic(&self.file_record(&obj.id), &serde_json::to_vec(&obj)?)?;
        self.index().files.insert(obj.id.clone(), obj.clone());
        Ok(obj)
    }

    pub fn file(&self, id: &str) -> Option<FileObject> {
        self.index().files.get(id).cloned()
    }

    /// Files newest first (or oldest first with `ascending`).
    pub fn files(&self, ascending: bool) -> Vec<FileObject> {
        let idx = self.index();
        if ascending {
            idx.files.values().cloned().collect()
        } else {
            idx.files.values().rev().cloned().collect()
        }
    }

    /// Deletes a file: the record first (the index forgets it), then the body.
    pub fn delete_file(&self, id: &str) -> io::Result<bool> {
        if self.index().files.remove(id).is_none() {
            return Ok(false);
        }
        fs::remove_file(self.file_record(id))?;
        sync_dir(&self.dir.join("files"))?;
        let _ = fs::remove_file(self.file_data(id));
        Ok(true)
    }

    /// Records a new batch.
    pub fn add_batch(&self, rec: BatchRec) -> io::Result<()> {
        write_atomic(
            &self.batch_record(&rec.batch.id),
            &serde_json::to_vec(&rec)?,
        )?;
        self.index().batches.insert(rec.batch.id.clone(), rec);
        Ok(())
    }

    pub fn batch(&self, id: &str) -> Option<BatchRec> {
        self.index().batches.get(id).cloned()
    }

    /// Batches newest first.
    pub fn batches(&self) -> Vec<Batch> {
        self.index()
            .batches
            .values()
            .rev()
            .map(|r| r.batch.clone())
            .collect()
    }

    /// All batch records (for resuming and for the enqueued-token sum).
    pub fn batch_recs(&self) -> Vec<BatchRec> {
        self.index().batches.values().cloned().collect()
    }

    /// Changes a batch and writes it durably; returns the new record. The lock is held
    /// across the write so that two updates cannot reach the disk in the wrong order.
    pub fn update_batch(
        &self,
        id: &str,
        change: impl FnOnce(&mut BatchRec),
    ) -> io::Result<Option<BatchRec>> {
        let mut idx = self.index();
        let Some(rec) = idx.batches.get_mut(id) else {
            return Ok(None);
        };
        let mut next = rec.clone();
        change(&mut next);
        write_atomic(&self.batch_record(id), &serde_json::to_vec(&next)?)?;
        *rec = next.clone();
        Ok(Some(next))
    }
}

/// The id of a record file `ID.json` (temp files start with a dot).
fn record_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(".json").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("batch_")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let body = store.upload_path();
        fs::write(&body, b"{}\n").unwrap();
        let obj = FileObject {
            id: new_id("file-"),
            object: "file".into(),
            bytes: 3,
            created_at: now(),
            filename: "a.jsonl".into(),
            purpose: "batch".into(),
            status: "processed".into(),
            expires_at: None,
            status_details: None,
        };
        store.add_file(&body, obj.clone()).unwrap();
        // A leftover upload is removed when the store opens again.
        fs::write(store.upload_path(), b"partial").unwrap();
        drop(store);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.file(&obj.id).unwrap().bytes, 3);
        assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
        assert!(again.delete_file(&obj.id).unwrap());
        assert!(again.file(&obj.id).is_none());
        assert!(!again.delete_file(&obj.id).unwrap());
    }
}
