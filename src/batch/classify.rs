//! The one classifier of result lines: for any line of a results file (OpenAI output or
//! error file, Anthropic Message Batches, Gemini batch, or a line `join` wrote), its id
//! and its verdict: **ok** (with the raw JSON object where the model's texts are),
//! **failed** (with a code, and whether resubmitting can help: **retryable**), or
//! unusable (an `Err`: not JSON, no id, not a result line). `join`, `extract` and the
//! network commands all decide through [`classify`], so they cannot disagree.
//!
//! One pass of [`json::scan`](crate::json::scan) validates the line and keeps only the
//! spans of the members the rules read; bodies are never built into trees. Only the
//! small error objects of failures are read with serde_json (and only with `detail`).
//!
//! # Rules (in this order; see README, join and extract)
//! - The id is `custom_id` (a non-empty string); without one, Gemini's `key`.
//! - A line `join` wrote (a top-level `status` string): `ok` is ok with `response` as
//!   the body; `failed` is failed with the `error` object's code, message and status;
//!   `missing` is failed (code `missing`, retryable: nothing was ever answered).
//! - Anthropic (`result` object, no `response`): `succeeded` with a `message` object is
//!   ok (the body is the message); `succeeded` without one is failed (`missing_message`);
//!   `errored` is failed with the inner error type as code; `canceled` and `expired`
//!   are failed and retryable; any other type is failed with the type as code.
//! - A non-null top-level `error` is failed (its `code`, else `type`, else `error`).
//! - Neither a `response` nor an `error`: unusable.
//! - `response.status_code` >= 400 is failed (code from `body.error`, else `http_NNN`).
//! - A 2xx/3xx whose body holds a non-null `error` is failed (the provider answered
//!   with an error): code from it.
//! - A 2xx/3xx whose `body` is absent or `null` is failed (`missing_body`): there is
//!   nothing to read.
//! - A `response` without `status_code`: on a Gemini line (keyed by `key`) the response
//!   is the body (Gemini writes no status); otherwise failed (`missing_status_code`):
//!   there is no telling the request succeeded.
//! - Otherwise ok, with `response.body` as the body.
//!
//! Retryable: HTTP 429 or 5xx, or a code in [`RETRYABLE_CODES`] (expired, cancelled,
//! rate limits, overloaded, server errors, a `missing` result, and no answer at all:
//! `timeout`, `connection_failed`, `connection_dropped`, `upstream_unreachable`). Malformed results
//! (`missing_body`, `missing_message`, `missing_status_code`) are not: whoever wrote
//! them would write them again; `--retry-all` takes them too.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::outcome::{custom_id_of, decode_string, utf8};
use crate::json;

/// A classified result line, borrowed from the line.
#[derive(Debug)]
pub struct Classified<'a> {
    /// The whole line, checked to be UTF-8 and JSON.
    pub text: &'a str,
    /// The raw JSON string token of the id (quotes included).
    pub custom_id_raw: &'a str,
    /// The decoded id.
    pub custom_id: Cow<'a, str>,
    pub verdict: Verdict<'a>,
}

/// Ok (with the raw JSON object where the texts are) or failed.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// `body`: OpenAI `response.body`, Anthropic `result.message`, Gemini `response`,
    /// or a joined line's `response`; always an object or array text, never `null`.
    Ok {
        body: &'a str,
    },
    Failed(Failure<'a>),
}

impl Verdict<'_> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok { .. })
    }
}

/// A failed request: the error code (resolved to a string, for counting), the raw
/// message, the HTTP status when there was one, and whether to resubmit.
#[derive(Debug)]
pub struct Failure<'a> {
    pub code: Cow<'a, str>,
    /// The message as raw JSON text (a string, usually).
    pub message: Option<&'a str>,
    pub status_code: Option<u64>,
    /// Resubmitting may help. Exact only when classified with `detail` (without it the
    /// code of an error object is not read).
    pub retryable: bool,
}

impl Failure<'_> {
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
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
    "missing",
    // No answer at all, as `run` writes it after its last attempt (and as `serve
    // --upstream` writes it): the next attempt may get one.
    "timeout",
    "connection_failed",
    "connection_dropped",
    "upstream_unreachable",
];

fn failure<'a>(
    code: Cow<'a, str>,
    message: Option<&'a str>,
    status_code: Option<u64>,
) -> Verdict<'a> {
    let retryable = matches!(status_code, Some(429) | Some(500..=599))
        || RETRYABLE_CODES.contains(&code.as_ref());
    Verdict::Failed(Failure {
        code,
        message,
        status_code,
        retryable,
    })
}

/// `{"code", "message", "type", "error", "status_code"}` of an error object, all
/// optional.
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
    /// Written by `join` into a failed line's `error`.
    #[serde(borrow, default)]
    status_code: Option<&'a RawValue>,
}

fn error_object(raw: Option<&str>) -> ErrorObject<'_> {
    match raw {
        Some(r) if r.starts_with('{') => serde_json::from_str(r).unwrap_or_default(),
        _ => ErrorObject::default(),
    }
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

/// Code of an error object: `code`, else `type`.
fn code_of<'a>(e: &ErrorObject<'a>) -> Option<Cow<'a, str>> {
    scalar_text(e.code).or_else(|| scalar_text(e.kind))
}

/// An error object (or a bare value) as a failure: code from the object (or its
/// nested `error`), message likewise; a non-object error is its own message.
fn error_failure<'a>(raw: &'a str, status: Option<u64>, fallback: &'static str) -> Verdict<'a> {
    let outer = error_object(Some(raw));
    let inner = error_object(outer.error.map(RawValue::get));
    let code = code_of(&inner)
        .or_else(|| code_of(&outer))
        .unwrap_or(Cow::Borrowed(fallback));
    let message = if raw.starts_with('{') {
        inner.message.or(outer.message).map(RawValue::get)
    } else {
        Some(raw)
    };
    failure(code, message, status)
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

/// Classifies one result line. `detail` also digs the error code and message out of
/// failures (the index pass of `join` needs only ok/failed and skips that).
///
/// The whole line is checked to be UTF-8 first, with SIMD, then scanned once by
/// [`json::scan`](crate::json::scan), which checks it is JSON and hands back the spans
/// of the members read here.
pub fn classify(line: &[u8], detail: bool) -> Result<Classified<'_>, String> {
    let text = utf8(line)?;
    let b = text.as_bytes();
    let mut top = [None, None, None, None, None, None];
    let mut response_members = [None, None];
    let mut body_members = [None];
    let mut result_members = [None, None, None];
    json::scan::members(
        b,
        0,
        ["custom_id", "response", "error", "result", "key", "status"],
        [
            "duplicate key `custom_id`",
            "duplicate key `response`",
            "duplicate key `error`",
            "duplicate key `result`",
            "duplicate key `key`",
            "duplicate key `status`",
        ],
        &mut top,
        |n, at| match n {
            // `response` (and its body) and `result` are looked into in the same pass.
            1 if json::scan::starts_object(b, at) => Some(json::scan::members(
                b,
                at,
                ["status_code", "body"],
                [
                    "duplicate key `response.status_code`",
                    "duplicate key `response.body`",
                ],
                &mut response_members,
                |m, at| {
                    (m == 1 && json::scan::starts_object(b, at)).then(|| {
                        json::scan::members(
                            b,
                            at,
                            ["error"],
                            ["duplicate key `response.body.error`"],
                            &mut body_members,
                            |_, _| None,
                        )
                    })
                },
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
    let [custom_id, response, error, result, key, status] =
        top.each_ref().map(|s| json::scan::non_null(text, s));
    let gemini = custom_id.is_none() && key.is_some();
    let (custom_id_raw, custom_id) = custom_id_of(custom_id.or(key))?;
    let verdict = if let Some(status) = status.filter(|s| s.starts_with('"')) {
        joined(status, response, error, detail)?
    } else if let (Some(_), None) = (object_or_absent(result, "result")?, response) {
        anthropic(text, &result_members, detail)?
    } else {
        let response = object_or_absent(response, "response")?;
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
        if let Some(e) = error {
            if detail {
                error_failure(e, status_code, "error")
            } else {
                failure(Cow::Borrowed("error"), None, status_code)
            }
        } else if let Some(response) = response {
            let body_error = json::scan::non_null(text, &body_members[0]);
            match status_code {
                Some(s) if s >= 400 => {
                    let fallback = Cow::Owned(format!("http_{s}"));
                    match body.filter(|_| detail) {
                        Some(body) => {
                            let body = error_object(Some(body));
                            let inner = error_object(body.error.map(RawValue::get));
                            let code = code_of(&inner)
                                .or_else(|| code_of(&body))
                                .unwrap_or(fallback);
                            failure(
                                code,
                                inner.message.or(body.message).map(RawValue::get),
                                Some(s),
                            )
                        }
                        None => failure(fallback, None, Some(s)),
                    }
                }
                Some(s) => match (body, body_error) {
                    (None, _) => failure(Cow::Borrowed("missing_body"), None, Some(s)),
                    (Some(_), Some(e)) if detail => error_failure(e, Some(s), "body_error"),
                    (Some(_), Some(_)) => failure(Cow::Borrowed("body_error"), None, Some(s)),
                    (Some(body), None) => Verdict::Ok { body },
                },
                None if gemini => Verdict::Ok { body: response },
                None => failure(Cow::Borrowed("missing_status_code"), None, None),
            }
        } else {
            return Err("result has neither a response nor an error".into());
        }
    };
    Ok(Classified {
        text,
        custom_id_raw,
        custom_id,
        verdict,
    })
}

/// A line `join` wrote: `{"custom_id", "status", "request", "response" | "error"}`.
fn joined<'a>(
    status: &'a str,
    response: Option<&'a str>,
    error: Option<&'a str>,
    detail: bool,
) -> Result<Verdict<'a>, String> {
    match status {
        "\"ok\"" => match response {
            Some(body) => Ok(Verdict::Ok { body }),
            None => Ok(failure(Cow::Borrowed("missing_body"), None, None)),
        },
        "\"failed\"" => Ok(match error {
            Some(e) if detail => {
                let o = error_object(Some(e));
                let status = o.status_code.and_then(|s| s.get().parse::<u64>().ok());
                error_failure(e, status, "error")
            }
            _ => failure(Cow::Borrowed("error"), None, None),
        }),
        "\"missing\"" => Ok(failure(Cow::Borrowed("missing"), None, None)),
        other => Err(format!(
            "status must be \"ok\", \"failed\" or \"missing\" (a line join wrote), found {other}"
        )),
    }
}

/// An Anthropic Message Batches result line.
fn anthropic<'a>(
    text: &'a str,
    members: &[Option<std::ops::Range<usize>>; 3],
    detail: bool,
) -> Result<Verdict<'a>, String> {
    let [kind, message, error] = members.each_ref().map(|s| json::scan::non_null(text, s));
    let kind = match kind {
        None => return Err("result.type is missing".into()),
        Some(k) => decode_string(k).ok_or_else(|| {
            format!(
                "result.type must be a string, found {}",
                json::scan::kind_of(k)
            )
        })?,
    };
    Ok(match kind.as_ref() {
        "succeeded" => match object_or_absent(message, "result.message")? {
            Some(body) => Verdict::Ok { body },
            None => failure(Cow::Borrowed("missing_message"), None, None),
        },
        "errored" => match error {
            Some(e) if detail => error_failure(e, None, "errored"),
            _ => failure(Cow::Borrowed("errored"), None, None),
        },
        "canceled" => failure(Cow::Borrowed("canceled"), None, None),
        "expired" => failure(Cow::Borrowed("expired"), None, None),
        other => failure(Cow::Owned(other.to_string()), None, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::outcome::scan_ok_result;

    fn code(line: &str) -> (bool, String, Option<u64>, bool) {
        let r = classify(line.as_bytes(), true).unwrap();
        match r.verdict {
            Verdict::Ok { .. } => (true, String::new(), None, false),
            Verdict::Failed(f) => (false, f.code.to_string(), f.status_code, f.is_retryable()),
        }
    }

    #[test]
    fn classifies_openai_lines() {
        let ok = r#"{"id":"b","custom_id":"a","response":{"status_code":200,"body":{"x":1}},"error":null}"#;
        let r = classify(ok.as_bytes(), true).unwrap();
        assert_eq!(r.custom_id, "a");
        assert_eq!(r.custom_id_raw, "\"a\"");
        match r.verdict {
            Verdict::Ok { body } => assert_eq!(body, r#"{"x":1}"#),
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
        match classify(text.as_bytes(), true).unwrap().verdict {
            Verdict::Failed(f) => {
                assert_eq!((f.code.as_ref(), f.message), ("error", Some("\"boom\"")))
            }
            _ => panic!(),
        }
    }

    /// The codes `run` and `serve` write themselves, one row each: the failures that
    /// resubmitting can cure are retryable, the ones it cannot are not.
    #[test]
    fn codes_run_and_serve_write_are_classified() {
        let table: &[(&str, bool)] = &[
            // run: no answer after the last attempt (src/exec, post_once)
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"timeout","message":"timed out (after 5 attempts)"},"attempts":5}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"connection_failed","message":"could not connect"},"attempts":5}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"connection_dropped","message":"dropped"},"attempts":5}"#,
                true,
            ),
            // run: a key that cannot be a header, a line that is not a request
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"bad_key","message":"m"},"attempts":1}"#,
                false,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"invalid_request_line","message":"in:1:0: x"},"attempts":0}"#,
                false,
            ),
            // run: an HTTP error after the last attempt keeps its status
            (
                r#"{"id":"b","custom_id":"a","response":{"status_code":429,"request_id":null,"body":{"error":{"message":"m","type":"requests","code":"rate_limit_exceeded"}}},"error":null,"attempts":5}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":{"status_code":502,"request_id":null,"body":{"error":{"message":"m","type":"invalid_response","param":null,"code":"non_json_body"}}},"error":null,"attempts":5}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"m","type":"invalid_request_error","code":"missing_required_parameter"}}},"error":null,"attempts":1}"#,
                false,
            ),
            // serve: batch lines that were never executed, and an unreachable upstream
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"batch_expired","message":"m"}}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"batch_cancelled","message":"m"}}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":null,"error":{"code":"upstream_unreachable","message":"m"}}"#,
                true,
            ),
            (
                r#"{"id":"b","custom_id":"a","response":{"status_code":502,"request_id":"r","body":{"error":{"message":"m","type":"server_error","param":null,"code":"upstream_unreachable"}}},"error":null}"#,
                true,
            ),
        ];
        // A bad line that repeats a custom_id carries none: no request to match it
        // to, so it is unusable as a result (join and extract report it as such).
        let dup = r#"{"id":"b","custom_id":null,"response":null,"error":{"code":"invalid_request_line","message":"in:2:0: duplicate custom_id"},"attempts":0}"#;
        assert!(classify(dup.as_bytes(), true).is_err());
        for (line, retryable) in table {
            let (ok, code_, _, r) = code(line);
            assert!(!ok, "{line}");
            assert_eq!(r, *retryable, "{code_}: {line}");
            // Without `detail` (join's index pass) the verdict is failed all the same.
            assert!(!classify(line.as_bytes(), false).unwrap().verdict.is_ok());
        }
    }

    #[test]
    fn fast_scan_agrees_with_the_parser() {
        let cases = [
            (
                r#"{"id": "b", "custom_id": "req-1", "response": {"status_code": 200, "body": {"x": null}}, "error": null}"#,
                Some("req-1"),
            ),
            // A null `error` in the body (the Responses API writes one) stays fast; any
            // other `error` defers to the full parse.
            (
                r#"{"id": "b", "custom_id": "req-1", "response": {"status_code": 200, "body": {"error": null}}, "error": null}"#,
                Some("req-1"),
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":{"a":{"error" : null},"error":{"code":"c"}}},"error":null}"#,
                None,
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":{"error":"nullish"}},"error":null}"#,
                None,
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":{"error":{"code":"c"}}},"error":null}"#,
                None,
            ),
            (
                r#"{"custom_id":"x","response":{"status_code":200,"body":null},"error":null}"#,
                None,
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
                r#"{"id":"a\"b","custom_id":"y","response":{"status_code":201,"body":[]},"error":null}"#,
                None,
            ),
            (
                r#"{"id":"a\"b","custom_id":"y","response":{"status_code":201,"request_id":"r","body":{}},"error":null}"#,
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
                let r = classify(line.as_bytes(), false).unwrap();
                assert!(r.verdict.is_ok());
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
            let e = classify(line.as_bytes(), false).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn one_verdict_for_the_disputed_shapes() {
        // 2xx whose body holds an error: failed, code from it, status kept.
        let body_err = r#"{"custom_id":"a","response":{"status_code":200,"body":{"error":{"code":"server_error","message":"m"}}},"error":null}"#;
        assert_eq!(
            code(body_err),
            (false, "server_error".into(), Some(200), true)
        );
        // ... but a null `error` in the body (the Responses API writes one) is ok.
        let responses = r#"{"custom_id":"a","response":{"status_code":200,"body":{"output":[],"error":null}},"error":null}"#;
        assert!(code(responses).0);
        // A body of null or no body: failed, not retryable.
        for l in [
            r#"{"custom_id":"a","response":{"status_code":200,"body":null},"error":null}"#,
            r#"{"custom_id":"a","response":{"status_code":200},"error":null}"#,
        ] {
            assert_eq!(
                code(l),
                (false, "missing_body".into(), Some(200), false),
                "{l}"
            );
        }
        // Anthropic succeeded without a message.
        assert_eq!(
            code(r#"{"custom_id":"a","result":{"type":"succeeded"}}"#),
            (false, "missing_message".into(), None, false)
        );
        assert!(classify(
            br#"{"custom_id":"a","result":{"type":"succeeded","message":3}}"#,
            true
        )
        .is_err());
        assert_eq!(
            code(r#"{"custom_id":"a","result":{"type":"canceled"}}"#),
            (false, "canceled".into(), None, true)
        );
        // Gemini: keyed by `key`, the response is the body, no status.
        let g = r#"{"key":"g1","response":{"candidates":[{"content":{"parts":[{"text":"{}"}]}}]}}"#;
        let r = classify(g.as_bytes(), true).unwrap();
        assert_eq!(r.custom_id, "g1");
        assert!(matches!(r.verdict, Verdict::Ok { body } if body.starts_with(r#"{"candidates""#)));
        let ge = r#"{"key":"g2","error":{"code":429,"message":"quota"}}"#;
        assert_eq!(code(ge), (false, "429".into(), None, false));
        // Lines join wrote.
        let ok = r#"{"custom_id":"j","status":"ok","request":{},"response":{"choices":[]}}"#;
        assert!(
            matches!(classify(ok.as_bytes(), true).unwrap().verdict, Verdict::Ok { body } if body == r#"{"choices":[]}"#)
        );
        let failed = r#"{"custom_id":"j","status":"failed","request":{},"error":{"code":"rate_limit_exceeded","message":"m","status_code":429}}"#;
        assert_eq!(
            code(failed),
            (false, "rate_limit_exceeded".into(), Some(429), true)
        );
        let missing = r#"{"custom_id":"j","status":"missing","request":{}}"#;
        assert_eq!(code(missing), (false, "missing".into(), None, true));
        assert!(classify(br#"{"custom_id":"j","status":"done"}"#, true).is_err());
    }
}
