//! `batchline shard`: split request files into Batch API input files within limits.
//!
//! Every line is checked as a request ([`crate::batch::parse_request`]); good lines are
//! grouped by (endpoint, model) and copied byte for byte, in input order, into files of
//! at most `max_requests` lines, `max_bytes` bytes, `max_tokens` prompt tokens and (for
//! embeddings) `max_embedding_inputs` inputs. A later duplicate of a custom_id is
//! rejected, the first stays. All shards are written to hidden temporary files and
//! renamed into place only when the whole input was read without a fatal error.
//!
//! The commit protocol keeps one promise at every instant, a SIGKILL included: a
//! directory with a `manifest.json` is complete. So an old manifest is removed before
//! the first new shard is renamed over an old one, the shards are renamed, stale ones
//! removed, and the new manifest is written last. If that last write fails, the shards
//! just renamed are removed again (and the directory, when this run created it). A
//! hidden journal ([`JOURNAL_NAME`]) written before the old manifest goes names every
//! file the commit may leave, so that after a kill at any step rerunning the same
//! command removes the old run's leftovers and completes (tested with SIGKILL at every
//! step through a debug-build hook, see `Pause`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::batch::manifest::{Manifest, ManifestLimits, ShardFile, ShardTotals};

use super::{check_accounting, CommonOptions, ErrorMode, Outcome, RejectRoute, Summary};
use crate::batch::ids::{duplicate_reason, id_key, SeenIds};
use crate::batch::manifest::MANIFEST_NAME;
use crate::batch::request::{custom_id_of_line, custom_id_warning, GroupKey};
use crate::batch::{limits, parse_request, tokens, Endpoint};
use crate::engine::{self, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::io::output::{
    prepare_out_dir, safe_file_name, sync_dir, unique_name, AtomicFile, OutputSpec, PendingFile,
};
use crate::io::paths::PathClaims;
use crate::io::rejects::{self, Reject, RejectSink};

/// Reason codes of shard's own rejects (with the shared ones of [`rejects::reason`]).
pub const INVALID_REQUEST: &str = "invalid_request";
pub const TOO_MANY_TOKENS: &str = "too_many_tokens";
pub const TOO_MANY_INPUTS: &str = "too_many_inputs";
use crate::report::{human_bytes, Throughput};

/// The default rejects file in the output directory. Not `*.jsonl`, so that it cannot
/// be taken for a shard by anything that globs the directory.
pub const DEFAULT_REJECTS: &str = "rejects.ndjson";

/// Everything `shard` needs to know.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub input: InputSpec,
    /// Where shards go; may be `None` only with `check`.
    pub out_dir: Option<PathBuf>,
    pub max_requests: u64,
    pub max_bytes: u64,
    /// Cap on prompt tokens per file (counted with the model's OpenAI encoding).
    pub max_tokens: Option<u64>,
    /// Cap on embedding inputs per embeddings file.
    pub max_embedding_inputs: u64,
    /// Validate and print the plan; write nothing.
    pub check: bool,
    /// Write into a directory that already holds files.
    pub force: bool,
    pub common: CommonOptions,
}

impl ShardConfig {
    pub fn new(input: InputSpec, out_dir: Option<PathBuf>) -> ShardConfig {
        ShardConfig {
            input,
            out_dir,
            max_requests: limits::MAX_REQUESTS,
            max_bytes: limits::MAX_BYTES,
            max_tokens: None,
            max_embedding_inputs: limits::MAX_EMBEDDING_INPUTS,
            check: false,
            force: false,
            common: CommonOptions::default(),
        }
    }
}

/// What `run` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ShardSummary {
    pub command: &'static str,
    pub input: String,
    pub out_dir: Option<String>,
    pub check: bool,
    #[serde(flatten)]
    pub totals: ShardTotals,
    pub warning_kinds: BTreeMap<&'static str, u64>,
    pub rejects_file: Option<String>,
    pub throughput: Throughput,
    pub shards: Vec<ShardFile>,
    #[serde(skip)]
    pub outcome: Outcome,
}

/// A good line's facts, found by a worker.
struct GoodLine {
    start: usize,
    end: usize,
    group: u32,
    custom_id: Box<str>,
    id_hash: u128,
    tokens: u64,
    inputs: u64,
    warning: Option<&'static str>,
}

enum Verdict {
    Blank,
    Good(GoodLine),
    Bad {
        line: u64,
        offset: u64,
        start: usize,
        end: usize,
        cut: bool,
        /// The reason code and message.
        reason: &'static str,
        message: String,
        custom_id: Option<String>,
    },
}

/// A worker's outcome for one chunk: its verdicts and the (endpoint, model) keys they
/// point into.
struct ChunkVerdicts {
    keys: Vec<GroupKey>,
    verdicts: Vec<(u64, u64, Verdict)>,
}

fn check_chunk(chunk: &Chunk, cfg: &ShardConfig) -> ChunkVerdicts {
    let base = chunk.bytes.as_ptr() as usize;
    let mut out = ChunkVerdicts {
        keys: Vec::new(),
        verdicts: Vec::with_capacity(chunk.line_count as usize),
    };
    for line in chunk.lines() {
        let start = line.bytes.as_ptr() as usize - base;
        let end = start + line.bytes.len();
        let bad = |reason: &'static str, message: String, custom_id: Option<String>| Verdict::Bad {
            line: line.number,
            offset: line.offset,
            start,
            end,
            cut: line.is_cut(),
            reason,
            message,
            custom_id,
        };
        if line.is_blank() {
            out.verdicts
                .push((line.number, line.offset, Verdict::Blank));
            continue;
        }
        if line.len + 1 > cfg.max_bytes {
            // A request's bytes in a shard include its newline.
            let reason = format!(
                "{} (--max-bytes)",
                crate::io::input::too_long(line.len + 1, cfg.max_bytes)
            );
            out.verdicts.push((
                line.number,
                line.offset,
                bad(rejects::reason::LINE_TOO_LONG, reason, None),
            ));
            continue;
        }
        let text = match line.text() {
            Ok(t) => t,
            Err(reason) => {
                out.verdicts.push((
                    line.number,
                    line.offset,
                    bad(rejects::reason::INVALID_UTF8, reason, None),
                ));
                continue;
            }
        };
        let verdict = match parse_request(text, cfg.max_tokens.is_some()) {
            Err(reason) => {
                // A syntax error or a duplicate key is `invalid_json`, as in every
                // command.
                let code = rejects::code_of(&reason, INVALID_REQUEST);
                bad(code, reason, custom_id_of_line(text))
            }
            Ok(req) => {
                let tokens = if cfg.max_tokens.is_some() {
                    tokens::prompt_tokens(&req)
                } else {
                    0
                };
                match cfg.max_tokens {
                    Some(max) if tokens > max => bad(
                        TOO_MANY_TOKENS,
                        format!("request has {tokens} prompt tokens, over --max-tokens {max}"),
                        Some(req.custom_id.into_owned()),
                    ),
                    _ if req.endpoint == Endpoint::Embeddings
                        && req.inputs > cfg.max_embedding_inputs =>
                    {
                        bad(
                            TOO_MANY_INPUTS,
                            format!(
                                "request has {} embedding inputs, over --max-embedding-inputs {}",
                                req.inputs, cfg.max_embedding_inputs
                            ),
                            Some(req.custom_id.into_owned()),
                        )
                    }
                    _ => {
                        let group = match out.keys.iter().position(|k| req.is_in(k)) {
                            Some(i) => i,
                            None => {
                                out.keys.push(req.group_key());
                                out.keys.len() - 1
                            }
                        };
                        let inputs = if req.endpoint == Endpoint::Embeddings {
                            req.inputs
                        } else {
                            0
                        };
                        Verdict::Good(GoodLine {
                            start,
                            end,
                            group: group as u32,
                            id_hash: id_key(&req.custom_id),
                            warning: custom_id_warning(&req.custom_id),
                            custom_id: req.custom_id.into(),
                            tokens,
                            inputs,
                        })
                    }
                }
            }
        };
        out.verdicts.push((line.number, line.offset, verdict));
    }
    out
}

/// A shard being filled.
struct OpenShard {
    file: Option<AtomicFile>,
    meta: ShardFile,
}

struct Group {
    endpoint: Endpoint,
    /// The exact url string of its lines.
    url: String,
    model: String,
    base_name: String,
    next_index: u32,
    open: Option<OpenShard>,
}

/// The single writer: restores order, detects duplicates, fills shards.
struct Writer<'a> {
    cfg: &'a ShardConfig,
    groups: Vec<Group>,
    group_index: HashMap<GroupKey, usize>,
    used_names: std::collections::HashSet<String>,
    seen: SeenIds,
    /// The run's inputs and outputs: every new shard is claimed here, so that none
    /// can replace the input or the rejects file.
    claims: PathClaims,
    /// Closed shards with their group (creation order) for a stable manifest order.
    /// Each closed shard is flushed and fsynced on its own thread, so that the disk
    /// works while the next shard is filled; all are joined before any rename.
    finished: Vec<(
        usize,
        ShardFile,
        Option<std::thread::JoinHandle<Result<(PendingFile, String)>>>,
    )>,
    totals: ShardTotals,
    warning_kinds: BTreeMap<&'static str, u64>,
    rejects: RejectRoute,
}

impl Writer<'_> {
    fn consume(&mut self, chunk: Chunk, verdicts: ChunkVerdicts) -> Result<Flow> {
        let local: Vec<usize> = verdicts
            .keys
            .into_iter()
            .map(|k| self.group_for(k))
            .collect();
        for (number, offset, verdict) in verdicts.verdicts {
            self.totals.lines += 1;
            match verdict {
                Verdict::Blank => self.totals.blank += 1,
                Verdict::Bad {
                    line,
                    offset,
                    start,
                    end,
                    cut,
                    reason,
                    message,
                    custom_id,
                } => {
                    self.reject(
                        Reject::new(line, offset, reason, message, &chunk.bytes[start..end], cut)
                            .with_custom_id(custom_id),
                    )?;
                }
                Verdict::Good(good) => {
                    if let Some(first) = self.seen.first(good.id_hash) {
                        self.totals.duplicates += 1;
                        let reason = duplicate_reason(&good.custom_id, first);
                        let r = Reject::new(
                            number,
                            offset,
                            rejects::reason::DUPLICATE_CUSTOM_ID,
                            reason,
                            &chunk.bytes[good.start..good.end],
                            false,
                        )
                        .with_custom_id(Some(good.custom_id.into()));
                        self.reject(r)?;
                        continue;
                    }
                    self.seen.insert(good.id_hash, number);
                    if let Some(w) = good.warning {
                        self.totals.warnings += 1;
                        *self.warning_kinds.entry(w).or_default() += 1;
                    }
                    let group = local[good.group as usize];
                    self.append(group, &chunk.bytes[good.start..good.end], &good)?;
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn reject(&mut self, r: Reject) -> Result<()> {
        self.rejects.route(r)?;
        self.totals.rejected += 1;
        Ok(())
    }

    fn group_for(&mut self, key: GroupKey) -> usize {
        if let Some(&g) = self.group_index.get(&key) {
            return g;
        }
        let GroupKey {
            endpoint,
            url,
            model,
        } = key.clone();
        let base = unique_name(
            &mut self.used_names,
            &format!("{}.{}", endpoint.short_name(), safe_file_name(&model)),
            &format!("{url}\n{model}"),
            "",
            |_| false,
        );
        self.groups.push(Group {
            endpoint,
            url,
            model: model.clone(),
            base_name: base,
            next_index: 0,
            open: None,
        });
        self.group_index.insert(key, self.groups.len() - 1);
        self.groups.len() - 1
    }

    fn append(&mut self, g: usize, bytes: &[u8], good: &GoodLine) -> Result<()> {
        let cfg = self.cfg;
        let line_bytes = bytes.len() as u64 + 1;
        let full = match &self.groups[g].open {
            None => true,
            Some(s) => {
                let m = &s.meta;
                m.requests + 1 > cfg.max_requests
                    || m.bytes + line_bytes > cfg.max_bytes
                    || cfg
                        .max_tokens
                        .is_some_and(|max| m.tokens.unwrap_or(0) + good.tokens > max)
                    || (self.groups[g].endpoint == Endpoint::Embeddings
                        && m.embedding_inputs.unwrap_or(0) + good.inputs > cfg.max_embedding_inputs)
            }
        };
        if full {
            self.close(g)?;
            let group = &mut self.groups[g];
            let name = format!("{}.{:04}.jsonl", group.base_name, group.next_index);
            group.next_index += 1;
            let file = match (&cfg.out_dir, cfg.check) {
                (Some(dir), false) => {
                    let path = dir.join(&name);
                    self.claims.output_path(&path)?;
                    let mut f = AtomicFile::create(&path, cfg.common.sync)?;
                    f.hash_contents()?;
                    Some(f)
                }
                _ => None,
            };
            group.open = Some(OpenShard {
                file,
                meta: ShardFile {
                    name,
                    endpoint: group.url.clone(),
                    model: group.model.clone(),
                    requests: 0,
                    bytes: 0,
                    tokens: cfg.max_tokens.map(|_| 0),
                    embedding_inputs: (group.endpoint == Endpoint::Embeddings).then_some(0),
                    sha256: None,
                    first_custom_id: good.custom_id.to_string(),
                    last_custom_id: String::new(),
                },
            });
        }
        let shard = self.groups[g].open.as_mut().expect("shard open");
        if let Some(f) = shard.file.as_mut() {
            f.write_all(bytes)?;
            f.write_all(b"\n")?;
        }
        let m = &mut shard.meta;
        m.requests += 1;
        m.bytes += line_bytes;
        if let Some(t) = m.tokens.as_mut() {
            *t += good.tokens;
        }
        if let Some(i) = m.embedding_inputs.as_mut() {
            *i += good.inputs;
        }
        m.last_custom_id.clear();
        m.last_custom_id.push_str(&good.custom_id);
        Ok(())
    }

    /// Finishes the group's open shard (flushed and synced, not yet renamed).
    fn close(&mut self, g: usize) -> Result<()> {
        if let Some(shard) = self.groups[g].open.take() {
            let meta = shard.meta;
            let pending = match shard.file {
                Some(f) => {
                    // Flushed and fsynced off the writer thread, while the next shard
                    // fills; the sha256 was computed while writing.
                    Some(std::thread::spawn(move || {
                        let pending = f.finish_pending()?;
                        let sha = pending.sha256_hex().unwrap_or_default().to_string();
                        Ok((pending, sha))
                    }))
                }
                None => None,
            };
            self.totals.files += 1;
            self.totals.requests += meta.requests;
            self.totals.bytes += meta.bytes;
            if let Some(t) = meta.tokens {
                *self.totals.tokens.get_or_insert(0) += t;
            }
            self.finished.push((g, meta, pending));
        }
        Ok(())
    }
}

/// Runs `shard`. On failure nothing is left behind: no shard, no temp file, and not the
/// output directory either when this run created it.
pub fn run(cfg: &ShardConfig) -> Result<ShardSummary> {
    let mut created = false;
    let result = run_inner(cfg, &mut created);
    if let (Err(_), true, Some(dir)) = (&result, created, &cfg.out_dir) {
        // remove_dir only removes an empty directory.
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn run_inner(cfg: &ShardConfig, created: &mut bool) -> Result<ShardSummary> {
    let common = &cfg.common;
    let over = [
        ("--max-requests", cfg.max_requests, limits::MAX_REQUESTS),
        ("--max-bytes", cfg.max_bytes, limits::MAX_BYTES),
        (
            "--max-embedding-inputs",
            cfg.max_embedding_inputs,
            limits::MAX_EMBEDDING_INPUTS,
        ),
    ];
    for (flag, value, limit) in over {
        if value > limit {
            common.note(&format!(
                "batchline: warning: {flag} {value} is above the OpenAI Batch API limit of {limit} per file"
            ));
        }
    }
    if cfg.max_requests == 0
        || cfg.max_bytes < 2
        || cfg.max_tokens == Some(0)
        || cfg.max_embedding_inputs == 0
    {
        return Err(Error::Usage("limits must be positive".into()));
    }
    if common.rejects.is_some() && common.on_error == ErrorMode::Fail {
        return Err(Error::Usage(
            "--rejects needs --on-error skip (the default, fail, stops at the first bad line)"
                .into(),
        ));
    }
    let out_dir = match (&cfg.out_dir, cfg.check) {
        (Some(d), false) => Some(d.as_path()),
        (None, false) => return Err(Error::Usage("--out-dir is needed (or --check)".into())),
        (_, true) => None,
    };
    let mut claims = PathClaims::new();
    claims.input(&cfg.input)?;
    let input = OpenInput::open(&cfg.input)?;
    // A commit that was cut short (a kill) left its journal: the files it names are
    // this command's own, so rerunning the same command needs no --force for them, and
    // they are removed unless this run writes them again.
    let journal = out_dir.map(read_journal).unwrap_or_default();
    let old_manifest = match out_dir {
        Some(dir) => {
            // A submitted job (its ledger records batches that cost money and the
            // results they map to): resharding it would orphan them.
            if dir.join(crate::job::LEDGER_NAME).exists() {
                return Err(Error::Usage(format!(
                    "{}: this directory is a submitted job ({} is there); shard into a new directory (--force never replaces a job's shards)",
                    dir.display(),
                    crate::job::LEDGER_NAME
                )));
            }
            let force = cfg.force || (!journal.is_empty() && only_own_files(dir, &journal)?);
            *created = prepare_out_dir(dir, force)?;
            Manifest::read(dir).ok().flatten()
        }
        None => None,
    };
    // Skipped lines go to `--rejects`, by default `OUT_DIR/rejects.ndjson`.
    let default_rejects = out_dir.map(|d| OutputSpec::Path(d.join(DEFAULT_REJECTS)));
    let rejects_path = match (&common.rejects, common.on_error, out_dir) {
        (_, ErrorMode::Fail, _) | (_, _, None) => None,
        (Some(p), ErrorMode::Skip, Some(_)) => Some(p.clone()),
        (None, ErrorMode::Skip, Some(_)) => default_rejects.clone(),
    };
    if let Some(dir) = out_dir {
        claims.output_path(&dir.join(MANIFEST_NAME))?;
    }
    if let Some(p) = &rejects_path {
        claims.output(p)?;
    }
    let rejects = RejectSink::create(rejects_path.as_ref(), common.sync)?;
    let mut engine_cfg = common.engine.clone();
    // A line over --max-bytes is rejected anyway, so it need not be held whole; but up
    // to 1 MiB of it is kept for the rejects file, from files and streams alike.
    engine_cfg.max_line = usize::try_from(cfg.max_bytes)
        .unwrap_or(usize::MAX)
        .max(1 << 20)
        .min(engine_cfg.max_line.max(1 << 20));
    let mut writer = Writer {
        cfg,
        groups: Vec::new(),
        group_index: HashMap::new(),
        used_names: Default::default(),
        seen: SeenIds::default(),
        claims,
        finished: Vec::new(),
        totals: ShardTotals::default(),
        warning_kinds: BTreeMap::new(),
        rejects: RejectRoute::new(input.name().to_string(), common, rejects),
    };
    let stats = engine::run(
        input,
        &engine_cfg,
        |chunk| check_chunk(chunk, cfg),
        |chunk, v| writer.consume(chunk, v),
    );
    let closed = stats.and_then(|stats| {
        for g in 0..writer.groups.len() {
            writer.close(g)?;
        }
        Ok(stats)
    });
    let stats = match closed {
        Ok(stats) => stats,
        Err(e) => {
            // Let the flushing threads finish, so that their temp files are removed
            // before we exit (dropping a PendingFile deletes it).
            for (_, _, h) in writer.finished.drain(..) {
                if let Some(h) = h {
                    let _ = h.join();
                }
            }
            return Err(e);
        }
    };
    let Writer {
        mut finished,
        mut totals,
        warning_kinds,
        rejects,
        ..
    } = writer;
    // Group creation order, then file counter (names sort that way within a group).
    finished.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    if cfg.max_tokens.is_some() && totals.tokens.is_none() {
        totals.tokens = Some(0);
    }
    check_accounting(
        "shard",
        totals.lines,
        &[
            ("blank", totals.blank),
            ("requests", totals.requests),
            ("rejected", totals.rejected),
        ],
    )?;
    // Every shard must be complete on disk before the first one is renamed.
    let mut files = Vec::with_capacity(finished.len());
    let mut ready = Vec::with_capacity(finished.len());
    for (_, mut meta, pending) in finished {
        if let Some(h) = pending {
            let (p, sha) = h
                .join()
                .map_err(|_| Error::Other("a shard writer thread panicked".into()))??;
            meta.sha256 = Some(sha);
            ready.push(p);
        }
        files.push(meta);
    }
    let rejects_pending = rejects.finish_pending()?;
    if let Some(dir) = out_dir {
        let manifest = Manifest {
            version: 1,
            input: cfg.input.display_name(),
            limits: ManifestLimits {
                max_requests: cfg.max_requests,
                max_bytes: cfg.max_bytes,
                max_tokens: cfg.max_tokens,
                max_embedding_inputs: cfg.max_embedding_inputs,
            },
            files: files.clone(),
            totals: totals.clone(),
        };
        let mut stale: Vec<PathBuf> = old_manifest.map(|m| m.file_paths(dir)).unwrap_or_default();
        stale.extend(journal.iter().map(|n| dir.join(n)));
        // A default rejects file of an earlier run goes too when this run writes none.
        stale.extend(
            default_rejects
                .filter(|d| rejects_path.as_ref() != Some(d))
                .and_then(|d| d.path().map(Path::to_path_buf)),
        );
        commit_shards(
            dir,
            &manifest,
            ready,
            rejects_pending,
            &stale,
            common.sync,
            *created,
            &common.notes,
        )?;
    }
    let outcome = Outcome::from_rejected(totals.rejected);
    Ok(ShardSummary {
        command: "shard",
        input: cfg.input.display_name(),
        out_dir: out_dir.map(|d| d.display().to_string()),
        check: cfg.check,
        totals,
        warning_kinds,
        rejects_file: rejects_path.map(|p| p.display_name()),
        throughput: Throughput::new(stats.bytes, stats.elapsed),
        shards: files,
        outcome,
    })
}

/// The commit journal: a hidden file, written before the old manifest is removed and
/// removed after the new one is in place, naming every file the commit may leave in
/// the directory (the old run's shards and default rejects file, the new shards). It is
/// not a manifest: a directory that holds it without `manifest.json` is incomplete.
pub const JOURNAL_NAME: &str = ".batchline-shard-commit.json";

#[derive(Serialize, serde::Deserialize)]
struct Journal {
    files: Vec<String>,
}

/// The file names of a journal left by a commit that was cut short (none: empty).
fn read_journal(dir: &Path) -> Vec<String> {
    std::fs::read(dir.join(JOURNAL_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
        .map(|j| {
            // Plain names in the directory only.
            j.files
                .into_iter()
                .filter(|n| Path::new(n).file_name() == Some(std::ffi::OsStr::new(n)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every visible file of `dir` is the manifest or named in the journal.
fn only_own_files(dir: &Path, journal: &[String]) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(dir, e)),
    };
    Ok(entries.filter_map(|e| e.ok()).all(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with('.') || n == MANIFEST_NAME || journal.contains(&n)
    }))
}

/// Removes the hidden temp files (`.NAME.XXXXXX.tmp`) of `names` that a killed run
/// left in `dir`.
fn sweep_temp_files(dir: &Path, names: &std::collections::BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let n = e.file_name().to_string_lossy().into_owned();
        let base = n
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .map(|(base, _)| base);
        if base.is_some_and(|b| names.contains(b)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A test hook, read only in debug builds (release builds never pause):
/// `BATCHLINE_TEST_PAUSE_AT=commit:N` stops the commit for good at its step N (0: the
/// new manifest is written to its temp file; then each journal write, removal and
/// rename), after a note `test pause at commit:N`, so that a test can SIGKILL it there.
struct Pause<'a> {
    at: Option<u32>,
    step: u32,
    notes: &'a super::Notes,
}

impl<'a> Pause<'a> {
    fn from_env(notes: &'a super::Notes) -> Pause<'a> {
        #[cfg(debug_assertions)]
        let at = std::env::var("BATCHLINE_TEST_PAUSE_AT")
            .ok()
            .and_then(|v| v.strip_prefix("commit:")?.parse().ok());
        #[cfg(not(debug_assertions))]
        let at = None;
        Pause { at, step: 0, notes }
    }

    fn step(&mut self) {
        if self.at == Some(self.step) {
            self.notes
                .note(&format!("batchline: test pause at commit:{}", self.step));
            loop {
                std::thread::park();
            }
        }
        self.step += 1;
    }
}

/// The commit protocol (see the module docs): the journal is written, the old manifest
/// goes, then the shards and the rejects file are renamed into place, stale files of
/// the old manifest (and of a journal left by a killed run) are removed, the new
/// manifest is written last and the journal removed. A failure before the manifest is
/// in place removes the shards renamed so far: the directory then holds no manifest,
/// which says truthfully that it is not complete; a kill leaves the journal, and
/// rerunning the command finishes the job.
#[allow(clippy::too_many_arguments)]
fn commit_shards(
    dir: &Path,
    manifest: &Manifest,
    shards: Vec<PendingFile>,
    rejects: Option<PendingFile>,
    stale: &[PathBuf],
    sync: bool,
    created: bool,
    notes: &super::Notes,
) -> Result<()> {
    let mut pause = Pause::from_env(notes);
    let manifest_path = dir.join(MANIFEST_NAME);
    let journal_path = dir.join(JOURNAL_NAME);
    let mut m = AtomicFile::create(&manifest_path, sync)?;
    m.write_all(&manifest.to_bytes())?;
    let manifest_pending = m.finish_pending()?;
    pause.step();
    let in_dir = |p: &Path| -> Option<String> {
        (p.parent() == Some(dir)).then(|| p.file_name()?.to_str().map(str::to_string))?
    };
    let mut names: std::collections::BTreeSet<String> = stale
        .iter()
        .map(PathBuf::as_path)
        .chain(shards.iter().map(PendingFile::dest))
        .chain(rejects.iter().map(PendingFile::dest))
        .filter_map(in_dir)
        .collect();
    let mut j = AtomicFile::create(&journal_path, sync)?;
    let journal = Journal {
        files: names.iter().cloned().collect(),
    };
    j.write_all(&serde_json::to_vec(&journal).expect("journal serialises"))?;
    j.finish_pending()?.commit()?;
    pause.step();
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(&manifest_path, e))
        }
        _ => {}
    }
    if sync && !created {
        sync_dir(dir)?;
    }
    pause.step();
    let mut placed: Vec<PathBuf> = Vec::with_capacity(shards.len());
    let renamed = || -> Result<()> {
        for p in shards {
            let dest = p.dest().to_path_buf();
            p.commit()?;
            placed.push(dest);
            pause.step();
        }
        let keep: std::collections::HashSet<&Path> = placed.iter().map(PathBuf::as_path).collect();
        for old in stale.iter().filter(|p| !keep.contains(p.as_path())) {
            match std::fs::remove_file(old) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(old, e))
                }
                _ => {}
            }
            pause.step();
        }
        if let Some(r) = rejects {
            r.commit()?;
            pause.step();
        }
        if sync {
            sync_dir(dir)?;
        }
        manifest_pending.commit()?;
        pause.step();
        if sync {
            sync_dir(dir)?;
        }
        Ok(())
    };
    let result = renamed();
    if result.is_err() {
        for p in &placed {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_file(&journal_path);
        }
        return result;
    }
    match std::fs::remove_file(&journal_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(&journal_path, e))
        }
        _ => {}
    }
    pause.step();
    names.insert(MANIFEST_NAME.to_string());
    names.insert(JOURNAL_NAME.to_string());
    sweep_temp_files(dir, &names);
    Ok(())
}

impl Summary for ShardSummary {
    fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "shard{}: {} lines: {} requests in {} files ({}), {} rejected ({} duplicates), {} blank",
            if self.check { " --check" } else { "" },
            t.lines,
            t.requests,
            t.files,
            human_bytes(t.bytes),
            t.rejected,
            t.duplicates,
            t.blank
        );
        if let Some(tok) = t.tokens {
            s.push_str(&format!(", {tok} prompt tokens"));
        }
        if t.warnings > 0 {
            s.push_str(&format!(", {} custom_id warnings", t.warnings));
        }
        s.push_str(&format!("; {}", self.throughput.human()));
        s
    }

    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        false
    }

    /// `--check` prints its plan: one line per file.
    fn stdout_text(&self) -> Option<String> {
        self.check.then(|| self.plan())
    }
}

impl ShardSummary {
    /// The plan printed by `--check`: one line per file.
    pub fn plan(&self) -> String {
        let mut s = String::new();
        for f in &self.shards {
            s.push_str(&format!(
                "{}\t{}\t{}\t{} requests\t{} bytes",
                f.name, f.endpoint, f.model, f.requests, f.bytes
            ));
            if let Some(t) = f.tokens {
                s.push_str(&format!("\t{t} tokens"));
            }
            s.push('\n');
        }
        s
    }
}
