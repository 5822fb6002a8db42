//! What the lifecycle commands (`submit`, `status`, `wait`, `cancel`) share: a
//! [`Session`] on a job directory (its lock, its ledger and an API client), the
//! two-phase submission of one shard, the refresh of batch statuses, and the
//! enqueued-token budget.
//!
//! Never twice: every call that creates something is preceded by a durable record of
//! the intent (`uploading`, `creating`) and followed by one of the result (`uploaded`
//! with its file id, `submitted` with its batch id). A shard found in `creating` without a batch id
//! (a crash, or an answer that never came) is looked up among the account's batches
//! by its metadata before any new create.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::{ApiErrorKind, Batch, Client, CreateBatch, Provider};
use crate::batch::manifest::Manifest;
use crate::batch::{parse_request, tokens};
use crate::commands::CommonOptions;
use crate::error::{Error, Result};
use crate::job::ledger::now;
use crate::job::{
    BatchSnapshot, JobLock, JobSettings, Ledger, ProviderInfo, Round, ShardEntry, ShardState,
};

/// Metadata keys batchline sets on every batch it creates.
pub const META_JOB: &str = "batchline_job";
pub const META_ROUND: &str = "batchline_round";
pub const META_SHARD: &str = "batchline_shard";
pub const META_SHA256: &str = "batchline_sha256";

/// After this many `token_limit_exceeded` failures a shard is given up (its batch
/// stays `failed`), so that a shard the provider will never take cannot loop forever.
pub const MAX_TOKEN_LIMIT_RETRIES: u32 = 10;

/// The ledger key holding the ids of a shard's earlier batches (failed with
/// `token_limit_exceeded` and re-queued), so that the lookup of an uncertain create
/// does not take one of them for the new one.
const PREVIOUS_BATCHES: &str = "previous_batch_ids";

/// What every lifecycle command is given.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// The job directory (a `shard` output directory).
    pub job: PathBuf,
    pub provider: Provider,
    /// Notes, fsync (`sync`), the stop token, verbosity.
    pub common: CommonOptions,
    /// Draw progress bars when stderr is a terminal.
    pub progress: bool,
}

/// One change seen by a refresh or made by a submission, for progress lines.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub round: u32,
    pub shard: String,
    pub batch_id: Option<String>,
    pub status: String,
    pub completed: u64,
    pub failed: u64,
    pub total: u64,
}

impl Change {
    pub fn line(&self) -> String {
        let round = if self.round > 0 {
            format!("round {} ", self.round)
        } else {
            String::new()
        };
        format!(
            "{round}{}: {} {} ({}/{} done, {} failed)",
            self.shard,
            self.batch_id.as_deref().unwrap_or("-"),
            self.status,
            self.completed + self.failed,
            self.total,
            self.failed
        )
    }
}

/// A job directory opened by a lifecycle command.
pub struct Session {
    pub job: PathBuf,
    pub ledger: Ledger,
    pub client: Client,
    pub common: CommonOptions,
    /// Held for the whole command (`None`: read-only, another process holds it).
    lock: Option<JobLock>,
    /// Base of the re-queue backoff after `token_limit_exceeded` (doubles per retry).
    pub requeue_base: Duration,
    /// Shard files whose sha256 was checked against the ledger in this process.
    verified: Vec<PathBuf>,
    /// Shards uploaded again in this process because their file was gone.
    reuploaded: Vec<(u32, String)>,
}

/// Checks that `job` is a shard directory and reads its manifest.
pub fn read_manifest(job: &Path) -> Result<Manifest> {
    if !job.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such job directory (make one with `batchline shard FILE --out-dir {}`)",
            job.display(),
            job.display()
        )));
    }
    Manifest::read(job)?.ok_or_else(|| {
        Error::Usage(format!(
            "{}: not a job directory: it has no manifest.json (make one with `batchline shard FILE --out-dir {}`)",
            job.display(),
            job.display()
        ))
    })
}

/// Prompt tokens of a shard file, counted as `shard --max-tokens` counts them.
pub fn count_prompt_tokens(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut line = String::new();
    let mut n = 0u64;
    let mut total = 0u64;
    loop {
        line.clear();
        let read = r.read_line(&mut line).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            return Ok(total);
        }
        n += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let req = parse_request(text, true).map_err(|reason| Error::BadLine {
            file: path.display().to_string(),
            line: n,
            offset: 0,
            reason,
        })?;
        total += tokens::prompt_tokens(&req);
    }
}

/// The ledger's round 0 must be the manifest's shards (names and sha256): a directory
/// sharded again after its first submit would otherwise look complete and send nothing.
fn check_round_zero(job: &Path, ledger: &Ledger, manifest: &Manifest) -> Result<()> {
    let Some(round) = ledger.rounds.iter().find(|r| r.round == 0) else {
        return Ok(());
    };
    let listed: Vec<(&str, Option<&str>)> = manifest
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.sha256.as_deref()))
        .collect();
    let recorded: Vec<(&str, Option<&str>)> = round
        .shards
        .iter()
        .map(|s| (s.name.as_str(), Some(s.sha256.as_str())))
        .collect();
    if listed == recorded {
        return Ok(());
    }
    let differ = listed.iter().filter(|f| !recorded.contains(f)).count()
        + recorded.iter().filter(|r| !listed.contains(r)).count();
    Err(Error::Usage(format!(
        "{}: manifest.json does not match the job's ledger.json ({differ} shard files differ): \
         the directory was sharded again after it was submitted. The submitted job's batches \
         are recorded in ledger.json; shard new requests into a new directory (or move \
         ledger.json and results/ away to start this directory as a new job)",
        job.display()
    )))
}

/// Round 0 of a new ledger: the manifest's shards, with their prompt tokens.
pub fn round_zero(job: &Path, manifest: &Manifest) -> Result<Round> {
    let mut shards = Vec::new();
    for (f, path) in manifest.files.iter().zip(manifest.file_paths(job)) {
        let sha = f.sha256.clone().ok_or_else(|| {
            Error::Usage(format!(
                "{}: the manifest lists {} without a sha256 (a `shard --check` plan?); shard the requests for real first",
                job.display(),
                f.name
            ))
        })?;
        let tokens = match f.tokens {
            Some(t) => t,
            None => count_prompt_tokens(&path)?,
        };
        shards.push(ShardEntry::from_manifest(f, sha, tokens));
    }
    Ok(Round {
        round: 0,
        dir: ".".into(),
        shards,
        extra: Map::new(),
    })
}

/// The SHA-256 of a file, in lowercase hex, read in 1 MB blocks.
fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Human age: `42s`, `5m`, `3h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl Session {
    /// Locks the job and reads its ledger, creating it (from the manifest) when
    /// `create` and there is none. `read_only`: if another process holds the lock,
    /// go on without it and never write (for `status`).
    pub fn open(opts: &JobOptions, create: bool, read_only_if_locked: bool) -> Result<Session> {
        let job = opts.job.clone();
        let manifest = read_manifest(&job)?;
        let lock = match JobLock::acquire(&job) {
            Ok(l) => Some(l),
            Err(e)
                if read_only_if_locked && e.to_string().contains("another batchline process") =>
            {
                opts.common.note(&format!(
                    "{}: another batchline process holds this job; showing its state without writing the ledger",
                    job.display()
                ));
                None
            }
            Err(e) => return Err(e),
        };
        let provider_info = ProviderInfo {
            base_url: opts.provider.base_url.clone(),
            azure: opts.provider.azure,
        };
        let ledger = match Ledger::load(&job)? {
            Some(mut l) => {
                check_round_zero(&job, &l, &manifest)?;
                if l.provider.base_url != provider_info.base_url {
                    let sent = l.shards().any(|(_, s)| {
                        s.file_id.is_some()
                            || s.batch_id.is_some()
                            || s.state != ShardState::Pending
                    });
                    if sent {
                        return Err(Error::Usage(format!(
                            "{}: this job's files and batches are at {}, but this run points at {}; pass --base-url {} (or set OPENAI_BASE_URL)",
                            job.display(),
                            l.provider.base_url,
                            provider_info.base_url,
                            l.provider.base_url
                        )));
                    }
                    l.provider = provider_info;
                }
                l
            }
            None if create => {
                let mut l = Ledger::new(provider_info);
                l.rounds.push(round_zero(&job, &manifest)?);
                l
            }
            None => {
                return Err(Error::Usage(format!(
                "{}: nothing was submitted yet (no ledger.json); run `batchline submit {}` first",
                job.display(),
                job.display()
            )))
            }
        };
        let client = Client::new(opts.provider.clone())
            .map_err(Error::from)?
            .with_stop(opts.common.engine.cancel.flag());
        Ok(Session {
            job,
            ledger,
            client,
            common: opts.common.clone(),
            lock,
            requeue_base: Duration::from_secs(30),
            verified: Vec::new(),
            reuploaded: Vec::new(),
        })
    }

    /// Whether this session may write the ledger (it holds the lock).
    pub fn writable(&self) -> bool {
        self.lock.is_some()
    }

    /// Writes the ledger (atomically, fsynced unless `--no-sync`).
    pub fn save(&self) -> Result<()> {
        if self.lock.is_none() {
            return Ok(());
        }
        self.ledger.save(&self.job, self.common.sync)
    }

    fn settings(&self) -> JobSettings {
        self.ledger.settings.clone().unwrap_or_default()
    }

    /// Prompt tokens and requests of `model` in batches that exist (or may) and have
    /// not ended, leaving out shard (`round`, `name`).
    pub fn enqueued(&self, model: &str, skip: Option<(u32, &str)>) -> (u64, u64) {
        let mut t = 0;
        let mut r = 0;
        for (round, s) in self.ledger.shards() {
            if s.model != model || !s.is_enqueued() {
                continue;
            }
            if skip.is_some_and(|(sr, sn)| sr == round && sn == s.name) {
                continue;
            }
            t += s.prompt_tokens;
            r += s.requests;
        }
        (t, r)
    }

    /// Whether shard `s` may go now beside the job's unfinished batches: it fits the
    /// budget, or it is over the budget on its own and nothing else of its model runs
    /// (then it goes alone rather than waiting forever).
    pub fn fits(&self, round: u32, s: &ShardEntry) -> bool {
        let set = self.settings();
        let (tok, req) = self.enqueued(&s.model, Some((round, &s.name)));
        let ok = |max: Option<u64>, queued: u64, mine: u64| match max {
            None => true,
            Some(m) => queued + mine <= m || (queued == 0 && mine > m),
        };
        ok(set.max_enqueued_tokens, tok, s.prompt_tokens)
            && ok(set.max_enqueued_requests, req, s.requests)
    }

    /// Submits every shard that is due and fits the budget; marks the others queued.
    /// Returns the submissions made.
    pub fn submit_ready(&mut self) -> Result<Vec<Change>> {
        let mut made = Vec::new();
        let t = now();
        let keys: Vec<(u32, String)> = self
            .ledger
            .shards()
            .map(|(r, s)| (r, s.name.clone()))
            .collect();
        for (round, name) in keys {
            let s = self.shard(round, &name).clone();
            let candidate = matches!(
                s.state,
                ShardState::Pending
                    | ShardState::Uploading
                    | ShardState::Uploaded
                    | ShardState::Creating
            );
            if !candidate || s.queued_reason.as_deref() == Some("cancelled") {
                continue;
            }
            if s.state != ShardState::Creating {
                if s.not_before.is_some_and(|nb| nb > t) {
                    continue;
                }
                if !self.fits(round, &s) {
                    if s.queued_reason.is_none() {
                        self.shard_mut(round, &name).queued_reason = Some("token budget".into());
                        self.save()?;
                    }
                    continue;
                }
                let set = self.settings();
                if set.max_enqueued_tokens.is_some_and(|m| s.prompt_tokens > m)
                    || set.max_enqueued_requests.is_some_and(|m| s.requests > m)
                {
                    self.common.note(&format!(
                        "{name}: {} prompt tokens and {} requests, over the enqueued budget on its own; submitted alone (if the provider refuses it with token_limit_exceeded it is retried, at most {MAX_TOKEN_LIMIT_RETRIES} times)",
                        s.prompt_tokens, s.requests
                    ));
                }
            }
            self.submit_one(round, &name)?;
            let s = self.shard(round, &name);
            made.push(change_of(round, s));
        }
        Ok(made)
    }

    pub fn shard(&self, round: u32, name: &str) -> &ShardEntry {
        self.ledger
            .shards()
            .find(|(r, s)| *r == round && s.name == name)
            .map(|(_, s)| s)
            .expect("a shard of the ledger")
    }

    pub fn shard_mut(&mut self, round: u32, name: &str) -> &mut ShardEntry {
        self.ledger
            .shard_mut(round, name)
            .expect("a shard of the ledger")
    }

    fn shard_path(&self, round: u32, name: &str) -> PathBuf {
        self.ledger
            .round_dir(&self.job, round)
            .unwrap_or_else(|| self.job.clone())
            .join(Path::new(name).file_name().unwrap_or_default())
    }

    /// The batch metadata of a shard: batchline's keys, then the user's.
    fn metadata(&self, round: u32, s: &ShardEntry) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(META_JOB.into(), Value::from(self.ledger.job_id.clone()));
        m.insert(META_ROUND.into(), Value::from(round.to_string()));
        m.insert(META_SHARD.into(), Value::from(s.name.clone()));
        m.insert(META_SHA256.into(), Value::from(s.sha256.clone()));
        for (k, v) in &self.settings().metadata {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// Takes one shard from wherever it is to `submitted` (or `ended`): upload, then
    /// create, each recorded before and after.
    pub fn submit_one(&mut self, round: u32, name: &str) -> Result<()> {
        let path = self.shard_path(round, name);
        loop {
            let s = self.shard(round, name).clone();
            match s.state {
                ShardState::Pending | ShardState::Uploading => {
                    if !self.verified.contains(&path) {
                        let sha = sha256_file(&path)?;
                        if sha != s.sha256 {
                            return Err(Error::Other(format!(
                                "{}: the file changed since `shard` wrote it (sha256 {sha}, the job recorded {}); shard the requests again into a new job directory",
                                path.display(),
                                s.sha256
                            )));
                        }
                        self.verified.push(path.clone());
                    }
                    self.shard_mut(round, name).state = ShardState::Uploading;
                    self.save()?;
                    let f = self
                        .client
                        .upload_file(&path, name)
                        .map_err(|e| shard_error(name, e))?;
                    let s = self.shard_mut(round, name);
                    s.file_id = Some(f.id);
                    s.state = ShardState::Uploaded;
                    self.save()?;
                }
                ShardState::Uploaded => {
                    self.shard_mut(round, name).state = ShardState::Creating;
                    self.save()?;
                    return self.create(round, name, 0);
                }
                ShardState::Creating => {
                    // A create of an earlier run (or of this one) may have happened.
                    if let Some(b) = self.find_batch(round, name)? {
                        self.common.note(&format!(
                            "{name}: found its batch {} from an earlier run (matched by metadata); not creating another",
                            b.id
                        ));
                        self.record(round, name, &b)?;
                        return Ok(());
                    }
                    if s.file_id.is_none() {
                        self.shard_mut(round, name).state = ShardState::Pending;
                        self.save()?;
                        continue;
                    }
                    return self.create(round, name, 0);
                }
                ShardState::Submitted | ShardState::Ended => return Ok(()),
            }
        }
    }

    /// `POST /v1/batches` for a shard in state `creating`.
    fn create(&mut self, round: u32, name: &str, lost: u32) -> Result<()> {
        let s = self.shard(round, name).clone();
        let body = CreateBatch {
            input_file_id: s.file_id.clone().expect("uploaded before created"),
            endpoint: s.endpoint.clone(),
            completion_window: "24h".into(),
            metadata: self.metadata(round, &s),
        };
        match self.client.create_batch(&body) {
            Ok(b) => self.record(round, name, &b),
            Err(e) if e.kind == ApiErrorKind::Uncertain && lost < 3 => {
                self.common.note(&format!(
                    "{name}: {}; looking for the batch before creating it again",
                    e.message
                ));
                match self.find_batch(round, name)? {
                    Some(b) => self.record(round, name, &b),
                    None => self.create(round, name, lost + 1),
                }
            }
            Err(e)
                if matches!(
                    e.kind,
                    ApiErrorKind::Status(404) | ApiErrorKind::Status(400)
                ) && e.message.contains(body.input_file_id.as_str())
                    && !self
                        .reuploaded
                        .iter()
                        .any(|(r, n)| *r == round && n == name) =>
            {
                // The uploaded file is gone (deleted, or expired while the shard was
                // queued): surely no batch. Upload it again, once per run.
                self.common
                    .note(&format!("{name}: {}; uploading the shard again", e.message));
                self.reuploaded.push((round, name.to_string()));
                let sh = self.shard_mut(round, name);
                sh.state = ShardState::Pending;
                sh.file_id = None;
                self.save()?;
                self.submit_one(round, name)
            }
            Err(e) => {
                if matches!(e.kind, ApiErrorKind::Status(s) if (400..500).contains(&s)) {
                    // Refused: surely no batch. Back to `uploaded`.
                    let sh = self.shard_mut(round, name);
                    sh.state = ShardState::Uploaded;
                    self.save()?;
                }
                Err(shard_error(name, e))
            }
        }
    }

    /// The batch of an uncertain create, found among the account's batches by its
    /// metadata (newest first; batches older than the job by more than a day are not
    /// looked at).
    pub fn find_batch(&self, round: u32, name: &str) -> Result<Option<Batch>> {
        let s = self.shard(round, name);
        let previous: Vec<String> = s
            .extra
            .get(PREVIOUS_BATCHES)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let job_id = self.ledger.job_id.clone();
        let round_s = round.to_string();
        let oldest = self.ledger.created_at.saturating_sub(86_400);
        let mut found: Option<Batch> = None;
        self.client
            .for_each_batch(100, &mut |b| {
                if b.created_at.is_some_and(|c| c < oldest) {
                    return false;
                }
                if b.meta(META_JOB) == Some(&job_id)
                    && b.meta(META_ROUND) == Some(&round_s)
                    && b.meta(META_SHARD) == Some(&s.name)
                    && b.meta(META_SHA256) == Some(&s.sha256)
                    && !previous.contains(&b.id)
                {
                    found = Some(b.clone());
                    return false;
                }
                true
            })
            .map_err(|e| shard_error(name, e))?;
        Ok(found)
    }

    /// Records a batch object for a shard (after a create, a lookup or a refresh).
    fn record(&mut self, round: u32, name: &str, b: &Batch) -> Result<()> {
        let s = self.shard_mut(round, name);
        s.batch_id = Some(b.id.clone());
        s.batch = Some(BatchSnapshot::of(b));
        s.state = ShardState::Submitted;
        s.queued_reason = None;
        s.not_before = None;
        if b.is_terminal() {
            self.ended(round, name, b);
        }
        self.save()
    }

    /// A shard's batch reached a terminal status: ended, or back to the queue when the
    /// provider refused it for the enqueued-token limit.
    fn ended(&mut self, round: u32, name: &str, b: &Batch) {
        let base = self.requeue_base;
        let s = self.shard_mut(round, name);
        if b.token_limit_exceeded() && s.token_limit_retries < MAX_TOKEN_LIMIT_RETRIES {
            s.token_limit_retries += 1;
            let prev = s
                .extra
                .entry(PREVIOUS_BATCHES)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = prev {
                a.push(Value::from(b.id.clone()));
            }
            let wait = base
                .saturating_mul(1 << (s.token_limit_retries - 1).min(10))
                .min(Duration::from_secs(1800));
            s.state = ShardState::Uploaded;
            s.batch_id = None;
            s.batch = None;
            s.queued_reason = Some("token_limit_exceeded".into());
            s.not_before = Some(now() + wait.as_secs().max(1));
            let retries = s.token_limit_retries;
            self.common.note(&format!(
                "{name}: batch {} refused (token_limit_exceeded); back in the queue, retry {retries} of {MAX_TOKEN_LIMIT_RETRIES} in {}s or later",
                b.id,
                wait.as_secs().max(1)
            ));
            return;
        }
        s.state = ShardState::Ended;
        s.batch = Some(BatchSnapshot::of(b));
    }

    /// Fetches every unfinished batch of the job and records what changed.
    pub fn refresh(&mut self) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let keys: Vec<(u32, String, String)> = self
            .ledger
            .shards()
            .filter(|(_, s)| s.state == ShardState::Submitted)
            .filter_map(|(r, s)| s.batch_id.clone().map(|id| (r, s.name.clone(), id)))
            .collect();
        for (round, name, id) in keys {
            let b = self
                .client
                .retrieve_batch(&id)
                .map_err(|e| shard_error(&name, e))?;
            let before = self.shard(round, &name).batch.clone();
            let snap = BatchSnapshot::of(&b);
            if before.as_ref() != Some(&snap) {
                let s = self.shard_mut(round, &name);
                s.batch = Some(snap);
                if b.is_terminal() {
                    self.ended(round, &name, &b);
                }
                let mut c = change_of(round, self.shard(round, &name));
                // A re-queued shard shows the status of the batch that was refused.
                if c.batch_id.is_none() {
                    c.batch_id = Some(b.id.clone());
                    c.status = format!("{} (token_limit_exceeded; queued again)", b.status);
                }
                changes.push(c);
            }
        }
        if !changes.is_empty() {
            self.save()?;
        }
        Ok(changes)
    }

    /// Whether every shard of every round ended (nothing queued, nothing running).
    pub fn all_ended(&self) -> bool {
        self.ledger.shards().all(|(_, s)| {
            s.state == ShardState::Ended || s.queued_reason.as_deref() == Some("cancelled")
        })
    }
}

/// A shard's state as a [`Change`].
pub fn change_of(round: u32, s: &ShardEntry) -> Change {
    let counts = s.request_counts();
    Change {
        round,
        shard: s.name.clone(),
        batch_id: s.batch_id.clone(),
        status: s
            .status()
            .map(str::to_string)
            .unwrap_or_else(|| s.state.name().to_string()),
        completed: counts.completed,
        failed: counts.failed,
        total: if counts.total > 0 {
            counts.total
        } else {
            s.requests
        },
    }
}

fn shard_error(name: &str, e: crate::api::ApiError) -> Error {
    match e.kind {
        ApiErrorKind::Interrupted => Error::Interrupted,
        _ => Error::Other(format!("{name}: {}", e.message)),
    }
}

/// Totals over a job's shards, for summaries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub shards: u64,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub running: u64,
    pub queued: u64,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Totals {
    pub fn of(ledger: &Ledger) -> Totals {
        let mut t = Totals::default();
        for (_, s) in ledger.shards() {
            t.shards += 1;
            t.requests += s.requests;
            if let Some(b) = &s.batch {
                if let Some(c) = b.request_counts {
                    t.requests_completed += c.completed;
                    t.requests_failed += c.failed;
                }
                if let Some(u) = &b.usage {
                    t.input_tokens += u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0);
                    t.output_tokens += u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
                }
            }
            match (s.state, s.status()) {
                (ShardState::Ended, Some("completed")) => t.completed += 1,
                (ShardState::Ended, Some("expired")) => t.expired += 1,
                (ShardState::Ended, Some("cancelled")) => t.cancelled += 1,
                (ShardState::Ended, _) => t.failed += 1,
                (ShardState::Submitted, _) | (ShardState::Creating, _) => t.running += 1,
                _ => t.queued += 1,
            }
        }
        t
    }

    /// Whether every shard ended `completed`.
    pub fn all_completed(&self) -> bool {
        self.completed == self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86_400), "3d");
    }

    #[test]
    fn prompt_tokens_match_the_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let line = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}}"#;
        std::fs::write(&p, format!("{line}\n\n{line}\n")).unwrap();
        let one = tokens::prompt_tokens(&parse_request(line, true).unwrap());
        assert!(one > 0);
        assert_eq!(count_prompt_tokens(&p).unwrap(), 2 * one);
        std::fs::write(&p, "{\"custom_id\":1}\n").unwrap();
        let err = count_prompt_tokens(&p).unwrap_err().to_string();
        assert!(err.contains("a.jsonl:1:"), "{err}");
    }
}
