//! What an earlier run already answered: the custom_ids of the result lines in OUT and
//! the error file, read before a run appends to them.
//!
//! A run appends complete lines only, but a kill -9 or a full disk in the middle of a
//! `write` can still leave the last line cut. Such a tail (bytes after the last
//! newline) is cut off here before anything is appended, so the file is again whole
//! lines; a complete line that is not a result line stops the run instead, because
//! appending to a file that is not ours would mix results into it.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What was found in one existing result file.
#[derive(Debug, Default)]
pub struct Existing {
    /// Complete result lines.
    pub lines: u64,
    /// Bytes of a cut last line that were removed.
    pub truncated: u64,
}

#[derive(Deserialize)]
struct ResultIds<'a> {
    #[serde(borrow)]
    custom_id: Option<std::borrow::Cow<'a, str>>,
    response: Option<serde::de::IgnoredAny>,
    error: Option<serde_json::Value>,
}

/// What earlier runs wrote: the custom_ids answered, and the messages of the bad
/// lines (which have no custom_id to know them by; the message names file, line and
/// offset, and a rerun on the same input writes the same one).
#[derive(Debug, Default)]
pub struct Answered {
    pub ids: HashSet<String>,
    pub bad_lines: HashSet<String>,
}

/// The error code of a line that was not a valid request.
pub const BAD_LINE_CODE: &str = "invalid_request_line";

/// Adds what `path` (if it exists) holds to `answered`, after cutting a broken last
/// line.
pub fn read_answered(path: &Path, answered: &mut Answered) -> Result<Existing> {
    let name = path.display().to_string();
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut existing = Existing::default();
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut buf = Vec::new();
    let mut whole: u64 = 0;
    let mut number = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            existing.truncated = n as u64;
            break;
        }
        whole += n as u64;
        let text = &buf[..buf.len() - 1];
        if text.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let parsed: Option<ResultIds> = serde_json::from_slice(text).ok();
        match parsed {
            Some(ResultIds {
                custom_id,
                response,
                error,
            }) if response.is_some() || error.as_ref().is_some_and(|e| !e.is_null()) => {
                match custom_id {
                    Some(id) => {
                        answered.ids.insert(id.into_owned());
                    }
                    None => {
                        if let Some(e) = &error {
                            if e["code"] == BAD_LINE_CODE {
                                if let Some(m) = e["message"].as_str() {
                                    answered.bad_lines.insert(m.to_string());
                                }
                            }
                        }
                    }
                }
                existing.lines += 1;
            }
            _ => {
                return Err(Error::Other(format!(
                    "{name}:{number}: not a Batch API result line; run appends to its output, so OUT and --errors must be result files of an earlier run (or new files)"
                )))
            }
        }
    }
    drop(reader);
    if existing.truncated > 0 {
        file.set_len(whole).map_err(|e| Error::io(path, e))?;
        let mut f = &file;
        f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_and_a_cut_tail_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"x\",\"custom_id\":\"a\",\"response\":null,\"error\":{\"code\":\"c\",\"message\":\"m\"}}\n{\"id\":\"y\",\"custom_id\":\"b\",\"response\":{\"status_code\":200}}\n{\"id\":\"z\",\"custom_id\":\"c\",\"resp",
        )
        .unwrap();
        let mut seen = Answered::default();
        let e = read_answered(&p, &mut seen).unwrap();
        assert_eq!(e.lines, 2);
        assert!(e.truncated > 0);
        assert_eq!(seen.ids.len(), 2);
        assert!(seen.ids.contains("a") && seen.ids.contains("b"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with("}}\n"), "{text}");
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_file_that_is_not_results_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("requests.jsonl");
        std::fs::write(&p, "{\"a\":1}\n").unwrap();
        let e = read_answered(&p, &mut Answered::default()).unwrap_err();
        assert!(e
            .to_string()
            .contains("requests.jsonl:1: not a Batch API result line"));
        assert!(read_answered(&dir.path().join("none"), &mut Answered::default()).is_ok());
    }
}
