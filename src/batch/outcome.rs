//! Fast, borrowing reads of result and request lines for `join`: the fast path of its
//! index pass ([`scan_ok_result`]), the `custom_id` of any JSONL line (requests,
//! sidecars), and the small string helpers the classifier shares. The verdict of a
//! result line is decided in one place only: [`classify`](super::classify).

use std::borrow::Cow;

use crate::json;

/// The crate's one JSON string decoder (kept here under its old path for callers).
pub use crate::json::text::decode_string;

/// The fast path of the index pass for the usual OpenAI result line
/// `{"id": "..", "custom_id": "..", "response": {"status_code": 200, ..}, "error": null}`
/// (keys in this order, as the API and vLLM write them): reads only the head of the
/// line up to the start of `body` and its tail, and searches the body for the token
/// `"error"`, without parsing it. Returns the custom_id and
/// `true` for a success, or `None` when the line does not look exactly like that (or
/// is a failure), and the full parse must decide. The line is fully parsed (and so
/// validated) later, when a request is joined to it.
pub fn scan_ok_result(line: &[u8]) -> Option<&str> {
    let mut p = Scan { s: line, i: 0 };
    p.byte(b'{')?;
    let mut id = None;
    loop {
        let key = p.string()?;
        p.colon()?;
        match key {
            b"id" => {
                p.string()?;
            }
            b"custom_id" => {
                let raw = p.string()?;
                if raw.is_empty() || raw.contains(&b'\\') || id.is_some() {
                    return None;
                }
                id = Some(simdutf8::basic::from_utf8(raw).ok()?);
            }
            b"response" => {
                p.byte(b'{')?;
                if p.string()? != b"status_code" {
                    return None;
                }
                p.colon()?;
                p.ws();
                let start = p.i;
                while p.i < line.len() && line[p.i].is_ascii_digit() {
                    p.i += 1;
                }
                let status: u32 = std::str::from_utf8(&line[start..p.i]).ok()?.parse().ok()?;
                if !(200..400).contains(&status) {
                    return None;
                }
                // Then `request_id` (optional) and a `body` that is an object.
                loop {
                    p.byte(b',')?;
                    let key = p.string()?;
                    p.colon()?;
                    match key {
                        b"request_id" => {
                            p.string()?;
                        }
                        b"body" => {
                            p.byte(b'{')?;
                            break;
                        }
                        _ => return None,
                    }
                }
                break;
            }
            _ => return None,
        }
        p.ws();
        p.byte(b',')?;
    }
    // The line must end with the member `"error": null` itself: the byte before its
    // key (spaces aside) is the comma that ends the previous member, so that a string
    // ending in `\"error` cannot pass for it.
    let tail = line.trim_ascii_end();
    let key_at = [&b"\"error\": null}"[..], &b"\"error\":null}"[..]]
        .iter()
        .find(|t| tail.ends_with(t))
        .map(|t| tail.len() - t.len())?;
    let before = tail[..key_at].trim_ascii_end();
    if before.last() != Some(&b',') || p.i > key_at {
        return None;
    }
    // A 2xx whose body holds a non-null `error` member is a failure: a body with the
    // token `"error"` anywhere (as a key or a string; an escaped `\"error\"` inside a
    // string does not match) goes to the full parse, unless it is `"error": null` (the
    // Responses API writes one in every body). One SIMD search, no parse.
    let body = &line[p.i..key_at];
    for at in memchr::memmem::find_iter(body, b"\"error\"") {
        let mut q = Scan { s: body, i: at + 7 };
        q.ws();
        let null_member = q.s.get(q.i) == Some(&b':') && {
            q.i += 1;
            q.ws();
            q.s[q.i..].starts_with(b"null")
        };
        if !null_member {
            return None;
        }
    }
    id
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }
    fn byte(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }
    fn colon(&mut self) -> Option<()> {
        self.byte(b':')
    }
    /// The contents of a JSON string (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.i;
        loop {
            let j = self.i + memchr::memchr2(b'"', b'\\', &self.s[self.i..])?;
            if self.s[j] == b'\\' {
                self.i = j + 2;
                if self.i > self.s.len() {
                    return None;
                }
            } else {
                self.i = j + 1;
                return Some(&self.s[start..j]);
            }
        }
    }
}

/// Checks UTF-8 with SIMD; on failure the standard library says where.
pub fn utf8(bytes: &[u8]) -> Result<&str, String> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) => Err(match std::str::from_utf8(bytes) {
            Err(e) => format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
            Ok(_) => "invalid UTF-8".to_string(),
        }),
    }
}

/// The custom_id's raw token and decoded text, or why it is unusable (`None`: absent or
/// null).
pub fn custom_id_of(raw: Option<&str>) -> Result<(&str, Cow<'_, str>), String> {
    let Some(raw) = raw else {
        return Err("custom_id is missing".into());
    };
    match decode_string(raw) {
        Some(s) if s.is_empty() => Err("custom_id is empty".into()),
        Some(s) => Ok((raw, s)),
        // A string that does not decode: the scan checked every escape but surrogates.
        None if raw.starts_with('"') => Err(
            "custom_id must be a non-empty string, found a string with a lone surrogate escape (\\uD800-\\uDFFF)"
                .into(),
        ),
        None => Err(format!(
            "custom_id must be a non-empty string, found {}",
            json::scan::kind_of(raw)
        )),
    }
}

/// The parts of a request-side line that `join` copies: its custom_id, and the request
/// to show (`body` for Batch API request lines, `record` for sidecars, `request` for
/// Gemini lines).
#[derive(Debug)]
pub struct RequestSide<'a> {
    pub custom_id_raw: &'a str,
    pub custom_id: Cow<'a, str>,
    /// `body`, else `record`, else `request` (raw JSON text); `None` means "the whole
    /// line".
    pub shown: Option<&'a str>,
    /// The whole line, checked to be UTF-8 and JSON.
    pub text: &'a str,
}

/// Parses any JSONL line carrying a `custom_id` (a request line, a sidecar record), or
/// Gemini's `key` when it has no `custom_id` (the classifier reads result lines the
/// same way, so the two sides always agree on the id).
pub fn parse_request_side(line: &[u8]) -> Result<RequestSide<'_>, String> {
    let text = utf8(line)?;
    let b = text.as_bytes();
    let mut slots = [None, None, None, None, None];
    json::scan::members(
        b,
        0,
        ["custom_id", "body", "record", "key", "request"],
        [
            "duplicate key `custom_id`",
            "duplicate key `body`",
            "duplicate key `record`",
            "duplicate key `key`",
            "duplicate key `request`",
        ],
        &mut slots,
        |_, _| None,
    )
    .and_then(|span| json::scan::only_whitespace_after(b, span.end))
    .map_err(|e| e.to_string())?;
    let [custom_id, body, record, key, request] =
        slots.each_ref().map(|s| json::scan::non_null(text, s));
    let (custom_id_raw, custom_id) = custom_id_of(custom_id.or(key))?;
    Ok(RequestSide {
        custom_id_raw,
        custom_id,
        shown: body.or(record).or(request),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_ids_decode() {
        let r = parse_request_side(br#"{"custom_id":"a\u002d1","record":{"k":[1]}}"#).unwrap();
        assert_eq!(r.custom_id, "a-1");
        assert_eq!(r.shown.unwrap(), r#"{"k":[1]}"#);
    }
}
