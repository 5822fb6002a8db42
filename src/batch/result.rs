//! Where the model's texts are in the body of an ok result line, by body shape.
//!
//! [`read_result`] classifies a line with the one classifier
//! ([`classify`](super::classify)) and, for an ok line, returns the texts of its body,
//! or why it holds none. The body shapes (see SPEC.md):
//!
//! | shape | texts |
//! |---|---|
//! | OpenAI chat completions | each `choices[i]`: `message.content` (a string, or an array of parts whose `text` are joined), then each `message.tool_calls[j].function.arguments` (and the legacy `function_call.arguments`); a `message.refusal` makes the choice a refusal |
//! | OpenAI completions | `choices[i].text` |
//! | OpenAI responses | `output[]` items of type `message`: their `content[]` `output_text` parts joined as one text (`choice` 0); a `refusal` part makes it a refusal; `function_call` items: their `arguments` |
//! | Anthropic message (`result.message`) | `content[]`: `text` blocks joined as one text, `tool_use` blocks' `input` (already JSON) |
//! | Gemini response | `candidates[i].content.parts[].text` joined |
//!
//! A line `join` wrote holds one of these bodies in its `response`. Truncation hints:
//! `finish_reason: "length"`, responses `status: "incomplete"` or
//! `incomplete_details`, Anthropic `stop_reason: "max_tokens"`, Gemini `finishReason:
//! "MAX_TOKENS"`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::classify::{self, classify, Verdict};
use crate::json::text::decode_string;

/// Where a text came from within a choice: the message content, or a tool call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRef<'a> {
    /// Position among the choice's tool calls.
    pub index: u64,
    /// The function or tool name.
    pub name: Option<Cow<'a, str>>,
}

/// What a slot of a result holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextSource<'a> {
    /// A model's text, to be parsed as loose JSON.
    Text(Cow<'a, str>),
    /// A value that is already JSON (Anthropic `tool_use.input`), as raw JSON text.
    Json(&'a str),
    /// The model refused; its refusal message.
    Refusal(Cow<'a, str>),
    /// The choice holds no text; why.
    Missing(&'static str),
}

/// One text of a result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextItem<'a> {
    /// The choice's index (0 for shapes without choices).
    pub choice: u64,
    /// Set when the text is a tool call's arguments.
    pub tool: Option<ToolRef<'a>>,
    pub source: TextSource<'a>,
    /// The provider said this answer was cut at its token limit.
    pub provider_truncated: bool,
}

/// A result line whose request failed or that holds no text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `api_error` (the request failed), `no_text` (a successful body without text, such
    /// as embeddings) or `bad_line` (not JSON, or not a result line).
    pub reason: &'static str,
    /// The error code (`batch_expired`, `rate_limit_exceeded`, `expired`...), if any.
    pub error_code: Option<String>,
    /// The HTTP status, if any.
    pub status_code: Option<u64>,
    /// Human explanation (the API's error message).
    pub detail: String,
}

impl Failure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            error_code: None,
            status_code: None,
            detail: detail.into(),
        }
    }
}

/// The texts of one result line, with its custom_id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultTexts<'a> {
    pub custom_id: Option<Cow<'a, str>>,
    pub items: Vec<TextItem<'a>>,
}

/// Reads a result line: its custom_id, and either its texts or why it has none
/// (`bad_line`: unusable; `api_error`: the request failed; `missing`: a joined line
/// without a result; `no_text`: an ok body without text).
pub fn read_result(line: &str) -> (Option<Cow<'_, str>>, Result<Vec<TextItem<'_>>, Failure>) {
    let c = match classify(line.as_bytes(), true) {
        Ok(c) => c,
        Err(e) => {
            // Not usable: still try to name the custom_id for the rejects file.
            let id = serde_json::from_str::<IdOnly>(line)
                .ok()
                .and_then(|i| i.custom_id.or(i.key));
            // Not JSON at all is `invalid_json`, as in every command's rejects.
            let f = if serde_json::from_str::<IgnoredAny>(line).is_ok() {
                Failure::new("bad_line", format!("not a result line: {e}"))
            } else {
                Failure::new("invalid_json", e)
            };
            return (id, Err(f));
        }
    };
    let texts = match c.verdict {
        Verdict::Ok { body } => body_texts(body),
        Verdict::Failed(f) => Err(failed(&f)),
    };
    (Some(c.custom_id), texts)
}

/// The extract-side description of a failed verdict.
fn failed(f: &classify::Failure<'_>) -> Failure {
    let message = f
        .message
        .map(|m| match decode_string(m) {
            Some(s) if m.starts_with('"') => s.into_owned(),
            _ => m.to_string(),
        })
        .unwrap_or_else(|| match f.code.as_ref() {
            "missing" => "join found no result for this request".to_string(),
            "missing_body" => "the response has no body".to_string(),
            "missing_message" => "the succeeded result has no message".to_string(),
            "missing_status_code" => "the response has no status_code".to_string(),
            c => c.to_string(),
        });
    let code = f.code.as_ref();
    let detail = match f.status_code {
        Some(s) => format!("{s} {code}: {message}"),
        None if message == code => message,
        None => format!("{code}: {message}"),
    };
    Failure {
        reason: if code == "missing" {
            "missing"
        } else {
            "api_error"
        },
        error_code: Some(code.to_string()),
        status_code: f.status_code,
        detail,
    }
}

/// Reads a line of any JSONL for `--text-field`: the text at JSON pointer `text_ptr` (a
/// string is a text to parse; an object, array, number or boolean is already JSON) and
/// the custom_id at `id_ptr` (a string, or a number's digits).
pub fn read_field<'a>(
    line: &'a str,
    text_ptr: &str,
    id_ptr: &str,
) -> (Option<Cow<'a, str>>, Result<Vec<TextItem<'a>>, Failure>) {
    if let Err(e) = serde_json::from_str::<IgnoredAny>(line) {
        return (
            None,
            Err(Failure::new("invalid_json", format!("invalid JSON: {e}"))),
        );
    }
    let id = crate::json::text::pointer(line, id_ptr).and_then(|r| {
        let raw = &line[r];
        match raw.as_bytes()[0] {
            b'"' => decode_string(raw),
            b'-' | b'0'..=b'9' => Some(Cow::Borrowed(raw)),
            _ => None,
        }
    });
    let source = match crate::json::text::pointer(line, text_ptr) {
        None => {
            return (
                id,
                Err(Failure::new(
                    "no_text",
                    format!("the line has no {text_ptr}"),
                )),
            )
        }
        Some(r) => {
            let raw = &line[r];
            match raw.as_bytes()[0] {
                b'"' => match decode_string(raw) {
                    Some(t) => TextSource::Text(t),
                    None => return (id, Err(Failure::new("bad_line", "undecodable string"))),
                },
                b'n' => {
                    return (
                        id,
                        Err(Failure::new("no_text", format!("{text_ptr} is null"))),
                    );
                }
                _ => TextSource::Json(raw),
            }
        }
    };
    let item = TextItem {
        choice: 0,
        tool: None,
        source,
        provider_truncated: false,
    };
    (id, Ok(vec![item]))
}

/// The texts of an ok body (any of the shapes in the table above).
pub fn body_texts(body: &str) -> Result<Vec<TextItem<'_>>, Failure> {
    let body: Body = match serde_json::from_str(body) {
        Ok(b) => b,
        Err(e) => {
            return Err(Failure::new(
                "bad_line",
                format!("the body is not of a known shape: {e}"),
            ))
        }
    };
    if let Some(cands) = body.candidates {
        return Ok(gemini(cands));
    }
    if let Some(choices) = body.choices {
        if choices.is_empty() {
            return Err(Failure::new("no_text", "`choices` is empty"));
        }
        let mut out = Vec::new();
        for (pos, c) in choices.into_iter().enumerate() {
            chat_choice(c, pos as u64, &mut out);
        }
        return Ok(out);
    }
    if let Some(output) = body.output {
        let truncated =
            body.status.as_deref() == Some("incomplete") || body.incomplete_details.is_some();
        return responses_output(output, truncated);
    }
    if let Some(content) = body.content {
        // An Anthropic Messages body (proxies that write it in the OpenAI envelope).
        let truncated = body.stop_reason.as_deref() == Some("max_tokens");
        return anthropic_content(content, truncated, body.stop_reason.as_deref());
    }
    let what = if body.data.is_some() {
        "the body holds no text (embeddings)"
    } else {
        "the body holds no text (no choices, output or content)"
    };
    Err(Failure::new("no_text", what))
}

fn chat_choice<'a>(c: Choice<'a>, pos: u64, out: &mut Vec<TextItem<'a>>) {
    let choice = c.index.unwrap_or(pos);
    let truncated = c.finish_reason.as_deref() == Some("length");
    let item = |source, tool| text_item(choice, truncated, source, tool);
    let Some(msg) = c.message else {
        // Completions: `text`.
        match c.text {
            Some(t) => out.push(item(TextSource::Text(t), None)),
            None => out.push(item(
                TextSource::Missing("the choice has no message or text"),
                None,
            )),
        }
        return;
    };
    let (text, part_refusal) = match msg.content {
        Some(Content::Text(t)) => (Some(t), None),
        Some(Content::Parts(parts)) => join_parts(parts, &["text", "output_text"]),
        None => (None, None),
    };
    if let Some(r) = msg.refusal.or(part_refusal) {
        out.push(item(TextSource::Refusal(r), None));
        return;
    }
    let mut tools: Vec<(Option<Cow<'a, str>>, Option<Cow<'a, str>>)> = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|t| match t.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        })
        .collect();
    if let Some(f) = msg.function_call {
        tools.push((f.name, f.arguments));
    }
    let tools = tools
        .into_iter()
        .map(|(name, args)| (name, call_arguments(args)))
        .collect();
    push_answer(out, choice, truncated, text, tools);
    if out.last().map_or(true, |l| l.choice != choice) {
        let why = if c.finish_reason.as_deref() == Some("content_filter") {
            "the content is null (finish_reason content_filter)"
        } else {
            "the message content is null"
        };
        out.push(item(TextSource::Missing(why), None));
    }
}

/// Joins the text of parts whose type is one of `kinds` (or untyped); returns the text
/// (if any part had text) and the first refusal part's message.
fn join_parts<'a>(
    parts: Vec<Block<'a>>,
    kinds: &[&str],
) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    let mut text: Option<Cow<'a, str>> = None;
    let mut refusal = None;
    for p in parts {
        let kind = p.kind.as_deref();
        if kind == Some("refusal") {
            refusal = refusal.or(p.refusal);
            continue;
        }
        if kind.is_some_and(|k| !kinds.contains(&k)) {
            continue;
        }
        if let Some(t) = p.text {
            append(&mut text, t);
        }
    }
    (text, refusal)
}

/// Adds `t` to the end of the text read so far.
fn append<'a>(text: &mut Option<Cow<'a, str>>, t: Cow<'a, str>) {
    *text = Some(match text.take() {
        None => t,
        Some(prev) => Cow::Owned(prev.into_owned() + &t),
    });
}

/// One item of a choice.
fn text_item<'a>(
    choice: u64,
    truncated: bool,
    source: TextSource<'a>,
    tool: Option<ToolRef<'a>>,
) -> TextItem<'a> {
    TextItem {
        choice,
        tool,
        source,
        provider_truncated: truncated,
    }
}

/// A tool call's arguments as text, or why there are none.
fn call_arguments(args: Option<Cow<'_, str>>) -> TextSource<'_> {
    match args {
        Some(a) => TextSource::Text(a),
        None => TextSource::Missing("the tool call has no arguments"),
    }
}

/// Pushes the items of one answer: its text (unless it is blank beside tool calls),
/// then one item per tool call, numbered from 0, with its name. Pushes nothing when
/// there is neither text nor a tool call: the caller says why.
fn push_answer<'a>(
    out: &mut Vec<TextItem<'a>>,
    choice: u64,
    truncated: bool,
    text: Option<Cow<'a, str>>,
    tools: Vec<(Option<Cow<'a, str>>, TextSource<'a>)>,
) {
    match text {
        Some(t) if !t.trim().is_empty() || tools.is_empty() => {
            out.push(text_item(choice, truncated, TextSource::Text(t), None))
        }
        _ => {}
    }
    for (i, (name, source)) in tools.into_iter().enumerate() {
        let tool = ToolRef {
            index: i as u64,
            name,
        };
        out.push(text_item(choice, truncated, source, Some(tool)));
    }
}

fn responses_output(
    items: Vec<OutputItem<'_>>,
    truncated: bool,
) -> Result<Vec<TextItem<'_>>, Failure> {
    let mut text: Option<Cow<str>> = None;
    let mut refusal = None;
    let mut tools = Vec::new();
    for it in items {
        match it.kind.as_deref() {
            Some("message") => {
                let (t, r) = join_parts(it.content.unwrap_or_default(), &["output_text", "text"]);
                refusal = refusal.or(r);
                if let Some(t) = t {
                    append(&mut text, t);
                }
            }
            Some("function_call") | Some("custom_tool_call") => {
                tools.push((it.name, call_arguments(it.arguments.or(it.input))));
            }
            _ => {}
        }
    }
    let item = |source, tool| text_item(0, truncated, source, tool);
    if let Some(r) = refusal {
        return Ok(vec![item(TextSource::Refusal(r), None)]);
    }
    let mut out = Vec::new();
    push_answer(&mut out, 0, truncated, text, tools);
    if out.is_empty() {
        let why = if truncated {
            "the output holds no message (status incomplete)"
        } else {
            "the output holds no message"
        };
        out.push(item(TextSource::Missing(why), None));
    }
    Ok(out)
}

fn anthropic_content<'a>(
    blocks: Vec<Block<'a>>,
    truncated: bool,
    stop: Option<&str>,
) -> Result<Vec<TextItem<'a>>, Failure> {
    let item = |source, tool| text_item(0, truncated, source, tool);
    let mut text: Option<Cow<'a, str>> = None;
    let mut tools = Vec::new();
    for b in blocks {
        match b.kind.as_deref() {
            Some("text") | None => {
                if let Some(t) = b.text {
                    append(&mut text, t);
                }
            }
            Some("tool_use") | Some("server_tool_use") => {
                let source = match b.input {
                    Some(raw) => TextSource::Json(raw.get()),
                    None => TextSource::Missing("the tool_use block has no input"),
                };
                tools.push((b.name, source));
            }
            _ => {}
        }
    }
    if stop == Some("refusal") {
        let msg = text.unwrap_or(Cow::Borrowed("stop_reason refusal"));
        return Ok(vec![item(TextSource::Refusal(msg), None)]);
    }
    let mut out = Vec::new();
    push_answer(&mut out, 0, truncated, text, tools);
    if out.is_empty() {
        out.push(item(
            TextSource::Missing("the message has no text block"),
            None,
        ));
    }
    Ok(out)
}

fn gemini(cands: Vec<Candidate<'_>>) -> Vec<TextItem<'_>> {
    if cands.is_empty() {
        return vec![TextItem {
            choice: 0,
            tool: None,
            source: TextSource::Missing("`candidates` is empty"),
            provider_truncated: false,
        }];
    }
    cands
        .into_iter()
        .enumerate()
        .map(|(pos, c)| {
            let truncated = c.finish_reason.as_deref() == Some("MAX_TOKENS");
            let parts = c.content.and_then(|c| c.parts).unwrap_or_default();
            let (text, _) = join_parts(parts, &[]);
            let source = match text {
                Some(t) => TextSource::Text(t),
                None if c.finish_reason.as_deref() == Some("SAFETY") => {
                    TextSource::Missing("no text (finishReason SAFETY)")
                }
                None => TextSource::Missing("the candidate has no text part"),
            };
            TextItem {
                choice: c.index.unwrap_or(pos as u64),
                tool: None,
                source,
                provider_truncated: truncated,
            }
        })
        .collect()
}

// ---- the shapes, read with borrowed strings and everything else skipped ----

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(borrow, default)]
    output: Option<Vec<OutputItem<'a>>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    incomplete_details: Option<IgnoredAny>,
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<IgnoredAny>,
    /// Gemini.
    #[serde(borrow, default)]
    candidates: Option<Vec<Candidate<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    function_call: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
}

/// A content part or block: chat `{type:text,text}`, responses `{type:output_text,text}`
/// or `{type:refusal,refusal}`, Anthropic `{type:text,text}` / `{type:tool_use,input}`.
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Candidate<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    content: Option<GeminiContent<'a>>,
    #[serde(borrow, rename = "finishReason", default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct GeminiContent<'a> {
    #[serde(borrow, default)]
    parts: Option<Vec<Block<'a>>>,
}

/// A chat message's `content`: a string or an array of parts.
enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Block<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content<'a>, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<Block<'a>>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<TextItem<'_>> {
        read_result(line).1.unwrap()
    }

    #[test]
    fn chat_choices_tools_and_refusals() {
        let l = r#"{"custom_id":"a","response":{"status_code":200,"body":{"choices":[
            {"index":0,"message":{"content":"{\"x\":1}","refusal":null},"finish_reason":"stop"},
            {"index":1,"message":{"content":null,"refusal":"I can't."},"finish_reason":"stop"},
            {"index":2,"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"q\":2}"}}]},"finish_reason":"length"},
            {"index":3,"message":{"content":[{"type":"text","text":"[1,"},{"type":"text","text":"2]"}]},"finish_reason":"stop"}
        ]}},"error":null}"#;
        let (id, t) = read_result(l);
        assert_eq!(id.as_deref(), Some("a"));
        let t = t.unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].source, TextSource::Text("{\"x\":1}".into()));
        assert_eq!(t[1].source, TextSource::Refusal("I can't.".into()));
        assert_eq!(t[2].tool.as_ref().unwrap().name.as_deref(), Some("f"));
        assert!(t[2].provider_truncated);
        assert_eq!(t[3].source, TextSource::Text("[1,2]".into()));
    }

    #[test]
    fn failures() {
        let e = r#"{"custom_id":"b","response":null,"error":{"code":"batch_expired","message":"late"}}"#;
        let f = read_result(e).1.unwrap_err();
        assert_eq!(
            (f.reason, f.error_code.as_deref()),
            ("api_error", Some("batch_expired"))
        );
        let h = r#"{"custom_id":"b","response":{"status_code":429,"body":{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}},"error":null}"#;
        let f = read_result(h).1.unwrap_err();
        assert_eq!(f.status_code, Some(429));
        assert_eq!(f.error_code.as_deref(), Some("rate_limit_exceeded"));
        let emb = r#"{"custom_id":"c","response":{"status_code":200,"body":{"object":"list","data":[{"embedding":[0.1]}]}},"error":null}"#;
        assert_eq!(read_result(emb).1.unwrap_err().reason, "no_text");
        assert_eq!(read_result("{nope").1.unwrap_err().reason, "invalid_json");
        let a = r#"{"custom_id":"d","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}}}"#;
        let f = read_result(a).1.unwrap_err();
        assert_eq!(f.error_code.as_deref(), Some("invalid_request_error"));
        let x = r#"{"custom_id":"d","result":{"type":"expired"}}"#;
        assert_eq!(
            read_result(x).1.unwrap_err().error_code.as_deref(),
            Some("expired")
        );
    }

    #[test]
    fn responses_anthropic_completions() {
        let r = r#"{"custom_id":"r","response":{"status_code":200,"body":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"reasoning","summary":[]},{"type":"message","content":[{"type":"output_text","text":"[1","annotations":[]}]}]}},"error":null}"#;
        let t = texts(r);
        assert_eq!(t.len(), 1);
        assert!(t[0].provider_truncated);
        let a = r#"{"custom_id":"m","result":{"type":"succeeded","message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"{\"a\":"},{"type":"text","text":"1}"},{"type":"tool_use","id":"t","name":"rec","input":{"n":12345678901234567890}}],"stop_reason":"max_tokens"}}}"#;
        let t = texts(a);
        assert_eq!(t[0].source, TextSource::Text("{\"a\":1}".into()));
        assert_eq!(
            t[1].source,
            TextSource::Json("{\"n\":12345678901234567890}")
        );
        assert!(t[0].provider_truncated);
        let c = r#"{"custom_id":"c","response":{"status_code":200,"body":{"choices":[{"index":0,"text":" [1]","finish_reason":"length"}]}},"error":null}"#;
        assert_eq!(texts(c)[0].source, TextSource::Text(" [1]".into()));
    }
}
