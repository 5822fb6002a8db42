//! The rejects file: one JSON line per rejected input line, the same shape for every
//! command: `{"line": N, "offset": B, "reason": "...", "text": "...", "custom_id": "..."}`
//! (`custom_id` only where known; `text` is the line, invalid UTF-8 shown lossily).

use serde::Serialize;

use super::output::{Output, OutputSpec, PendingFile};
use crate::error::Result;

/// Lines longer than this are stored cut in the rejects file, with `text_cut: true`.
pub const MAX_REJECT_TEXT: usize = 1 << 20;

/// One rejected line, as written to the rejects file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reject {
    pub line: u64,
    pub offset: u64,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    pub text: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text_cut: bool,
}

impl Reject {
    /// A reject for `bytes` (the line as read; possibly only its beginning).
    pub fn new(
        line: u64,
        offset: u64,
        reason: impl Into<String>,
        bytes: &[u8],
        cut: bool,
    ) -> Reject {
        let keep = bytes.len().min(MAX_REJECT_TEXT);
        Reject {
            line,
            offset,
            reason: reason.into(),
            custom_id: None,
            text: String::from_utf8_lossy(&bytes[..keep]).into_owned(),
            text_cut: cut || keep < bytes.len(),
        }
    }

    pub fn with_custom_id(mut self, id: Option<String>) -> Reject {
        self.custom_id = id;
        self
    }
}

/// Writes rejects as JSONL to an atomic file (or stdout), or only counts them.
pub struct RejectSink {
    out: Option<Output>,
    count: u64,
    buf: Vec<u8>,
}

impl RejectSink {
    /// `None`: rejects are only counted. `sync`: fsync before the rename.
    pub fn create(spec: Option<&OutputSpec>, sync: bool) -> Result<RejectSink> {
        let out = match spec {
            Some(s) => Some(Output::create(s, sync)?),
            None => None,
        };
        Ok(RejectSink {
            out,
            count: 0,
            buf: Vec::new(),
        })
    }

    pub fn write(&mut self, reject: &Reject) -> Result<()> {
        self.count += 1;
        if let Some(out) = self.out.as_mut() {
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, reject).expect("reject serialises");
            self.buf.push(b'\n');
            out.write_all(&self.buf)?;
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether rejects are written anywhere (rather than only counted).
    pub fn keeps_lines(&self) -> bool {
        self.out.is_some()
    }

    /// Finishes the file without renaming it yet (`None`: stdout or nothing).
    pub fn finish_pending(self) -> Result<Option<PendingFile>> {
        match self.out {
            Some(o) => o.finish_pending(),
            None => Ok(None),
        }
    }
}
