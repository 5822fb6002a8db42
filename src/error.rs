//! The library's error type: small to return, and every variant says where it happened.

use std::io;
use std::path::Path;

/// Errors that end a command. Per-line problems that the user asked to skip are not
/// errors: they are counted and written to the rejects file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure on a named file (or `<stdin>` / `<stdout>`).
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// A bad input line when the run stops at the first one (`--on-error fail`).
    #[error("{file}:{line}:{offset}: {reason}")]
    BadLine {
        file: String,
        line: u64,
        offset: u64,
        reason: String,
    },
    /// A bad flag value or combination, found before any input is read.
    #[error("{0}")]
    Usage(String),
    /// Any other fatal condition, with its explanation.
    #[error("{0}")]
    Other(String),
    /// The reader of our standard output went away (`| head`): not a failure.
    #[error("standard output closed")]
    BrokenPipe,
    /// Ctrl-C or SIGTERM: outputs were abandoned, nothing half-written was kept.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the file it happened on; a broken pipe on stdout is
    /// its own variant so the binary can end quietly.
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return Error::BrokenPipe;
        }
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
