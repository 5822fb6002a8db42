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
use crate::commands::{check_accounting, CommonOptions, Summary};
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

/// What `run` reports. `requests = ok + failed + missing` and
/// `results = ok + failed + orphans + duplicate_results` always hold.
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

    /// The error for the unusable result line at `offset`.
    fn bad_line(&self, offset: u64, reason: String) -> Error {
        match self.line_at(offset) {
            Ok(line) => Error::BadLine {
                file: self.name.clone(),
                line,
                offset,
                reason,
            },
            Err(e) => e,
        }
    }

    /// Reads the result line at `offset` and checks all of it.
    fn check_line(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<()> {
        self.read_at(buf, offset, len)?;
        match classify(buf, false) {
            Ok(_) => Ok(()),
            Err(reason) => Err(self.bad_line(offset, reason)),
        }
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
    error: Option<(u64, u64, String)>,
}

fn index_chunk(chunk: &Chunk, max_line: usize) -> IndexedChunk {
    let mut out = IndexedChunk {
        entries: Vec::with_capacity(chunk.line_count as usize),
        ..Default::default()
    };
    for line in chunk.lines() {
        if line.is_blank() {
            out.blank += 1;
            continue;
        }
        let fail = |reason: String| Some((line.number, line.offset, reason));
        if line.is_cut() || line.len >= u64::from(FOUND) {
            out.error = fail(format!(
                "result {}",
                crate::io::input::too_long(line.len, max_line.min(FOUND as usize - 1) as u64)
            ));
            break;
        }
        if line.offset + line.len >= MAX_OFFSET {
            out.error = fail("result file larger than 1 TiB: split it".into());
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
                out.error = fail(reason);
                break;
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
}

/// Pass 1: indexes every result file; returns the index and the readable sources.
fn build_index(
    files: &[PathBuf],
    temp_dir: &Path,
    engine_cfg: &EngineConfig,
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
        let run = engine::run(
            input,
            engine_cfg,
            |chunk| index_chunk(chunk, engine_cfg.max_line),
            |_chunk, ix: IndexedChunk| {
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
                match ix.error {
                    Some((line, offset, reason)) => Err(Error::BadLine {
                        file: name.clone(),
                        line,
                        offset,
                        reason,
                    }),
                    None => Ok(Flow::Continue),
                }
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
}

#[derive(Default)]
struct Joined<'i> {
    out: Vec<u8>,
    facts: Vec<Fact<'i>>,
    blank: u64,
    /// The request line that stopped the chunk (line, offset, reason)...
    error: Option<(u64, u64, String)>,
    /// ...and, when it was its result line that is unusable, where that is (file,
    /// offset).
    bad_result: Option<(usize, u64)>,
}

/// Why a request line could not be joined: its own fault, or its result line's.
enum LineError {
    Request(String),
    Result {
        file: usize,
        offset: u64,
        reason: String,
    },
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
            match self.join_line(
                line.bytes,
                line.is_cut().then_some(line.len),
                &mut out.out,
                &mut buf,
            ) {
                Ok((status, retry, rec, key, code)) => out.facts.push(Fact {
                    line: line.number,
                    offset: line.offset,
                    start,
                    end,
                    status,
                    retry,
                    rec,
                    key,
                    code,
                }),
                Err(LineError::Request(reason)) => {
                    out.error = Some((line.number, line.offset, reason));
                    break;
                }
                Err(LineError::Result {
                    file,
                    offset,
                    reason,
                }) => {
                    out.error = Some((line.number, line.offset, reason));
                    out.bad_result = Some((file, offset));
                    break;
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
        let rec = self.index.get(&key);
        let Some(rec) = rec else {
            self.render(
                out,
                req.custom_id_raw,
                Status::Missing,
                request_raw,
                None,
                None,
                None,
            );
            return Ok((Status::Missing, true, None, key, None));
        };
        let source = &self.sources[rec.file()];
        source
            .read_at(buf, rec.offset(), rec.len())
            .map_err(|e| e.to_string())?;
        // The index pass may have read only the head and tail of this line: it is fully
        // checked here.
        let result = classify(buf, true).map_err(|reason| LineError::Result {
            file: rec.file(),
            offset: rec.offset(),
            reason,
        })?;
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
}

impl Writer {
    fn consume(
        &mut self,
        name: &str,
        chunk: &Chunk,
        joined: Joined,
        sources: &[Source],
    ) -> Result<Flow> {
        self.blank += joined.blank;
        for fact in &joined.facts {
            let dup = match fact.rec {
                Some(rec) => rec.mark_found(),
                None => !self.missing_seen.insert(fact.key),
            };
            if dup {
                let id = parse_request_side(&chunk.bytes[fact.start..fact.end])
                    .map(|r| r.custom_id.into_owned())
                    .unwrap_or_default();
                return Err(Error::BadLine {
                    file: name.to_string(),
                    line: fact.line,
                    offset: fact.offset,
                    reason: format!("duplicate custom_id {id:?} in REQUESTS"),
                });
            }
            self.requests += 1;
            let line = &chunk.bytes[fact.start..fact.end];
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
        match (joined.error, joined.bad_result) {
            (Some((line, _, reason)), Some((file, offset))) => {
                Err(sources[file]
                    .bad_line(offset, format!("{reason} (the result for {name}:{line})")))
            }
            (Some((line, offset, reason)), None) => Err(Error::BadLine {
                file: name.to_string(),
                line,
                offset,
                reason,
            }),
            (None, _) => Ok(Flow::Continue),
        }
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
    let sync = cfg.common.sync;
    // With a closed stdout the run goes on only for these.
    let side_files = [&cfg.retry, &cfg.failed, &cfg.missing, &cfg.orphans]
        .iter()
        .any(|p| p.is_some());

    let temp_dir = match (&cfg.temp_dir, &cfg.output) {
        (Some(d), _) => d.clone(),
        (None, OutputSpec::Path(p)) => match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        },
        (None, OutputSpec::Stdout) => std::env::temp_dir(),
    };

    // Pass 1.
    let (index, sources, mut istats) = build_index(&files, &temp_dir, &cfg.common.engine)?;

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
    };
    let ctx = Ctx {
        index: &index,
        sources: &sources,
        fields: &cfg.fields,
        want_result: cfg.fields.contains(&Field::Result),
        retry_all: cfg.retry_all,
        max_line: cfg.common.engine.max_line,
        pool: BufferPool::default(),
    };
    for (spec, promised) in &requests {
        let input = OpenInput::open(spec)?;
        let name = input.name().to_string();
        let requests_before = writer.requests;
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
                let written = writer.output.write_all(&out);
                ctx.pool.give(out);
                written?;
                if writer.output.is_closed() && !side_files {
                    return Err(Error::BrokenPipe);
                }
                writer.consume(&name, &chunk, joined, &sources)
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
            let n = writer.requests - requests_before;
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

    // Orphans: results no request used, in file order. Like the results that lost to a
    // duplicate, they were not read in full by the join pass: those that the index
    // pass read only at both ends are checked now, so that a broken result line fails
    // the run wherever it is (and whatever the order of the lines).
    let mut orphan_locs: Vec<(usize, u64, usize, bool)> = index
        .values()
        .filter(|r| !r.found())
        .map(|r| (r.file(), r.offset(), r.len(), r.checked()))
        .collect();
    orphan_locs.sort_unstable();
    let orphans = orphan_locs.len() as u64;
    let mut orphans_file = side_file(&cfg.orphans, sync)?;
    let mut buf = Vec::new();
    for &(file, offset, len, checked) in &orphan_locs {
        if !checked {
            sources[file].check_line(&mut buf, offset, len)?;
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
        sources[file].check_line(&mut buf, offset, len)?;
    }

    // Commit everything together, only now that the whole run succeeded.
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
        ..
    } = writer;
    check_accounting(
        "join",
        n_requests,
        &[("ok", ok), ("failed", failed_n), ("missing", missing_n)],
    )?;
    check_accounting(
        "join",
        istats.results,
        &[
            ("results used ok", ok),
            ("failed", failed_n),
            ("orphans", orphans),
            ("duplicates", istats.duplicates),
        ],
    )?;
    let mut output = output;
    output.flush_stdout()?;
    let stdout_closed = output.is_closed();
    let side = [retry, failed, missing, orphans_file]
        .into_iter()
        .flatten()
        .map(Output::File);
    commit_all(finish_all(side.chain([output]))?)?;

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
        outcome: Outcome::of(0, stdout_closed),
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
