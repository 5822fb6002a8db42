//! End-to-end behaviour shared by every command: a closed stdout ends quietly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..200_000 {
        data.push_str(&format!(
            "{{\"id\":{i},\"text\":\"prompt number {i} with some words\"}}\n"
        ));
    }
    std::fs::write(tmp.path().join("prompts.jsonl"), &data).unwrap();
    let mut child = Command::new(bin())
        .current_dir(tmp.path())
        .args(["build", "prompts.jsonl", "--model", "gpt-4o-mini"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone now (like `| head -1`).
    let out = child.wait_with_output().unwrap();
    assert!(first.contains("\"custom_id\""));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("error"));
    let _ = std::io::stderr().flush();
}
