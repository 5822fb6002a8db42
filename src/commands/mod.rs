//! One module per command: each has a plain config struct, a summary, and a `run`.

pub mod build;
pub mod download;
pub mod estimate;
pub mod extract;
pub mod join;
pub mod run;
pub mod serve;
pub mod shard;
pub mod validate;
// The batch lifecycle (helper "lifecycle").
pub mod cancel;
pub mod lifecycle;
pub mod list;
pub mod resubmit;
pub mod status;
pub mod submit;
pub mod wait;

use std::sync::Arc;

use serde::Serialize;

use crate::engine::EngineConfig;
use crate::error::{Error, Result};
use crate::io::output::OutputSpec;
use crate::io::rejects::{Reject, RejectSink};

/// Where a run's messages for its user go (the first rejected lines, warnings, notes):
/// the library never prints; the caller passes this sink (the binary writes to stderr,
/// a server could log per job). The default drops them.
#[derive(Clone, Default)]
pub struct Notes(Option<Arc<dyn Fn(&str) + Send + Sync>>);

impl Notes {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Notes {
        Notes(Some(Arc::new(f)))
    }

    pub fn note(&self, msg: &str) {
        if let Some(f) = &self.0 {
            f(msg);
        }
    }
}

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notes(sink)"
        } else {
            "Notes(none)"
        })
    }
}

/// The options every command shares; each command's config holds one.
#[derive(Clone, Debug)]
pub struct CommonOptions {
    /// Threads, progress bar, line limit, and the cancellation token.
    pub engine: EngineConfig,
    /// What to do with a bad line.
    pub on_error: ErrorMode,
    /// Where rejected lines go (`None`: counted, and the first few echoed, only; `shard`
    /// has a default in its directory).
    pub rejects: Option<OutputSpec>,
    /// fsync outputs before renaming them into place (off: `--no-sync`).
    pub sync: bool,
    /// Echo the first rejected lines and warnings to `notes` (off: `--quiet`).
    pub verbose: bool,
    pub notes: Notes,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions {
            engine: EngineConfig::default(),
            on_error: ErrorMode::Fail,
            rejects: None,
            sync: true,
            verbose: true,
            notes: Notes::default(),
        }
    }
}

impl CommonOptions {
    /// A warning or note for the user (dropped with `--quiet`).
    pub fn note(&self, msg: &str) {
        if self.verbose {
            self.notes.note(msg);
        }
    }
}

/// Writes `s` as a JSON string.
pub(crate) fn json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("string serialises");
}

/// What every command's summary offers the binary: one human line, the same figures
/// as JSON (`Serialize`), and the outcome that sets the exit status.
pub trait Summary: Serialize {
    /// The one-line human summary.
    fn human(&self) -> String;
    fn outcome(&self) -> Outcome;
    /// Whether the command's data went to stdout (then a JSON summary goes to stderr).
    fn data_on_stdout(&self) -> bool;
    /// Text for stdout before the summary (`shard --check`'s plan).
    fn stdout_text(&self) -> Option<String> {
        None
    }
}

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
    /// Standard output's reader went away (`| head`); the side files asked for were
    /// still written (exit status 0).
    OutputClosed,
}

impl Outcome {
    /// `WithRejects` when any line was rejected; `OutputClosed` first.
    pub fn of(rejected: u64, stdout_closed: bool) -> Outcome {
        if stdout_closed {
            Outcome::OutputClosed
        } else if rejected > 0 {
            Outcome::WithRejects
        } else {
            Outcome::Clean
        }
    }

    /// `WithRejects` when any line was rejected.
    pub fn from_rejected(rejected: u64) -> Outcome {
        Outcome::of(rejected, false)
    }
}

/// Fails loudly, in release builds too, when a run's lines do not add up: every input
/// line must end in exactly one outcome. `parts` are the outcomes' names and counts.
pub fn check_accounting(command: &str, lines: u64, parts: &[(&str, u64)]) -> Result<()> {
    let sum: u64 = parts.iter().map(|(_, n)| n).sum();
    if sum != lines {
        let shown: Vec<String> = parts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        return Err(Error::Other(format!(
            "internal error: {command}: {lines} lines but {} = {sum}; nothing was written; please report it",
            shown.join(" + ")
        )));
    }
    Ok(())
}

/// Shows the first few rejected lines (through the run's [`Notes`]) so that a user
/// sees why, without flooding the terminal; the rejects file has all of them.
pub struct RejectEcho {
    shown: u64,
    limit: u64,
    /// Whether a rejects file is written (to point to it, or not).
    to_file: bool,
    notes: Notes,
}

impl RejectEcho {
    /// `to_file`: a rejects file was asked for (the hint points to it only then).
    pub fn new(common: &CommonOptions, to_file: bool) -> RejectEcho {
        RejectEcho {
            shown: 0,
            limit: if common.verbose { 5 } else { 0 },
            to_file,
            notes: common.notes.clone(),
        }
    }

    pub fn echo(&mut self, file: &str, line: u64, offset: u64, reason: &str) {
        if self.shown < self.limit {
            self.notes
                .note(&format!("{file}:{line}:{offset}: {reason}"));
        } else if self.shown == self.limit && self.limit > 0 {
            self.notes.note(if self.to_file {
                "(more rejected lines: see the rejects file)"
            } else {
                "(more rejected lines not shown; the summary counts them all)"
            });
        }
        self.shown += 1;
    }
}

/// THE reject writer of every command: where its bad lines go. With
/// [`ErrorMode::Fail`] the first one stops the run (as a `file:line:offset: message`
/// error); with [`ErrorMode::Skip`] each is echoed (the first few), counted and written
/// to the rejects file in the one shape of [`crate::io::rejects`].
pub struct RejectRoute {
    file: String,
    mode: ErrorMode,
    sink: RejectSink,
    echo: RejectEcho,
}

impl RejectRoute {
    pub fn new(file: String, common: &CommonOptions, sink: RejectSink) -> RejectRoute {
        RejectRoute {
            file,
            mode: common.on_error,
            echo: RejectEcho::new(common, sink.keeps_lines()),
            sink,
        }
    }

    /// A route to the command's `--rejects` (none: rejects are only counted).
    pub fn open(file: String, common: &CommonOptions) -> Result<RejectRoute> {
        let sink = RejectSink::create(common.rejects.as_ref(), common.sync)?;
        Ok(RejectRoute::new(file, common, sink))
    }

    /// The input whose lines come next (commands that read several).
    pub fn set_file(&mut self, file: String) {
        self.file = file;
    }

    /// Sets `r` aside, or returns the error that stops the run.
    pub fn route(&mut self, r: Reject) -> Result<()> {
        if self.mode == ErrorMode::Fail {
            return Err(Error::BadLine {
                file: self.file.clone(),
                line: r.line,
                offset: r.offset,
                reason: r.message,
            });
        }
        self.echo.echo(&self.file, r.line, r.offset, &r.message);
        self.sink.write(&self.file, &r)
    }

    /// Writes `r`, a line the command refuses by design rather than a bad line
    /// (`validate`'s records that break a rule): never stops the run, not echoed.
    pub fn keep(&mut self, r: &Reject) -> Result<()> {
        self.sink.write(&self.file, r)
    }

    /// Rejects routed or kept so far.
    pub fn count(&self) -> u64 {
        self.sink.count()
    }

    /// Whether rejected lines are written to a file (rather than only counted).
    pub fn keeps_lines(&self) -> bool {
        self.sink.keeps_lines()
    }

    /// Whether the rejects go somewhere still open (a closed stdout does not count).
    pub fn is_open(&self) -> bool {
        self.sink.is_open()
    }

    /// Finishes the rejects file without renaming it yet.
    pub fn finish_pending(self) -> Result<Option<crate::io::output::PendingFile>> {
        self.sink.finish_pending()
    }
}
