//! Input sources and their cutting into chunks of whole lines.
//!
//! A regular, uncompressed file is memory-mapped and cut at newline boundaries without
//! copying. Standard input, pipes and compressed files are read as a stream by one
//! reader thread into buffers of about [`CHUNK_BYTES`]; memory stays bounded by the
//! number of chunks in flight, never by the size of the input.
//!
//! Memory maps: if another process truncates the file while we read it, touching the
//! lost pages raises SIGBUS, which would kill the process with no message and leave
//! its temporary files behind. So before mapping, a SIGBUS handler is installed that
//! maps zero pages over the lost ones (the read goes on, seeing zeros), and every
//! mapped chunk and the whole file are checked against the file's current length
//! ([`MappedFile::check_intact`]) before their data is used and before any output is
//! committed: a file that shrank is a clear error naming it, and nothing is written.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::Compression;
use crate::error::{Error, Result};

/// Target size of one chunk: big enough to amortise hand-offs, small enough that a
/// few of them in flight keep memory flat.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Where lines come from: a path, or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSpec {
    Stdin,
    Path(PathBuf),
}

impl InputSpec {
    /// `-` means standard input; anything else is a path.
    pub fn parse(arg: &str) -> InputSpec {
        if arg == "-" {
            InputSpec::Stdin
        } else {
            InputSpec::Path(PathBuf::from(arg))
        }
    }

    /// The name used in messages: the path as given, or `<stdin>`.
    pub fn display_name(&self) -> String {
        match self {
            InputSpec::Stdin => "<stdin>".to_string(),
            InputSpec::Path(p) => p.display().to_string(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            InputSpec::Stdin => None,
            InputSpec::Path(p) => Some(p),
        }
    }
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_name())
    }
}

/// A regular file mapped whole; the file stays open so that its length can be checked.
pub struct MappedFile {
    map: Mmap,
    file: File,
    name: String,
}

impl MappedFile {
    /// Fails when the file is now shorter than it was when mapped: some of what was
    /// read may then be the zeros that the SIGBUS handler put in place of lost pages.
    pub fn check_intact(&self) -> Result<()> {
        let now = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.name, e))?
            .len();
        if now < self.map.len() as u64 {
            return Err(Error::Other(format!(
                "{}: the file shrank from {} to {now} bytes while it was being read (another program changed it); nothing was written",
                self.name,
                self.map.len()
            )));
        }
        Ok(())
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Installs the SIGBUS handler that turns a read past the end of a shrunk mapped file
/// into a read of zeros (see the module docs). Installing it again is harmless.
#[cfg(target_os = "linux")]
fn install_sigbus_handler() {
    extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: only async-signal-safe calls (sysconf, mmap, signal); `info` is the
        // kernel's description of this fault.
        unsafe {
            if (*info).si_code == libc::BUS_ADRERR {
                let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
                let base = ((*info).si_addr() as usize) & !(page - 1);
                // A file mapping past its file's end: put a private zero page there.
                // The faulting read is retried and sees zeros.
                let p = libc::mmap(
                    base as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    return;
                }
            }
            // Any other bus error: the default action, taken when the read is retried.
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
        }
    }
    // SAFETY: a plain sigaction call with a handler that only makes signal-safe calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

#[cfg(not(target_os = "linux"))]
fn install_sigbus_handler() {}

/// The bytes of one chunk: a window on a shared memory map, or an owned buffer.
pub enum ChunkBytes {
    Mapped {
        map: Arc<MappedFile>,
        start: usize,
        end: usize,
    },
    Owned(Vec<u8>),
}

/// Drops the pages of a consumed range of a memory-mapped input from this process's
/// address space, so that resident memory does not grow with the size of the mapped
/// input (the data stays in the page cache; a later read of these bytes would map them
/// again from the file, so nothing can ever see other bytes).
pub fn release_pages(map: &MappedFile, range: std::ops::Range<usize>) {
    #[cfg(unix)]
    // SAFETY: a read-only, file-backed mapping: dropped pages are re-read from the file
    // if touched again.
    let _ = unsafe {
        map.map
            .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    };
    #[cfg(not(unix))]
    let _ = (map, range);
}

impl Deref for ChunkBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ChunkBytes::Mapped { map, start, end } => &map[*start..*end],
            ChunkBytes::Owned(v) => v,
        }
    }
}

/// A run of whole lines (the last chunk may end without a newline), with the position
/// of its first byte and first line in the whole (decompressed) input.
pub struct Chunk {
    /// 0-based sequence number: the writer restores this order.
    pub index: u64,
    /// Byte offset of the chunk's first byte in the input.
    pub offset: u64,
    /// 1-based number of the chunk's first line.
    pub first_line: u64,
    /// The bytes; they hold `line_count` lines.
    pub bytes: ChunkBytes,
    /// How many lines (blank ones included) the chunk holds.
    pub line_count: u64,
    /// Set when this chunk is a single line that was too long to hold in memory from a
    /// stream: `bytes` is its beginning and this is its full length without the newline.
    pub oversize_len: Option<u64>,
    /// The longest line handed out whole: a longer line of a mapped file comes out cut
    /// like one from a stream (its beginning, and its full length), so that every input
    /// has the same limit.
    pub max_line: usize,
}

/// One input line, without its `\n` or `\r\n` (and without a leading UTF-8 BOM).
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// 1-based line number in the input.
    pub number: u64,
    /// Byte offset of the line's first byte in the (decompressed) input.
    pub offset: u64,
    /// The line's bytes; only a prefix when the line was too long to keep.
    pub bytes: &'a [u8],
    /// The full length of the line in bytes (equal to `bytes.len()` unless cut).
    pub len: u64,
    /// The longest line this run keeps whole (a longer one is cut).
    pub limit: usize,
}

/// `bytes` as UTF-8 text, or the reason it is not, with the position: the one check
/// of every command. simdutf8 checks valid text several times faster than std; only a
/// failure pays for finding the position.
pub fn utf8_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(t) => Ok(t),
        Err(_) => {
            let at = simdutf8::compat::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), |_| 0);
            Err(format!("invalid UTF-8 at byte {at} of the line"))
        }
    }
}

/// The one wording for a line over a limit, with the limit: every command says it so.
pub fn too_long(len: u64, limit: u64) -> String {
    format!("line is {len} bytes, over the limit of {limit} bytes")
}

impl Line<'_> {
    /// A line holding only spaces and tabs (or nothing) is blank: skipped and counted.
    pub fn is_blank(&self) -> bool {
        self.len == self.bytes.len() as u64 && self.bytes.iter().all(|&b| b == b' ' || b == b'\t')
    }

    /// The line as UTF-8 text, or the reason it is not ([`utf8_text`]).
    pub fn text(&self) -> std::result::Result<&str, String> {
        utf8_text(self.bytes)
    }

    /// The reason for rejecting a cut line ([`too_long`] with this run's limit).
    pub fn too_long(&self) -> String {
        too_long(self.len, self.limit as u64)
    }

    /// True when only the beginning of the line was kept.
    pub fn is_cut(&self) -> bool {
        self.len != self.bytes.len() as u64
    }
}

impl Chunk {
    /// The mapping and byte range behind a memory-mapped chunk (to release its pages
    /// once consumed); `None` for a chunk read into memory.
    pub fn mapped_range(&self) -> Option<(Arc<MappedFile>, std::ops::Range<usize>)> {
        match &self.bytes {
            ChunkBytes::Mapped { map, start, end } => Some((Arc::clone(map), *start..*end)),
            ChunkBytes::Owned(_) => None,
        }
    }

    /// For a mapped chunk, fails when its file shrank ([`MappedFile::check_intact`]).
    pub fn check_intact(&self) -> Result<()> {
        match &self.bytes {
            ChunkBytes::Mapped { map, .. } => map.check_intact(),
            ChunkBytes::Owned(_) => Ok(()),
        }
    }

    /// The chunk's lines in order.
    pub fn lines(&self) -> Lines<'_> {
        Lines {
            data: &self.bytes,
            pos: 0,
            number: self.first_line,
            base: self.offset,
            oversize_len: self.oversize_len,
            max_line: self.max_line,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Iterator over the lines of a chunk; strips `\r\n`, `\n` and a BOM at input offset 0.
pub struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    number: u64,
    base: u64,
    oversize_len: Option<u64>,
    max_line: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.data[start..];
        let (mut line, consumed) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += consumed;
        let mut offset = self.base + start as u64;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if offset == 0 && line.starts_with(b"\xEF\xBB\xBF") {
            line = &line[3..];
            offset = 3;
        }
        let number = self.number;
        self.number += 1;
        let len = match self.oversize_len {
            Some(n) => n,
            None => line.len() as u64,
        };
        if line.len() > self.max_line {
            line = &line[..self.max_line];
        }
        Some(Line {
            number,
            offset,
            bytes: line,
            len,
            limit: self.max_line,
        })
    }
}

/// Counts the lines a chunk holds (a final line without newline counts).
pub fn count_lines(bytes: &[u8]) -> u64 {
    let n = memchr::memchr_iter(b'\n', bytes).count() as u64;
    if bytes.last().is_some_and(|&b| b != b'\n') {
        n + 1
    } else {
        n
    }
}

/// `file` as a stream of its decompressed bytes (`compression` from its name).
pub fn decoder(file: File, compression: Compression, path: &Path) -> Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| Error::io(path, e))?)
        }
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            file,
        ))),
        Compression::None => Box::new(file),
    })
}

/// An opened input, ready to be cut into chunks.
pub enum OpenInput {
    /// A regular uncompressed file, mapped whole.
    Mapped { map: Arc<MappedFile>, name: String },
    /// A stream: stdin, a pipe, or a decompressor.
    Stream {
        reader: Box<dyn Read + Send>,
        name: String,
        known_len: Option<u64>,
    },
}

impl OpenInput {
    /// Opens `spec`: maps a regular file, streams anything else, and decompresses
    /// `.zst` and `.gz` by name.
    pub fn open(spec: &InputSpec) -> Result<OpenInput> {
        let name = spec.display_name();
        let path = match spec {
            InputSpec::Stdin => {
                return Ok(OpenInput::Stream {
                    reader: Box::new(std::io::stdin()),
                    name,
                    known_len: None,
                })
            }
            InputSpec::Path(p) => p,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::Other(format!(
                "{name}: is a directory, expected a file"
            )));
        }
        let compression = Compression::from_name(&name);
        if compression == Compression::None && meta.is_file() && meta.len() > 0 {
            install_sigbus_handler();
            // SAFETY: the file is opened read-only and is a regular file named by the
            // user; the one hazard, a concurrent truncation, is handled by the SIGBUS
            // handler and the length checks (see the module docs).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            return Ok(OpenInput::Mapped {
                map: Arc::new(MappedFile {
                    map,
                    file,
                    name: name.clone(),
                }),
                name,
            });
        }
        let known_len = (meta.is_file() && compression == Compression::None).then_some(meta.len());
        Ok(OpenInput::Stream {
            reader: decoder(file, compression, path)?,
            name,
            known_len,
        })
    }

    /// The mapped file behind this input, if it is one (to check it at the end).
    pub fn mapped(&self) -> Option<Arc<MappedFile>> {
        match self {
            OpenInput::Mapped { map, .. } => Some(Arc::clone(map)),
            OpenInput::Stream { .. } => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            OpenInput::Mapped { name, .. } | OpenInput::Stream { name, .. } => name,
        }
    }

    /// Total bytes when known in advance (for progress bars).
    pub fn known_len(&self) -> Option<u64> {
        match self {
            OpenInput::Mapped { map, .. } => Some(map.len() as u64),
            OpenInput::Stream { known_len, .. } => *known_len,
        }
    }

    /// Turns the input into a sequence of chunks. `max_line` is the longest line handed
    /// out whole: from a stream, a longer one becomes a single cut chunk so that memory
    /// stays bounded; from a mapped file, it comes out cut the same way.
    pub fn into_chunks(self, max_line: usize) -> ChunkIter {
        match self {
            OpenInput::Mapped { map, .. } => ChunkIter::Mapped(MappedChunks {
                map,
                pos: 0,
                index: 0,
                line: 1,
                max_line: max_line.max(1),
            }),
            OpenInput::Stream { reader, name, .. } => ChunkIter::Stream(StreamChunks {
                reader,
                name,
                carry: Vec::new(),
                eof: false,
                index: 0,
                offset: 0,
                line: 1,
                max_line: max_line.max(1),
            }),
        }
    }
}

/// Chunks of an input, in order.
pub enum ChunkIter {
    Mapped(MappedChunks),
    Stream(StreamChunks),
}

impl Iterator for ChunkIter {
    type Item = Result<Chunk>;
    fn next(&mut self) -> Option<Result<Chunk>> {
        match self {
            ChunkIter::Mapped(m) => m.next().map(Ok),
            ChunkIter::Stream(s) => s.next_chunk().transpose(),
        }
    }
}

pub struct MappedChunks {
    map: Arc<MappedFile>,
    pos: usize,
    index: u64,
    line: u64,
    max_line: usize,
}

impl MappedChunks {
    fn next(&mut self) -> Option<Chunk> {
        let len = self.map.len();
        if self.pos >= len {
            return None;
        }
        let start = self.pos;
        let mut end = (start + CHUNK_BYTES).min(len);
        if end < len {
            end = match memchr::memchr(b'\n', &self.map[end - 1..]) {
                Some(i) => end + i,
                None => len,
            };
        }
        self.pos = end;
        let lines = count_lines(&self.map[start..end]);
        let chunk = Chunk {
            index: self.index,
            offset: start as u64,
            first_line: self.line,
            bytes: ChunkBytes::Mapped {
                map: Arc::clone(&self.map),
                start,
                end,
            },
            line_count: lines,
            oversize_len: None,
            max_line: self.max_line,
        };
        self.index += 1;
        self.line += lines;
        Some(chunk)
    }
}

pub struct StreamChunks {
    reader: Box<dyn Read + Send>,
    name: String,
    carry: Vec<u8>,
    eof: bool,
    index: u64,
    offset: u64,
    line: u64,
    max_line: usize,
}

impl StreamChunks {
    /// Reads until the buffer holds at least one chunk's worth, or EOF.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<()> {
        while buf.len() < want && !self.eof {
            let old = buf.len();
            let grow = (want - old).max(64 << 10);
            buf.resize(old + grow, 0);
            let n = loop {
                match self.reader.read(&mut buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        buf.truncate(old);
                        return Err(Error::io(&self.name, e));
                    }
                }
            };
            buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        bytes: Vec<u8>,
        oversize_len: Option<u64>,
        consumed: u64,
        lines: u64,
    ) -> Chunk {
        let chunk = Chunk {
            index: self.index,
            offset: self.offset,
            first_line: self.line,
            bytes: ChunkBytes::Owned(bytes),
            line_count: lines,
            oversize_len,
            max_line: self.max_line,
        };
        self.index += 1;
        self.offset += consumed;
        self.line += lines;
        chunk
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.reserve(CHUNK_BYTES + (64 << 10));
        self.fill(&mut buf, CHUNK_BYTES)?;
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            if let Some(last_nl) = memchr::memrchr(b'\n', &buf) {
                // Keep the chunk to whole lines; the tail goes into the next one.
                // A leading line longer than max_line is cut off first.
                let first_nl = memchr::memchr(b'\n', &buf).unwrap_or(last_nl);
                if first_nl > self.max_line {
                    return self.cut_long_line(buf, Some(first_nl)).map(Some);
                }
                if self.eof {
                    let lines = count_lines(&buf);
                    let n = buf.len() as u64;
                    return Ok(Some(self.emit(buf, None, n, lines)));
                }
                self.carry = buf[last_nl + 1..].to_vec();
                buf.truncate(last_nl + 1);
                let lines = count_lines(&buf);
                let n = buf.len() as u64;
                return Ok(Some(self.emit(buf, None, n, lines)));
            }
            // No newline in the buffer: one line in progress.
            if buf.len() > self.max_line {
                return self.cut_long_line(buf, None).map(Some);
            }
            if self.eof {
                let n = buf.len() as u64;
                return Ok(Some(self.emit(buf, None, n, 1)));
            }
            let want = (buf.len() * 2).min(self.max_line + 2).max(buf.len() + 1);
            self.fill(&mut buf, want)?;
        }
    }

    /// The first line of `buf` is longer than `max_line`: keep its first bytes, skip the
    /// rest of it (reading on as needed), and hand it out as one cut chunk.
    fn cut_long_line(&mut self, mut buf: Vec<u8>, newline_at: Option<usize>) -> Result<Chunk> {
        const KEEP: usize = 64 << 10;
        let keep = buf.len().min(KEEP).min(newline_at.unwrap_or(usize::MAX));
        let prefix = buf[..keep].to_vec();
        let mut len: u64;
        let mut found_newline = newline_at.is_some();
        match newline_at {
            Some(i) => {
                len = i as u64;
                self.carry = buf.split_off(i + 1);
            }
            None => {
                len = buf.len() as u64;
                loop {
                    buf.clear();
                    self.fill(&mut buf, 1 << 20)?;
                    if buf.is_empty() {
                        break;
                    }
                    match memchr::memchr(b'\n', &buf) {
                        Some(i) => {
                            len += i as u64;
                            self.carry = buf.split_off(i + 1);
                            found_newline = true;
                            break;
                        }
                        None => len += buf.len() as u64,
                    }
                }
            }
        }
        let consumed = len + u64::from(found_newline);
        // The length reported excludes a `\r` before the newline, as for kept lines.
        let stored_len = len;
        Ok(self.emit(prefix, Some(stored_len), consumed, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapped file cut short while it is read: reading the lost pages does not
    /// kill the process (SIGBUS), and the check names the file and the sizes.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_shrinks_while_mapped_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "x".repeat(3 << 20) + "\n").unwrap();
        let input = OpenInput::open(&InputSpec::Path(path.clone())).unwrap();
        let mapped = input.mapped().expect("a regular file is mapped");
        mapped.check_intact().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // Touch every page, the lost ones included.
        let sum: u64 = mapped.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(sum < u64::from(b'x') * ((3 << 20) / 4096 + 1));
        let err = mapped.check_intact().unwrap_err().to_string();
        assert!(err.contains("in.jsonl") && err.contains("shrank"), "{err}");
    }

    /// A line longer than `max_line` comes out cut (its beginning, its full length) the
    /// same way from a mapped file as from a stream; shorter lines come out whole.
    #[test]
    fn long_lines_are_cut_alike_from_files_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = "y".repeat(5000);
        let text = format!("short\n{long}\nlast");
        std::fs::write(&path, &text).unwrap();
        let seen = |input: OpenInput| -> Vec<(u64, u64, usize, bool)> {
            let mut out = Vec::new();
            for chunk in input.into_chunks(1000) {
                let chunk = chunk.unwrap();
                for line in chunk.lines() {
                    out.push((line.number, line.len, line.bytes.len(), line.is_cut()));
                }
            }
            out
        };
        let mapped = OpenInput::open(&InputSpec::Path(path.clone())).unwrap();
        assert!(matches!(mapped, OpenInput::Mapped { .. }));
        let streamed = OpenInput::Stream {
            reader: Box::new(std::io::Cursor::new(text.into_bytes())),
            name: "s".into(),
            known_len: None,
        };
        let want = vec![(1, 5, 5, false), (2, 5000, 1000, true), (3, 4, 4, false)];
        assert_eq!(seen(mapped), want);
        let streamed = seen(streamed);
        assert_eq!(streamed.len(), 3);
        assert_eq!(
            (streamed[1].0, streamed[1].1, streamed[1].3),
            (2, 5000, true)
        );
        assert_eq!(streamed[0], want[0]);
        assert_eq!(streamed[2], want[2]);
    }
}
