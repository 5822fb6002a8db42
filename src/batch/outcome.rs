//! Fast, borrowing parse of a Batch API *result* line (output or error file), and of the
//! `custom_id` of any JSONL line (requests, sidecars).
//!
//! One pass of [`json::scan`](crate::json::scan) over the line validates it as JSON and keeps only spans of
//! what `join` needs: `custom_id`, `response.status_code`, `response.body`, the
//! top-level `error`, and for Anthropic result lines `result.{type,message,error}`.
//! Bodies are never built into trees; they are copied to the output as raw bytes. Only
//! the small error objects of failures are read with serde_json.
//!
//! Classification (see SPEC.md):
//! - OpenAI: `error` non-null (`batch_expired`, `batch_cancelled`, ...) is a failure;
//!   otherwise `response.status_code` >= 400 is a failure (the code from
//!   `response.body.error.code`, else its `type`); otherwise a success.
//! - Anthropic: `result.type` `succeeded` is a success (the body is `result.message`);
//!   `errored` (code from `result.error.error.type`), `canceled` and `expired` fail.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json;

/// What a result line holds, borrowed from the line.
#[derive(Debug)]
pub struct ResultLine<'a> {
    /// The whole line, checked to be UTF-8 and JSON.
    pub text: &'a str,
    /// The raw JSON string token of the custom_id (quotes included).
    pub custom_id_raw: &'a str,
    /// The decoded custom_id.
    pub custom_id: Cow<'a, str>,
    pub outcome: Outcome<'a>,
}

/// Success (with the raw response body) or failure.
#[derive(Debug)]
pub enum Outcome<'a> {
    Ok { body: Option<&'a str> },
    Failed(Failure<'a>),
}

impl Outcome<'_> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// A failed request: the error code (resolved to a string, for counting), the raw
/// message, and the HTTP status when there was one.
#[derive(Debug)]
pub struct Failure<'a> {
    pub code: Cow<'a, str>,
    /// The message as raw JSON text (a string, usually).
    pub message: Option<&'a str>,
    pub status_code: Option<u64>,
}

/// Error codes worth resubmitting (besides HTTP 429 and 5xx).
pub const RETRYABLE_CODES: &[&str] = &[
    "batch_expired",
    "batch_cancelled",
    "expired",
    "canceled",
    "rate_limit_exceeded",
    "server_error",
    "api_error",
    "overloaded_error",
];

impl Failure<'_> {
    /// 429, 5xx, an expired or cancelled batch, or a transient server-side code.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status_code, Some(429) | Some(500..=599))
            || RETRYABLE_CODES.contains(&self.code.as_ref())
    }
}

/// `{"code": .., "message": .., "type": ..}` of an error object, all optional.
#[derive(Deserialize, Default)]
struct ErrorObject<'a> {
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<&'a RawValue>,
    /// Anthropic nests `{"type":"error","error":{"type","message"}}`; OpenAI HTTP
    /// bodies nest `{"error":{...}}`.
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// A JSON string value decoded, or the text of any other scalar; `None` for null,
/// objects and arrays.
fn scalar_text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let s = raw?.get();
    if s.starts_with('"') {
        decode_string(s)
    } else if s == "null" || s.starts_with('{') || s.starts_with('[') {
        None
    } else {
        Some(Cow::Borrowed(s))
    }
}

/// Decodes a raw JSON string token (quotes included), borrowing when it has no escapes.
pub fn decode_string(raw: &str) -> Option<Cow<'_, str>> {
    if raw.len() < 2 || !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// The fast path of the index pass for the usual OpenAI result line
/// `{"id": "..", "custom_id": "..", "response": {"status_code": 200, ..}, "error": null}`
/// (keys in this order, as the API and vLLM write them): reads only the head of the
/// line up to `status_code` and its tail, not the body. Returns the custom_id and
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
    if before.last() == Some(&b',') {
        id
    } else {
        None
    }
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

fn error_object(raw: Option<&str>) -> ErrorObject<'_> {
    match raw {
        Some(r) if r.starts_with('{') => serde_json::from_str(r).unwrap_or_default(),
        _ => ErrorObject::default(),
    }
}

/// Code of an error object: `code`, else `type`.
fn code_of<'a>(e: &ErrorObject<'a>) -> Option<Cow<'a, str>> {
    scalar_text(e.code).or_else(|| scalar_text(e.kind))
}

/// An optional member that must be an object when present.
fn object_or_absent<'a>(raw: Option<&'a str>, what: &str) -> Result<Option<&'a str>, String> {
    match raw {
        Some(r) if !r.starts_with('{') => Err(format!(
            "{what} must be an object, found {}",
            json::scan::kind_of(r)
        )),
        other => Ok(other),
    }
}

/// Parses one result line into its custom_id and outcome. `detail` also digs the error
/// code and message out of failures (only the writer needs them).
///
/// The whole line is checked to be UTF-8 first, with SIMD (several times faster than
/// the standard library on non-ASCII text), then scanned once by [`json::scan`](crate::json::scan), which
/// checks it is JSON and hands back the spans of the members read here.
pub fn parse_result(line: &[u8], detail: bool) -> Result<ResultLine<'_>, String> {
    let text = utf8(line)?;
    let b = text.as_bytes();
    let mut top = [None, None, None, None];
    let mut response_members = [None, None];
    let mut result_members = [None, None, None];
    json::scan::members(
        b,
        0,
        ["custom_id", "response", "error", "result"],
        [
            "duplicate key `custom_id`",
            "duplicate key `response`",
            "duplicate key `error`",
            "duplicate key `result`",
        ],
        &mut top,
        |n, at| match n {
            // `response` and `result` are looked into in the same pass.
            1 if json::scan::starts_object(b, at) => Some(json::scan::members(
                b,
                at,
                ["status_code", "body"],
                [
                    "duplicate key `response.status_code`",
                    "duplicate key `response.body`",
                ],
                &mut response_members,
                |_, _| None,
            )),
            3 if json::scan::starts_object(b, at) => Some(json::scan::members(
                b,
                at,
                ["type", "message", "error"],
                [
                    "duplicate key `result.type`",
                    "duplicate key `result.message`",
                    "duplicate key `result.error`",
                ],
                &mut result_members,
                |_, _| None,
            )),
            _ => None,
        },
    )
    .and_then(|span| json::scan::only_whitespace_after(b, span.end))
    .map_err(|e| e.to_string())?;
    let [custom_id, response, error, result] =
        top.each_ref().map(|s| json::scan::non_null(text, s));
    let (custom_id_raw, custom_id) = custom_id_of(custom_id)?;
    let response = object_or_absent(response, "response")?;
    let result = object_or_absent(result, "result")?;
    let failed = |code: Cow<'static, str>| {
        Outcome::Failed(Failure {
            code,
            message: None,
            status_code: None,
        })
    };
    let outcome = if let (Some(_), None) = (result, response) {
        // Anthropic Message Batches result.
        let [kind, message, error] = result_members
            .each_ref()
            .map(|s| json::scan::non_null(text, s));
        let kind = match kind {
            None => return Err("result.type is missing".into()),
            Some(k) => decode_string(k).ok_or_else(|| {
                format!(
                    "result.type must be a string, found {}",
                    json::scan::kind_of(k)
                )
            })?,
        };
        match kind.as_ref() {
            "succeeded" => Outcome::Ok { body: message },
            "errored" if detail => {
                let outer = error_object(error);
                let inner = error_object(outer.error.map(RawValue::get));
                let code = code_of(&inner)
                    .or_else(|| code_of(&outer))
                    .unwrap_or(Cow::Borrowed("errored"));
                Outcome::Failed(Failure {
                    code,
                    message: inner.message.or(outer.message).map(RawValue::get),
                    status_code: None,
                })
            }
            "errored" => failed(Cow::Borrowed("errored")),
            "canceled" => failed(Cow::Borrowed("canceled")),
            "expired" => failed(Cow::Borrowed("expired")),
            other => Outcome::Failed(Failure {
                code: Cow::Owned(other.to_string()),
                message: None,
                status_code: None,
            }),
        }
    } else {
        let (status_code, body) = match response {
            None => (None, None),
            Some(_) => {
                let [status, body] = response_members
                    .each_ref()
                    .map(|s| json::scan::non_null(text, s));
                let status = match status {
                    None => None,
                    Some(s) => Some(s.parse::<u64>().map_err(|_| {
                        format!("response.status_code must be an integer, found {s}")
                    })?),
                };
                (status, body)
            }
        };
        if error.is_some() {
            if detail {
                let e = error_object(error);
                let code = code_of(&e).unwrap_or(Cow::Borrowed("error"));
                // An error that is not an object (`"error": "boom"`) is its own message.
                let message = match error {
                    Some(raw) if !raw.starts_with('{') => Some(raw),
                    _ => e.message.map(RawValue::get),
                };
                Outcome::Failed(Failure {
                    code,
                    message,
                    status_code,
                })
            } else {
                Outcome::Failed(Failure {
                    code: Cow::Borrowed("error"),
                    message: None,
                    status_code,
                })
            }
        } else if response.is_none() {
            return Err("result has neither a response nor an error".into());
        } else {
            match status_code {
                Some(s) if s >= 400 => {
                    if detail {
                        let body = error_object(body);
                        let inner = error_object(body.error.map(RawValue::get));
                        let code = code_of(&inner)
                            .or_else(|| code_of(&body))
                            .unwrap_or_else(|| Cow::Owned(format!("http_{s}")));
                        Outcome::Failed(Failure {
                            code,
                            message: inner.message.or(body.message).map(RawValue::get),
                            status_code: Some(s),
                        })
                    } else {
                        Outcome::Failed(Failure {
                            code: Cow::Borrowed("http"),
                            message: None,
                            status_code: Some(s),
                        })
                    }
                }
                Some(_) => Outcome::Ok { body },
                // Without a status there is no telling that the request succeeded.
                None => failed(Cow::Borrowed("missing_status_code")),
            }
        }
    };
    Ok(ResultLine {
        text,
        custom_id_raw,
        custom_id,
        outcome,
    })
}

/// The parts of a request-side line that `join` copies: its custom_id, and the request
/// to show (`body` for Batch API request lines, `record` for sidecars).
#[derive(Debug)]
pub struct RequestSide<'a> {
    pub custom_id_raw: &'a str,
    pub custom_id: Cow<'a, str>,
    /// `body`, else `record` (raw JSON text); `None` means "the whole line".
    pub shown: Option<&'a str>,
    /// The whole line, checked to be UTF-8 and JSON.
    pub text: &'a str,
}

/// Parses any JSONL line carrying a `custom_id` (a request line, a sidecar record).
pub fn parse_request_side(line: &[u8]) -> Result<RequestSide<'_>, String> {
    let text = utf8(line)?;
    let b = text.as_bytes();
    let mut slots = [None, None, None];
    json::scan::members(
        b,
        0,
        ["custom_id", "body", "record"],
        [
            "duplicate key `custom_id`",
            "duplicate key `body`",
            "duplicate key `record`",
        ],
        &mut slots,
        |_, _| None,
    )
    .and_then(|span| json::scan::only_whitespace_after(b, span.end))
    .map_err(|e| e.to_string())?;
    let [custom_id, body, record] = slots.each_ref().map(|s| json::scan::non_null(text, s));
    let (custom_id_raw, custom_id) = custom_id_of(custom_id)?;
    Ok(RequestSide {
        custom_id_raw,
        custom_id,
        shown: body.or(record),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (bool, String, Option<u64>, bool) {
        let r = parse_result(line.as_bytes(), true).unwrap();
        match r.outcome {
            Outcome::Ok { .. } => (true, String::new(), None, false),
            Outcome::Failed(f) => (false, f.code.to_string(), f.status_code, f.is_retryable()),
        }
    }

    #[test]
    fn classifies_openai_lines() {
        let ok = r#"{"id":"b","custom_id":"a","response":{"status_code":200,"body":{"x":1}},"error":null}"#;
        let r = parse_result(ok.as_bytes(), true).unwrap();
        assert_eq!(r.custom_id, "a");
        assert_eq!(r.custom_id_raw, "\"a\"");
        match r.outcome {
            Outcome::Ok { body } => assert_eq!(body.unwrap(), r#"{"x":1}"#),
            _ => panic!(),
        }
        let http = r#"{"custom_id":"a","response":{"status_code":400,"body":{"error":{"message":"m","type":"invalid_request_error","code":"integer_above_max_value"}}},"error":null}"#;
        assert_eq!(
            code(http),
            (false, "integer_above_max_value".into(), Some(400), false)
        );
        let typed = r#"{"custom_id":"a","response":{"status_code":429,"body":{"error":{"message":"m","type":"rate_limit","code":null}}},"error":null}"#;
        assert_eq!(code(typed), (false, "rate_limit".into(), Some(429), true));
        let bare = r#"{"custom_id":"a","response":{"status_code":503,"body":"oops"},"error":null}"#;
        assert_eq!(code(bare), (false, "http_503".into(), Some(503), true));
        let exp = r#"{"custom_id":"a","response":null,"error":{"code":"batch_expired","message":"late"}}"#;
        assert_eq!(code(exp), (false, "batch_expired".into(), None, true));
        let no_status = r#"{"custom_id":"a","response":{"body":{}},"error":null}"#;
        assert_eq!(
            code(no_status),
            (false, "missing_status_code".into(), None, false)
        );
        let text = r#"{"custom_id":"a","response":null,"error":"boom"}"#;
        match parse_result(text.as_bytes(), true).unwrap().outcome {
            Outcome::Failed(f) => {
                assert_eq!((f.code.as_ref(), f.message), ("error", Some("\"boom\"")))
            }
            _ => panic!(),
        }
    }

    #[test]
    fn fast_scan_agrees_with_the_parser() {
        let cases = [
            (
                r#"{"id": "b", "custom_id": "req-1", "response": {"status_code": 200, "body": {"error": null}}, "error": null}"#,
                Some("req-1"),
            ),
            (
                r#"{"id":"b","custom_id":"x","response":{"status_code":200,"body":{}},"error":null}  "#,
                Some("x"),
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":400,"body":{}},"error":null}"#,
                None,
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":{}},"error":{"code":"c"}}"#,
                None,
            ),
            (
                r#"{"custom_id":"x\u0041","response":{"status_code":200,"body":{}},"error":null}"#,
                None,
            ),
            (
                r#"{"error":null,"custom_id":"x","response":{"status_code":200,"body":{}}}"#,
                None,
            ),
            (
                r#"{"custom_id":"x","response":{"body":{},"status_code":200},"error":null}"#,
                None,
            ),
            (
                r#"{"id":"a\"b","custom_id":"y","response":{"status_code":201},"error":null}"#,
                Some("y"),
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":{}},"error":{"code":"c"},"y\"error":null}"#,
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(scan_ok_result(line.as_bytes()), want, "{line}");
            if want.is_some() {
                let r = parse_result(line.as_bytes(), false).unwrap();
                assert!(r.outcome.is_ok());
                assert_eq!(Some(r.custom_id.as_ref()), want);
            }
        }
    }

    #[test]
    fn classifies_anthropic_lines() {
        let ok = r#"{"custom_id":"a","result":{"type":"succeeded","message":{"id":"m"}}}"#;
        assert!(code(ok).0);
        let err = r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"busy"}}}}"#;
        assert_eq!(code(err), (false, "overloaded_error".into(), None, true));
        assert_eq!(
            code(r#"{"custom_id":"a","result":{"type":"expired"}}"#).1,
            "expired"
        );
    }

    #[test]
    fn rejects_unusable_lines() {
        for (line, want) in [
            ("{", "invalid JSON"),
            (r#"{"custom_id":1,"error":{"code":"x"}}"#, "found a number"),
            (
                r#"{"response":null,"error":{"code":"x"}}"#,
                "custom_id is missing",
            ),
            (
                r#"{"custom_id":"a","response":null,"error":null}"#,
                "neither",
            ),
        ] {
            let e = parse_result(line.as_bytes(), false).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn escaped_ids_decode() {
        let r = parse_request_side(br#"{"custom_id":"a\u002d1","record":{"k":[1]}}"#).unwrap();
        assert_eq!(r.custom_id, "a-1");
        assert_eq!(r.shown.unwrap(), r#"{"k":[1]}"#);
    }
}
