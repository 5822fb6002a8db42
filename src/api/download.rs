//! Streaming, resumable download of one file's content (`GET /v1/files/{id}/content`).
//!
//! The body goes straight to disk in chunks (never whole in memory) into a hidden
//! partial file next to the destination, `.NAME.part`, described by `.NAME.part.json`
//! (`{"file_id", "bytes"}`: which file it is a prefix of, and how long that file is).
//! When the connection drops, the download goes on from the bytes already written
//! with `Range: bytes=N-` (a server that answers 206 sends the rest; one that ignores
//! the range and sends 200 is read from the start and its first N bytes are skipped).
//! 429, 5xx and dropped connections are retried with the client's backoff (full
//! jitter, never sooner than `Retry-After`); an attempt that brought new bytes resets
//! the count, so a long download that drops now and then always finishes, while one
//! that makes no progress gives up after the policy's attempts.
//!
//! At the end the partial file is checked (its length against the file object's
//! `bytes` and the answer's `Content-Length` / `Content-Range`), fsynced, renamed over
//! the destination, and the directory fsynced: the destination is either absent or
//! complete. A run killed midway leaves the partial file and its description; the next
//! run resumes from it, after checking that the last bytes it holds (up to 64 KiB)
//! are the server's bytes at that place (they are downloaded again and compared), so a
//! partial file of another file, or one whose tail a machine crash left unwritten, is
//! started over instead of completed wrongly.
//!
//! Lines are counted as the bytes pass (a last line without newline counts), so the
//! caller can compare them with the batch's `request_counts` without reading the file
//! again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::output::{sync_dir, Streamed};
use crate::io::paths::parent_dir;

/// Bytes re-read at a resume from an earlier run's partial file, to check its tail.
const VERIFY_TAIL: u64 = 64 << 10;
/// Read buffer size.
const READ_BUF: usize = 256 << 10;
/// Write buffer size.
const WRITE_BUF: usize = 1 << 20;

/// What the downloader needs from the HTTP client.
pub trait ContentSource {
    /// One `GET /v1/files/{file_id}/content` (no retries), with `Range: bytes=from-`
    /// when `from > 0`. The answer is returned whatever its status.
    fn open(
        &self,
        file_id: &str,
        from: u64,
    ) -> std::result::Result<reqwest::blocking::Response, reqwest::Error>;
    /// The wait before retry number `retry` (0-based) after a 429, a 5xx or a dropped
    /// connection; `retry_after` is the server's `Retry-After` when it sent one.
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration;
    /// Attempts in a row without new bytes before the download gives up (the first
    /// included).
    fn max_attempts(&self) -> u32;
    /// The server's `Retry-After` (or `retry-after-ms`) of an answer.
    fn retry_after(&self, headers: &reqwest::header::HeaderMap) -> Option<Duration>;
}

/// The client of the lifecycle commands, with its retry policy.
impl ContentSource for super::Client {
    fn open(
        &self,
        file_id: &str,
        from: u64,
    ) -> std::result::Result<reqwest::blocking::Response, reqwest::Error> {
        let mut r = self
            .get(&format!("/v1/files/{file_id}/content"))
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        if from > 0 {
            r = r.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        r.send()
    }

    fn backoff(&self, retry: u32, retry_after: Option<std::time::Duration>) -> std::time::Duration {
        crate::exec::backoff_between(
            self.policy.base_backoff,
            self.policy.max_backoff,
            retry,
            retry_after,
        )
    }

    fn max_attempts(&self) -> u32 {
        self.policy.max_attempts
    }

    fn retry_after(&self, headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
        crate::exec::retry_after(headers)
    }
}

/// One file to fetch.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub file_id: &'a str,
    /// Where the complete file goes.
    pub dest: &'a Path,
    /// The file object's `bytes`, when known: the download must have exactly this many.
    pub expected_bytes: Option<u64>,
}

/// How the download went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// Bytes of the complete file.
    pub bytes: u64,
    /// Lines of the complete file (a last line without newline counts).
    pub lines: u64,
    /// Bytes taken over from an earlier run's partial file.
    pub reused: u64,
    /// Bytes received over the network (verification and skipped bytes included).
    pub received: u64,
    /// Attempts after the first (429, 5xx, dropped connections).
    pub retries: u32,
    /// Times the partial file was started over (a server that ignored `Range` does not
    /// count: its first bytes are skipped; a tail that did not match does).
    pub restarts: u32,
    /// Answers that ignored `Range` (a 200 to a ranged request).
    pub range_ignored: u32,
}

/// The description of a partial file, next to it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    file_id: String,
    bytes: Option<u64>,
}

/// The hidden partial file of `dest`: `.NAME.part` in the same directory.
pub fn part_path(dest: &Path) -> PathBuf {
    sibling(dest, ".part")
}

/// The description of the partial file: `.NAME.part.json`.
pub fn part_meta_path(dest: &Path) -> PathBuf {
    sibling(dest, ".part.json")
}

fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(dest).join(format!(".{name}{suffix}"))
}

/// Removes a partial file and its description (after the destination was found
/// complete some other way, or to start over).
pub fn discard_part(dest: &Path) {
    let _ = std::fs::remove_file(part_path(dest));
    let _ = std::fs::remove_file(part_meta_path(dest));
}

/// The partial file being written: the file, how many bytes it holds, the lines and
/// last byte of those.
struct Part {
    path: PathBuf,
    out: BufWriter<Streamed<File>>,
    have: u64,
    newlines: u64,
    last: Option<u8>,
}

impl Part {
    /// Opens the partial file, keeping its first `keep` bytes (counting their lines).
    fn open(path: &Path, keep: u64) -> io::Result<Part> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len(keep)?;
        let (mut newlines, mut last) = (0u64, None);
        if keep > 0 {
            // The lines of the bytes kept: read once, in big blocks.
            file.seek(SeekFrom::Start(0))?;
            let mut buf = vec![0u8; WRITE_BUF];
            let mut r = (&file).take(keep);
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                last = Some(buf[n - 1]);
            }
        }
        file.seek(SeekFrom::Start(keep))?;
        Ok(Part {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUF, streamed(file)),
            have: keep,
            newlines,
            last,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.out.write_all(bytes)?;
        self.have += bytes.len() as u64;
        self.newlines += memchr::memchr_iter(b'\n', bytes).count() as u64;
        self.last = bytes.last().copied();
        Ok(())
    }

    /// Reads back `len` bytes at `at` (already written), for the tail check.
    fn read_at(&mut self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.out.flush()?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(at))?;
        let mut v = vec![0u8; len];
        f.read_exact(&mut v)?;
        Ok(v)
    }

    /// Starts over from nothing.
    fn clear(&mut self) -> io::Result<()> {
        self.out.flush()?;
        *self = Part::open(&self.path, 0)?;
        Ok(())
    }

    fn lines(&self) -> u64 {
        self.newlines + u64::from(self.last.is_some_and(|b| b != b'\n'))
    }
}

fn streamed(file: File) -> Streamed<File> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        Streamed::new(file, fd)
    }
    #[cfg(not(unix))]
    {
        Streamed::plain(file)
    }
}

/// Why one attempt ended without the whole file.
enum AttemptEnd {
    /// Worth another attempt after a wait (429, 5xx, a dropped connection, a short
    /// body); the message says what happened.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// The partial file does not continue the server's file: start over at once.
    StartOver(String),
    /// The file is complete.
    Done,
}

/// Downloads `target` as the module says. `stop` is checked between reads: when it is
/// set the download ends with [`Error::Interrupted`] and keeps its partial file for the
/// next run. `progress` is called with the file's bytes so far.
pub fn download(
    src: &dyn ContentSource,
    target: &Target,
    sync: bool,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<Fetched> {
    let dest = target.dest;
    let part_file = part_path(dest);
    let meta_file = part_meta_path(dest);
    let meta = PartMeta {
        file_id: target.file_id.to_string(),
        bytes: target.expected_bytes,
    };
    // An earlier run's partial file of the same file is resumed; anything else there
    // is started over.
    let kept = std::fs::read(&meta_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<PartMeta>(&b).ok())
        .filter(|m| *m == meta)
        .and_then(|_| std::fs::metadata(&part_file).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .filter(|&len| target.expected_bytes.is_none_or(|e| len <= e))
        .unwrap_or(0);
    if kept == 0 {
        let dir = parent_dir(dest);
        let body = serde_json::to_vec(&meta).expect("part meta serialises");
        write_synced(&meta_file, &body, sync).map_err(|e| missing(dest, &dir, e))?;
    }
    let mut part = Part::open(&part_file, kept).map_err(|e| Error::io(&part_file, e))?;
    let mut fetched = Fetched {
        reused: kept,
        ..Fetched::default()
    };
    // Bytes at the end of the kept part that must match the server's before anything
    // is appended.
    let mut verify = kept.min(VERIFY_TAIL);
    let mut failures = 0u32;
    let mut last_why = String::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            part.out.flush().map_err(|e| Error::io(&part_file, e))?;
            return Err(Error::Interrupted);
        }
        let before = part.have;
        let end = attempt(
            src,
            target,
            &mut part,
            &mut verify,
            &mut fetched,
            stop,
            progress,
        )
        .map_err(|e| Error::io(&part_file, e))?;
        match end {
            AttemptEnd::Done => break,
            AttemptEnd::StartOver(why) => {
                fetched.restarts += 1;
                if fetched.restarts > src.max_attempts() {
                    return Err(Error::Other(format!(
                        "{}: file {}: {why} (started over {} times)",
                        dest.display(),
                        target.file_id,
                        fetched.restarts - 1
                    )));
                }
                part.clear().map_err(|e| Error::io(&part_file, e))?;
                verify = 0;
                fetched.reused = 0;
                failures = 0;
            }
            AttemptEnd::Retry { why, retry_after } => {
                // What came is on its way to the disk before the wait: a crash now
                // keeps it for the next run.
                part.out.flush().map_err(|e| Error::io(&part_file, e))?;
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                if part.have > before {
                    failures = 0;
                }
                failures += 1;
                last_why = why;
                if failures >= src.max_attempts().max(1) {
                    part.out.flush().map_err(|e| Error::io(&part_file, e))?;
                    return Err(Error::Other(format!(
                        "{}: file {}: {last_why} ({failures} attempts in a row without progress; \
                         {} of {} bytes kept in {}, rerun to resume)",
                        dest.display(),
                        target.file_id,
                        part.have,
                        target
                            .expected_bytes
                            .map_or("?".to_string(), |b| b.to_string()),
                        part_file.display()
                    )));
                }
                fetched.retries += 1;
                sleep_unless_stopped(src.backoff(failures - 1, retry_after), stop);
            }
        }
    }
    let _ = last_why;
    // Complete: on disk, then in place.
    let bytes = part.have;
    let lines = part.lines();
    let file = part
        .out
        .into_inner()
        .map_err(|e| Error::io(&part_file, e.into_error()))?
        .into_inner();
    if sync {
        file.sync_all().map_err(|e| Error::io(&part_file, e))?;
    }
    drop(file);
    std::fs::rename(&part_file, dest).map_err(|e| Error::io(dest, e))?;
    let _ = std::fs::remove_file(&meta_file);
    if sync {
        sync_dir(&parent_dir(dest))?;
    }
    fetched.bytes = bytes;
    fetched.lines = lines;
    Ok(fetched)
}

/// One request and as much of its body as comes.
fn attempt(
    src: &dyn ContentSource,
    target: &Target,
    part: &mut Part,
    verify: &mut u64,
    fetched: &mut Fetched,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> io::Result<AttemptEnd> {
    // Bytes from `from` on are asked for: the tail to check, then the rest.
    let from = part.have - *verify;
    if target.expected_bytes == Some(part.have) && *verify == 0 {
        return Ok(AttemptEnd::Done);
    }
    let mut resp = match src.open(target.file_id, from) {
        Ok(r) => r,
        Err(e) => {
            return Ok(AttemptEnd::Retry {
                why: crate::exec::describe(&e),
                retry_after: None,
            })
        }
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if status == 429 || status >= 500 {
        return Ok(AttemptEnd::Retry {
            why: format!("the server answered {status}{}", error_text(&mut resp)),
            retry_after: src.retry_after(&headers),
        });
    }
    if status == 416 {
        // Asked past the end: the partial file is longer than the server's file.
        return Ok(AttemptEnd::StartOver(format!(
            "the server has fewer bytes than the {} already downloaded (416{})",
            part.have,
            error_text(&mut resp)
        )));
    }
    if status != 200 && status != 206 {
        let hint = match status {
            401 => " (the API key is missing or wrong)",
            403 => " (the key may not read this file)",
            404 => {
                " (no such file on this server: wrong base URL, or the file was deleted or expired)"
            }
            _ => "",
        };
        return Err(io::Error::other(format!(
            "downloading file {} failed: the server answered {status}{}{hint}",
            target.file_id,
            error_text(&mut resp)
        )));
    }
    // Where the body starts in the file, and how long the file is.
    let (start, total) = if status == 206 {
        match content_range(&headers) {
            Some((s, total)) => (s, total),
            None => {
                return Ok(AttemptEnd::StartOver(
                    "a 206 answer without a usable Content-Range".into(),
                ))
            }
        }
    } else {
        if from > 0 {
            fetched.range_ignored += 1;
        }
        (0, header_u64(&headers, "content-length"))
    };
    if status == 206 && start != from {
        return Ok(AttemptEnd::StartOver(format!(
            "asked for bytes from {from}, the server sent them from {start}"
        )));
    }
    if let (Some(t), Some(e)) = (total, target.expected_bytes) {
        if t != e {
            return Err(io::Error::other(format!(
                "file {}: the server sends {t} bytes but the file object says {e}",
                target.file_id
            )));
        }
    }
    let mut at = start; // file offset of the next body byte
    let mut buf = vec![0u8; READ_BUF];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(AttemptEnd::Retry {
                why: "stopped".into(),
                retry_after: None,
            });
        }
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Ok(AttemptEnd::Retry {
                    why: format!(
                        "the connection dropped after {} bytes of the file: {}",
                        part.have,
                        describe_io(&e)
                    ),
                    retry_after: None,
                })
            }
        };
        fetched.received += n as u64;
        let mut chunk = &buf[..n];
        // Bytes before `from`: a server that ignored the range sends them again.
        if at < from {
            let skip = ((from - at) as usize).min(chunk.len());
            chunk = &chunk[skip..];
            at += skip as u64;
        }
        // The tail of the kept part: compared, not written.
        if *verify > 0 && !chunk.is_empty() {
            let end = part.have;
            let n = ((end - at) as usize).min(chunk.len());
            let mine = part.read_at(at, n)?;
            if mine != chunk[..n] {
                return Ok(AttemptEnd::StartOver(format!(
                    "the partial file {} does not match the server's bytes at {at}",
                    part.path.display()
                )));
            }
            chunk = &chunk[n..];
            at += n as u64;
            *verify = end - at;
        }
        if !chunk.is_empty() {
            if let Some(e) = target.expected_bytes {
                if part.have + chunk.len() as u64 > e {
                    return Err(io::Error::other(format!(
                        "file {}: the server sent more than the {e} bytes of the file object",
                        target.file_id
                    )));
                }
            }
            part.write(chunk)?;
            at += chunk.len() as u64;
            progress(part.have);
        }
    }
    let want = target.expected_bytes.or(total);
    match want {
        Some(w) if part.have == w && *verify == 0 => Ok(AttemptEnd::Done),
        Some(w) if part.have < w || *verify > 0 => Ok(AttemptEnd::Retry {
            why: format!(
                "the answer ended after {} of the file's {w} bytes",
                part.have
            ),
            retry_after: None,
        }),
        Some(w) => Err(io::Error::other(format!(
            "file {}: {} bytes downloaded, the file has {w}",
            target.file_id, part.have
        ))),
        // Neither the file object nor the answer said how long the file is (a chunked
        // answer to a client that did not look the file up): the end of the body is
        // the end of the file.
        None => Ok(AttemptEnd::Done),
    }
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL if not `*`).
fn content_range(h: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get("content-range")?.to_str().ok()?.trim();
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (s, _e) = range.split_once('-')?;
    let start = s.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

fn header_u64(h: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `: MESSAGE` from an OpenAI error body (at most 64 KiB of it is read), or nothing.
fn error_text(resp: &mut reqwest::blocking::Response) -> String {
    let mut body = Vec::new();
    let _ = resp.take(64 << 10).read_to_end(&mut body);
    let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    match v
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map(str::to_string)
    {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

fn describe_io(e: &io::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Writes a small file and (with `sync`) fsyncs it.
fn write_synced(path: &Path, body: &[u8], sync: bool) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(body)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

fn missing(dest: &Path, dir: &Path, e: io::Error) -> Error {
    crate::io::paths::missing_dir(dest, dir, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_hidden_siblings() {
        let d = Path::new("/x/results/round-0/a.output.jsonl");
        assert_eq!(
            part_path(d),
            Path::new("/x/results/round-0/.a.output.jsonl.part")
        );
        assert_eq!(
            part_meta_path(d),
            Path::new("/x/results/round-0/.a.output.jsonl.part.json")
        );
        assert_eq!(part_path(Path::new("f")), Path::new("./.f.part"));
    }

    #[test]
    fn content_range_parses() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-range", "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range(&h), Some((100, Some(200))));
        h.insert("content-range", "bytes 5-9/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert("content-range", "bytes */200".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn lines_of_a_part_count_an_unterminated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".f.part");
        std::fs::write(&p, b"a\nb\nc").unwrap();
        let part = Part::open(&p, 5).unwrap();
        assert_eq!((part.have, part.lines()), (5, 3));
        let part = Part::open(&p, 4).unwrap();
        assert_eq!((part.have, part.lines()), (4, 2));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4);
    }
}
