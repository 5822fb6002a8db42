//! The `--echo` model: a deterministic stand-in for an LLM, so a whole offline pipeline
//! (build → batch → extract → join) can run without a provider.
//!
//! - chat completions, responses and completions answer with the text of the last user
//!   message (the prompt for completions), cut to `max_tokens` / `max_completion_tokens`
//!   / `max_output_tokens` with `finish_reason: "length"` when longer;
//! - with `response_format` (chat) or `text.format` (responses) of type `json_object`
//!   the answer is `{"echo": TEXT}`; with `json_schema` it is an object holding every
//!   required property, filled by its type (strings get TEXT, numbers 0, booleans
//!   false, arrays `minItems` elements, enums their first value);
//! - embeddings are a fixed unit vector per input (from a hash of the input), of
//!   `dimensions` (default 16) floats, or base64 when `encoding_format` asks for it;
//! - usage is counted with the real OpenAI encoding of the model.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::store::{new_id, now};
use crate::batch::tokens::{prompt_tokens, Encoding};
use crate::batch::{parse_request, Endpoint};

/// Embedding size when the request does not say `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 16;

/// Answers one request body for `endpoint`, as the provider's JSON body (or its error).
pub fn respond(endpoint: Endpoint, body: &Value) -> Result<Value, ApiError> {
    respond_with(endpoint, body, None)
}

/// [`respond`], with the body's prompt tokens when the caller has counted them already
/// (the same figure as [`prompt_tokens_of`]).
pub fn respond_with(
    endpoint: Endpoint,
    body: &Value,
    prompt: Option<u64>,
) -> Result<Value, ApiError> {
    let Value::Object(b) = body else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match b.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'model'.")
                    .param("model")
                    .code("missing_required_parameter"),
            )
        }
    };
    if b.get("stream") == Some(&Value::Bool(true)) {
        return Err(ApiError::bad_request(
            "Streaming is not supported by batchline serve; send stream: false.",
        )
        .param("stream")
        .code("unsupported_value"));
    }
    let enc = Encoding::for_model(&model);
    let prompt = prompt.unwrap_or_else(|| prompt_tokens_of(endpoint, body));
    match endpoint {
        Endpoint::ChatCompletions => chat(b, &model, enc, prompt),
        Endpoint::Responses => responses(b, &model, enc, prompt),
        Endpoint::Completions => completions(b, &model, enc, prompt),
        Endpoint::Embeddings => embeddings(b, &model, prompt),
        Endpoint::Moderations => moderations(b, &model),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("The echo model does not serve {}.", other.url()),
        )
        .code("unsupported_endpoint")),
    }
}

/// Prompt tokens of a body, through the library's count for request lines (the same
/// figure `shard` and the enqueued-token limit use), by wrapping the body in a line.
pub fn prompt_tokens_of(endpoint: Endpoint, body: &Value) -> u64 {
    let line = format!(
        r#"{{"custom_id":"x","method":"POST","url":"{}","body":{}}}"#,
        endpoint.url(),
        body
    );
    parse_request(&line, true).map_or(0, |r| prompt_tokens(&r))
}

/// The text of a message content: a string, or the text parts of an array.
fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The last user message of a `messages` / `input` array (or the string itself).
fn last_user_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `text` cut to at most `max` tokens, whether it was cut, and its tokens (counted
/// once here, not again by the caller).
fn cut(enc: Encoding, text: &str, max: Option<u64>) -> (String, bool, u64) {
    let all = enc.count(text);
    if max.is_none_or(|max| all <= max) {
        return (text.to_string(), false, all);
    }
    let max = max.unwrap_or(u64::MAX);
    // The longest prefix (at a char boundary) within `max` tokens, by bisection.
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let (mut lo, mut hi, mut lo_count) = (0usize, bounds.len() - 1, 0);
    // The bisection starts from a bracket around the end of the last pre-tokenizer
    // piece that fits (the running count of the pieces), once both ends are checked
    // with real counts: a few counts of prefixes instead of log2(length) of them.
    if let Some((a, b)) = piece_bracket(enc, text, max) {
        let (a, b) = (
            bounds.partition_point(|&x| x < a),
            bounds.partition_point(|&x| x < b),
        );
        let n = enc.count(&text[..bounds[a]]);
        if n <= max {
            (lo, lo_count) = (a, n);
        }
        if b < hi && enc.count(&text[..bounds[b]]) > max {
            hi = b - 1;
        }
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let n = enc.count(&text[..bounds[mid]]);
        if n <= max {
            (lo, lo_count) = (mid, n);
        } else {
            hi = mid - 1;
        }
    }
    (text[..bounds[lo]].to_string(), true, lo_count)
}

/// Byte offsets around where `text` passes `max` tokens, from the counts of its
/// pre-tokenizer pieces: the end of the last piece that fits, less one character, and
/// the end of the piece after it, plus one. `None` when the pieces say it all fits.
fn piece_bracket(enc: Encoding, text: &str, max: u64) -> Option<(usize, usize)> {
    let mut sum = 0;
    let mut fits = 0;
    for piece in enc.tokenizer().split(text) {
        let end = piece.as_ptr() as usize - text.as_ptr() as usize + piece.len();
        sum += enc.count(piece);
        if sum > max {
            let a = text[..fits]
                .char_indices()
                .next_back()
                .map_or(0, |(i, _)| i);
            let b = text[end..]
                .chars()
                .next()
                .map_or(end, |c| end + c.len_utf8());
            return Some((a, b));
        }
        fits = end;
    }
    None
}

fn max_of(b: &Map<String, Value>, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| b.get(*k).and_then(Value::as_u64))
}

/// The answer text for a requested format: plain, `{"echo": text}`, or a schema filled.
fn shaped(format: Option<&Value>, schema_at: &[&str], text: &str) -> (String, bool) {
    let kind = format.and_then(|f| f.get("type")).and_then(Value::as_str);
    match kind {
        Some("json_object") => (json!({ "echo": text }).to_string(), true),
        Some("json_schema") => {
            let mut schema = format;
            for k in schema_at {
                schema = schema.and_then(|s| s.get(*k));
            }
            let schema = schema.cloned().unwrap_or(json!({"type": "object"}));
            (fill(&schema, &schema, text, 0).to_string(), true)
        }
        _ => (text.to_string(), false),
    }
}

/// A value that satisfies `schema` (the common subset: types, required properties,
/// enums, const, anyOf/oneOf, local `$ref`s).
fn fill(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    let Value::Object(s) = schema else {
        return Value::String(text.to_string());
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        let mut target = Some(root);
        for part in r
            .trim_start_matches("#/")
            .split('/')
            .filter(|p| !p.is_empty() && *p != "#")
        {
            target = target.and_then(|t| t.get(part));
        }
        return target.map_or(Value::Null, |t| fill(t, root, text, depth + 1));
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        if let Some(first) = e.first() {
            return first.clone();
        }
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = s.get(k) {
            let pick = alts
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .or(alts.first());
            if let Some(a) = pick {
                return fill(a, root, text, depth + 1);
            }
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(req)) = s.get("required") {
                for name in req.iter().filter_map(Value::as_str) {
                    let sub = props.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                    out.insert(name.to_string(), fill(sub, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let n = s
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(16);
            let item = s.get("items").unwrap_or(&Value::Null);
            Value::Array((0..n).map(|_| fill(item, root, text, depth + 1)).collect())
        }
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "number" => json!(s.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

fn chat(
    b: &Map<String, Value>,
    model: &str,
    enc: Encoding,
    prompt: u64,
) -> Result<Value, ApiError> {
    let Some(Value::Array(_)) = b.get("messages") else {
        return Err(
            ApiError::bad_request("Missing required parameter: 'messages'.")
                .param("messages")
                .code("missing_required_parameter"),
        );
    };
    let last = last_user_text(b.get("messages"));
    let (shaped_text, is_json) =
        shaped(b.get("response_format"), &["json_schema", "schema"], &last);
    // JSON is never cut: a truncated object would not parse, which is not what a
    // structured-output request gets back.
    let (text, was_cut, tokens) = if is_json {
        let n = enc.count(&shaped_text);
        (shaped_text, false, n)
    } else {
        cut(
            enc,
            &shaped_text,
            max_of(b, &["max_completion_tokens", "max_tokens"]),
        )
    };
    let n = b
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 128);
    let completion = tokens * n;
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": if was_cut { "length" } else { "stop" },
            })
        })
        .collect();
    Ok(json!({
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_batchline_echo",
    }))
}

fn responses(
    b: &Map<String, Value>,
    model: &str,
    enc: Encoding,
    prompt: u64,
) -> Result<Value, ApiError> {
    if b.get("input").is_none() {
        return Err(
            ApiError::bad_request("Missing required parameter: 'input'.")
                .param("input")
                .code("missing_required_parameter"),
        );
    }
    let last = last_user_text(b.get("input"));
    let format = b.get("text").and_then(|t| t.get("format"));
    let (shaped_text, is_json) = shaped(format, &["schema"], &last);
    let (text, was_cut, out) = if is_json {
        let n = enc.count(&shaped_text);
        (shaped_text, false, n)
    } else {
        cut(enc, &shaped_text, max_of(b, &["max_output_tokens"]))
    };
    Ok(json!({
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": if was_cut { "incomplete" } else { "completed" },
        "error": null,
        "incomplete_details": if was_cut { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": b.get("instructions").cloned().unwrap_or(Value::Null),
        "model": model,
        "output": [{
            "type": "message",
            "id": new_id("msg_"),
            "status": if was_cut { "incomplete" } else { "completed" },
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + out,
        },
    }))
}

fn completions(
    b: &Map<String, Value>,
    model: &str,
    enc: Encoding,
    prompt: u64,
) -> Result<Value, ApiError> {
    let text = match b.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'prompt'.")
                    .param("prompt")
                    .code("missing_required_parameter"),
            )
        }
    };
    let (text, was_cut, out) = cut(enc, &text, max_of(b, &["max_tokens"]));
    Ok(json!({
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": null,
            "finish_reason": if was_cut { "length" } else { "stop" }}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out},
    }))
}

/// A fixed unit vector for one input: the same input always gives the same vector.
pub fn vector(input: &Value, dims: usize) -> Vec<f32> {
    let key = input.to_string();
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), i as u64);
            (h >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn embeddings(b: &Map<String, Value>, model: &str, prompt: u64) -> Result<Value, ApiError> {
    let inputs: Vec<Value> = match b.get("input") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) if a.first().is_some_and(Value::is_number) => {
            vec![Value::Array(a.clone())]
        }
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'input'.")
                    .param("input")
                    .code("missing_required_parameter"),
            )
        }
    };
    let dims = b
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| d.clamp(1, 4096) as usize);
    let base64 = b.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let v = vector(input, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }))
}

fn moderations(b: &Map<String, Value>, model: &str) -> Result<Value, ApiError> {
    let n = match b.get("input") {
        Some(Value::Array(a)) => a.len(),
        Some(_) => 1,
        None => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'input'.")
                    .param("input")
                    .code("missing_required_parameter"),
            )
        }
    };
    let results: Vec<Value> = (0..n)
        .map(|_| json!({"flagged": false, "categories": {}, "category_scores": {}}))
        .collect();
    Ok(json!({"id": new_id("modr-"), "model": model, "results": results}))
}

/// Standard base64 with padding (the form OpenAI uses for `encoding_format: base64`).
pub fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(T[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_body(extra: Value) -> Value {
        let mut b = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    }

    #[test]
    fn chat_echoes_the_last_user_message_with_real_usage() {
        let r = respond(Endpoint::ChatCompletions, &chat_body(json!({}))).unwrap();
        assert_eq!(r["choices"][0]["message"]["content"], "hello world");
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        assert_eq!(r["usage"]["completion_tokens"], 2);
        // 2 messages × 3 framing + "system"(1) + "be brief"(2) + "user"(1) + 2 + 3 priming
        assert_eq!(r["usage"]["prompt_tokens"], 6 + 1 + 2 + 1 + 2 + 3);
        let cut = respond(
            Endpoint::ChatCompletions,
            &chat_body(json!({"max_tokens": 1})),
        )
        .unwrap();
        assert_eq!(cut["choices"][0]["message"]["content"], "hello");
        assert_eq!(cut["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn json_modes_give_valid_json() {
        let r = respond(
            Endpoint::ChatCompletions,
            &chat_body(json!({"response_format": {"type": "json_object"}})),
        )
        .unwrap();
        let v: Value =
            serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(v, json!({"echo": "hello world"}));
        let schema = json!({"type": "object", "required": ["name", "age", "tags", "kind", "ok"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "kind": {"enum": ["a", "b"]}, "ok": {"type": ["boolean", "null"]}, "extra": {"type": "string"}}});
        let r = respond(
            Endpoint::ChatCompletions,
            &chat_body(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})),
        )
        .unwrap();
        let v: Value =
            serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"name": "hello world", "age": 0, "tags": ["hello world"], "kind": "a", "ok": false})
        );
    }

    #[test]
    fn responses_and_embeddings() {
        let r = respond(
            Endpoint::Responses,
            &json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}]}),
        )
        .unwrap();
        assert_eq!(r["output"][0]["content"][0]["text"], "hi there");
        let e = respond(
            Endpoint::Embeddings,
            &json!({"model": "text-embedding-3-small", "input": ["a", "b", "a"]}),
        )
        .unwrap();
        assert_eq!(e["data"][0]["embedding"], e["data"][2]["embedding"]);
        assert_ne!(e["data"][0]["embedding"], e["data"][1]["embedding"]);
        assert_eq!(
            e["data"][0]["embedding"].as_array().unwrap().len(),
            DEFAULT_DIMENSIONS
        );
        assert_eq!(e["usage"]["prompt_tokens"], 3);
    }

    /// The bracketed bisection gives a prefix within `max` tokens that ends where a
    /// bisection over the whole text ends, or a few characters from it: counts of
    /// prefixes are not monotone at every character ("déj" can take more tokens than
    /// "déjà"), so neither search is the longest prefix at every `max`.
    #[test]
    fn cuts_are_the_longest_prefix_within_max() {
        fn plain(enc: Encoding, text: &str, max: u64) -> String {
            let bounds: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let (mut lo, mut hi) = (0usize, bounds.len() - 1);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if enc.count(&text[..bounds[mid]]) <= max {
                    lo = mid
                } else {
                    hi = mid - 1
                }
            }
            text[..bounds[lo]].to_string()
        }
        let texts = [
            "数据 be so мир for déjà they in with scenario answer it her with 提示 question for 안녕하세요 not you — — мир",
            "hello world, this is   a test\n\nof  whitespace\t\tand 12345678 digits, I'm sure it's fine!!! ok",
            "こんにちは世界こんにちは世界😀🚀😀🚀 straße Größe naïve façade",
        ];
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for t in texts {
                let all = enc.count(t);
                for max in 0..=all + 1 {
                    let (got, was_cut, n) = cut(enc, t, Some(max));
                    let p = plain(enc, t, max);
                    let (short, long) = if got.len() <= p.len() {
                        (&got, &p)
                    } else {
                        (&p, &got)
                    };
                    assert!(long.starts_with(short.as_str()), "{got:?} {p:?}");
                    assert!(
                        long[short.len()..].chars().count() <= 4,
                        "{} max {max}: {got:?} vs {p:?}",
                        enc.name()
                    );
                    assert_eq!(was_cut, max < all);
                    assert_eq!(n, enc.count(&got));
                    assert!(n <= max || !was_cut);
                }
            }
        }
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
