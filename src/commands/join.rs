//! `batchline join`: put Batch API results back onto their requests, in request order,
//! and account for every request (`ok`, `failed` or `missing`).
//!
//! Two passes, with memory bounded by the number of results, never their size:
//!
//! 1. **Index** every RESULTS file (in parallel on the engine, one file after another):
//!    each result line becomes one entry `xxh3_128(custom_id) → (file, byte offset,
//!    length, ok/failed)` in a hash table of 28-byte slots (about 32 to 66 bytes per
//!    result with the table's load factor). Bodies are not kept. Compressed (`.zst`,
//!    `.gz`) or non-regular (pipe) result files are decompressed *while* they are
//!    indexed into an anonymous temporary file (in `--temp-dir`, by default the
//!    output's directory), so that bodies can be re-read by offset later.
//!    Several results for one custom_id: a success wins over a failure, else the last
//!    one (files in the order given, lines in file order); the others are counted as
//!    `duplicate_results`.
//! 2. **Join**: stream REQUESTS through the engine. Workers parse each line's custom_id,
//!    look it up in the (read-only, shared) index, read the result line back with a
//!    positioned read (`pread`: random access through a memory map would keep the
//!    touched pages resident), and render the output line, copying JSON sub-values as raw
//!    bytes. The single writer writes lines in request order, marks each result as
//!    used (an atomic flag inside its slot) and detects duplicate request custom_ids.
//!
//! Plain input files are memory-mapped and read sequentially; the engine releases
//! each chunk's pages (`MADV_DONTNEED`) once consumed, so resident memory stays flat
//! however large the files are.
//!
//! Afterwards the results never used are the orphans: counted, and written (raw, in
//! file order) to `--orphans FILE` when asked.
//!
//! Identity is the 128-bit xxh3 hash of the decoded custom_id: two different ids
//! colliding is astronomically unlikely (about n²/2¹²⁹; for 10⁹ results, ~10⁻²¹),
//! but not impossible, and it is not checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::Outcome;
use crate::batch::classify::{classify, Failure, Verdict};
use crate::batch::manifest::Manifest;
use crate::batch::outcome::{parse_request_side, scan_ok_result};
use crate::commands::{check_accounting, CommonOptions, ErrorMode, RejectRoute, Summary};
use crate::io::rejects::{self, Reject};

/// Reason code of a request line that is JSON but not a usable request.
pub const INVALID_REQUEST: &str = "invalid_request";
/// Reason code of a result line that is JSON but not a usable result (as in extract).
pub const BAD_RESULT: &str = "bad_line";
use crate::engine::{self, BufferPool, EngineConfig, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::io::output::{commit_all, finish_all, AtomicFile, Output, OutputSpec};
use crate::io::paths::PathClaims;
use crate::io::Compression;
use crate::report::Throughput;

/// A field of the output line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    CustomId,
    Status,
    Request,
    Response,
    Error,
    /// The whole raw result line (not written by default).
    Result,
}

impl Field {
    pub const DEFAULT: [Field; 5] = [
        Field::CustomId,
        Field::Status,
        Field::Request,
        Field::Response,
        Field::Error,
    ];
    const ALL: [Field; 6] = [
        Field::CustomId,
        Field::Status,
        Field::Request,
        Field::Response,
        Field::Error,
        Field::Result,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::CustomId => "custom_id",
            Field::Status => "status",
            Field::Request => "request",
            Field::Response => "response",
            Field::Error => "error",
            Field::Result => "result",
        }
    }

    /// Parses `custom_id,status,response`: fields are written in the order given.
    pub fn parse_list(s: &str) -> std::result::Result<Vec<Field>, String> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let f = Field::ALL
                .iter()
                .copied()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Field::ALL.iter().map(|f| f.name()).collect();
                    format!("unknown field {name:?} (known: {})", known.join(", "))
                })?;
            if out.contains(&f) {
                return Err(format!("field {name:?} given twice"));
            }
            out.push(f);
        }
        if out.is_empty() {
            return Err("no fields given".into());
        }
        Ok(out)
    }
}

/// Everything `join` needs to know.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// A request file, `-`, or a shard directory (read through its manifest.json).
    pub requests: InputSpec,
    /// Result files, or directories searched (recursively) for `*.jsonl[.zst|.gz]`.
    pub results: Vec<PathBuf>,
    pub output: OutputSpec,
    pub fields: Vec<Field>,
    /// Request lines of the missing and retryable failed requests.
    pub retry: Option<PathBuf>,
    /// `--retry` takes every failure, not only the retryable ones.
    pub retry_all: bool,
    pub failed: Option<PathBuf>,
    pub missing: Option<PathBuf>,
    pub orphans: Option<PathBuf>,
    /// Where compressed results are decompressed (default: the output's directory, or
    /// the system temporary directory when writing to stdout).
    pub temp_dir: Option<PathBuf>,
    pub common: CommonOptions,
}

impl JoinConfig {
    pub fn new(requests: InputSpec, results: Vec<PathBuf>) -> JoinConfig {
        JoinConfig {
            requests,
            results,
            output: OutputSpec::Stdout,
            fields: Field::DEFAULT.to_vec(),
            retry: None,
            retry_all: false,
            failed: None,
            missing: None,
            orphans: None,
            temp_dir: None,
            common: CommonOptions::default(),
        }
    }
}

/// What `run` reports. `requests = ok + failed + missing` and `results = ok + failed +
/// orphans + duplicate_results + rejected_results` always hold; request lines =
/// `requests + rejected_requests` (blank lines apart).
#[derive(Clone, Debug, Serialize)]
pub struct JoinSummary {
    pub command: &'static str,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub missing: u64,
    /// Requests written (or, without `--retry`, eligible) for resubmission.
    pub retry: u64,
    /// Failed requests per error code.
    pub error_codes: BTreeMap<String, u64>,
    /// Non-blank result lines read.
    pub results: u64,
    pub result_files: u64,
    /// Result lines superseded by another result for the same custom_id.
    pub duplicate_results: u64,
    /// Results whose custom_id matches no request.
    pub orphans: u64,
    pub blank_lines: u64,
    /// Approximate memory held by the result index.
    pub index_bytes: u64,
    pub output: String,
    pub retry_file: Option<String>,
    pub failed_file: Option<String>,
    pub missing_file: Option<String>,
    pub orphans_file: Option<String>,
    /// Request lines set aside (`--on-error skip`): unreadable, or a duplicate custom_id.
    pub rejected_requests: u64,
    /// Result lines set aside (`--on-error skip`): unusable.
    pub rejected_results: u64,
    pub rejects_file: Option<String>,
    pub throughput: Throughput,
    #[serde(skip)]
    pub outcome: Outcome,
}

impl Summary for JoinSummary {
    fn human(&self) -> String {
        let mut s = format!(
            "join: {} requests: {} ok, {} failed, {} missing; {} results in {} files ({} duplicates resolved, {} orphans)",
            self.requests, self.ok, self.failed, self.missing, self.results, self.result_files, self.duplicate_results, self.orphans
        );
        if !self.error_codes.is_empty() {
            let codes: Vec<String> = self
                .error_codes
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            s.push_str(&format!("; errors: {}", codes.join(", ")));
        }
        let rejected = self.rejected_requests + self.rejected_results;
        if rejected > 0 {
            s.push_str(&format!(
                "; {rejected} rejected ({} request lines, {} result lines)",
                self.rejected_requests, self.rejected_results
            ));
        }
        s.push_str(&format!(
            "; {} to retry; {}",
            self.retry,
            self.throughput.human()
        ));
        s
    }

    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        self.output == "<stdout>"
    }
}

// ---------------------------------------------------------------------------------
// The result index.

/// The 128-bit hash of a custom_id, stored as four `u32` so that a table slot packs
/// into 28 bytes (a `u128` would force 16-byte alignment and 32-byte slots).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key([u32; 4]);

impl Key {
    fn of(id: &str) -> Key {
        let h = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        Key([
            h as u32,
            (h >> 32) as u32,
            (h >> 64) as u32,
            (h >> 96) as u32,
        ])
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a uniform hash: hand its low 64 bits to the table as they are.
        state.write_u64(u64::from(self.0[0]) | u64::from(self.0[1]) << 32);
    }
}

/// Passes a `u64` through (keys are hashes already).
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const FOUND: u32 = 1 << 31;
const MAX_OFFSET: u64 = 1 << 40;
const MAX_FILES: usize = 1 << 16;

/// Where one result line is: `loc` packs offset (40 bits), file (16), the ok flag and
/// the "fully checked in the index pass" flag; `len_found` the line length (31 bits)
/// and the "used by a request" flag.
struct Rec {
    loc: [u32; 2],
    len_found: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<(Key, Rec)>() == 28);

impl Rec {
    fn new(file: usize, offset: u64, len: u32, ok: bool, checked: bool) -> Rec {
        debug_assert!(offset < MAX_OFFSET && file < MAX_FILES && len < FOUND);
        let hi = ((offset >> 32) as u32)
            | ((file as u32) << 8)
            | (u32::from(ok) << 24)
            | (u32::from(checked) << 25);
        Rec {
            loc: [offset as u32, hi],
            len_found: AtomicU32::new(len),
        }
    }
    fn offset(&self) -> u64 {
        u64::from(self.loc[0]) | (u64::from(self.loc[1] & 0xff) << 32)
    }
    fn file(&self) -> usize {
        ((self.loc[1] >> 8) & 0xffff) as usize
    }
    fn ok(&self) -> bool {
        (self.loc[1] >> 24) & 1 == 1
    }
    /// Whether the index pass parsed the whole line (not just its head and tail).
    fn checked(&self) -> bool {
        (self.loc[1] >> 25) & 1 == 1
    }
    fn len(&self) -> usize {
        (self.len_found.load(Ordering::Relaxed) & !FOUND) as usize
    }
    /// Marks the result as used; returns whether it already was.
    fn mark_found(&self) -> bool {
        self.len_found.fetch_or(FOUND, Ordering::Relaxed) & FOUND != 0
    }
    fn found(&self) -> bool {
        self.len_found.load(Ordering::Relaxed) & FOUND != 0
    }
}

type Index = HashMap<Key, Rec, BuildHasherDefault<PassThrough>>;

/// A result file that can be read back by offset.
struct Source {
    name: String,
    file: File,
}

impl Source {
    fn read_at(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<()> {
        buf.clear();
        buf.resize(len, 0);
        read_exact_at(&self.file, buf, offset).map_err(|e| Error::io(&self.name, e))
    }

    /// The line number of the line starting at `offset` (counted only when reporting
    /// an error: the index keeps offsets, not line numbers).
    fn line_at(&self, offset: u64) -> Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let (mut pos, mut newlines) = (0u64, 0u64);
        while pos < offset {
            let n = (offset - pos).min(buf.len() as u64) as usize;
            read_exact_at(&self.file, &mut buf[..n], pos).map_err(|e| Error::io(&self.name, e))?;
            newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            pos += n as u64;
        }
        Ok(newlines + 1)
    }

    /// Reads the result line at `offset` and checks all of it: `Some` reject when it
    /// is unusable.
    fn check_line(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<Option<Reject>> {
        self.read_at(buf, offset, len)?;
        match classify(buf, false) {
            Ok(_) => Ok(None),
            Err(reason) => self.reject_at(buf, offset, len, reason).map(Some),
        }
    }

    /// The reject for the unusable result line at `offset` (its line number counted).
    fn reject_at(
        &self,
        buf: &mut Vec<u8>,
        offset: u64,
        len: usize,
        reason: String,
    ) -> Result<Reject> {
        self.read_at(buf, offset, len)?;
        let line = self.line_at(offset)?;
        let code = rejects::code_of(&reason, BAD_RESULT);
        Ok(Reject::new(line, offset, code, reason, buf, false))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies every byte read through it into a file: the decompressed text of a result
/// file lands at the same offsets the engine reports. Unbuffered on purpose: a chunk
/// is handed out only after its bytes were written.
struct Tee {
    inner: Box<dyn Read + Send>,
    out: File,
    name: String,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.out, &buf[..n]).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing the decompressed copy of {}: {e}", self.name),
            )
        })?;
        Ok(n)
    }
}

/// Expands directories (recursively, sorted, hidden entries skipped) into their
/// `*.jsonl`, `*.jsonl.zst` and `*.jsonl.gz` files; drops repeats of the same file.
/// `-` (standard input) may be one of them when the requests do not come from there.
fn result_files(paths: &[PathBuf], requests: &InputSpec) -> Result<Vec<PathBuf>> {
    fn is_result_name(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        [".jsonl", ".jsonl.zst", ".jsonl.zstd", ".jsonl.gz"]
            .iter()
            .any(|s| n.ends_with(s))
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p
                .file_name()
                .is_some_and(|n| is_result_name(&n.to_string_lossy()))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let identity = crate::io::input::file_identity;
    let stdin = Path::new("/dev/stdin");
    let requests_id = match requests {
        InputSpec::Stdin => identity(stdin).ok(),
        InputSpec::Path(p) if !p.is_dir() => identity(p).ok(),
        InputSpec::Path(_) => None,
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut take = |f: &Path, id: (u64, u64, Option<PathBuf>)| -> Result<()> {
        if requests_id.as_ref() == Some(&id) {
            return Err(Error::Usage(format!(
                "{}: given both as REQUESTS and as RESULTS (for stdin: `-` can be only one of them)",
                f.display()
            )));
        }
        if seen.insert(id) {
            out.push(f.to_path_buf());
        }
        Ok(())
    };
    for p in paths {
        if p.as_os_str() == "-" {
            if !cfg!(unix) {
                return Err(Error::Usage("RESULTS cannot be stdin (`-`) here".into()));
            }
            let id = identity(stdin)?;
            take(p, id)?;
            continue;
        }
        let mut found = Vec::new();
        if p.is_dir() {
            walk(p, &mut found)?;
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no *.jsonl result files in this directory",
                    p.display()
                )));
            }
        } else {
            found.push(p.clone());
        }
        for f in found {
            let id = identity(&f)?;
            take(&f, id)?;
        }
    }
    if out.len() > MAX_FILES {
        return Err(Error::Usage(format!(
            "{} result files: at most {MAX_FILES} are supported",
            out.len()
        )));
    }
    Ok(out)
}

/// One pass-1 worker outcome: the entries of a chunk, in order.
#[derive(Default)]
struct IndexedChunk {
    /// custom_id hash, offset, length, ok, fully checked.
    entries: Vec<(Key, u64, u32, bool, bool)>,
    blank: u64,
    /// Unusable lines (line, offset, reason, span in the chunk, cut); with
    /// `--on-error fail` the first one ends the chunk.
    bad: Vec<(u64, u64, String, std::ops::Range<usize>, bool)>,
}

fn index_chunk(chunk: &Chunk, max_line: usize, skip: bool) -> IndexedChunk {
    let mut out = IndexedChunk {
        entries: Vec::with_capacity(chunk.line_count as usize),
        ..Default::default()
    };
    let base = chunk.bytes.as_ptr() as usize;
    for line in chunk.lines() {
        if line.is_blank() {
            out.blank += 1;
            continue;
        }
        let start = line.bytes.as_ptr() as usize - base;
        let span = start..start + line.bytes.len();
        let bad = |reason: String| {
            (
                line.number,
                line.offset,
                reason,
                span.clone(),
                line.is_cut(),
            )
        };
        if line.is_cut() || line.len >= u64::from(FOUND) {
            out.bad.push(bad(format!(
                "result {}",
                crate::io::input::too_long(line.len, max_line.min(FOUND as usize - 1) as u64)
            )));
            if skip {
                continue;
            }
            break;
        }
        if line.offset + line.len >= MAX_OFFSET {
            out.bad
                .push(bad("result file larger than 1 TiB: split it".into()));
            break;
        }
        if let Some(id) = scan_ok_result(line.bytes) {
            out.entries
                .push((Key::of(id), line.offset, line.len as u32, true, false));
            continue;
        }
        match classify(line.bytes, false) {
            Ok(r) => out.entries.push((
                Key::of(&r.custom_id),
                line.offset,
                line.len as u32,
                r.verdict.is_ok(),
                true,
            )),
            Err(reason) => {
                out.bad.push(bad(reason));
                if !skip {
                    break;
                }
            }
        }
    }
    out
}

#[derive(Default)]
struct IndexStats {
    results: u64,
    duplicates: u64,
    /// Results that lost to a duplicate and were only read at both ends: they are
    /// checked in full after the join pass (file, offset, length).
    unchecked_losers: Vec<(usize, u64, usize)>,
    blank: u64,
    bytes: u64,
    /// Result lines set aside as unusable (`--on-error skip`).
    rejected: u64,
}

/// Pass 1: indexes every result file; returns the index and the readable sources.
fn build_index(
    files: &[PathBuf],
    temp_dir: &Path,
    engine_cfg: &EngineConfig,
    rejects: &mut RejectRoute,
    skip: bool,
) -> Result<(Index, Vec<Source>, IndexStats)> {
    let mut index = Index::default();
    let mut sources = Vec::with_capacity(files.len());
    let mut stats = IndexStats::default();
    for (file_no, path) in files.iter().enumerate() {
        // Standard input is read (and copied) like any pipe.
        let (name, opened) = if path.as_os_str() == "-" {
            ("<stdin>".to_string(), Path::new("/dev/stdin"))
        } else {
            (path.display().to_string(), path.as_path())
        };
        let file = File::open(opened).map_err(|e| Error::io(&name, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::Other(format!(
                "{name}: is a directory, expected a file"
            )));
        }
        let compression = Compression::from_name(&name);
        let (input, readable) = if compression == Compression::None && meta.is_file() {
            // Mapped (no copy); each chunk's pages are released once consumed. (Also
            // stdin when it is a regular file: `join req.jsonl - < out.jsonl`.)
            (
                OpenInput::open(&InputSpec::Path(opened.to_path_buf()))?,
                file,
            )
        } else {
            let temp = tempfile::tempfile_in(temp_dir).map_err(|e| Error::io(temp_dir, e))?;
            let copy = temp.try_clone().map_err(|e| Error::io(temp_dir, e))?;
            let inner = crate::io::input::decoder(file, compression, path)?;
            let tee = Tee {
                inner,
                out: copy,
                name: name.clone(),
            };
            (
                OpenInput::Stream {
                    reader: Box::new(tee),
                    name: name.clone(),
                    known_len: None,
                },
                temp,
            )
        };
        rejects.set_file(name.clone());
        let run = engine::run(
            input,
            engine_cfg,
            |chunk| index_chunk(chunk, engine_cfg.max_line, skip),
            |chunk, ix: IndexedChunk| {
                stats.blank += ix.blank;
                for (key, offset, len, ok, checked) in ix.entries {
                    stats.results += 1;
                    let rec = Rec::new(file_no, offset, len, ok, checked);
                    match index.get_mut(&key) {
                        None => {
                            index.insert(key, rec);
                        }
                        Some(old) => {
                            stats.duplicates += 1;
                            // A success wins over a failure; otherwise the last one wins.
                            let loser = if ok || !old.ok() {
                                std::mem::replace(old, rec)
                            } else {
                                rec
                            };
                            if !loser.checked() {
                                stats.unchecked_losers.push((
                                    loser.file(),
                                    loser.offset(),
                                    loser.len(),
                                ));
                            }
                        }
                    }
                }
                for (line, offset, reason, span, cut) in ix.bad {
                    stats.results += 1;
                    stats.rejected += 1;
                    let code = rejects::code_of(&reason, BAD_RESULT);
                    rejects.route(Reject::new(
                        line,
                        offset,
                        code,
                        reason,
                        &chunk.bytes[span],
                        cut,
                    ))?;
                }
                Ok(Flow::Continue)
            },
        )?;
        stats.bytes += run.bytes;
        sources.push(Source {
            name,
            file: readable,
        });
    }
    Ok((index, sources, stats))
}

/// Approximate bytes held by the index table (slots of 28 bytes plus a control byte).
fn index_bytes(index: &Index) -> u64 {
    let cap = index.capacity() as u64;
    if cap == 0 {
        return 0;
    }
    let buckets = (cap * 8 / 7).next_power_of_two();
    buckets * 29
}

// ---------------------------------------------------------------------------------
// Pass 2: the requests.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Ok,
    Failed,
    Missing,
}

/// What the writer needs to know of one request line.
struct Fact<'i> {
    line: u64,
    offset: u64,
    start: usize,
    end: usize,
    status: Status,
    retry: bool,
    rec: Option<&'i Rec>,
    key: Key,
    code: Option<Box<str>>,
    /// Its line in `Joined::out`.
    out: std::ops::Range<usize>,
}

/// A line of the chunk that could not be joined as it is.
enum Bad {
    /// A request line that cannot be read: it has no output line.
    Request {
        line: u64,
        offset: u64,
        reason: String,
        span: std::ops::Range<usize>,
        cut: bool,
    },
    /// A request whose result line is unusable (with `--on-error skip` the request is
    /// joined as `missing`).
    Result {
        request_line: u64,
        file: usize,
        offset: u64,
        len: usize,
        reason: String,
    },
}

#[derive(Default)]
struct Joined<'i> {
    out: Vec<u8>,
    facts: Vec<Fact<'i>>,
    blank: u64,
    /// In line order; with `--on-error fail` the first one ends the chunk.
    bad: Vec<Bad>,
}

/// Why a request line could not be joined: its own fault, or its result line's.
enum LineError {
    Request(String),
    Result {
        file: usize,
        offset: u64,
        len: usize,
        reason: String,
    },
}

impl LineError {
    /// What the chunk records of this error, for the request `line` at `span`.
    fn into_bad(self, line: &crate::io::input::Line, span: std::ops::Range<usize>) -> Bad {
        match self {
            LineError::Request(reason) => Bad::Request {
                line: line.number,
                offset: line.offset,
                reason,
                span,
                cut: line.is_cut(),
            },
            LineError::Result {
                file,
                offset,
                len,
                reason,
            } => Bad::Result {
                request_line: line.number,
                file,
                offset,
                len,
                reason,
            },
        }
    }
}

impl From<String> for LineError {
    fn from(reason: String) -> LineError {
        LineError::Request(reason)
    }
}

struct Ctx<'i> {
    index: &'i Index,
    sources: &'i [Source],
    fields: &'i [Field],
    want_result: bool,
    retry_all: bool,
    /// The longest line read whole (for the message about longer ones).
    max_line: usize,
    /// Output buffers recycled from the writer (no fresh pages per chunk).
    pool: BufferPool,
    /// `--on-error skip`: bad lines are set aside and the run goes on.
    skip: bool,
}

fn write_raw_or_null(out: &mut Vec<u8>, raw: Option<&str>) {
    out.extend_from_slice(raw.unwrap_or("null").as_bytes());
}

fn render_error(out: &mut Vec<u8>, f: &Failure) {
    out.extend_from_slice(b"{\"code\":");
    serde_json::to_writer(&mut *out, f.code.as_ref()).expect("string serialises");
    out.extend_from_slice(b",\"message\":");
    write_raw_or_null(out, f.message);
    out.extend_from_slice(b",\"status_code\":");
    match f.status_code {
        Some(s) => out.extend_from_slice(s.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

impl<'i> Ctx<'i> {
    fn join_chunk(&self, chunk: &Chunk) -> Joined<'i> {
        let base = chunk.bytes.as_ptr() as usize;
        let mut out = Joined {
            out: self.pool.take(chunk.len() * 2 + 1024),
            facts: Vec::with_capacity(chunk.line_count as usize),
            ..Default::default()
        };
        let mut buf = Vec::new();
        for line in chunk.lines() {
            if line.is_blank() {
                out.blank += 1;
                continue;
            }
            let start = line.bytes.as_ptr() as usize - base;
            let end = start + line.bytes.len();
            let out_start = out.out.len();
            let mut bad_result = None;
            match self.join_line(
                line.bytes,
                line.is_cut().then_some(line.len),
                &mut out.out,
                &mut buf,
                &mut bad_result,
            ) {
                Ok((status, retry, rec, key, code)) => {
                    out.facts.push(Fact {
                        line: line.number,
                        offset: line.offset,
                        start,
                        end,
                        status,
                        retry,
                        rec,
                        key,
                        code,
                        out: out_start..out.out.len(),
                    });
                    if let Some(e) = bad_result {
                        out.bad.push(e.into_bad(&line, start..end));
                    }
                }
                Err(e) => {
                    // A bad request line has no output line; with `skip` the run goes
                    // on (a bad result line only stops it here under `fail`).
                    let request = matches!(e, LineError::Request(_));
                    out.out.truncate(out_start);
                    out.bad.push(e.into_bad(&line, start..end));
                    if !(request && self.skip) {
                        break;
                    }
                }
            }
        }
        out
    }

    #[allow(clippy::type_complexity)]
    fn join_line(
        &self,
        bytes: &[u8],
        cut: Option<u64>,
        out: &mut Vec<u8>,
        buf: &mut Vec<u8>,
        bad_result: &mut Option<LineError>,
    ) -> std::result::Result<(Status, bool, Option<&'i Rec>, Key, Option<Box<str>>), LineError>
    {
        if let Some(len) = cut {
            return Err(LineError::Request(format!(
                "request {}",
                crate::io::input::too_long(len, self.max_line as u64)
            )));
        }
        let req = parse_request_side(bytes)?;
        let key = Key::of(&req.custom_id);
        let request_raw = req.shown.unwrap_or(req.text);
        // No usable result: `missing` (retryable), with the result it had, if any.
        let missing = |out: &mut Vec<u8>, rec: Option<&'i Rec>| {
            self.render(
                out,
                req.custom_id_raw,
                Status::Missing,
                request_raw,
                None,
                None,
                None,
            );
            Ok((Status::Missing, true, rec, key, None))
        };
        let Some(rec) = self.index.get(&key) else {
            return missing(out, None);
        };
        let source = &self.sources[rec.file()];
        source
            .read_at(buf, rec.offset(), rec.len())
            .map_err(|e| e.to_string())?;
        // The index pass may have read only the head and tail of this line: it is fully
        // checked here.
        let result = match classify(buf, true) {
            Ok(r) => r,
            Err(reason) => {
                let e = LineError::Result {
                    file: rec.file(),
                    offset: rec.offset(),
                    len: rec.len(),
                    reason,
                };
                if !self.skip {
                    return Err(e);
                }
                // The result is set aside; the request has none it can use.
                *bad_result = Some(e);
                return missing(out, Some(rec));
            }
        };
        // The raw result line is only checked (and shown) when asked for.
        let result_text = self.want_result.then_some(result.text);
        match &result.verdict {
            Verdict::Ok { body } => {
                self.render(
                    out,
                    req.custom_id_raw,
                    Status::Ok,
                    request_raw,
                    Some(body),
                    None,
                    result_text,
                );
                Ok((Status::Ok, false, Some(rec), key, None))
            }
            Verdict::Failed(f) => {
                self.render(
                    out,
                    req.custom_id_raw,
                    Status::Failed,
                    request_raw,
                    None,
                    Some(f),
                    result_text,
                );
                let retry = self.retry_all || f.is_retryable();
                Ok((
                    Status::Failed,
                    retry,
                    Some(rec),
                    key,
                    Some(f.code.as_ref().into()),
                ))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        out: &mut Vec<u8>,
        custom_id_raw: &str,
        status: Status,
        request: &str,
        response: Option<&str>,
        failure: Option<&Failure>,
        result: Option<&str>,
    ) {
        out.push(b'{');
        let mut first = true;
        for &field in self.fields {
            let present = match field {
                Field::Response => status == Status::Ok,
                Field::Error => status == Status::Failed,
                Field::Result => result.is_some(),
                _ => true,
            };
            if !present {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(field.name().as_bytes());
            out.extend_from_slice(b"\":");
            match field {
                Field::CustomId => out.extend_from_slice(custom_id_raw.as_bytes()),
                Field::Status => out.extend_from_slice(match status {
                    Status::Ok => b"\"ok\"",
                    Status::Failed => b"\"failed\"",
                    Status::Missing => b"\"missing\"",
                }),
                Field::Request => out.extend_from_slice(request.as_bytes()),
                Field::Response => write_raw_or_null(out, response),
                Field::Error => render_error(out, failure.expect("failed has a failure")),
                Field::Result => write_raw_or_null(out, result),
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

/// What a shard directory's manifest says about one of its files: checked while the
/// file is joined, so that a truncated or changed shard is an error naming it, not a
/// run that quietly reports its lost requests as orphans.
struct Promised {
    manifest: PathBuf,
    /// Bytes (before any compression), request lines, SHA-256 (empty: not recorded).
    bytes: u64,
    requests: u64,
    sha256: String,
}

impl Promised {
    fn mismatch(
        &self,
        file: &str,
        what: &str,
        found: impl std::fmt::Display,
        want: impl std::fmt::Display,
    ) -> Error {
        Error::Other(format!(
            "{file}: {what} {found}, but {} says {want}: the shard directory is incomplete or was changed after `shard` wrote it",
            self.manifest.display()
        ))
    }
}

/// The files REQUESTS stands for: itself, or the shards of a directory's manifest (with
/// what the manifest promises about each). A plain shard whose size differs from the
/// manifest's is refused before anything is read.
fn request_inputs(spec: &InputSpec) -> Result<Vec<(InputSpec, Option<Promised>)>> {
    let Some(path) = spec.path() else {
        return Ok(vec![(spec.clone(), None)]);
    };
    if !path.is_dir() {
        return Ok(vec![(spec.clone(), None)]);
    }
    let manifest = Manifest::read(path)?.ok_or_else(|| {
        Error::Usage(format!(
            "{}: not a shard directory (no {})",
            path.display(),
            crate::batch::manifest::MANIFEST_NAME
        ))
    })?;
    let manifest_path = path.join(crate::batch::manifest::MANIFEST_NAME);
    let mut out = Vec::with_capacity(manifest.files.len());
    for (f, file) in manifest.files.iter().zip(manifest.file_paths(path)) {
        let promised = Promised {
            manifest: manifest_path.clone(),
            bytes: f.bytes,
            requests: f.requests,
            sha256: f.sha256.clone().unwrap_or_default(),
        };
        if Compression::from_name(&file.to_string_lossy()) == Compression::None {
            let len = std::fs::metadata(&file)
                .map_err(|e| Error::io(&file, e))?
                .len();
            if len != f.bytes {
                return Err(promised.mismatch(
                    &file.display().to_string(),
                    "is",
                    format!("{len} bytes"),
                    format!("{} bytes", f.bytes),
                ));
            }
        }
        out.push((InputSpec::Path(file), Some(promised)));
    }
    Ok(out)
}

/// The single writer of pass 2.
struct Writer {
    output: Output,
    retry: Option<AtomicFile>,
    failed: Option<AtomicFile>,
    missing: Option<AtomicFile>,
    missing_seen: HashSet<Key, BuildHasherDefault<PassThrough>>,
    requests: u64,
    ok: u64,
    failed_n: u64,
    missing_n: u64,
    retry_n: u64,
    blank: u64,
    bytes: u64,
    codes: BTreeMap<String, u64>,
    /// With a closed stdout the run goes on only for these.
    side_files: bool,
    rejects: RejectRoute,
    /// Request lines set aside (unreadable, or a duplicate custom_id).
    rejected_requests: u64,
    /// Result lines set aside in the join pass (unusable once read in full).
    rejected_results: u64,
}

impl Writer {
    /// Writes the chunk's joined lines and side files, and routes its bad lines.
    fn consume(
        &mut self,
        name: &str,
        chunk: &Chunk,
        joined: Joined,
        out: &[u8],
        sources: &[Source],
    ) -> Result<Flow> {
        self.blank += joined.blank;
        // The joined lines, less those of duplicate requests (set aside below).
        let mut from = 0;
        for fact in &joined.facts {
            let dup = match fact.rec {
                Some(rec) => rec.mark_found(),
                None => !self.missing_seen.insert(fact.key),
            };
            let line = &chunk.bytes[fact.start..fact.end];
            if dup {
                let id = parse_request_side(line)
                    .map(|r| r.custom_id.into_owned())
                    .unwrap_or_default();
                self.output.write_all(&out[from..fact.out.start])?;
                from = fact.out.end;
                self.rejected_requests += 1;
                self.rejects.route(
                    Reject::new(
                        fact.line,
                        fact.offset,
                        rejects::reason::DUPLICATE_CUSTOM_ID,
                        format!("duplicate custom_id {id:?} in REQUESTS"),
                        line,
                        false,
                    )
                    .with_custom_id(Some(id)),
                )?;
                continue;
            }
            self.requests += 1;
            let side = match fact.status {
                Status::Ok => {
                    self.ok += 1;
                    None
                }
                Status::Failed => {
                    self.failed_n += 1;
                    let code = fact.code.as_deref().unwrap_or("error");
                    match self.codes.get_mut(code) {
                        Some(n) => *n += 1,
                        None => {
                            self.codes.insert(code.to_string(), 1);
                        }
                    }
                    self.failed.as_mut()
                }
                Status::Missing => {
                    self.missing_n += 1;
                    self.missing.as_mut()
                }
            };
            if let Some(f) = side {
                f.write_all(line)?;
                f.write_all(b"\n")?;
            }
            if fact.retry {
                self.retry_n += 1;
                if let Some(f) = self.retry.as_mut() {
                    f.write_all(line)?;
                    f.write_all(b"\n")?;
                }
            }
        }
        self.output.write_all(&out[from..])?;
        if self.output.is_closed() && !self.side_files {
            return Err(Error::BrokenPipe);
        }
        let mut buf = Vec::new();
        for bad in joined.bad {
            match bad {
                Bad::Request {
                    line,
                    offset,
                    reason,
                    span,
                    cut,
                } => {
                    self.rejected_requests += 1;
                    let code = rejects::code_of(&reason, INVALID_REQUEST);
                    self.rejects.route(Reject::new(
                        line,
                        offset,
                        code,
                        reason,
                        &chunk.bytes[span],
                        cut,
                    ))?;
                }
                Bad::Result {
                    request_line,
                    file,
                    offset,
                    len,
                    reason,
                } => {
                    self.rejected_results += 1;
                    let reason = format!("{reason} (the result for {name}:{request_line})");
                    let r = sources[file].reject_at(&mut buf, offset, len, reason)?;
                    self.rejects.set_file(sources[file].name.clone());
                    let routed = self.rejects.route(r);
                    self.rejects.set_file(name.to_string());
                    routed?;
                }
            }
        }
        Ok(Flow::Continue)
    }
}

fn side_file(p: &Option<PathBuf>, sync: bool) -> Result<Option<AtomicFile>> {
    p.as_deref()
        .map(|p| AtomicFile::create(p, sync))
        .transpose()
}

/// Runs `join`.
pub fn run(cfg: &JoinConfig) -> Result<JoinSummary> {
    let started = std::time::Instant::now();
    if cfg.results.is_empty() {
        return Err(Error::Usage("no RESULTS given".into()));
    }
    if cfg.fields.is_empty() {
        return Err(Error::Usage("--fields: no fields given".into()));
    }
    let files = result_files(&cfg.results, &cfg.requests)?;
    let requests = request_inputs(&cfg.requests)?;

    // Outputs must not overwrite inputs, nor each other.
    let mut claims = PathClaims::new();
    for f in &files {
        if f.as_os_str() != "-" {
            claims.input_path(f)?;
        }
    }
    for (r, _) in &requests {
        claims.input(r)?;
    }
    claims.output(&cfg.output)?;
    for p in [&cfg.retry, &cfg.failed, &cfg.missing, &cfg.orphans]
        .into_iter()
        .flatten()
    {
        claims.output_path(p)?;
    }
    if let Some(r) = &cfg.common.rejects {
        if cfg.common.on_error == ErrorMode::Fail {
            return Err(Error::Usage(
                "--rejects needs --on-error skip (the default, fail, stops at the first bad line)"
                    .into(),
            ));
        }
        claims.output(r)?;
    }
    let sync = cfg.common.sync;
    let skip = cfg.common.on_error == ErrorMode::Skip;
    // With a closed stdout the run goes on only for these.
    let side_files = [&cfg.retry, &cfg.failed, &cfg.missing, &cfg.orphans]
        .iter()
        .any(|p| p.is_some())
        || matches!(cfg.common.rejects, Some(OutputSpec::Path(_)));

    let temp_dir = match (&cfg.temp_dir, &cfg.output) {
        (Some(d), _) => d.clone(),
        (None, OutputSpec::Path(p)) => match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        },
        (None, OutputSpec::Stdout) => std::env::temp_dir(),
    };

    // Pass 1.
    let mut rejects = RejectRoute::open(String::new(), &cfg.common)?;
    let (index, sources, mut istats) =
        build_index(&files, &temp_dir, &cfg.common.engine, &mut rejects, skip)?;

    // Pass 2.
    let mut writer = Writer {
        output: Output::create(&cfg.output, sync)?,
        retry: side_file(&cfg.retry, sync)?,
        failed: side_file(&cfg.failed, sync)?,
        missing: side_file(&cfg.missing, sync)?,
        missing_seen: HashSet::default(),
        requests: 0,
        ok: 0,
        failed_n: 0,
        missing_n: 0,
        retry_n: 0,
        blank: 0,
        bytes: 0,
        codes: BTreeMap::new(),
        side_files,
        rejects,
        rejected_requests: 0,
        rejected_results: 0,
    };
    let ctx = Ctx {
        index: &index,
        sources: &sources,
        fields: &cfg.fields,
        want_result: cfg.fields.contains(&Field::Result),
        retry_all: cfg.retry_all,
        max_line: cfg.common.engine.max_line,
        pool: BufferPool::default(),
        skip,
    };
    for (spec, promised) in &requests {
        let input = OpenInput::open(spec)?;
        let name = input.name().to_string();
        writer.rejects.set_file(name.clone());
        let requests_before = writer.requests + writer.rejected_requests;
        // A shard's bytes are hashed in order as they are joined (no second read).
        let mut hasher = promised
            .as_ref()
            .filter(|p| !p.sha256.is_empty())
            .map(|_| <sha2::Sha256 as sha2::Digest>::new());
        let stats = engine::run(
            input,
            &cfg.common.engine,
            |chunk| ctx.join_chunk(chunk),
            |chunk, mut joined| {
                // The joined lines go out here so that their buffer can be recycled;
                // `consume` writes the side files and checks the chunk's error.
                if let Some(h) = hasher.as_mut() {
                    sha2::Digest::update(h, &chunk.bytes[..]);
                }
                let out = std::mem::take(&mut joined.out);
                let flow = writer.consume(&name, &chunk, joined, &out, &sources);
                ctx.pool.give(out);
                flow
            },
        )?;
        writer.bytes += stats.bytes;
        if let Some(p) = promised {
            if stats.bytes != p.bytes {
                return Err(p.mismatch(
                    &name,
                    "holds",
                    format!("{} bytes", stats.bytes),
                    format!("{} bytes", p.bytes),
                ));
            }
            let n = writer.requests + writer.rejected_requests - requests_before;
            if n != p.requests {
                return Err(p.mismatch(
                    &name,
                    "holds",
                    format!("{n} requests"),
                    format!("{} requests", p.requests),
                ));
            }
            if let Some(h) = hasher.take() {
                let hex: String = sha2::Digest::finalize(h)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if hex != p.sha256 {
                    return Err(p.mismatch(&name, "has SHA-256", hex, &p.sha256));
                }
            }
        }
    }

    let Writer {
        output,
        retry,
        failed,
        missing,
        requests: n_requests,
        ok,
        failed_n,
        missing_n,
        retry_n,
        blank,
        bytes,
        codes,
        mut rejects,
        rejected_requests,
        mut rejected_results,
        ..
    } = writer;
    // A result set aside in the index pass was never indexed.
    rejected_results += istats.rejected;

    // Orphans: results no request used, in file order. Like the results that lost to a
    // duplicate, they were not read in full by the join pass: those that the index
    // pass read only at both ends are checked now, so that a broken result line fails
    // the run (or, with --on-error skip, is set aside) wherever it is, whatever the
    // order of the lines.
    let mut orphan_locs: Vec<(usize, u64, usize, bool)> = index
        .values()
        .filter(|r| !r.found())
        .map(|r| (r.file(), r.offset(), r.len(), r.checked()))
        .collect();
    orphan_locs.sort_unstable();
    let mut orphans = orphan_locs.len() as u64;
    let mut orphans_file = side_file(&cfg.orphans, sync)?;
    let mut buf = Vec::new();
    let mut set_aside = |file: usize, r: Reject| -> Result<()> {
        rejects.set_file(sources[file].name.clone());
        rejects.route(r)
    };
    for &(file, offset, len, checked) in &orphan_locs {
        if !checked {
            if let Some(r) = sources[file].check_line(&mut buf, offset, len)? {
                set_aside(file, r)?;
                orphans -= 1;
                rejected_results += 1;
                continue;
            }
        } else if orphans_file.is_some() {
            sources[file].read_at(&mut buf, offset, len)?;
        }
        if let Some(f) = orphans_file.as_mut() {
            f.write_all(&buf)?;
            f.write_all(b"\n")?;
        }
    }
    drop(orphan_locs);
    let mut losers = std::mem::take(&mut istats.unchecked_losers);
    losers.sort_unstable();
    for (file, offset, len) in losers {
        if let Some(r) = sources[file].check_line(&mut buf, offset, len)? {
            set_aside(file, r)?;
            istats.duplicates -= 1;
            rejected_results += 1;
        }
    }

    // Commit everything together, only now that the whole run succeeded.
    check_accounting(
        "join",
        n_requests + rejected_requests,
        &[
            ("ok", ok),
            ("failed", failed_n),
            ("missing", missing_n),
            ("rejected", rejected_requests),
        ],
    )?;
    check_accounting(
        "join",
        istats.results,
        &[
            ("results used ok", ok),
            ("failed", failed_n),
            ("orphans", orphans),
            ("duplicates", istats.duplicates),
            ("rejected", rejected_results),
        ],
    )?;
    let mut output = output;
    output.flush_stdout()?;
    let stdout_closed = output.is_closed();
    let side = [retry, failed, missing, orphans_file]
        .into_iter()
        .flatten()
        .map(Output::File);
    let mut pending = finish_all(side)?;
    pending.extend(rejects.finish_pending()?);
    pending.extend(output.finish_pending()?);
    commit_all(pending)?;

    if orphans > 0 && cfg.orphans.is_none() {
        cfg.common.note(&format!(
            "batchline: {orphans} results match no request (orphans); keep them with --orphans FILE"
        ));
    }
    let name = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    Ok(JoinSummary {
        command: "join",
        requests: n_requests,
        ok,
        failed: failed_n,
        missing: missing_n,
        retry: retry_n,
        error_codes: codes,
        results: istats.results,
        result_files: files.len() as u64,
        duplicate_results: istats.duplicates,
        orphans,
        blank_lines: blank + istats.blank,
        index_bytes: index_bytes(&index),
        output: cfg.output.display_name(),
        retry_file: name(&cfg.retry),
        failed_file: name(&cfg.failed),
        missing_file: name(&cfg.missing),
        orphans_file: name(&cfg.orphans),
        throughput: Throughput::new(bytes + istats.bytes, started.elapsed()),
        rejected_requests,
        rejected_results,
        rejects_file: cfg.common.rejects.as_ref().map(|r| r.display_name()),
        outcome: Outcome::of(rejected_requests + rejected_results, stdout_closed),
    })
}

/// The result directories of a job directory (`batchline join JOB` without RESULTS):
/// `JOB/results/round-N` for every round that has result files, in round order
/// (numerically: round-10 after round-9), so that where one custom_id has results in
/// several rounds the latest round's comes last and wins (a success still wins over a
/// failure: `resubmit` only sends failed or missing requests again, so the two rules
/// agree on a job). An error when the job has no result files at all.
pub fn job_results(job: &Path) -> Result<Vec<PathBuf>> {
    let base = job.join("results");
    let mut rounds: Vec<(u32, PathBuf)> = match std::fs::read_dir(&base) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("round-")?.parse::<u32>().ok()?;
                e.path().is_dir().then(|| (n, e.path()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&base, e)),
    };
    rounds.sort();
    let has_results = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().to_ascii_lowercase();
                !n.starts_with('.') && n.ends_with(".jsonl")
            })
        })
    };
    let dirs: Vec<PathBuf> = rounds
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| has_results(p))
        .collect();
    if dirs.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no downloaded results (JOB/results/round-N/*.jsonl); run `batchline download {}` first, or name RESULTS",
            job.display(),
            job.display()
        )));
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rec_packs_and_unpacks() {
        let r = Rec::new(65_535, MAX_OFFSET - 1, FOUND - 1, true, true);
        assert_eq!(
            (r.file(), r.offset(), r.len(), r.ok(), r.checked()),
            (65_535, MAX_OFFSET - 1, (FOUND - 1) as usize, true, true)
        );
        assert!(!r.mark_found());
        assert!(r.mark_found());
        assert_eq!(r.len(), (FOUND - 1) as usize);
        let r = Rec::new(3, 12345, 7, false, false);
        assert_eq!(
            (r.file(), r.offset(), r.len(), r.ok(), r.checked()),
            (3, 12345, 7, false, false)
        );
    }

    #[test]
    fn fields_parse() {
        assert_eq!(
            Field::parse_list("custom_id, response").unwrap(),
            vec![Field::CustomId, Field::Response]
        );
        assert!(Field::parse_list("custom_id,nope").is_err());
        assert!(Field::parse_list("status,status").is_err());
    }
}
