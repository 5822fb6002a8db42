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

#[test]
fn an_output_through_a_symlink_replaces_the_target_and_keeps_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("prompts.jsonl"), "{\"text\":\"hi\"}\n").unwrap();
    std::fs::write(tmp.path().join("target.txt"), "old").unwrap();
    std::os::unix::fs::symlink("target.txt", tmp.path().join("link.jsonl")).unwrap();
    let o = run_in(
        tmp.path(),
        &["build", "prompts.jsonl", "-m", "m", "-o", "link.jsonl"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = std::fs::symlink_metadata(tmp.path().join("link.jsonl")).unwrap();
    assert!(meta.file_type().is_symlink());
    let text = std::fs::read_to_string(tmp.path().join("target.txt")).unwrap();
    assert!(text.starts_with("{\"custom_id\""), "{text}");
}

#[test]
fn new_outputs_get_the_usual_permissions_not_0600() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("requests.jsonl");
    let o = run_in(
        tmp.path(),
        &["shard", input.to_str().unwrap(), "--out-dir", "out"],
        None,
    );
    assert!(o.status.success());
    let mode = std::fs::metadata(tmp.path().join("out/manifest.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    // The same mode as a plainly created file (0666 less the umask).
    std::fs::File::create(tmp.path().join("plain")).unwrap();
    let plain = std::fs::metadata(tmp.path().join("plain"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, plain, "mode {mode:o}, plain {plain:o}");
}

#[test]
fn build_passes_a_json_schema_with_its_keys_in_the_order_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("prompts.jsonl"), "{\"text\":\"hi\"}\n").unwrap();
    std::fs::write(
        tmp.path().join("answer.json"),
        r#"{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"}},"required":["zeta","alpha"],"additionalProperties":false}"#,
    )
    .unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "build",
            "prompts.jsonl",
            "-m",
            "m",
            "--response-format",
            "@answer.json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    let (z, a) = (
        line.find("\"zeta\"").unwrap(),
        line.find("\"alpha\"").unwrap(),
    );
    assert!(z < a, "{line}");
}
