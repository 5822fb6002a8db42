//! Outputs that are either complete or absent.
//!
//! An [`AtomicFile`] is written to a hidden temporary file in the destination's own
//! directory and renamed over the destination only by [`AtomicFile::commit`], after
//! every byte was flushed and synced. Dropping it uncommitted (an error, a stop, a
//! panic) deletes the temporary file, so a crash or a full disk never leaves a file
//! that looks complete. Names ending `.zst` or `.gz` are compressed on the way.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Compression;
use crate::error::{Error, Result};

const BUF_BYTES: usize = 1 << 20;

/// Where an output goes: a path, or `-` for standard output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    Path(PathBuf),
}

impl OutputSpec {
    pub fn parse(arg: &str) -> OutputSpec {
        if arg == "-" {
            OutputSpec::Stdout
        } else {
            OutputSpec::Path(PathBuf::from(arg))
        }
    }

    pub fn display_name(&self) -> String {
        match self {
            OutputSpec::Stdout => "<stdout>".to_string(),
            OutputSpec::Path(p) => p.display().to_string(),
        }
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self, OutputSpec::Stdout)
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            OutputSpec::Stdout => None,
            OutputSpec::Path(p) => Some(p),
        }
    }
}

/// Every this many bytes, a [`Streamed`] file hands what was written to the disk.
const STREAM_STEP: u64 = 8 << 20;
/// A [`Streamed`] file keeps at most about this many of its latest bytes in the page
/// cache; older ranges are written out and dropped.
const STREAM_WINDOW: u64 = 64 << 20;

/// A writer to a regular file that keeps a big output from piling up in the page cache.
///
/// Every [`STREAM_STEP`] bytes it starts writeback of what was just written
/// (`sync_file_range`), and once a range is [`STREAM_WINDOW`] bytes behind, it waits
/// for that range to be on disk and drops it from the cache (`posix_fadvise
/// DONTNEED`). Gigabytes of output then cycle through the same few megabytes of cache
/// instead of claiming fresh memory for every page (which costs more than the copy on a
/// virtual machine whose free memory goes back to the host), dirty memory stays bounded,
/// and the final `fsync` has almost nothing left to do. Only the cache is affected,
/// never the bytes. Elsewhere than Linux, and for pipes, terminals and devices, it is a
/// plain pass-through.
pub struct Streamed<W> {
    inner: W,
    #[cfg(target_os = "linux")]
    window: Option<Window>,
}

#[cfg(target_os = "linux")]
struct Window {
    fd: std::os::unix::io::RawFd,
    step: u64,
    keep: u64,
    /// Bytes written since the last step.
    pending: u64,
    /// File offsets: writeback was started up to `submitted`; pages below `dropped`
    /// (and at or above where this writer began) were dropped.
    submitted: i64,
    dropped: i64,
}

impl<W: Write> Streamed<W> {
    /// Wraps `inner`, which writes to the open file `fd` (at its current offset).
    #[cfg(unix)]
    pub fn new(inner: W, fd: std::os::unix::io::RawFd) -> Streamed<W> {
        Streamed::with_window(inner, fd, STREAM_STEP, STREAM_WINDOW)
    }

    #[cfg(unix)]
    fn with_window(inner: W, fd: std::os::unix::io::RawFd, step: u64, keep: u64) -> Streamed<W> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: fstat and lseek on a descriptor the caller keeps open; both only
            // read state. A failure just leaves the window off.
            let window = unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                let regular =
                    libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
                // In append mode the offset only moves at the first write: start at
                // the end, so that what the file held before is left alone.
                let appending = libc::fcntl(fd, libc::F_GETFL) & libc::O_APPEND != 0;
                let at = if appending {
                    st.st_size
                } else {
                    libc::lseek(fd, 0, libc::SEEK_CUR)
                };
                (regular && at >= 0).then_some(Window {
                    fd,
                    step,
                    keep,
                    pending: 0,
                    submitted: at,
                    dropped: at,
                })
            };
            Streamed { inner, window }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (fd, step, keep);
            Streamed { inner }
        }
    }

    #[cfg(not(unix))]
    pub fn plain(inner: W) -> Streamed<W> {
        Streamed { inner }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(target_os = "linux")]
impl Window {
    /// One step: start writeback of what was written since the last step, wait for and
    /// drop what is more than `keep` bytes behind. `Ok(false)`: the file system cannot
    /// do this (stop trying). A failed writeback is an error of the output: it must not
    /// be swallowed here, since the kernel reports it only once.
    fn advance(&mut self) -> io::Result<bool> {
        fn unsupported(e: &io::Error) -> bool {
            matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP)
            )
        }
        let check = |rc: libc::c_int| -> io::Result<bool> {
            if rc == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            if unsupported(&e) {
                Ok(false)
            } else {
                Err(e)
            }
        };
        // SAFETY: these calls take a descriptor and offsets only; the descriptor stays
        // open for as long as the writer that owns this window.
        unsafe {
            let end = libc::lseek(self.fd, 0, libc::SEEK_CUR);
            if end < 0 {
                return Ok(false);
            }
            if end < self.submitted {
                // Someone moved the offset back (or truncated): start over from here.
                self.submitted = end;
                self.dropped = end;
                return Ok(true);
            }
            if end > self.submitted
                && !check(libc::sync_file_range(
                    self.fd,
                    self.submitted,
                    end - self.submitted,
                    libc::SYNC_FILE_RANGE_WRITE,
                ))?
            {
                return Ok(false);
            }
            self.submitted = end;
            let keep_from = end - self.keep as i64;
            if keep_from > self.dropped {
                let len = keep_from - self.dropped;
                let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                if !check(libc::sync_file_range(self.fd, self.dropped, len, flags))? {
                    return Ok(false);
                }
                libc::posix_fadvise(self.fd, self.dropped, len, libc::POSIX_FADV_DONTNEED);
                self.dropped = keep_from;
            }
        }
        Ok(true)
    }
}

impl<W: Write> Write for Streamed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        #[cfg(target_os = "linux")]
        if let Some(w) = self.window.as_mut() {
            w.pending += n as u64;
            if w.pending >= w.step {
                w.pending = 0;
                // Flush what `inner` may hold, so that the offset covers it.
                self.inner.flush()?;
                if !w.advance()? {
                    // A file system without these calls: stop trying; writing goes on.
                    self.window = None;
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size of the buffers a [`WriteBehind`] fills and hands to its thread.
const BEHIND_BUF: usize = 1 << 20;

/// Writes and hashes a file on a thread of its own: the caller only copies bytes into a
/// buffer, and full buffers go to the thread, which hashes them (SHA-256), writes them
/// and hands them back. At most four buffers exist per file, so memory stays bounded.
/// Used for shard files, where hashing and the kernel's copy would otherwise run on the
/// one thread that orders all the output.
struct WriteBehind {
    buf: Vec<u8>,
    full: Option<crossbeam_channel::Sender<Vec<u8>>>,
    empty: crossbeam_channel::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<io::Result<Written>>>,
}

/// What a [`WriteBehind`] thread gives back: the file, and the SHA-256 of its bytes.
type Written = (Streamed<File>, String);

impl WriteBehind {
    fn start(mut out: Streamed<File>) -> WriteBehind {
        let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Vec<u8>>(2);
        let thread = std::thread::spawn(move || {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            for mut buf in full_rx {
                hasher.update(&buf);
                out.write_all(&buf)?;
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
            out.flush()?;
            let hex = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok((out, hex))
        });
        WriteBehind {
            buf: Vec::with_capacity(BEHIND_BUF),
            full: Some(full_tx),
            empty: empty_rx,
            thread: Some(thread),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BEHIND_BUF {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BEHIND_BUF));
        let full = std::mem::replace(&mut self.buf, next);
        let sent = self.full.as_ref().map(|tx| tx.send(full).is_ok());
        if sent != Some(true) {
            // The thread stopped on an error (a full disk): report it.
            return Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread stopped")));
        }
        Ok(())
    }

    /// Waits for the thread; returns the file and the SHA-256 of all bytes written.
    fn finish(mut self) -> io::Result<Written> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.stop()
    }

    fn stop(&mut self) -> io::Result<Written> {
        drop(self.full.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(done)) => done,
            Some(Err(_)) => Err(io::Error::other("the writing thread panicked")),
            None => Err(io::Error::other("the writing thread already stopped")),
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): let the thread end before the file goes.
        let _ = self.stop();
    }
}

enum Encoder {
    Plain(BufWriter<Streamed<File>>),
    Behind(WriteBehind),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<Streamed<File>>>),
    Gzip(flate2::write::GzEncoder<BufWriter<Streamed<File>>>),
}

/// A buffered, [`Streamed`] writer to `file`.
fn streamed(file: File) -> BufWriter<Streamed<File>> {
    #[cfg(unix)]
    let s = {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        Streamed::new(file, fd)
    };
    #[cfg(not(unix))]
    let s = Streamed::plain(file);
    BufWriter::with_capacity(BUF_BYTES, s)
}

/// A file that appears at its path, complete, only when committed.
pub struct AtomicFile {
    dest: PathBuf,
    /// Deleted on drop unless persisted by `commit`.
    temp: Option<tempfile::TempPath>,
    encoder: Option<Encoder>,
    bytes_in: u64,
    /// The SHA-256 of the bytes written, when asked for ([`AtomicFile::hash_contents`]).
    hasher: Option<sha2::Sha256>,
    /// Whether the file is synced to disk before the rename (the default). Off
    /// (`--no-sync`), outputs stay atomic against a crash of the process, but not
    /// against a crash of the machine.
    sync: bool,
}

impl AtomicFile {
    /// Starts writing `dest` (compressed if its name ends `.zst` or `.gz`); `sync`:
    /// fsync before the rename.
    pub fn create(dest: &Path, sync: bool) -> Result<AtomicFile> {
        // A destination that exists and is not a regular file (`/dev/null`,
        // `/dev/stderr`, a named pipe) is written in place: renaming over it would
        // replace the device or link with a regular file.
        let is_link = std::fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink());
        let special_dir = dest.starts_with("/dev") || dest.starts_with("/proc");
        if is_link && !special_dir {
            // Write through the link: the target is replaced atomically, the link stays.
            if let Ok(target) = std::fs::canonicalize(dest) {
                return AtomicFile::create(&target, sync);
            }
            // A link to nothing: refused rather than replaced by a regular file.
            super::paths::refuse_dangling_link(dest)?;
        }
        if (special_dir && std::fs::metadata(dest).is_ok())
            || std::fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir())
        {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .map_err(|e| Error::io(dest, e))?;
            let buf = streamed(file);
            let name = dest.to_string_lossy();
            let encoder = match Compression::from_name(&name) {
                Compression::None => Encoder::Plain(buf),
                Compression::Zstd => Encoder::Zstd(
                    zstd::stream::write::Encoder::new(buf, 3).map_err(|e| Error::io(dest, e))?,
                ),
                Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                    buf,
                    flate2::Compression::default(),
                )),
            };
            return Ok(AtomicFile {
                dest: dest.to_path_buf(),
                temp: None,
                encoder: Some(encoder),
                bytes_in: 0,
                hasher: None,
                sync,
            });
        }
        let dir = super::paths::parent_dir(dest);
        let file_name = dest
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", dest.display())))?
            .to_string_lossy()
            .into_owned();
        let named = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .permissions(default_permissions(dest))
            .tempfile_in(&dir)
            .map_err(|e| super::paths::missing_dir(dest, &dir, e))?;
        let (file, temp) = named.into_parts();
        let buf = streamed(file);
        let encoder = match Compression::from_name(&file_name) {
            Compression::None => Encoder::Plain(buf),
            Compression::Zstd => {
                let enc =
                    zstd::stream::write::Encoder::new(buf, 3).map_err(|e| Error::io(dest, e))?;
                Encoder::Zstd(enc)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                buf,
                flate2::Compression::default(),
            )),
        };
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            temp: Some(temp),
            encoder: Some(encoder),
            bytes_in: 0,
            hasher: None,
            sync,
        })
    }

    /// Also computes the SHA-256 of every byte written from now on (before any
    /// compression), for [`PendingFile::sha256_hex`]. Hashing while writing spares
    /// reading the file back, which the page-cache window would make a disk read.
    ///
    /// A plain file is then written and hashed on a thread of its own ([`WriteBehind`]);
    /// a compressed one is hashed here.
    pub fn hash_contents(&mut self) -> Result<()> {
        use sha2::Digest;
        if self.bytes_in == 0 && matches!(self.encoder, Some(Encoder::Plain(_))) {
            if let Some(Encoder::Plain(w)) = self.encoder.take() {
                let out = w
                    .into_inner()
                    .map_err(|e| Error::io(&self.dest, e.into_error()))?;
                self.encoder = Some(Encoder::Behind(WriteBehind::start(out)));
                return Ok(());
            }
        }
        self.hasher.get_or_insert_with(sha2::Sha256::new);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Bytes written so far (before compression).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_in
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes_in += bytes.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            sha2::Digest::update(h, bytes);
        }
        let res = match self
            .encoder
            .as_mut()
            .expect("AtomicFile written after commit")
        {
            Encoder::Plain(w) => w.write_all(bytes),
            Encoder::Behind(w) => w.write_all(bytes),
            Encoder::Zstd(w) => w.write_all(bytes),
            Encoder::Gzip(w) => w.write_all(bytes),
        };
        res.map_err(|e| Error::io(&self.dest, e))
    }

    /// Finishes compression, flushes, syncs to disk and renames into place. Any failure
    /// (a full disk shows up here at the latest) leaves no file at the destination.
    pub fn commit(self) -> Result<()> {
        self.finish_pending()?.commit()
    }

    /// Finishes and syncs the file and closes it, but does not rename it yet: commands
    /// that write many files rename them all only once the whole run succeeded.
    pub fn finish_pending(mut self) -> Result<PendingFile> {
        let dest = self.dest.clone();
        let mut sha256 = self.hasher.take().map(|h| {
            let digest = sha2::Digest::finalize(h);
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        let file = match self.encoder.take().expect("AtomicFile committed twice") {
            Encoder::Plain(w) => w.into_inner().map_err(|e| e.into_error()),
            Encoder::Behind(w) => w.finish().map(|(out, hex)| {
                sha256 = Some(hex);
                out
            }),
            Encoder::Zstd(w) => w
                .finish()
                .and_then(|b| b.into_inner().map_err(|e| e.into_error())),
            Encoder::Gzip(w) => w
                .finish()
                .and_then(|b| b.into_inner().map_err(|e| e.into_error())),
        }
        .map_err(|e| Error::io(&dest, e))?
        .into_inner();
        let Some(temp) = self.temp.take() else {
            // Written in place (a device or pipe): nothing to sync or rename.
            return Ok(PendingFile {
                dest,
                temp: None,
                sha256,
            });
        };
        if self.sync {
            file.sync_all().map_err(|e| Error::io(&dest, e))?;
        }
        drop(file);
        Ok(PendingFile {
            dest,
            temp: Some(temp),
            sha256,
        })
    }
}

/// The mode a new output gets: that of the file it replaces, else 0666 less the umask
/// (as any plain `create` would; tempfile's own default is 0600).
fn default_permissions(dest: &Path) -> std::fs::Permissions {
    if let Ok(m) = std::fs::metadata(dest) {
        return m.permissions();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o666)
    }
    #[cfg(not(unix))]
    {
        std::fs::File::open(".")
            .and_then(|f| f.metadata())
            .map(|m| m.permissions())
            .expect("cwd metadata")
    }
}

/// A complete file under its temporary name; deleted on drop unless committed.
pub struct PendingFile {
    dest: PathBuf,
    /// `None` when the destination was written in place (a device or pipe).
    temp: Option<tempfile::TempPath>,
    sha256: Option<String>,
}

impl PendingFile {
    /// Where the complete file is now (its temporary name until committed).
    pub fn current_path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.dest)
    }

    /// The SHA-256 (lowercase hex) of the bytes written, if [`AtomicFile::hash_contents`]
    /// was called.
    pub fn sha256_hex(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// Where the file goes when committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the file into place.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        if let Some(temp) = self.temp {
            temp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        }
        Ok(())
    }
}

/// Standard output as a data output. When its reader goes away (`| head`), further
/// bytes are dropped and [`StdoutOutput::is_closed`] says so: a command that still has
/// side files to write (rejects, a sidecar, a report) finishes them, and one that has
/// none stops early; neither is an error.
pub struct StdoutOutput {
    w: BufWriter<Streamed<io::Stdout>>,
    closed: bool,
}

impl StdoutOutput {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.w.write_all(bytes) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.map_err(|e| Error::io("<stdout>", e)),
        }
    }

    fn flush(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.w.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.map_err(|e| Error::io("<stdout>", e)),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A main output: standard output (streamed, never compressed) or an atomic file.
pub enum Output {
    Stdout(StdoutOutput),
    File(AtomicFile),
}

impl Output {
    /// Opens `spec`; `sync`: an output file is fsynced before its rename.
    pub fn create(spec: &OutputSpec, sync: bool) -> Result<Output> {
        match spec {
            OutputSpec::Stdout => {
                // Standard output redirected to a file streams like any output file.
                #[cfg(unix)]
                let out = Streamed::new(io::stdout(), 1);
                #[cfg(not(unix))]
                let out = Streamed::plain(io::stdout());
                Ok(Output::Stdout(StdoutOutput {
                    w: BufWriter::with_capacity(BUF_BYTES, out),
                    closed: false,
                }))
            }
            OutputSpec::Path(p) => Ok(Output::File(AtomicFile::create(p, sync)?)),
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }

    /// Flushes standard output, so that [`Output::is_closed`] knows whether its reader
    /// is still there (a no-op for a file).
    pub fn flush_stdout(&mut self) -> Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(_) => Ok(()),
        }
    }

    /// True once standard output's reader went away (never for a file).
    pub fn is_closed(&self) -> bool {
        matches!(self, Output::Stdout(w) if w.is_closed())
    }

    /// Flushes stdout (`None`), or finishes the file without renaming it yet.
    pub fn finish_pending(self) -> Result<Option<PendingFile>> {
        match self {
            Output::Stdout(mut w) => w.flush().map(|_| None),
            Output::File(f) => f.finish_pending().map(Some),
        }
    }

    /// Flushes stdout, or commits the file.
    pub fn finish(self) -> Result<()> {
        commit_all(self.finish_pending()?)
    }
}

/// "Finish every file, then commit": each output is completed (compressed, flushed,
/// synced) first, and only when all of them are complete are they renamed into place,
/// so that a failure in any (a full disk, a missing directory) leaves none of them.
pub fn finish_all(outputs: impl IntoIterator<Item = Output>) -> Result<Vec<PendingFile>> {
    let mut pending = Vec::new();
    for o in outputs {
        pending.extend(o.finish_pending()?);
    }
    Ok(pending)
}

/// Renames complete files into place, in order.
pub fn commit_all(pending: impl IntoIterator<Item = PendingFile>) -> Result<()> {
    for p in pending {
        p.commit()?;
    }
    Ok(())
}

/// Prepares an output directory: created when missing (returns `true`), refused when
/// it is not a directory or holds visible files without `force`.
pub fn prepare_out_dir(dir: &Path, force: bool) -> Result<bool> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            return Ok(true);
        }
        Err(e) => return Err(Error::io(dir, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::Usage(format!("{}: not a directory", dir.display())))
        }
        Ok(_) => {}
    }
    let visible = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if visible && !force {
        return Err(Error::Usage(format!(
            "{}: directory is not empty (use --force to write into it)",
            dir.display()
        )));
    }
    Ok(false)
}

/// Syncs a directory, so that the renames and removals in it are on disk in the order
/// they were made (a no-op elsewhere than Unix).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| Error::io(dir, e))?;
        d.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A value from the data (a model, a group) as part of a file name: `[A-Za-z0-9._-]`,
/// no leading dot, at most 100 characters; nothing in the data can name a file outside
/// the output directory.
pub fn safe_file_name(value: &str) -> String {
    let mut s: String = value
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Picks a file name for a group of the data (a model, a `--split-by` value) that no
/// other group has, also on a case-insensitive file system: `plain` + `suffix`, else
/// `plain-HASH` + `suffix` (HASH from `key`, so that a model literally named like a
/// suffixed name cannot collide), then `plain-HASH-2`, ... `taken` can veto a name
/// (one that another output of the run already has).
pub fn unique_name(
    used: &mut std::collections::HashSet<String>,
    plain: &str,
    key: &str,
    suffix: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32;
    let mut name = format!("{plain}{suffix}");
    let mut n = 0u32;
    while used.contains(&name.to_lowercase()) || taken(&name) {
        n += 1;
        name = if n == 1 {
            format!("{plain}-{hash:08x}{suffix}")
        } else {
            format!("{plain}-{hash:08x}-{n}{suffix}")
        };
    }
    used.insert(name.to_lowercase());
    name
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::io::AsRawFd;

    /// A hashed file is written on its own thread: every byte arrives, in order, and
    /// the hash is that of the file; a compressed one is hashed before compression.
    #[test]
    fn hashed_files_keep_every_byte_and_hash_them() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..40_000u32 {
            want.extend_from_slice(
                format!(
                    "{{\"n\": {i}, \"pad\": \"{}\"}}\n",
                    "p".repeat((i % 97) as usize)
                )
                .as_bytes(),
            );
        }
        let hex = |b: &[u8]| -> String {
            sha2::Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        for name in ["plain.jsonl", "packed.jsonl.zst"] {
            let path = dir.path().join(name);
            let mut f = AtomicFile::create(&path, true).unwrap();
            f.hash_contents().unwrap();
            for piece in want.chunks(7_777) {
                f.write_all(piece).unwrap();
            }
            let pending = f.finish_pending().unwrap();
            assert_eq!(pending.sha256_hex(), Some(hex(&want).as_str()), "{name}");
            pending.commit().unwrap();
            let got = std::fs::read(&path).unwrap();
            let got = if name.ends_with(".zst") {
                zstd::decode_all(&got[..]).unwrap()
            } else {
                got
            };
            assert_eq!(got, want, "{name}");
        }
        // Dropped unfinished: the thread ends and nothing is left behind.
        let path = dir.path().join("dropped.jsonl");
        let mut f = AtomicFile::create(&path, true).unwrap();
        f.hash_contents().unwrap();
        f.write_all(&want).unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// Bytes written through a small window (so that it steps, syncs and drops many
    /// times) come out whole and in order, also after what the file already held.
    #[test]
    fn streamed_file_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"kept\n").unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let fd = file.as_raw_fd();
        let mut w =
            BufWriter::with_capacity(10_000, Streamed::with_window(file, fd, 64 << 10, 256 << 10));
        let mut want = b"kept\n".to_vec();
        let mut n = 0u32;
        while want.len() < 3 << 20 {
            let piece = format!("line {n} {}\n", "x".repeat((n as usize * 7919) % 3000));
            w.write_all(piece.as_bytes()).unwrap();
            want.extend_from_slice(piece.as_bytes());
            n += 1;
        }
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .unwrap()
            .into_inner();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
