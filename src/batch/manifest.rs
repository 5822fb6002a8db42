//! `DIR/manifest.json`, the record of a shard directory: what each shard file holds
//! and the limits it was cut to. Its presence is the promise that the directory is
//! complete: `shard` writes it last and removes an old one first (see
//! `commands::shard`); `join DIR` reads it to find the requests.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name inside a shard directory.
pub const MANIFEST_NAME: &str = "manifest.json";

/// `OUT_DIR/manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub input: String,
    pub limits: ManifestLimits,
    pub files: Vec<ShardFile>,
    pub totals: ShardTotals,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestLimits {
    pub max_requests: u64,
    pub max_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_tokens: Option<u64>,
    pub max_embedding_inputs: u64,
}

/// One output file, as listed in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardFile {
    pub name: String,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub embedding_inputs: Option<u64>,
    /// The SHA-256 of the file; absent in a `--check` plan (nothing is written).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    pub first_custom_id: String,
    pub last_custom_id: String,
}

/// Totals over the run; `lines = blank + requests + rejected` always holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardTotals {
    pub files: u64,
    pub requests: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tokens: Option<u64>,
    pub lines: u64,
    pub blank: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub warnings: u64,
}

impl Manifest {
    /// Reads `dir/manifest.json`; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_NAME);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: not a shard manifest: {e}", path.display())))
    }

    /// The manifest as written: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serialises");
        text.push(b'\n');
        text
    }

    /// The paths of the listed files in `dir` (names reduced to their last component,
    /// so that a manifest cannot point outside its directory).
    pub fn file_paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.files
            .iter()
            .map(|f| dir.join(Path::new(&f.name).file_name().unwrap_or_default()))
            .collect()
    }
}
