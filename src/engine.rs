//! The ordered parallel line pipeline that every command runs on.
//!
//! ```text
//!  reader thread ──chunks──▶ N workers: map(&Chunk) -> T ──▶ this thread: consume(Chunk, T)
//!        ▲                                                         │ (in input order)
//!        └──────────────────── permits (bounded in-flight) ◀───────┘
//! ```
//! The reader cuts the input into line-aligned chunks ([`crate::io::input`]); workers
//! turn each chunk into a command-specific outcome in parallel; the calling thread
//! consumes outcomes strictly in input order (the single writer), so output is the same
//! whatever the thread count. A fixed number of permits bounds the chunks in flight,
//! so memory stays flat even when one chunk is slow. The consumer may stop the run
//! early ([`Flow::Stop`]); an error anywhere stops it too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};

use crate::error::{Error, Result};
use crate::io::input::{Chunk, OpenInput};

/// A run's stop flag, owned by whoever started the run (the binary's Ctrl-C / SIGTERM
/// handler, a server's job): the pipeline checks it between chunks and abandons the
/// run (outputs uncommitted, so nothing half-written stays). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every run holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag, for code that polls an `AtomicBool` (tokenizer downloads).
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }

    /// The flag itself (for a signal handler, which can only store into an atomic).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// Whether the consumer wants more input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Longest line kept whole when reading a stream; longer ones are cut (and should be
    /// rejected by the command as too long).
    pub max_line: usize,
    /// Draw a progress bar on stderr (only when stderr is a terminal). The CLI sets it
    /// from `--quiet`, which also silences the echo of rejected lines.
    pub progress: bool,
    /// Stops the run when set.
    pub cancel: Cancel,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: default_threads(),
            max_line: 256 << 20,
            progress: false,
            cancel: Cancel::new(),
        }
    }
}

/// The number of worker threads: `BATCHLINE_THREADS` or the available cores.
pub fn default_threads() -> usize {
    std::env::var("BATCHLINE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// What the pipeline saw: bytes and lines consumed, and whether it stopped early.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub bytes: u64,
    pub lines: u64,
    pub stopped_early: bool,
    pub elapsed: Duration,
}

type Message<T> = (u64, Result<(Chunk, T)>);

/// Runs `map` on every chunk of `input` in parallel and `consume` on the outcomes in
/// input order. Returns when the input is exhausted, `consume` says stop, or an error
/// occurs (the first error in input order wins).
pub fn run<T, M, C>(
    input: OpenInput,
    cfg: &EngineConfig,
    map: M,
    mut consume: C,
) -> Result<RunStats>
where
    T: Send,
    M: Fn(&Chunk) -> T + Sync,
    C: FnMut(Chunk, T) -> Result<Flow>,
{
    let started = Instant::now();
    let threads = cfg.threads.max(1);
    let progress = make_progress(cfg.progress, input.known_len());
    let mapped = input.mapped();
    let mut chunks = input.into_chunks(cfg.max_line);

    let in_flight = threads * 2 + 2;
    let (permit_tx, permit_rx) = bounded::<()>(in_flight);
    for _ in 0..in_flight {
        permit_tx.send(()).expect("permit channel open");
    }
    let (chunk_tx, chunk_rx) = bounded::<(u64, Result<Chunk>)>(in_flight);
    // The reader is detached: a read blocked on stdin must not keep us from returning.
    std::thread::spawn(move || {
        let mut index = 0u64;
        while permit_rx.recv().is_ok() {
            let Some(item) = chunks.next() else { break };
            let failed = item.is_err();
            if chunk_tx.send((index, item)).is_err() || failed {
                break;
            }
            index += 1;
        }
    });

    let (result_tx, result_rx) = unbounded::<Message<T>>();
    // Dropped by the consumer when it returns: tells idle workers to quit even while the
    // reader is blocked on a read that will never finish (stdin after Ctrl-C).
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let map = &map;
    let consume = &mut consume;
    let stats = std::thread::scope(|scope| {
        for _ in 0..threads {
            let chunk_rx = chunk_rx.clone();
            let result_tx = result_tx.clone();
            let stop_rx = stop_rx.clone();
            scope.spawn(move || loop {
                let (index, item) = crossbeam_channel::select! {
                    recv(chunk_rx) -> msg => match msg {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                    recv(stop_rx) -> _ => break,
                };
                {
                    let out = item.map(|chunk| {
                        let t = map(&chunk);
                        (chunk, t)
                    });
                    if result_tx.send((index, out)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        drop(chunk_rx);
        // Owns the permit sender and result receiver: returning drops them, which
        // stops the reader and the workers.
        let stats = consume_in_order(
            result_rx,
            permit_tx,
            consume,
            progress.as_ref(),
            &cfg.cancel,
        );
        drop(stop_tx);
        stats
    });
    // A mapped file that shrank while it was read may have shown zeros for its lost
    // pages: that, not whatever the zeros looked like, is the error to report, and it
    // must be found before any output is committed.
    if let Some(m) = &mapped {
        m.check_intact()?;
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let mut stats = stats?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

fn consume_in_order<T, C>(
    results: crossbeam_channel::Receiver<Message<T>>,
    permits: crossbeam_channel::Sender<()>,
    consume: &mut C,
    progress: Option<&indicatif::ProgressBar>,
    cancel: &Cancel,
) -> Result<RunStats>
where
    C: FnMut(Chunk, T) -> Result<Flow>,
{
    let mut stats = RunStats::default();
    let mut pending: BTreeMap<u64, Result<(Chunk, T)>> = BTreeMap::new();
    let mut next = 0u64;
    loop {
        // Wake up now and then so that Ctrl-C is honoured even while stdin is idle.
        let (index, item) = match results.recv_timeout(Duration::from_millis(100)) {
            Ok(msg) => msg,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() {
                    return Err(Error::Interrupted);
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        pending.insert(index, item);
        while let Some(item) = pending.remove(&next) {
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            let (chunk, t) = item?;
            chunk.check_intact()?;
            let consumed = chunk.len() as u64
                + chunk
                    .oversize_len
                    .map_or(0, |n| n.saturating_sub(chunk.len() as u64));
            stats.bytes += consumed;
            stats.lines += chunk.line_count;
            if let Some(p) = progress {
                p.inc(consumed);
            }
            let mapped = chunk.mapped_range();
            let flow = consume(chunk, t)?;
            if let Some((map, range)) = mapped {
                crate::io::input::release_pages(&map, range);
            }
            next += 1;
            if flow == Flow::Stop {
                stats.stopped_early = true;
                return Ok(stats);
            }
            let _ = permits.send(());
        }
    }
    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    Ok(stats)
}

fn make_progress(wanted: bool, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    crate::report::progress_bar(
        wanted,
        total,
        "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_bar} {eta}",
        None,
    )
}

/// Output buffers handed back by the writer, so that workers do not fault in fresh
/// memory for every chunk.
#[derive(Default)]
pub struct BufferPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    /// An empty buffer with at least `capacity` bytes reserved, recycled when possible.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .map(|mut p| p.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        v.clear();
        v.reserve(capacity);
        v
    }

    /// Hands a buffer back for reuse (up to 64 are kept).
    pub fn give(&self, v: Vec<u8>) {
        if v.capacity() > 0 {
            if let Ok(mut p) = self.0.lock() {
                if p.len() < 64 {
                    p.push(v);
                }
            }
        }
    }
}
