//! The one check, shared by every command, that no output is one of the run's inputs
//! or another of its outputs.
//!
//! Paths are compared by what they name, not by how they are spelled: an existing file
//! by its device and inode (so hard links, symlinks and `./x` vs `x` are the same file),
//! a file that does not exist yet by its directory's device and inode plus its name.
//! Standard input and output count too when they are regular files (`< x.jsonl`,
//! `> out.jsonl`). Devices, pipes and sockets (`/dev/null`, `/dev/stdout` on a
//! terminal) are written in place, never renamed over, so two outputs may share one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::input::InputSpec;
use super::output::OutputSpec;
use crate::error::{Error, Result};

/// What makes two paths the same file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileId {
    /// An existing file.
    Inode(u64, u64),
    /// A file not created yet: its directory's identity and its name.
    Entry(u64, u64, OsString),
}

/// One claimed path: its identity, the name the user gave, and whether it is written.
#[derive(Debug)]
struct Claim {
    id: FileId,
    shown: String,
    output: bool,
}

/// The files a run reads and writes; [`PathClaims::output`] refuses a second claim on
/// a file that is already an input or an output.
#[derive(Debug, Default)]
pub struct PathClaims {
    claims: Vec<Claim>,
}

impl PathClaims {
    pub fn new() -> PathClaims {
        PathClaims::default()
    }

    /// Records an input (a missing one is left for the opening to report).
    pub fn input(&mut self, spec: &InputSpec) -> Result<()> {
        let id = match spec {
            InputSpec::Stdin => std_stream_id(0),
            InputSpec::Path(p) => match existing_id(p)? {
                Some((id, _)) => Some(id),
                None => None,
            },
        };
        if let Some(id) = id {
            self.claims.push(Claim {
                id,
                shown: spec.display_name(),
                output: false,
            });
        }
        Ok(())
    }

    /// Records an input path.
    pub fn input_path(&mut self, path: &Path) -> Result<()> {
        self.input(&InputSpec::Path(path.to_path_buf()))
    }

    /// Records an output; refuses it when it is an input or another output.
    pub fn output(&mut self, spec: &OutputSpec) -> Result<()> {
        match spec {
            OutputSpec::Stdout => match std_stream_id(1) {
                Some(id) => self.claim_output(id, "<stdout>".into()),
                None => Ok(()),
            },
            OutputSpec::Path(p) => self.output_path(p),
        }
    }

    /// Records an output path; refuses it when it is an input or another output.
    pub fn output_path(&mut self, path: &Path) -> Result<()> {
        let id = match existing_id(path)? {
            Some((_, Kind::Special)) => return Ok(()),
            Some((_, Kind::Dir)) => {
                return Err(Error::Usage(format!(
                    "{}: is a directory, expected a file name",
                    path.display()
                )))
            }
            Some((id, Kind::File)) => id,
            None => new_entry_id(path)?,
        };
        self.claim_output(id, path.display().to_string())
    }

    /// Whether [`PathClaims::output_path`] would refuse `path` (without claiming it).
    pub fn would_refuse(&self, path: &Path) -> bool {
        match existing_id(path) {
            Ok(Some((_, Kind::Special))) => false,
            Ok(Some((id, Kind::File))) => self.claims.iter().any(|c| c.id == id),
            Ok(None) => match new_entry_id(path) {
                Ok(id) => self.claims.iter().any(|c| c.id == id),
                Err(_) => true,
            },
            _ => true,
        }
    }

    fn claim_output(&mut self, id: FileId, shown: String) -> Result<()> {
        if let Some(c) = self.claims.iter().find(|c| c.id == id) {
            let also = if c.shown == shown {
                String::new()
            } else {
                format!(" ({})", c.shown)
            };
            return Err(Error::Usage(if c.output {
                format!("{shown}: given as two outputs{also}; every output needs a file of its own")
            } else {
                format!("{shown}: is also an input{also}; refusing to overwrite it")
            }));
        }
        self.claims.push(Claim {
            id,
            shown,
            output: true,
        });
        Ok(())
    }
}

enum Kind {
    File,
    Dir,
    /// A device, pipe or socket: written in place.
    Special,
}

/// The identity of an existing path (following links), `None` when it does not exist;
/// a symlink that points nowhere is refused (see [`refuse_dangling_link`]).
fn existing_id(path: &Path) -> Result<Option<(FileId, Kind)>> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let kind = if m.is_file() {
                Kind::File
            } else if m.is_dir() {
                Kind::Dir
            } else {
                Kind::Special
            };
            Ok(Some((inode_id(&m), kind)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            refuse_dangling_link(path)?;
            Ok(None)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A symlink to a missing file is refused as an output: writing "through" it would
/// create a file somewhere the user may not expect, and replacing it would silently
/// turn the link into a regular file.
pub fn refuse_dangling_link(path: &Path) -> Result<()> {
    match std::fs::read_link(path) {
        Ok(target) if std::fs::metadata(path).is_err() => Err(Error::Usage(format!(
            "{}: is a symlink to {}, which does not exist; give the target's path or remove the link",
            path.display(),
            target.display()
        ))),
        _ => Ok(()),
    }
}

/// The identity of a file to be created at `path`: its directory must exist.
fn new_entry_id(path: &Path) -> Result<FileId> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    let dir = parent_dir(path);
    let m = std::fs::metadata(&dir).map_err(|e| missing_dir(path, &dir, e))?;
    if !m.is_dir() {
        return Err(Error::Usage(format!(
            "{}: {} is not a directory",
            path.display(),
            dir.display()
        )));
    }
    let FileId::Inode(dev, ino) = inode_id(&m) else {
        unreachable!("inode_id gives an inode")
    };
    Ok(FileId::Entry(dev, ino, name.to_os_string()))
}

/// The directory a file at `path` goes into (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The error for an output whose directory cannot be used, with the user's path (not
/// the hidden temporary file's).
pub fn missing_dir(path: &Path, dir: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Usage(format!(
            "{}: directory {} does not exist",
            path.display(),
            dir.display()
        ))
    } else {
        Error::io(path, e)
    }
}

#[cfg(unix)]
fn inode_id(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId::Inode(m.dev(), m.ino())
}

#[cfg(not(unix))]
fn inode_id(m: &std::fs::Metadata) -> FileId {
    // No inodes here: fall back to size and times, which is coarse but never merges
    // two files that differ.
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    FileId::Inode(m.len(), t)
}

/// The identity of standard input (0) or output (1) when it is a regular file.
fn std_stream_id(fd: i32) -> Option<FileId> {
    #[cfg(unix)]
    {
        // SAFETY: fstat on a descriptor number only reads its state.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(fd, &mut st) == 0).then_some(st)
        }?;
        (st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .then_some(FileId::Inode(st.st_dev as u64, st.st_ino as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = fd;
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn links_and_spellings_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        std::fs::write(&a, "x\n").unwrap();
        std::fs::hard_link(&a, dir.path().join("hard")).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("soft")).unwrap();
        for other in ["hard", "soft", "./a.jsonl"] {
            let mut c = PathClaims::new();
            c.input_path(&a).unwrap();
            let err = c.output_path(&dir.path().join(other)).unwrap_err();
            assert!(
                err.to_string().contains("is also an input"),
                "{other}: {err}"
            );
        }
        // Not yet existing: the same directory entry, spelled two ways.
        let mut c = PathClaims::new();
        c.output_path(&dir.path().join("new.jsonl")).unwrap();
        let err = c
            .output_path(&dir.path().join(".").join("new.jsonl"))
            .unwrap_err();
        assert!(err.to_string().contains("two outputs"), "{err}");
        // Devices are shared freely.
        c.output_path(Path::new("/dev/null")).unwrap();
        c.output_path(Path::new("/dev/null")).unwrap();
        // A missing directory is named as the user gave it.
        let err = c
            .output_path(&dir.path().join("nodir").join("r.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodir") && err.contains("does not exist"),
            "{err}"
        );
        // A dangling symlink is refused.
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let err = c.output_path(&link).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
