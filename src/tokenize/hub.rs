//! Tokenizers by Hugging Face Hub id (`Qwen/Qwen1.5-7B`): find `tokenizer.json` in the
//! local Hugging Face cache, or download it into that cache, the way the Python
//! `huggingface_hub` library does, so that each side finds what the other fetched.
//!
//! # The cache
//! The cache directory is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else
//! `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`
//! (the order of `huggingface_hub.constants`). A model `ORG/NAME` lives in
//! `models--ORG--NAME/`:
//! - `refs/REVISION`: the commit hash (40 hex digits, no newline) a branch or tag named
//!   when it was last downloaded;
//! - `snapshots/COMMIT/tokenizer.json`: a relative symlink `../../blobs/BLOB`;
//! - `blobs/BLOB`: the file, named by the server's ETag (the git blob sha1, or the sha256
//!   of an LFS file), or by its sha256 when the server sent none.
//!
//! # Resolution
//! 1. The cache first: a revision that is a commit hash names its snapshot directly; a
//!    branch or tag is read from `refs/`. A hit needs no network (this differs from
//!    `hf_hub_download`, which asks the server whether the branch moved: batch jobs want
//!    the tokenizer they validated with, and no request per run). Pass a commit hash, or
//!    delete the ref, to move on.
//! 2. Else, unless `HF_HUB_OFFLINE` is true (`1`, `ON`, `YES`, `TRUE`), a GET of
//!    `{HF_ENDPOINT or https://huggingface.co}/{id}/resolve/{revision}/tokenizer.json`.
//!    Redirects are followed by hand (at most 10), because the commit (`X-Repo-Commit`) and
//!    the ETag (`X-Linked-Etag`, else `ETag`) are taken from the responses of the endpoint
//!    itself, not from a CDN it redirects to; `HF_TOKEN` (else `HUGGING_FACE_HUB_TOKEN`)
//!    goes as a Bearer token to the endpoint's origin only, never to another host. The
//!    body must parse as a tokenizer.json (a JSON object with a `model`), match its sha256
//!    when the ETag is one and its `Content-Length`, before anything is written. A 429 or
//!    5xx answer, or a timeout, is tried again (4 tries, `Retry-After` or 1, 2, 4 s apart).
//! 3. The blob is written to a temporary file in `blobs/`, fsynced and renamed; the
//!    snapshot symlink is made under a temporary name and renamed over; the ref likewise.
//!    Readers never see a partial file, and two processes racing write the same bytes.
//!
//! The token is only ever read from the environment (never from `HF_HOME/token`), and
//! never appears in an error or in `Debug` output.
//!
//! The client is reqwest's blocking one (rustls with its bundled web PKI roots;
//! `HTTPS_PROXY` and friends are honoured): call [`resolve`] from a plain thread, or from
//! `tokio::task::spawn_blocking`, never on a tokio runtime's own threads, where a blocking
//! client panics.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::error::TokenizeError;

/// The Hub the Python libraries use when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The file fetched from a model repository.
pub const FILENAME: &str = "tokenizer.json";
/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";
/// A downloaded tokenizer.json larger than this is refused (the largest real ones are
/// tens of MB; the body is checked in memory before it is written).
pub const MAX_DOWNLOAD: u64 = 512 << 20;
const MAX_REDIRECTS: usize = 10;
/// Tries of one request when the Hub is busy (429) or failing (500, 502, 503, 504) or a
/// request times out; a refused connection or any other status fails at once.
const MAX_TRIES: u32 = 4;

/// Where the cache is, where the Hub is, and how to talk to it: read once from the
/// environment ([`HubEnv::from_env`]) or built by hand (tests).
#[derive(Clone)]
pub struct HubEnv {
    /// The cache directory (the one holding `models--ORG--NAME/`).
    pub cache: PathBuf,
    /// Base URL without a trailing slash.
    pub endpoint: String,
    /// Bearer token for gated or private models.
    pub token: Option<String>,
    /// Never touch the network.
    pub offline: bool,
}

impl std::fmt::Debug for HubEnv {
    // By hand so that the token can never reach a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEnv")
            .field("cache", &self.cache)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubEnv {
    /// Reads `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME`, `HF_ENDPOINT`,
    /// `HF_TOKEN` and `HF_HUB_OFFLINE` as `huggingface_hub` does.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Same as [`Self::from_env`] with the variables given by `var` (empty values count
    /// as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let home = || {
            var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from)
        };
        let expand = |p: String| match p.strip_prefix("~/") {
            Some(rest) => home().map_or_else(|| PathBuf::from(&p), |h| h.join(rest)),
            None => PathBuf::from(p),
        };
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| {
                let hf_home = var("HF_HOME").map(expand).unwrap_or_else(|| {
                    var("XDG_CACHE_HOME")
                        .map(expand)
                        .or_else(|| home().map(|h| h.join(".cache")))
                        .unwrap_or_else(|| PathBuf::from(".cache"))
                        .join("huggingface")
                });
                hf_home.join("hub")
            });
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_uppercase().as_str(),
                "1" | "ON" | "YES" | "TRUE"
            )
        });
        HubEnv {
            cache,
            endpoint,
            token,
            offline,
        }
    }

    /// The folder of a model in the cache: `models--ORG--NAME`.
    pub fn repo_dir(&self, id: &str) -> PathBuf {
        self.cache.join(format!(
            "models--{}",
            id.split('/').collect::<Vec<_>>().join("--")
        ))
    }
}

/// What the caller wants besides the file: a progress bar (drawn on stderr only when it
/// is a terminal) and a flag that, once set (Ctrl-C), stops a download.
#[derive(Clone, Copy, Default)]
pub struct FetchOptions<'a> {
    pub progress: bool,
    pub cancel: Option<&'a AtomicBool>,
}

/// A resolved tokenizer.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `.../snapshots/COMMIT/tokenizer.json`.
    pub path: PathBuf,
    /// The commit the revision stood for.
    pub commit: String,
    /// Whether it was downloaded now (false: found in the cache).
    pub downloaded: bool,
}

/// Whether `s` is a full commit hash (as `huggingface_hub.REGEX_COMMIT_HASH`).
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a repository id as the Hub does: `NAME` or `ORG/NAME`, each part 1 to 96 of
/// `A-Z a-z 0-9 _ - .`, not starting or ending with `-` or `.`, without `--` or `..`.
pub fn check_repo_id(id: &str) -> Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return Err("a Hub id is NAME or ORG/NAME (one '/' at most)".into());
    }
    for p in parts {
        if p.is_empty() || p.len() > 96 {
            return Err("each part of a Hub id has 1 to 96 characters".into());
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "{c:?} is not allowed in a Hub id (A-Z a-z 0-9 _ - .)"
            ));
        }
        if p.starts_with(['-', '.']) || p.ends_with(['-', '.']) {
            return Err("a part of a Hub id cannot start or end with '-' or '.'".into());
        }
        if p.contains("--") || p.contains("..") {
            return Err("'--' and '..' are not allowed in a Hub id".into());
        }
    }
    Ok(())
}

/// Checks a revision (branch, tag, commit, or `refs/pr/N`): it becomes a path under
/// `refs/`, so no empty or `.`/`..` component and no leading `/` or `\`.
pub fn check_revision(rev: &str) -> Result<(), String> {
    if rev.is_empty() {
        return Err("empty revision".into());
    }
    if rev.contains('\\') || rev.chars().any(char::is_control) {
        return Err(format!("bad revision {rev:?}"));
    }
    if rev
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "bad revision {rev:?} (empty, '.' or '..' path component)"
        ));
    }
    Ok(())
}

/// The snapshot file for `revision` if the cache has it: a commit hash names its
/// snapshot, a branch or tag is looked up in `refs/`.
pub fn find_cached(env: &HubEnv, id: &str, revision: &str) -> Option<Resolved> {
    let dir = env.repo_dir(id);
    let commit = if is_commit_hash(revision) {
        revision.to_string()
    } else {
        let text = std::fs::read_to_string(dir.join("refs").join(revision)).ok()?;
        // Python writes it without a newline; a hand-made ref may have one.
        let c = text.trim().to_string();
        if !is_commit_hash(&c) {
            return None;
        }
        c
    };
    let path = dir.join("snapshots").join(&commit).join(FILENAME);
    // `is_file` follows the symlink: a dangling link to a deleted blob is a miss.
    path.is_file().then_some(Resolved {
        path,
        commit,
        downloaded: false,
    })
}

/// Finds `tokenizer.json` of model `id` at `revision` in the cache, or downloads it into
/// the cache (see the module documentation). Errors name the id, the revision, the URL
/// or the cache path, and say what to do.
pub fn resolve(
    env: &HubEnv,
    id: &str,
    revision: &str,
    opts: FetchOptions<'_>,
) -> Result<Resolved, TokenizeError> {
    let fail = |message: String| TokenizeError::Hub {
        id: id.to_string(),
        revision: revision.to_string(),
        message,
    };
    check_repo_id(id).map_err(&fail)?;
    check_revision(revision).map_err(&fail)?;
    if let Some(hit) = find_cached(env, id, revision) {
        return Ok(hit);
    }
    if env.offline {
        let dir = env.repo_dir(id);
        let looked = if is_commit_hash(revision) {
            dir.join("snapshots").join(revision).join(FILENAME)
        } else {
            dir.join("refs").join(revision)
        };
        return Err(fail(format!(
            "HF_HUB_OFFLINE is set and the cache has no {FILENAME} for it (looked for {}); \
             unset HF_HUB_OFFLINE to download it, or point HF_HUB_CACHE / HF_HOME at the \
             cache that has it",
            looked.display()
        )));
    }
    let fetched = download(env, id, revision, opts).map_err(&fail)?;
    store(env, id, revision, &fetched).map_err(&fail)
}

/// A body that passed every check, with the names it is stored under.
struct Fetched {
    body: Vec<u8>,
    commit: String,
    blob: String,
}

fn quote_path_segment(s: &str) -> String {
    // As `urllib.parse.quote(s, safe="")`: only unreserved characters stay.
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `W/"abc"` or `"abc"` → `abc` (as `huggingface_hub._normalize_etag`).
fn normalize_etag(e: &str) -> String {
    e.trim()
        .strip_prefix("W/")
        .unwrap_or(e.trim())
        .trim_matches('"')
        .to_string()
}

fn origin(url: &reqwest::Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_string(),
        url.host_str().map(str::to_string),
        url.port_or_known_default(),
    )
}

fn download(
    env: &HubEnv,
    id: &str,
    revision: &str,
    opts: FetchOptions<'_>,
) -> Result<Fetched, String> {
    let first = format!(
        "{}/{id}/resolve/{}/{FILENAME}",
        env.endpoint,
        quote_path_segment(revision)
    );
    let mut url = reqwest::Url::parse(&first)
        .map_err(|e| format!("bad HF_ENDPOINT {:?}: {e}", env.endpoint))?;
    let hub = origin(&url);
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        // Per blocking operation (connect, each read), not for the whole body.
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("batchline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
    let mut commit: Option<String> = None;
    let mut etag: Option<String> = None;
    for _ in 0..=MAX_REDIRECTS {
        let on_hub = origin(&url) == hub;
        let mut req = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        if let (true, Some(t)) = (on_hub, &env.token) {
            req = req.bearer_auth(t);
        }
        let resp = send_with_retries(req, &url, opts)?;
        if on_hub {
            // The last answer of the Hub itself describes the file (a CDN's do not).
            if let Some(c) = header(&resp, "x-repo-commit") {
                commit = Some(c);
            }
            if let Some(e) = header(&resp, "x-linked-etag").or_else(|| header(&resp, "etag")) {
                etag = Some(normalize_etag(&e));
            }
        }
        let status = resp.status();
        if status.is_redirection() {
            let loc = header(&resp, "location")
                .ok_or_else(|| format!("{status} from {url} without a Location"))?;
            url = url
                .join(&loc)
                .map_err(|e| format!("bad redirect {loc:?} from {url}: {e}"))?;
            continue;
        }
        if !status.is_success() {
            return Err(http_error(env, &url, &resp));
        }
        let body = read_body(resp, &url, id, opts)?;
        check_tokenizer(&body).map_err(|m| format!("{url} is not a tokenizer.json: {m}"))?;
        let commit = commit
            .filter(|c| is_commit_hash(c))
            .or_else(|| is_commit_hash(revision).then(|| revision.to_string()))
            .ok_or_else(|| {
                format!(
                    "{url} sent no X-Repo-Commit header, so the file cannot be filed in the \
                     cache; is HF_ENDPOINT ({}) a Hugging Face Hub?",
                    env.endpoint
                )
            })?;
        let sha = format!("{:x}", Sha256::digest(&body));
        let blob = match etag.filter(|e| is_safe_blob_name(e)) {
            Some(e) if e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()) => {
                // An LFS ETag is the sha256 of the content: a free integrity check.
                if !e.eq_ignore_ascii_case(&sha) {
                    return Err(format!(
                        "{url}: the download does not match its checksum (sha256 {sha}, \
                         expected {e}); try again"
                    ));
                }
                e
            }
            Some(e) => e,
            None => sha,
        };
        return Ok(Fetched { body, commit, blob });
    }
    Err(format!("more than {MAX_REDIRECTS} redirects from {first}"))
}

/// Sends `req`, again after a pause when the answer says "later" (see [`MAX_TRIES`]):
/// `Retry-After` seconds (at most 30) if given, else 1, 2, 4 s. Ctrl-C ends the wait.
fn send_with_retries(
    req: reqwest::blocking::RequestBuilder,
    url: &reqwest::Url,
    opts: FetchOptions<'_>,
) -> Result<reqwest::blocking::Response, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let this = req
            .try_clone()
            .ok_or_else(|| "internal: request cannot be repeated".to_string())?;
        let pause: Option<Duration> = match this.send() {
            Ok(resp) => {
                let transient = matches!(resp.status().as_u16(), 429 | 500 | 502 | 503 | 504);
                if !transient || attempt >= MAX_TRIES {
                    return Ok(resp);
                }
                let after = header(&resp, "retry-after").and_then(|v| v.parse::<u64>().ok());
                after.map(|s| Duration::from_secs(s.min(30)))
            }
            Err(e) if e.is_timeout() && attempt < MAX_TRIES => None,
            // reqwest's error text names the URL, which never carries the token.
            Err(e) => return Err(format!("cannot reach {url}: {}", error_chain(&e))),
        };
        let pause = pause.unwrap_or(Duration::from_secs(1 << (attempt - 1)));
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if opts.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Err("interrupted".into());
            }
            std::thread::sleep(Duration::from_millis(50).min(until - std::time::Instant::now()));
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

fn http_error(env: &HubEnv, url: &reqwest::Url, resp: &reqwest::blocking::Response) -> String {
    let status = resp.status();
    let code = header(resp, "x-error-code").unwrap_or_default();
    let token_note = if env.token.is_some() {
        "HF_TOKEN is set but was refused"
    } else {
        "set HF_TOKEN to a token that can read it"
    };
    let why = match (status.as_u16(), code.as_str()) {
        (_, "GatedRepo") => format!(
            "the model is gated: accept its conditions on its Hub page, then use a token \
             of that account ({token_note})"
        ),
        (_, "RepoNotFound") | (401, _) => format!(
            "no such model, or it is private or gated ({token_note}); check the id \
             (ORG/NAME, as on its Hub page)"
        ),
        (403, _) => format!("access refused ({token_note})"),
        (_, "RevisionNotFound") => "no such revision (branch, tag or commit)".to_string(),
        (_, "EntryNotFound") => format!("the model has no {FILENAME} at this revision"),
        (404, _) => format!("not found: no such model or revision, or no {FILENAME} in it"),
        (429 | 500 | 502 | 503 | 504, _) => {
            format!("the Hub did not serve the file after {MAX_TRIES} tries; try again later")
        }
        _ => "the Hub did not serve the file".to_string(),
    };
    format!("{status} from {url}: {why}")
}

fn read_body(
    mut resp: reqwest::blocking::Response,
    url: &reqwest::Url,
    id: &str,
    opts: FetchOptions<'_>,
) -> Result<Vec<u8>, String> {
    let expected = resp.content_length();
    if expected.is_some_and(|n| n > MAX_DOWNLOAD) {
        return Err(format!(
            "{url} is {} bytes, more than any tokenizer.json (limit {MAX_DOWNLOAD})",
            expected.unwrap_or(0)
        ));
    }
    let bar = progress_bar(opts.progress, expected, id);
    // A claimed length is only a hint: never reserve more than a real tokenizer needs.
    let mut body = Vec::with_capacity(expected.unwrap_or(0).min(64 << 20) as usize);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if opts.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err("interrupted".into());
        }
        let n = resp
            .read(&mut buf)
            .map_err(|e| format!("reading {url}: {}", error_chain(&e)))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
        if body.len() as u64 > MAX_DOWNLOAD {
            return Err(format!(
                "{url} is larger than any tokenizer.json (limit {MAX_DOWNLOAD} bytes)"
            ));
        }
        if let Some(b) = &bar {
            b.set_position(body.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(n) = expected {
        if body.len() as u64 != n {
            return Err(format!(
                "{url}: the download stopped at {} of {n} bytes; try again",
                body.len()
            ));
        }
    }
    Ok(body)
}

fn progress_bar(wanted: bool, total: Option<u64>, id: &str) -> Option<indicatif::ProgressBar> {
    let bar = crate::report::progress_bar(
        wanted,
        total,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        Some("=> "),
    )?;
    bar.set_message(format!("{id} {FILENAME}"));
    Some(bar)
}

/// A tokenizer.json is a JSON object with a `model`; anything else (an HTML page, an
/// error document, a truncated file) is refused before it reaches the cache.
fn check_tokenizer(body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        model: serde::de::IgnoredAny,
    }
    let start: String = String::from_utf8_lossy(&body[..body.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    serde_json::from_slice::<Probe>(body)
        .map(|_| ())
        .map_err(|e| format!("{e} (it starts with {start:?})"))
}

fn is_safe_blob_name(e: &str) -> bool {
    !e.is_empty()
        && e.len() <= 128
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot write the cache ({what} {}): {e}", path.display())
}

/// Writes blob, snapshot entry and ref, each atomically (see the module documentation).
fn store(env: &HubEnv, id: &str, revision: &str, f: &Fetched) -> Result<Resolved, String> {
    let dir = env.repo_dir(id);
    let blobs = dir.join("blobs");
    let snap = dir.join("snapshots").join(&f.commit);
    for d in [&blobs, &snap] {
        std::fs::create_dir_all(d).map_err(|e| io_err("creating", d, e))?;
    }
    let blob = blobs.join(&f.blob);
    if !blob.is_file() {
        write_atomic(&blob, &f.body).map_err(|e| io_err("writing", &blob, e))?;
    }
    let pointer = snap.join(FILENAME);
    if !pointer.is_file() {
        link_atomic(&blob, &pointer, &f.blob).map_err(|e| io_err("linking", &pointer, e))?;
    }
    if revision != f.commit {
        let r = dir.join("refs").join(revision);
        if let Some(parent) = r.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
        }
        write_atomic(&r, f.commit.as_bytes()).map_err(|e| io_err("writing", &r, e))?;
    }
    Ok(Resolved {
        path: pointer,
        commit: f.commit.clone(),
        downloaded: true,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".batchline-")
        .suffix(".incomplete")
        .tempfile_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        // tempfile creates 0600; the cache is shared with Python, which leaves the
        // umask's default (usually 0644).
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent);
    Ok(())
}

/// `pointer` → `../../blobs/BLOB`, made under a temporary name and renamed over, so a
/// reader sees no link or the whole link. Without symlinks (Windows without developer
/// mode), a copy, as `huggingface_hub` does.
fn link_atomic(blob: &Path, pointer: &Path, blob_name: &str) -> std::io::Result<()> {
    // Unique per process and call: two tokenizers of one run may fetch the same model
    // in parallel threads. std's RandomState draws new keys for every instance, so the
    // hash of nothing differs between calls without any shared counter.
    let unique = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let parent = pointer.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".batchline-{}-{unique:016x}-{FILENAME}.incomplete",
        std::process::id(),
    ));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(Path::new("../../blobs").join(blob_name), &tmp);
    #[cfg(not(unix))]
    let linked: std::io::Result<()> = Err(std::io::Error::other("no symlinks"));
    if linked.is_err() {
        let _ = blob_name;
        let bytes = std::fs::read(blob)?;
        return write_atomic(pointer, &bytes);
    }
    std::fs::rename(&tmp, pointer).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    sync_dir(parent);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable on Unix; opening a directory fails elsewhere.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> HubEnv {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubEnv::from_vars(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn cache_dir_order() {
        let e = env_of(&[("HOME", "/h")]);
        assert_eq!(e.cache, PathBuf::from("/h/.cache/huggingface/hub"));
        let e = env_of(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(e.cache, PathBuf::from("/x/huggingface/hub"));
        let e = env_of(&[
            ("HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HF_HOME", "~/hf"),
        ]);
        assert_eq!(e.cache, PathBuf::from("/h/hf/hub"));
        let e = env_of(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]);
        assert_eq!(e.cache, PathBuf::from("/c"));
        let e = env_of(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")]);
        assert_eq!(e.cache, PathBuf::from("/old"));
        assert_eq!(e.endpoint, DEFAULT_ENDPOINT);
        assert!(!e.offline && e.token.is_none());
    }

    #[test]
    fn endpoint_token_offline() {
        let e = env_of(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HUGGING_FACE_HUB_TOKEN", "old"),
            ("HF_HUB_OFFLINE", "yes"),
        ]);
        assert_eq!(e.endpoint, "http://127.0.0.1:9");
        assert_eq!(e.token.as_deref(), Some("old"));
        assert!(e.offline);
        let e = env_of(&[("HF_TOKEN", "new"), ("HUGGING_FACE_HUB_TOKEN", "old")]);
        assert_eq!(e.token.as_deref(), Some("new"));
        assert!(!format!("{e:?}").contains("new"));
        for off in ["0", "false", "", "no"] {
            assert!(!env_of(&[("HF_HUB_OFFLINE", off)]).offline, "{off}");
        }
    }

    #[test]
    fn ids_and_revisions() {
        for ok in [
            "gpt2",
            "Qwen/Qwen1.5-7B",
            "meta-llama/Meta-Llama-3-8B",
            "a_b/c.d",
        ] {
            assert!(check_repo_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a/b/c", "a//b", "-a/b", "a/b.", "a--b/c", "a/b..c", "a b/c", "/a",
        ] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        assert!(check_revision("refs/pr/1").is_ok());
        for bad in ["", "../x", "a/../b", "/abs", "a//b", "a\\b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
        assert_eq!(quote_path_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        let e = env_of(&[("HF_HUB_CACHE", "/c")]);
        assert_eq!(
            e.repo_dir("Qwen/Qwen1.5-7B"),
            PathBuf::from("/c/models--Qwen--Qwen1.5-7B")
        );
    }

    #[test]
    fn tokenizer_probe() {
        assert!(check_tokenizer(br#"{"version":"1.0","model":{"type":"BPE"}}"#).is_ok());
        let e = check_tokenizer(b"<!DOCTYPE html><html>").unwrap_err();
        assert!(e.contains("<!DOCTYPE html>"), "{e}");
        assert!(check_tokenizer(br#"{"error":"nope"}"#).is_err());
        assert!(check_tokenizer(br#"{"model":{}"#).is_err());
    }
}
