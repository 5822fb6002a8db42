//! Fast, borrowing check of a Batch API request line.
//!
//! One pass of [`json::scan`](crate::json::scan) over the line validates all of it as JSON while keeping
//! only what the commands need: `custom_id`, `method`, `url`, `body.model`,
//! `body.stream`, the number of embedding inputs, and (only when asked) the raw text of
//! the prompt fields for token counting. Strings without escapes are borrowed, never
//! copied; every other value is skipped without building a tree.

use std::borrow::Cow;
use std::ops::Range;

use super::endpoint::Endpoint;
use super::outcome::decode_string;
use crate::json;

/// What a valid request line holds, borrowed from the line where possible.
#[derive(Debug)]
pub struct RequestLine<'a> {
    pub custom_id: Cow<'a, str>,
    pub endpoint: Endpoint,
    pub url: Cow<'a, str>,
    pub model: Cow<'a, str>,
    /// Embedding inputs (`input` array elements; 1 for a string or one token array).
    pub inputs: u64,
    /// The prompt-bearing fields of the body, kept only when `want_prompt` was asked.
    pub prompt: PromptFields<'a>,
}

/// Which file a request goes to: one file holds one exact `url` string and one model
/// (the Batch API takes one endpoint per batch, and `/v1/chat/completions` and Azure's
/// `/chat/completions` are different strings to it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub endpoint: Endpoint,
    /// The url exactly as the lines write it.
    pub url: String,
    pub model: String,
}

impl RequestLine<'_> {
    /// Does this request go with `key`? (No allocation: the workers ask per line.)
    pub fn is_in(&self, key: &GroupKey) -> bool {
        key.url == self.url && key.model == self.model
    }

    pub fn group_key(&self) -> GroupKey {
        GroupKey {
            endpoint: self.endpoint,
            url: self.url.clone().into_owned(),
            model: self.model.clone().into_owned(),
        }
    }
}

/// Raw JSON text of the body fields that carry prompt text.
#[derive(Debug, Default)]
pub struct PromptFields<'a> {
    pub messages: Option<&'a str>,
    pub input: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub instructions: Option<&'a str>,
}

/// A value we expected to be a string: the decoded string, or what it was instead.
fn string_or_kind(raw: Option<&str>) -> Result<Cow<'_, str>, &'static str> {
    match raw {
        None => Err("missing"),
        // The scan checked every escape; what is left is a lone surrogate (`\ud800`).
        Some(r) if r.starts_with('"') => {
            decode_string(r).ok_or("a string with a lone surrogate escape (\\uD800-\\uDFFF)")
        }
        Some(r) => Err(json::scan::kind_of(r)),
    }
}

/// Number of embedding inputs in `input`: each element of an array of strings or of
/// token arrays; a string or a single token array (array of numbers) is one; null none.
fn count_inputs(line: &str, span: Range<usize>) -> u64 {
    match line.as_bytes()[span.start] {
        b'n' => 0,
        b'[' => match crate::json::text::array_elements(line, span) {
            Some(items) => match items.first() {
                Some(first) if matches!(line.as_bytes()[first.start], b'-' | b'0'..=b'9') => 1,
                _ => items.len() as u64,
            },
            None => 1,
        },
        _ => 1,
    }
}

/// Checks one request line (already known to be UTF-8) and returns its fields, or the
/// reason it is not a valid Batch API request line. `want_prompt` keeps the raw prompt
/// fields for token counting.
pub fn parse_request(line: &str, want_prompt: bool) -> Result<RequestLine<'_>, String> {
    let b = line.as_bytes();
    let mut top = [None, None, None, None];
    let mut body = [None, None, None, None, None, None];
    json::scan::members(
        b,
        0,
        ["custom_id", "method", "url", "body"],
        [
            "duplicate key `custom_id`",
            "duplicate key `method`",
            "duplicate key `url`",
            "duplicate key `body`",
        ],
        &mut top,
        |n, at| {
            (n == 3 && json::scan::starts_object(b, at)).then(|| {
                json::scan::members(
                    b,
                    at,
                    [
                        "model",
                        "stream",
                        "input",
                        "messages",
                        "prompt",
                        "instructions",
                    ],
                    [
                        "duplicate key `body.model`",
                        "duplicate key `body.stream`",
                        "duplicate key `body.input`",
                        "duplicate key `body.messages`",
                        "duplicate key `body.prompt`",
                        "duplicate key `body.instructions`",
                    ],
                    &mut body,
                    |_, _| None,
                )
            })
        },
    )
    .and_then(|span| json::scan::only_whitespace_after(b, span.end))
    .map_err(|e| e.to_string())?;
    let text = |span: &Option<Range<usize>>| span.clone().map(|r| &line[r]);
    let [custom_id, method, url, body_raw] = top.each_ref().map(text);
    let custom_id = match string_or_kind(custom_id) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return Err("custom_id is empty".into()),
        Err(kind) => {
            return Err(format!(
                "custom_id must be a non-empty string, found {kind}"
            ))
        }
    };
    match string_or_kind(method) {
        Ok(m) if m == "POST" => {}
        Ok(m) => return Err(format!("method must be \"POST\", found \"{m}\"")),
        Err(kind) => return Err(format!("method must be \"POST\", found {kind}")),
    }
    let (url, endpoint) = match string_or_kind(url) {
        Ok(u) => match Endpoint::from_url(&u) {
            Some(e) => (u, e),
            None => {
                return Err(format!(
                    "unknown url \"{u}\" (known: {})",
                    Endpoint::known_urls()
                ))
            }
        },
        Err(kind) => return Err(format!("url must be a string, found {kind}")),
    };
    match body_raw {
        Some(r) if r.starts_with('{') => {}
        Some(r) => {
            return Err(format!(
                "body must be an object, found {}",
                json::scan::kind_of(r)
            ))
        }
        None => return Err("body must be an object, found missing".into()),
    }
    let [model, stream, input, messages, prompt, instructions] = body.each_ref().map(text);
    let model = match string_or_kind(model) {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => return Err("body.model is empty".into()),
        Err(kind) => return Err(format!("body.model must be a string, found {kind}")),
    };
    if stream == Some("true") {
        return Err("body.stream is true: streaming is not allowed in a batch".into());
    }
    let inputs = body[2].clone().map_or(0, |span| count_inputs(line, span));
    let prompt = if want_prompt {
        PromptFields {
            messages,
            input,
            prompt,
            instructions,
        }
    } else {
        PromptFields::default()
    };
    Ok(RequestLine {
        custom_id,
        endpoint,
        url,
        model,
        inputs,
        prompt,
    })
}

/// The custom_id of a line that is JSON but not a valid request (for its reject), if it
/// has a usable one.
pub fn custom_id_of_line(line: &str) -> Option<String> {
    let mut slot = [None];
    json::scan::members(
        line.as_bytes(),
        0,
        ["custom_id"],
        ["duplicate key `custom_id`"],
        &mut slot,
        |_, _| None,
    )
    .ok()?;
    let raw = &line[slot[0].clone()?];
    decode_string(raw)
        .filter(|s| !s.is_empty())
        .map(Cow::into_owned)
}

/// Why a custom_id deserves a warning (it is accepted by OpenAI but not portable).
pub fn custom_id_warning(id: &str) -> Option<&'static str> {
    if id.len() > super::limits::CUSTOM_ID_WARN_LEN {
        Some("custom_id longer than 64 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("custom_id has characters outside [A-Za-z0-9_-]")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"custom_id":"a-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}}"#;

    #[test]
    fn accepts_a_good_line_and_borrows() {
        let r = parse_request(GOOD, false).unwrap();
        assert_eq!(r.custom_id, "a-1");
        assert!(matches!(r.custom_id, Cow::Borrowed(_)));
        assert_eq!(r.model, "gpt-4o");
        assert_eq!(r.endpoint, Endpoint::ChatCompletions);
    }

    #[test]
    fn reasons_name_the_problem() {
        let cases = [
            (r#"[1,2]"#, "invalid JSON"),
            (
                r#"{"custom_id":1,"method":"POST","url":"/v1/embeddings","body":{"model":"m"}}"#,
                "custom_id must be a non-empty string, found a number",
            ),
            (
                r#"{"custom_id":"","method":"POST","url":"/v1/embeddings","body":{"model":"m"}}"#,
                "custom_id is empty",
            ),
            (
                r#"{"custom_id":"x","method":"GET","url":"/v1/embeddings","body":{"model":"m"}}"#,
                "method must be \"POST\"",
            ),
            (
                r#"{"custom_id":"x","method":"POST","url":"/v2/x","body":{"model":"m"}}"#,
                "unknown url",
            ),
            (
                r#"{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":[]}"#,
                "body must be an object, found an array",
            ),
            (
                r#"{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{}}"#,
                "body.model must be a string, found missing",
            ),
            (
                r#"{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":"m","stream":true}}"#,
                "body.stream is true",
            ),
            (
                r#"{"custom_id":"x","custom_id":"y","method":"POST","url":"/v1/embeddings","body":{"model":"m"}}"#,
                "duplicate key",
            ),
            (
                r#"{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":"m"}} x"#,
                "invalid JSON",
            ),
        ];
        for (line, want) in cases {
            let err = parse_request(line, false).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn counts_embedding_inputs() {
        let l = |input: &str| {
            format!(
                r#"{{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{{"model":"m","input":{input}}}}}"#
            )
        };
        for (input, n) in [
            (r#""one""#, 1),
            (r#"["a","b","c"]"#, 3),
            ("[1,2,3]", 1),
            ("[[1,2],[3]]", 2),
        ] {
            assert_eq!(
                parse_request(&l(input), false).unwrap().inputs,
                n,
                "{input}"
            );
            assert_eq!(parse_request(&l(input), true).unwrap().inputs, n, "{input}");
        }
    }

    #[test]
    fn warns_on_unportable_ids() {
        assert!(custom_id_warning("req-1_A").is_none());
        assert!(custom_id_warning("req 1").is_some());
        assert!(custom_id_warning(&"a".repeat(65)).is_some());
    }
}
