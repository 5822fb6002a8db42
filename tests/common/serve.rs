//! A `batchline serve` for tests: started with `--port 0` and the given arguments, its
//! URL read from the first stdout line, stopped (SIGKILL) when dropped. Plus a small
//! blocking client for checking the server's state.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT` (the server root; the API is under `/v1`).
    pub url: String,
    /// The data directory (a temp dir owned by the server unless given).
    _data: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
}

impl Serve {
    /// `serve --echo --port 0 ARGS` with a fresh data directory.
    pub fn echo(args: &[&str]) -> Serve {
        Serve::start(&[&["--echo"], args].concat(), &[])
    }

    /// `serve --port 0 --data-dir TEMP ARGS`, with extra environment variables.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_path_buf();
        let mut s = Serve::start_in(&data_dir, args, env);
        s._data = Some(data);
        s
    }

    /// `serve --port 0 --data-dir DIR ARGS`.
    pub fn start_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(super::bin());
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn batchline serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve's first line: {first:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Serve {
            child,
            url,
            _data: None,
            data_dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// The API base as the SDKs take it: `http://127.0.0.1:PORT/v1`.
    pub fn base(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// GET `path` (under the root) with an optional bearer key; the JSON answer.
    pub fn get(&self, path: &str, key: Option<&str>) -> Value {
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut r = c.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().unwrap().json().unwrap()
    }

    /// Every batch on the server (all pages).
    pub fn batches(&self, key: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/batches?limit=100&after={a}"),
                None => "/v1/batches?limit=100".to_string(),
            };
            let page = self.get(&path, key);
            let data = page["data"].as_array().cloned().unwrap_or_default();
            out.extend(data.iter().cloned());
            if page["has_more"] != Value::Bool(true) || data.is_empty() {
                return out;
            }
            after = data
                .last()
                .and_then(|b| b["id"].as_str())
                .map(str::to_string);
        }
    }

    /// Polls until `pred` holds of the server's batches (every 20 ms, at most `limit`).
    pub fn wait_for(
        &self,
        key: Option<&str>,
        limit: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let b = self.batches(key);
            if pred(&b) {
                return b;
            }
            assert!(
                t0.elapsed() < limit,
                "the server never reached the state waited for: {b:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
