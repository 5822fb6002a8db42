//! One module per command: each has a plain config struct, a summary, and a `run`.

pub mod build;
pub mod extract;
pub mod join;
pub mod run;
pub mod serve;
pub mod shard;
pub mod validate;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::rejects::{Reject, RejectSink};

/// What to do with a bad input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Stop at the first bad line, leave no output behind, exit 2.
    #[default]
    Fail,
    /// Write the line to the rejects file and go on; exit 1 at the end.
    Skip,
}

/// How a finished command went, for the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was accepted.
    Clean,
    /// The run finished, but some lines were rejected (exit status 1).
    WithRejects,
    /// Ctrl-C or SIGTERM stopped a command that keeps what it finished (`run`; exit
    /// status 130).
    Interrupted,
}

impl Outcome {
    /// `WithRejects` when any line was rejected.
    pub fn from_rejected(rejected: u64) -> Outcome {
        if rejected > 0 {
            Outcome::WithRejects
        } else {
            Outcome::Clean
        }
    }
}

/// Prints the first few skipped lines to stderr so that a user sees why, without
/// flooding the terminal; the rejects file has all of them.
pub struct RejectEcho {
    shown: u64,
    limit: u64,
    /// Whether a rejects file is written (to point to it, or not).
    to_file: bool,
}

impl RejectEcho {
    pub fn new(quiet: bool) -> RejectEcho {
        RejectEcho {
            shown: 0,
            limit: if quiet { 0 } else { 5 },
            to_file: true,
        }
    }

    /// For a run that writes no rejects file (`shard --check`).
    pub fn without_file(mut self) -> RejectEcho {
        self.to_file = false;
        self
    }

    pub fn echo(&mut self, file: &str, line: u64, offset: u64, reason: &str) {
        if self.shown < self.limit {
            eprintln!("{file}:{line}:{offset}: {reason}");
        } else if self.shown == self.limit && self.limit > 0 {
            if self.to_file {
                eprintln!("(more rejected lines: see the rejects file)");
            } else {
                eprintln!("(more rejected lines not shown; the summary counts them all)");
            }
        }
        self.shown += 1;
    }
}

/// Where a command's bad lines go: with [`ErrorMode::Fail`] the first one stops the run
/// (as a `file:line:offset: reason` error); with [`ErrorMode::Skip`] each is echoed (the
/// first few), counted and written to the rejects file.
pub struct RejectRoute {
    file: String,
    mode: ErrorMode,
    sink: RejectSink,
    echo: RejectEcho,
}

impl RejectRoute {
    pub fn new(file: String, mode: ErrorMode, sink: RejectSink, quiet: bool) -> RejectRoute {
        let echo = if sink.keeps_lines() {
            RejectEcho::new(quiet)
        } else {
            RejectEcho::new(quiet).without_file()
        };
        RejectRoute {
            file,
            mode,
            sink,
            echo,
        }
    }

    /// Sets `r` aside, or returns the error that stops the run.
    pub fn route(&mut self, r: Reject) -> Result<()> {
        if self.mode == ErrorMode::Fail {
            return Err(Error::BadLine {
                file: self.file.clone(),
                line: r.line,
                offset: r.offset,
                reason: r.reason,
            });
        }
        self.echo.echo(&self.file, r.line, r.offset, &r.reason);
        self.sink.write(&r)
    }

    /// Commits the rejects file.
    pub fn finish(self) -> Result<()> {
        self.sink.finish()
    }
}
