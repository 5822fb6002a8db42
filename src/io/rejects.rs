//! The rejects file: one JSON line per rejected input line (or, in `extract`, per
//! rejected text or value of a line), the same shape for every command:
//!
//! `{"file", "line", "offset", "reason", "message", ["custom_id"], ...command's own
//! members..., "text", ["text_cut"]}`
//!
//! - `file`, `line`, `offset`: where the line is (its input's name, 1-based line number,
//!   byte offset of its first byte);
//! - `reason`: a short stable code (`invalid_json`, `duplicate_custom_id`, `no_json`...);
//! - `message`: the human explanation, the text `--on-error fail` stops with;
//! - `custom_id` only where known;
//! - the command's own members (extract: `choice`, `value`...; validate: `failed`,
//!   `counts`), already JSON;
//! - `text`: the line (invalid UTF-8 shown lossily), or in `extract` the model's text the
//!   reject concerns; `text_cut: true` when only its first [`MAX_REJECT_TEXT`] bytes (or
//!   the part of an over-long line that was read) are kept.
//!
//! Every command writes it through [`RejectSink`] (behind `commands::RejectRoute`).

use std::borrow::Cow;

use super::output::{Output, OutputSpec, PendingFile};
use crate::error::Result;

/// Lines longer than this are stored cut in the rejects file, with `text_cut: true`.
pub const MAX_REJECT_TEXT: usize = 1 << 20;

/// Reason codes shared by every command.
pub mod reason {
    /// The line is over the line limit (or `shard --max-bytes`).
    pub const LINE_TOO_LONG: &str = "line_too_long";
    /// The line is not UTF-8.
    pub const INVALID_UTF8: &str = "invalid_utf8";
    /// The line is not a JSON object (syntax, duplicate keys, nesting).
    pub const INVALID_JSON: &str = "invalid_json";
    /// A custom_id seen on an earlier line.
    pub const DUPLICATE_CUSTOM_ID: &str = "duplicate_custom_id";
}

/// The shared code for a message of the shared kinds (the wordings of the JSON
/// scanner, the UTF-8 check and the line limit), else `otherwise`.
pub fn code_of(message: &str, otherwise: &'static str) -> &'static str {
    let m = message.strip_prefix("request ").unwrap_or(message);
    if m.starts_with("invalid JSON") || m.starts_with("duplicate key") {
        reason::INVALID_JSON
    } else if m.starts_with("invalid UTF-8") {
        reason::INVALID_UTF8
    } else if m.starts_with("line is ") || m.starts_with("result line is ") {
        reason::LINE_TOO_LONG
    } else {
        otherwise
    }
}

/// One rejected line, as written to the rejects file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub line: u64,
    pub offset: u64,
    /// The reason code (see [`reason`]).
    pub reason: Cow<'static, str>,
    /// The human explanation.
    pub message: String,
    pub custom_id: Option<String>,
    /// The command's own members as JSON text, without the surrounding braces and
    /// without a leading comma (`"choice":0,"tool":null`); empty for none.
    pub extra: String,
    pub text: String,
    pub text_cut: bool,
}

/// Cuts `s` to at most `max` bytes at a character boundary (`true`: it was cut).
pub fn cap(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

impl Reject {
    /// A reject for `bytes` (the line as read; `cut`: possibly only its beginning).
    pub fn new(
        line: u64,
        offset: u64,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        bytes: &[u8],
        cut: bool,
    ) -> Reject {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REJECT_TEXT + 4)]);
        Reject::with_text(
            line,
            offset,
            reason,
            message,
            &text,
            cut || bytes.len() > MAX_REJECT_TEXT,
        )
    }

    /// A reject whose `text` is `text` (kept up to [`MAX_REJECT_TEXT`] bytes).
    pub fn with_text(
        line: u64,
        offset: u64,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        text: &str,
        cut: bool,
    ) -> Reject {
        let (kept, more_cut) = cap(text, MAX_REJECT_TEXT);
        Reject {
            line,
            offset,
            reason: reason.into(),
            message: message.into(),
            custom_id: None,
            extra: String::new(),
            text: kept.to_string(),
            text_cut: cut || more_cut,
        }
    }

    /// The reject for a line that cannot be read as text: cut (over the limit, with
    /// the limit's message) or not UTF-8. `None` when it can.
    pub fn unreadable(line: &super::input::Line) -> Option<Reject> {
        let (code, message) = if line.is_cut() {
            (reason::LINE_TOO_LONG, line.too_long())
        } else {
            (reason::INVALID_UTF8, line.text().err()?)
        };
        Some(Reject::new(
            line.number,
            line.offset,
            code,
            message,
            line.bytes,
            line.is_cut(),
        ))
    }

    pub fn with_custom_id(mut self, id: Option<String>) -> Reject {
        self.custom_id = id;
        self
    }

    /// Sets the command's own members (JSON text, see [`Reject::extra`]).
    pub fn with_extra(mut self, extra: String) -> Reject {
        self.extra = extra;
        self
    }

    /// The line for the rejects file, `\n`-terminated, appended to `buf`.
    pub fn encode(&self, file: &str, buf: &mut Vec<u8>) {
        use std::io::Write;
        let s = |buf: &mut Vec<u8>, v: &str| {
            serde_json::to_writer(&mut *buf, v).expect("string serialises")
        };
        buf.extend_from_slice(b"{\"file\":");
        s(buf, file);
        let _ = write!(
            buf,
            ",\"line\":{},\"offset\":{},\"reason\":",
            self.line, self.offset
        );
        s(buf, &self.reason);
        buf.extend_from_slice(b",\"message\":");
        s(buf, &self.message);
        if let Some(id) = &self.custom_id {
            buf.extend_from_slice(b",\"custom_id\":");
            s(buf, id);
        }
        if !self.extra.is_empty() {
            buf.push(b',');
            buf.extend_from_slice(self.extra.as_bytes());
        }
        buf.extend_from_slice(b",\"text\":");
        s(buf, &self.text);
        if self.text_cut {
            buf.extend_from_slice(b",\"text_cut\":true");
        }
        buf.extend_from_slice(b"}\n");
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

    /// Writes `reject`, a line of the input named `file`.
    pub fn write(&mut self, file: &str, reject: &Reject) -> Result<()> {
        self.count += 1;
        if let Some(out) = self.out.as_mut() {
            self.buf.clear();
            reject.encode(file, &mut self.buf);
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

    /// Whether the rejects go to a file or pipe that is still open (a closed stdout
    /// does not count).
    pub fn is_open(&self) -> bool {
        self.out.as_ref().is_some_and(|o| !o.is_closed())
    }

    /// Finishes the file without renaming it yet (`None`: stdout or nothing).
    pub fn finish_pending(self) -> Result<Option<PendingFile>> {
        match self.out {
            Some(o) => o.finish_pending(),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_in_a_fixed_key_order() {
        let r = Reject::new(
            3,
            120,
            reason::INVALID_JSON,
            "invalid JSON: eof",
            b"{\"a\xff",
            false,
        )
        .with_custom_id(Some("q\"1".into()))
        .with_extra("\"choice\":0".into());
        let mut buf = Vec::new();
        r.encode("in.jsonl", &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"file\":\"in.jsonl\",\"line\":3,\"offset\":120,\"reason\":\"invalid_json\",\
             \"message\":\"invalid JSON: eof\",\"custom_id\":\"q\\\"1\",\"choice\":0,\
             \"text\":\"{\\\"a\u{fffd}\"}\n"
        );
    }

    #[test]
    fn shared_codes_come_from_the_shared_wordings() {
        assert_eq!(
            code_of("invalid JSON: eof at byte 3", "x"),
            reason::INVALID_JSON
        );
        assert_eq!(code_of("duplicate key `url`", "x"), reason::INVALID_JSON);
        assert_eq!(
            code_of("invalid UTF-8 at byte 2 of the line", "x"),
            reason::INVALID_UTF8
        );
        let long = crate::io::input::too_long(9, 4);
        assert_eq!(code_of(&long, "x"), reason::LINE_TOO_LONG);
        assert_eq!(
            code_of(&format!("request {long}"), "x"),
            reason::LINE_TOO_LONG
        );
        assert_eq!(
            code_of(&format!("result {long}"), "x"),
            reason::LINE_TOO_LONG
        );
        assert_eq!(code_of("custom_id is missing", "own"), "own");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REJECT_TEXT);
        let r = Reject::with_text(1, 0, "x", "m", &long, false);
        assert!(r.text_cut);
        assert!(r.text.len() <= MAX_REJECT_TEXT && r.text.len() >= MAX_REJECT_TEXT - 1);
        let r = Reject::new(1, 0, "x", "m", long.as_bytes(), false);
        assert!(r.text_cut && r.text.len() <= MAX_REJECT_TEXT);
        let short = Reject::new(1, 0, "x", "m", b"abc", false);
        assert!(!short.text_cut);
    }
}
