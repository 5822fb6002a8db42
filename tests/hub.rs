//! Tokenizers by Hugging Face Hub id (`validate --tokenizer t=ORG/NAME`), against a local
//! HTTP server standing in for `HF_ENDPOINT` (a `TcpListener` thread serving the shipped
//! fixtures/tokenizers/claude.json with `X-Repo-Commit` / `ETag` headers, a redirect to a
//! second "CDN" origin, a 401 for a gated model, a 404, an HTML page), and against cache
//! directories laid out the way `huggingface_hub` lays them out, with `HF_HUB_OFFLINE=1`.
//! The last test (ignored unless scripts/test.sh's venv is there) has Python's
//! `huggingface_hub` read what batchline downloaded, and batchline read what Python did.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT_V1: &str = "1111111111222222222233333333334444444444";
/// A git blob sha1, as the Hub sends for files kept in git.
const GIT_ETAG: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
const TOKEN: &str = "hf_TestTokenThatMustNeverBePrinted";

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tokenizers/claude.json"))
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    auth: Option<String>,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req, SocketAddr) -> Resp + Send + Sync>;

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `Connection: close` and logs what it was asked.
struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = answer(stream, &handler, &log2, addr);
            }
        });
        Server { addr, log }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

fn answer(
    stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Req>>,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let req = Req { method, path, auth };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req, addr);
    let mut out = stream;
    let reason = match resp.status {
        200 => "OK",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    out.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        out.write_all(&resp.body)?;
    }
    out.flush()
}

/// The stand-in Hub: `org/tok` (plain file, any revision), `org/moved` (307 to org/tok),
/// `org/lfs` (302 to the CDN origin `cdn`), `org/gated` (401 without the token),
/// `org/flaky` (503 once), `org/down` (502 always), `org/html` (a web page), everything
/// else 404 RepoNotFound.
fn hub(cdn: Option<SocketAddr>) -> Server {
    let body = fixture();
    let flaky = AtomicUsize::new(0);
    Server::start(Arc::new(move |req, _| {
        let p = req.path.as_str();
        let commit_for = |rev: &str| if rev == "v1" { COMMIT_V1 } else { COMMIT };
        let file = |rev: &str| {
            Resp::new(200, body.clone())
                .header("X-Repo-Commit", commit_for(rev))
                .header("ETag", format!("\"{GIT_ETAG}\""))
                .header("Content-Type", "application/json")
        };
        if let Some(rest) = p.strip_prefix("/org/tok/resolve/") {
            let rev = rest.trim_end_matches("/tokenizer.json");
            return file(rev);
        }
        if p == "/org/moved/resolve/main/tokenizer.json" {
            // A renamed repository: a relative redirect on the Hub itself.
            return Resp::new(307, "").header("Location", "/org/tok/resolve/main/tokenizer.json");
        }
        if p == "/org/lfs/resolve/main/tokenizer.json" {
            let cdn = cdn.expect("cdn");
            return Resp::new(302, "")
                .header("X-Repo-Commit", COMMIT)
                .header("X-Linked-Etag", format!("\"{}\"", sha256_hex(&body)))
                .header("ETag", "\"not-the-file-etag\"")
                .header("Location", format!("http://{cdn}/blobs/claude?sig=1"));
        }
        if p == "/org/gated/resolve/main/tokenizer.json" {
            if req.auth.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                return file("main");
            }
            return Resp::new(
                401,
                "{\"error\":\"Access to model org/gated is restricted.\"}",
            )
            .header("X-Error-Code", "GatedRepo");
        }
        if p == "/org/flaky/resolve/main/tokenizer.json" {
            // Busy once, then fine (Retry-After: 0 keeps the test from waiting).
            if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                return Resp::new(503, "busy").header("Retry-After", "0");
            }
            return file("main");
        }
        if p == "/org/down/resolve/main/tokenizer.json" {
            return Resp::new(502, "down").header("Retry-After", "0");
        }
        if p == "/org/html/resolve/main/tokenizer.json" {
            return Resp::new(200, "<!DOCTYPE html><html><body>Sign in</body></html>")
                .header("X-Repo-Commit", COMMIT)
                .header("Content-Type", "text/html");
        }
        Resp::new(404, "{\"error\":\"Repository not found\"}")
            .header("X-Error-Code", "RepoNotFound")
    }))
}

fn cdn() -> Server {
    let body = fixture();
    Server::start(Arc::new(move |req, _| {
        if req.path.starts_with("/blobs/claude") {
            Resp::new(200, body.clone()).header("ETag", "\"cdn-etag\"")
        } else {
            Resp::new(404, "")
        }
    }))
}

const RECORDS: &str = concat!(
    "{\"text\": \"Hello world, this is a test.\"}\n",
    "{\"text\": \"Привет мир こんにちは 数据\"}\n",
    "{\"text\": \"def f(x):\\n    return x * 2\"}\n",
);

/// Runs `batchline validate records.jsonl --tokenizer t=SPEC --annotate` in `dir` with
/// only the HF variables given (the test's own environment must not leak in).
fn validate(dir: &Path, spec: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("records.jsonl"), RECORDS).unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.current_dir(dir)
        .args([
            "validate",
            "records.jsonl",
            "--annotate",
            "--rule",
            "tokens(text) < 100000",
        ])
        .args(["--tokenizer", &format!("t={spec}")])
        .args(extra)
        .env("BATCHLINE_THREADS", "2")
        .stdin(Stdio::null());
    for k in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HOME", dir.join("home"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The same run with the fixture file given by path: what every Hub run must print.
fn expected(dir: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tokenizers/claude.json");
    let o = validate(dir, path.to_str().unwrap(), &[], &[]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = common::stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("\"_tokens\""), "{out}");
    out
}

fn repo(cache: &Path, name: &str) -> PathBuf {
    cache.join(format!("models--org--{name}"))
}

/// Visible and hidden names under `dir`, recursively, relative (temp files included).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn downloads_into_the_hf_cache_layout_then_uses_it_offline() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let cache = dir.path().join("cache");
    let env = [
        ("HF_ENDPOINT", server.url()),
        ("HF_HUB_CACHE", cache.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let o = validate(dir.path(), "org/tok", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
    // stderr is a pipe here: no download progress bar, only the summary.
    assert!(
        !common::stderr(&o).contains('\x1b'),
        "{:?}",
        common::stderr(&o)
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/org/tok/resolve/main/tokenizer.json");
    assert_eq!(reqs[0].auth, None);

    // The layout huggingface_hub makes: refs/main holds the commit (no newline), the
    // snapshot entry is a relative symlink to the blob named by the ETag.
    let r = repo(&cache, "tok");
    assert_eq!(
        std::fs::read_to_string(r.join("refs/main")).unwrap(),
        COMMIT
    );
    let pointer = r.join("snapshots").join(COMMIT).join("tokenizer.json");
    let link = std::fs::read_link(&pointer).unwrap();
    assert_eq!(link, Path::new("../../blobs").join(GIT_ETAG));
    assert_eq!(
        std::fs::read(r.join("blobs").join(GIT_ETAG)).unwrap(),
        fixture()
    );
    assert_eq!(
        tree(&r),
        [
            "blobs".to_string(),
            format!("blobs/{GIT_ETAG}"),
            "refs".into(),
            "refs/main".into(),
            "snapshots".into(),
            format!("snapshots/{COMMIT}"),
            format!("snapshots/{COMMIT}/tokenizer.json"),
        ],
        "no temporary file may be left behind"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.join("blobs").join(GIT_ETAG))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    // Second run: the cache answers, the server is not asked again.
    let o = validate(dir.path(), "org/tok", &["--json"], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(server.requests().len(), 1);
    // The report names where the tokenizer came from.
    let err = common::stderr(&o);
    assert!(err.contains("hf:org/tok@main"), "{err}");
    assert!(
        err.contains(&format!("snapshots/{COMMIT}/tokenizer.json")),
        "{err}"
    );

    // Offline, with an endpoint nobody listens on: still found.
    let mut off = env.clone();
    off.push(("HF_HUB_OFFLINE", "1"));
    off[0] = ("HF_ENDPOINT", "http://127.0.0.1:1");
    let o = validate(dir.path(), "org/tok", &[], &off);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
}

#[test]
fn one_model_twice_in_one_run_is_fetched_in_parallel_without_harm() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];
    // Two names for one model: loaded in parallel, both may download it.
    let o = validate(
        dir.path(),
        "org/tok",
        &["--tokenizer", "u=org/tok", "--rule", "same(tokens(text))"],
        &env,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!((1..=2).contains(&server.requests().len()));
    let r = repo(&cache, "tok");
    let pointer = r.join("snapshots").join(COMMIT).join("tokenizer.json");
    assert_eq!(
        std::fs::read_link(&pointer).unwrap(),
        Path::new("../../blobs").join(GIT_ETAG)
    );
    assert_eq!(tree(&r).len(), 7, "{:?}", tree(&r));
}

#[test]
fn a_rules_file_can_name_hub_tokenizers() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    std::fs::write(dir.path().join("records.jsonl"), RECORDS).unwrap();
    std::fs::write(
        dir.path().join("rules.txt"),
        "# tokenizers and rules in one file\ntokenizer t=org/tok\ntokenizer o200k_base\n\
         short: tokens(text) < 100000\n",
    )
    .unwrap();
    let o = Command::new(common::bin())
        .current_dir(dir.path())
        .args([
            "validate",
            "records.jsonl",
            "--rules",
            "rules.txt",
            "--revision",
            "v1",
            "--json",
        ])
        .env("HF_ENDPOINT", &url)
        .env("HF_HUB_CACHE", &cache_s)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), RECORDS);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/org/tok/resolve/v1/tokenizer.json"]);
    let report: serde_json::Value = serde_json::from_str(&common::stderr(&o)).unwrap();
    let names: Vec<&str> = report["tokenizers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t", "o200k_base"]);

    // A bad declaration names the file and line.
    std::fs::write(
        dir.path().join("bad.txt"),
        "a: len(text) > 0\ntokenizer x=hf:a--b\n",
    )
    .unwrap();
    let o = validate(dir.path(), "o200k_base", &["--rules", "bad.txt"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("bad.txt line 2"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn revisions_get_their_own_refs_and_urls() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];

    let o = validate(dir.path(), "org/tok", &["--revision", "v1"], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = validate(dir.path(), "org/tok@refs/pr/3", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/org/tok/resolve/v1/tokenizer.json",
            "/org/tok/resolve/refs%2Fpr%2F3/tokenizer.json"
        ]
    );
    let r = repo(&cache, "tok");
    assert_eq!(
        std::fs::read_to_string(r.join("refs/v1")).unwrap(),
        COMMIT_V1
    );
    assert_eq!(
        std::fs::read_to_string(r.join("refs/refs/pr/3")).unwrap(),
        COMMIT
    );
    assert!(r
        .join("snapshots")
        .join(COMMIT_V1)
        .join("tokenizer.json")
        .is_file());
    // Both snapshots share the one blob.
    assert_eq!(std::fs::read_dir(r.join("blobs")).unwrap().count(), 1);

    // A commit hash names its snapshot: no request, no ref written for it.
    let o = validate(dir.path(), &format!("org/tok@{COMMIT_V1}"), &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(server.requests().len(), 2);

    // --revision with no Hub tokenizer is a usage error.
    let o = validate(dir.path(), "o200k_base", &["--revision", "v1"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("--revision"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn redirects_keep_the_hub_headers_and_the_token_stays_on_the_hub() {
    let cdn = cdn();
    let server = hub(Some(cdn.addr));
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
        ("HF_TOKEN", TOKEN),
    ];
    let o = validate(dir.path(), "org/lfs", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
    let hub_reqs = server.requests();
    assert_eq!(hub_reqs.len(), 1);
    assert_eq!(
        hub_reqs[0].auth.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let cdn_reqs = cdn.requests();
    assert_eq!(cdn_reqs.len(), 1);
    assert_eq!(cdn_reqs[0].path, "/blobs/claude?sig=1");
    assert_eq!(
        cdn_reqs[0].auth, None,
        "the token must not go to another host"
    );
    // An LFS file is stored under its sha256 (X-Linked-Etag), not the CDN's ETag.
    let blob = repo(&cache, "lfs")
        .join("blobs")
        .join(sha256_hex(&fixture()));
    assert_eq!(std::fs::read(blob).unwrap(), fixture());

    // A relative redirect (renamed repository) on the Hub is followed too.
    let o = validate(dir.path(), "org/moved", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        std::fs::read_to_string(repo(&cache, "moved").join("refs/main")).unwrap(),
        COMMIT
    );
}

#[test]
fn busy_and_failing_hubs_are_tried_again_a_few_times() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];
    let o = validate(dir.path(), "org/flaky", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(server.requests().len(), 2);

    let o = validate(dir.path(), "org/down", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(
        err.contains("502") && err.contains("after 4 tries"),
        "{err}"
    );
    assert_eq!(server.requests().len(), 2 + 4);
}

#[test]
fn gated_model_needs_the_token_and_never_prints_it() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];

    let o = validate(dir.path(), "org/gated", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("gated") && err.contains("HF_TOKEN"), "{err}");
    assert!(err.contains("org/gated"), "{err}");
    assert!(o.stdout.is_empty());

    let mut wrong = env.to_vec();
    wrong.push(("HF_TOKEN", "hf_WrongTokenAlsoSecret"));
    let o = validate(dir.path(), "org/gated", &[], &wrong);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("hf_WrongTokenAlsoSecret"), "{err}");

    let mut right = env.to_vec();
    right.push(("HF_TOKEN", TOKEN));
    let o = validate(dir.path(), "org/gated", &["--json"], &right);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(!common::stderr(&o).contains(TOKEN));
    assert!(!common::stdout(&o).contains(TOKEN));
}

#[test]
fn not_found_and_not_a_tokenizer_are_clear_errors_and_cache_nothing() {
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];

    let o = validate(dir.path(), "org/nope", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(
        err.contains("404") && err.contains("no such model"),
        "{err}"
    );
    assert!(err.contains("org/nope"), "{err}");

    let o = validate(dir.path(), "org/html", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("not a tokenizer.json"), "{err}");
    assert!(err.contains("<!DOCTYPE html>"), "{err}");
    assert!(tree(&repo(&cache, "html"))
        .iter()
        .all(|p| !p.starts_with("blobs/")));
    assert!(!repo(&cache, "html").join("snapshots").exists());

    // A malformed id given with hf: is refused before any request.
    let before = server.requests().len();
    let o = validate(dir.path(), "hf:org/a--b", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("bad tokenizer spec"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(server.requests().len(), before);

    // Nobody listening: the URL is named.
    let dead = [
        ("HF_ENDPOINT", "http://127.0.0.1:1"),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];
    let o = validate(dir.path(), "org/tok", &[], &dead);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(
        err.contains("cannot reach http://127.0.0.1:1/org/tok/resolve/main/tokenizer.json"),
        "{err}"
    );
}

/// A cache made the way huggingface_hub makes it: blob, relative symlink, ref.
fn python_style_cache(cache: &Path, name: &str, refs: &[(&str, &str)]) {
    let r = repo(cache, name);
    let sha = sha256_hex(&fixture());
    std::fs::create_dir_all(r.join("blobs")).unwrap();
    std::fs::write(r.join("blobs").join(&sha), fixture()).unwrap();
    for (rev, commit) in refs {
        let snap = r.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        let link = snap.join("tokenizer.json");
        if !link.exists() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha), &link).unwrap();
            #[cfg(not(unix))]
            std::fs::write(&link, fixture()).unwrap();
        }
        let ref_path = r.join("refs").join(rev);
        std::fs::create_dir_all(ref_path.parent().unwrap()).unwrap();
        std::fs::write(ref_path, commit).unwrap();
    }
}

#[test]
fn offline_finds_a_python_made_cache_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    // HF_HOME/hub, as Python resolves it when HF_HUB_CACHE is unset.
    let hf_home = dir.path().join("hf");
    python_style_cache(
        &hf_home.join("hub"),
        "cached",
        &[("main", COMMIT), ("v2", COMMIT_V1)],
    );
    let home_s = hf_home.display().to_string();
    let env = [
        ("HF_HOME", home_s.as_str()),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "http://127.0.0.1:1"),
    ];
    for spec in [
        "org/cached".to_string(),
        "org/cached@v2".into(),
        format!("hf:org/cached@{COMMIT}"),
    ] {
        let o = validate(dir.path(), &spec, &[], &env);
        assert!(o.status.success(), "{spec}: {}", common::stderr(&o));
        assert_eq!(common::stdout(&o), want, "{spec}");
    }
    // The default cache (~/.cache/huggingface/hub) is used when nothing is set.
    python_style_cache(
        &dir.path().join("home/.cache/huggingface/hub"),
        "cached",
        &[("main", COMMIT)],
    );
    let o = validate(dir.path(), "org/cached", &[], &[("HF_HUB_OFFLINE", "1")]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    // Missing: the message names the offline mode and the path looked for.
    let o = validate(dir.path(), "org/absent", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(err.contains("models--org--absent/refs/main"), "{err}");
    let o = validate(dir.path(), "org/cached@v9", &[], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("models--org--cached/refs/v9"));

    // A ref whose snapshot lost its file (blob deleted): a miss, not a crash.
    let sha = sha256_hex(&fixture());
    std::fs::remove_file(hf_home.join("hub/models--org--cached/blobs").join(sha)).unwrap();
    let o = validate(dir.path(), "org/cached", &[], &env);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("HF_HUB_OFFLINE"));
}

#[test]
fn an_existing_path_wins_over_a_hub_id() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    std::fs::create_dir_all(dir.path().join("org")).unwrap();
    std::fs::write(dir.path().join("org/tok"), fixture()).unwrap();
    // Offline with an empty cache: only the local file can make this succeed.
    let o = validate(dir.path(), "org/tok", &[], &[("HF_HUB_OFFLINE", "1")]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
}

/// Python's `huggingface_hub` (in scripts/test.sh's venv) finds offline the file that
/// batchline downloaded, and batchline finds offline the file Python downloaded, both
/// from the stand-in server.
#[test]
#[ignore = "needs BATCHLINE_TEST_PYTHON with huggingface_hub (scripts/test.sh sets it up)"]
fn python_huggingface_hub_shares_the_cache() {
    let python = std::env::var("BATCHLINE_TEST_PYTHON")
        .expect("BATCHLINE_TEST_PYTHON must name a python with huggingface_hub");
    let server = hub(None);
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let cache = dir.path().join("cache");
    let url = server.url();
    let cache_s = cache.display().to_string();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HUB_CACHE", cache_s.as_str()),
    ];

    let py = |args: &[&str], offline: bool| -> Output {
        let mut c = Command::new(&python);
        c.args(args)
            .env("HF_ENDPOINT", &url)
            .env("HF_HUB_CACHE", &cache_s)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env("HF_HUB_DISABLE_TELEMETRY", "1");
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        } else {
            c.env_remove("HF_HUB_OFFLINE");
        }
        c.output().unwrap()
    };
    let code = "import sys; from huggingface_hub import hf_hub_download; \
                print(hf_hub_download(sys.argv[1], 'tokenizer.json', revision=sys.argv[2]))";

    // batchline downloads org/tok; Python, offline, finds the same snapshot file.
    let o = validate(dir.path(), "org/tok", &[], &env);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = py(&["-c", code, "org/tok", "main"], true);
    assert!(o.status.success(), "python: {}", common::stderr(&o));
    let found = common::stdout(&o).trim().to_string();
    assert_eq!(
        PathBuf::from(&found),
        repo(&cache, "tok")
            .join("snapshots")
            .join(COMMIT)
            .join("tokenizer.json")
    );
    assert_eq!(std::fs::read(&found).unwrap(), fixture());

    // Python downloads org/tok@v1 (HEAD + GET on the stand-in); batchline, offline, uses it.
    let o = py(&["-c", code, "org/tok", "v1"], false);
    assert!(o.status.success(), "python: {}", common::stderr(&o));
    let mut off = env.to_vec();
    off.push(("HF_HUB_OFFLINE", "1"));
    off[0] = ("HF_ENDPOINT", "http://127.0.0.1:1");
    let o = validate(dir.path(), "org/tok@v1", &[], &off);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
}
