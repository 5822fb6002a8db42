//! Helpers shared by the integration tests: run the real binary in a temp directory.
#![allow(dead_code)]

pub mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_batchline"))
}

/// Runs batchline with `args` in `dir`, feeding `stdin` if given.
pub fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .args(args)
        .env("BATCHLINE_THREADS", "2");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn batchline");
    if let Some(data) = stdin {
        let mut s = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait batchline")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A valid chat request line.
pub fn chat_line(id: &str, model: &str, text: &str) -> String {
    serde_json::json!({
        "custom_id": id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]}
    })
    .to_string()
}

pub fn embed_line(id: &str, model: &str, inputs: &[&str]) -> String {
    serde_json::json!({
        "custom_id": id, "method": "POST", "url": "/v1/embeddings",
        "body": {"model": model, "input": inputs}
    })
    .to_string()
}

/// Names of the visible files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The repository's root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The batch generator, `../shared/tools/gen_batch.py` from the repository root. The
/// tests that use it are `#[ignore]`d (run by `scripts/test.sh`); there, a missing
/// generator is a loud failure, never a silent pass.
pub fn generator() -> PathBuf {
    let p = repo_root().join("../shared/tools/gen_batch.py");
    assert!(
        p.exists(),
        "{}: the generator is missing (it lives beside the repository, in ../shared/tools)",
        p.display()
    );
    p
}

/// A tokenizer file fetched by `scripts/fetch_tokenizers.sh` into `$BATCHLINE_TOKENIZERS`
/// (`scripts/test.sh` sets it; default `target/tokenizers`). The tests that use one are
/// `#[ignore]`d; run without the file, they fail loudly.
pub fn fetched_tokenizer(name: &str) -> PathBuf {
    let dir = std::env::var_os("BATCHLINE_TOKENIZERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/tokenizers"));
    let p = dir.join(format!("{name}.json"));
    assert!(
        p.exists(),
        "{}: missing; run scripts/fetch_tokenizers.sh {} (scripts/test.sh does)",
        p.display(),
        dir.display()
    );
    p
}
