//! `batchline download JOB`: the output and error files of every ended batch of every
//! round, streamed into `JOB/results/round-N/<shard-stem>.output.jsonl` and
//! `.error.jsonl` by [`crate::api::download`] (resumed after a dropped connection or a
//! crash, atomic), checked, and recorded in the ledger's `downloads`.
//!
//! Checks: the byte length must be the file object's `bytes` (else the download is an
//! error and nothing is recorded), and the lines are compared with the batch's
//! `request_counts`: output lines = `completed`; error lines = `failed`, or, for an
//! expired or cancelled batch, `total - completed` (OpenAI writes the requests that
//! never ran as `batch_expired` / `batch_cancelled` lines of the error file, and
//! whether `failed` counts them is not documented; `batchline serve` counts them). A
//! count that does not match is kept, reported as a warning and makes the exit
//! status 1.
//!
//! A file already recorded complete, whose size on disk is the recorded size, is
//! skipped without a request. A file that is on disk at the file object's size but not
//! recorded (a crash between the rename and the ledger write) is counted and recorded
//! without being downloaded again.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::lifecycle::{JobOptions, Session};
use super::{CommonOptions, Outcome, Summary};
use crate::api::download::{self as dl, Target};
use crate::api::Client;
use crate::error::{Error, Result};
use crate::job::{BatchSnapshot, DownloadEntry, Ledger};
use crate::report::human_bytes;

/// What `batchline download` is asked to do.
#[derive(Clone, Debug)]
pub struct DownloadConfig {
    /// The job directory, the provider, notes, fsync, the stop token; `progress`: a
    /// bar per file when stderr is a terminal.
    pub job: JobOptions,
}

/// One result file of one batch.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub round: u32,
    pub shard: String,
    /// `output` or `error`.
    pub kind: &'static str,
    pub file_id: String,
    /// Relative to the job directory.
    pub path: String,
    /// `fetched`, `skipped` (already complete) or `recorded` (complete on disk, not yet
    /// in the ledger).
    pub action: &'static str,
    pub bytes: u64,
    pub lines: u64,
    /// The lines `request_counts` calls for, when known.
    pub expected_lines: Option<u64>,
    /// Bytes taken over from an earlier run's partial file.
    pub resumed_bytes: u64,
    /// Bytes that came over the network (a resume re-reads up to 64 KiB to check the
    /// partial file's tail; a server that ignores `Range` sends the start again).
    pub received_bytes: u64,
    pub retries: u32,
    /// Times the partial file was started over.
    pub restarts: u32,
    pub seconds: f64,
}

/// The figures of a download run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DownloadSummary {
    pub job: String,
    /// Files downloaded by this run.
    pub fetched: u64,
    /// Files already complete (skipped) or found complete and recorded.
    pub skipped: u64,
    /// Bytes written by this run (resumed bytes not included).
    pub bytes: u64,
    /// Bytes of every result file of the job that is now complete.
    pub total_bytes: u64,
    /// Lines of every result file of the job that is now complete.
    pub lines: u64,
    pub retries: u64,
    /// Bytes taken over from partial files of an earlier run.
    pub resumed_bytes: u64,
    /// Batches not ended yet (nothing to download for them yet).
    pub not_ended: u64,
    /// Files whose line count does not match the batch's `request_counts`.
    pub mismatched: u64,
    pub seconds: f64,
    /// Download speed of this run: `bytes` over the time spent downloading.
    pub mb_per_s: f64,
    pub files: Vec<FileReport>,
    /// Time spent in downloads (for `mb_per_s`).
    #[serde(skip)]
    pub download_seconds: f64,
}

impl Summary for DownloadSummary {
    fn human(&self) -> String {
        format!("download {}: {}", self.job, self.brief())
    }

    fn outcome(&self) -> Outcome {
        if self.mismatched > 0 {
            Outcome::WithRejects
        } else {
            Outcome::Clean
        }
    }

    fn data_on_stdout(&self) -> bool {
        false
    }
}

impl DownloadSummary {
    pub fn new(job: &Path) -> DownloadSummary {
        DownloadSummary {
            job: job.display().to_string(),
            ..DownloadSummary::default()
        }
    }

    /// The figures of the human summary, without the job (also in `wait --download`'s).
    pub fn brief(&self) -> String {
        let mut s = format!(
            "{} files fetched ({}, {:.1} MB/s), {} already complete; {} lines in {} of results",
            self.fetched,
            human_bytes(self.bytes),
            self.mb_per_s,
            self.skipped,
            self.lines,
            human_bytes(self.total_bytes),
        );
        if self.resumed_bytes > 0 {
            s.push_str(&format!(", {} resumed", human_bytes(self.resumed_bytes)));
        }
        if self.retries > 0 {
            s.push_str(&format!(", {} retries", self.retries));
        }
        if self.not_ended > 0 {
            s.push_str(&format!(", {} batches not ended yet", self.not_ended));
        }
        if self.mismatched > 0 {
            s.push_str(&format!(
                ", {} files whose lines do not match request_counts",
                self.mismatched
            ));
        }
        s
    }
}

/// `batchline download JOB`: takes the job's lock, refreshes the batches not known to
/// have ended (as `status` does), and downloads the files of every ended one.
pub fn run(cfg: &DownloadConfig) -> Result<DownloadSummary> {
    let t0 = Instant::now();
    let mut session = Session::open(&cfg.job, false, false)?;
    session.refresh()?;
    let mut summary = DownloadSummary::new(&cfg.job.job);
    let files = Files {
        client: &session.client,
        job: &session.job,
        common: &session.common,
        progress: cfg.job.progress,
        notes: false,
    };
    files.download_ended(&mut session.ledger, &mut summary)?;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// The result file name of a shard, relative to the job directory:
/// `results/round-N/<stem>.output.jsonl` / `.error.jsonl`.
pub fn result_path(round: u32, shard: &str, kind: &str) -> String {
    let stem = shard.strip_suffix(".jsonl").unwrap_or(shard);
    format!("results/round-{round}/{stem}.{kind}.jsonl")
}

/// Where and how a job's result files are downloaded.
pub struct Files<'a> {
    pub client: &'a Client,
    pub job: &'a Path,
    pub common: &'a CommonOptions,
    /// A progress bar per file when stderr is a terminal.
    pub progress: bool,
    /// A note per file fetched (`wait --download`, whose bars are the batches').
    pub notes: bool,
}

impl Files<'_> {
    /// Downloads the files of every ended batch of `ledger` that are not complete yet,
    /// saving the ledger after each one; adds to `summary`. The caller holds the job's
    /// lock. `wait --download` calls it after each poll.
    pub fn download_ended(&self, ledger: &mut Ledger, summary: &mut DownloadSummary) -> Result<()> {
        let (client, job, common) = (self.client, self.job, self.common);
        let stop = common.engine.cancel.as_atomic();
        // What to fetch, gathered first: the ledger is changed as files complete.
        let mut todo = Vec::new();
        // A state, not a running count: `wait --download` calls this after every poll.
        summary.not_ended = 0;
        for (round, s) in ledger.shards() {
            let Some(batch) = s.batch.as_ref().filter(|b| b.is_terminal()) else {
                if s.batch_id.is_some() {
                    summary.not_ended += 1;
                }
                continue;
            };
            for kind in ["output", "error"] {
                let id = match kind {
                    "output" => batch.output_file_id.clone(),
                    _ => batch.error_file_id.clone(),
                };
                let expected = expected_lines(batch, kind);
                let Some(id) = id else {
                    // No file: right when no line was due.
                    if !expected.is_empty() && !expected.contains(&0) {
                        summary.mismatched += 1;
                        common.note(&format!(
                        "warning: {} (round {round}): batch {} has no {kind} file, but its request_counts call for {} {kind} lines",
                        s.name,
                        s.batch_id.as_deref().unwrap_or("?"),
                        expected[0]
                    ));
                    }
                    continue;
                };
                let done = match kind {
                    "output" => s.downloads.output.clone(),
                    _ => s.downloads.error.clone(),
                };
                todo.push((round, s.name.clone(), kind, id, expected, done));
            }
        }
        for (round, shard, kind, file_id, expected, done) in todo {
            let rel = result_path(round, &shard, kind);
            let dest = job.join(&rel);
            let t0 = Instant::now();
            // Recorded complete and still there at that size: nothing to do.
            if let Some(d) = done.as_ref().filter(|d| d.complete && d.file_id == file_id) {
                if std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == d.bytes) {
                    summary.skipped += 1;
                    summary.total_bytes += d.bytes;
                    summary.lines += d.lines;
                    let expected =
                        check_lines(common, summary, &shard, round, kind, d.lines, &expected);
                    summary.files.push(FileReport {
                        round,
                        shard,
                        kind,
                        file_id,
                        path: rel,
                        action: "skipped",
                        bytes: d.bytes,
                        lines: d.lines,
                        expected_lines: expected,
                        resumed_bytes: 0,
                        received_bytes: 0,
                        retries: 0,
                        restarts: 0,
                        seconds: 0.0,
                    });
                    continue;
                }
            }
            let object = client.retrieve_file(&file_id)?;
            let dir = dest.parent().expect("a result path has a directory");
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            // Complete on disk but not recorded as such (a crash after the rename): the
            // ledger already names this file id for this path (recorded before the
            // download), so the file there is this one.
            let on_disk = std::fs::metadata(&dest).ok().filter(|m| m.is_file());
            let intended = done.as_ref().is_some_and(|d| d.file_id == file_id);
            if !intended {
                set_entry(
                    ledger,
                    round,
                    &shard,
                    kind,
                    DownloadEntry {
                        file_id: file_id.clone(),
                        path: rel.clone(),
                        bytes: object.bytes.unwrap_or(0),
                        lines: 0,
                        complete: false,
                    },
                );
                ledger.save(job, common.sync)?;
            }
            let (action, fetched) = match (on_disk, object.bytes) {
                (Some(m), Some(b)) if m.len() == b && intended => {
                    let lines = count_lines(&dest)?;
                    dl::discard_part(&dest);
                    (
                        "recorded",
                        dl::Fetched {
                            bytes: b,
                            lines,
                            ..dl::Fetched::default()
                        },
                    )
                }
                _ => {
                    let target = Target {
                        file_id: &file_id,
                        dest: &dest,
                        expected_bytes: object.bytes,
                    };
                    let mut bar = crate::report::progress_bar(
                        self.progress,
                        object.bytes,
                        &format!(
                            "{{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {}",
                            rel
                        ),
                        None,
                    );
                    let f = dl::download(client, &target, common.sync, stop, &mut |n| {
                        if let Some(b) = bar.as_mut() {
                            b.set_position(n);
                        }
                    });
                    if let Some(b) = bar {
                        b.finish_and_clear();
                    }
                    ("fetched", f?)
                }
            };
            let seconds = t0.elapsed().as_secs_f64();
            set_entry(
                ledger,
                round,
                &shard,
                kind,
                DownloadEntry {
                    file_id: file_id.clone(),
                    path: rel.clone(),
                    bytes: fetched.bytes,
                    lines: fetched.lines,
                    complete: true,
                },
            );
            ledger.save(job, common.sync)?;
            let expected = check_lines(
                common,
                summary,
                &shard,
                round,
                kind,
                fetched.lines,
                &expected,
            );
            if self.notes {
                common.note(&format!(
                    "{rel}: {action} ({}, {} lines)",
                    human_bytes(fetched.bytes),
                    fetched.lines
                ));
            }
            if action == "fetched" {
                summary.fetched += 1;
                summary.bytes += fetched.bytes - fetched.reused;
                summary.resumed_bytes += fetched.reused;
                summary.retries += u64::from(fetched.retries);
                summary.download_seconds += seconds;
            } else {
                summary.skipped += 1;
            }
            summary.total_bytes += fetched.bytes;
            summary.lines += fetched.lines;
            summary.files.push(FileReport {
                round,
                shard,
                kind,
                file_id,
                path: rel,
                action,
                bytes: fetched.bytes,
                lines: fetched.lines,
                expected_lines: expected,
                resumed_bytes: fetched.reused,
                received_bytes: fetched.received,
                retries: fetched.retries,
                restarts: fetched.restarts,
                seconds,
            });
        }
        summary.mb_per_s = if summary.download_seconds > 0.0 {
            summary.bytes as f64 / 1e6 / summary.download_seconds
        } else {
            0.0
        };
        Ok(())
    }
}

/// The line counts a result file of `batch` may have, from its `request_counts`:
/// output = completed; error = failed, or for an expired or cancelled batch also
/// total - completed (see the module doc). Empty when the counts are unknown.
fn expected_lines(batch: &BatchSnapshot, kind: &str) -> Vec<u64> {
    let Some(rc) = batch.request_counts.as_ref() else {
        return Vec::new();
    };
    match kind {
        "output" => vec![rc.completed],
        _ => {
            let mut v = vec![rc.failed];
            let unrun = rc.total.saturating_sub(rc.completed);
            if matches!(batch.status.as_str(), "expired" | "cancelled") && unrun != rc.failed {
                v.push(unrun);
            }
            v
        }
    }
}

/// Compares `lines` with what `request_counts` calls for; a mismatch is a warning.
/// Returns the expected count to report (the one matched, else the first).
#[allow(clippy::too_many_arguments)]
fn check_lines(
    common: &CommonOptions,
    summary: &mut DownloadSummary,
    shard: &str,
    round: u32,
    kind: &str,
    lines: u64,
    expected: &[u64],
) -> Option<u64> {
    if expected.is_empty() || expected.contains(&lines) {
        return expected.iter().copied().find(|&e| e == lines);
    }
    summary.mismatched += 1;
    let want = expected
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    common.note(&format!(
        "warning: {shard} (round {round}): the {kind} file has {lines} lines, but the batch's request_counts call for {want}"
    ));
    expected.first().copied()
}

fn set_entry(ledger: &mut Ledger, round: u32, shard: &str, kind: &str, entry: DownloadEntry) {
    if let Some(s) = ledger.shard_mut(round, shard) {
        match kind {
            "output" => s.downloads.output = Some(entry),
            _ => s.downloads.error = Some(entry),
        }
    }
}

/// Counts the lines of a file (a last line without newline counts).
fn count_lines(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, mut last) = (0u64, None);
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        n += memchr::memchr_iter(b'\n', &buf[..k]).count() as u64;
        last = Some(buf[k - 1]);
    }
    Ok(n + u64::from(last.is_some_and(|b| b != b'\n')))
}
