//! Prompt-token counts of request lines with the real OpenAI encodings (embedded in
//! `bpe-openai`, so this works offline).
//!
//! The count follows the OpenAI cookbook's estimate for chat: for each message 3 tokens
//! of framing plus its role, content text and name (+1), then 3 tokens that prime the
//! reply. Text parts of multi-part content count; images and audio do not (the Batch API
//! bills them separately). Embeddings and moderations count their input strings (a
//! token array counts its length), completions their prompt, responses their
//! instructions and input. `max_tokens` is not added to [`prompt_tokens`]: that figure
//! is the prompt only. [`request_cost`] adds it, as providers count a request against a
//! tokens-per-minute limit (prompt plus `max_tokens` times `n`), for `run`.

use serde_json::Value;

use super::endpoint::Endpoint;
use super::request::RequestLine;

/// An OpenAI encoding (also `tokenize::OpenAiEncoding`, which adds what tokenizer files
/// need).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    /// The encoding OpenAI uses for `model`: cl100k_base for GPT-4 (not 4o/4.1/4.5),
    /// GPT-3.5 and the text-embedding / legacy completion models; o200k_base otherwise
    /// (gpt-4o, gpt-4.1, gpt-5, o-series and unknown models).
    pub fn for_model(model: &str) -> Encoding {
        let m = model.strip_prefix("ft:").unwrap_or(model);
        let cl100k = (m.starts_with("gpt-4")
            && !m.starts_with("gpt-4o")
            && !m.starts_with("gpt-4.")
            && !m.starts_with("gpt-4-o"))
            || m.starts_with("gpt-3.5")
            || m.starts_with("gpt-35")
            || m.starts_with("text-embedding-")
            || m.starts_with("davinci-002")
            || m.starts_with("babbage-002");
        if cl100k {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    pub(crate) fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    /// Tokens in `text` (no special tokens).
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.tokenizer().count(text) as u64
    }
}

/// Prompt tokens of a request line parsed with `want_prompt`.
pub fn prompt_tokens(req: &RequestLine) -> u64 {
    let enc = Encoding::for_model(&req.model);
    let parse = |raw: Option<&str>| raw.and_then(|r| serde_json::from_str::<Value>(r).ok());
    match req.endpoint {
        Endpoint::ChatCompletions => {
            parse(req.prompt.messages).map_or(0, |m| messages_tokens(enc, &m) + 3)
        }
        Endpoint::Responses => {
            let instructions = parse(req.prompt.instructions).map_or(0, |v| text_tokens(enc, &v));
            let input = match parse(req.prompt.input) {
                Some(Value::Array(items)) => messages_tokens(enc, &Value::Array(items)) + 3,
                Some(v) => text_tokens(enc, &v),
                None => 0,
            };
            instructions + input
        }
        Endpoint::Completions => parse(req.prompt.prompt).map_or(0, |v| text_tokens(enc, &v)),
        _ => parse(req.prompt.input).map_or(0, |v| text_tokens(enc, &v)),
    }
}

/// The most a request body may write: `max_completion_tokens`, `max_tokens` or
/// `max_output_tokens` (the first present), times `n`; 0 when none is set.
pub fn max_output_tokens(body: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Limits {
        max_completion_tokens: Option<u64>,
        max_tokens: Option<u64>,
        max_output_tokens: Option<u64>,
        n: Option<u64>,
    }
    match serde_json::from_str::<Limits>(body) {
        Ok(l) => {
            let max = l
                .max_completion_tokens
                .or(l.max_tokens)
                .or(l.max_output_tokens)
                .unwrap_or(0);
            max.saturating_mul(l.n.unwrap_or(1).max(1))
        }
        Err(_) => 0,
    }
}

/// A request's cost against a tokens-per-minute limit, as the provider estimates it
/// before answering: its prompt tokens plus the most it may write.
pub fn request_cost(req: &RequestLine, body: &str) -> u64 {
    prompt_tokens(req).saturating_add(max_output_tokens(body))
}

fn messages_tokens(enc: Encoding, messages: &Value) -> u64 {
    let Value::Array(items) = messages else {
        return text_tokens(enc, messages);
    };
    items
        .iter()
        .map(|m| match m {
            Value::Object(o) => {
                let mut n = 3;
                for (k, v) in o {
                    match k.as_str() {
                        "role" | "content" => n += text_tokens(enc, v),
                        "name" => n += 1 + text_tokens(enc, v),
                        "tool_calls" => n += text_tokens(enc, v),
                        _ => {}
                    }
                }
                n
            }
            other => text_tokens(enc, other),
        })
        .sum()
}

/// Tokens of every text in a value: strings, `text` parts, function arguments; a token
/// array (array of numbers) counts its length.
fn text_tokens(enc: Encoding, v: &Value) -> u64 {
    match v {
        Value::String(s) => enc.count(s),
        Value::Array(items) if items.first().is_some_and(Value::is_number) => items.len() as u64,
        Value::Array(items) => items.iter().map(|i| text_tokens(enc, i)).sum(),
        Value::Object(o) => {
            let mut n = 0;
            for key in ["text", "content", "arguments", "name", "function"] {
                if let Some(x) = o.get(key) {
                    n += text_tokens(enc, x);
                }
            }
            n
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::parse_request;

    #[test]
    fn models_map_to_their_encodings() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4.1-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("gpt-3.5-turbo"), Encoding::Cl100kBase);
        assert_eq!(
            Encoding::for_model("text-embedding-3-small"),
            Encoding::Cl100kBase
        );
        assert_eq!(Encoding::for_model("o3-mini"), Encoding::O200kBase);
    }

    #[test]
    fn chat_count_follows_the_cookbook_formula() {
        let line = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}}"#;
        let req = parse_request(line, true).unwrap();
        let enc = Encoding::O200kBase;
        assert_eq!(enc.count("hello world"), 2);
        // 3 framing + role "user" (1) + content (2) + 3 reply priming
        assert_eq!(prompt_tokens(&req), 3 + 1 + 2 + 3);
    }

    #[test]
    fn embeddings_count_inputs() {
        let line = r#"{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":["hello world","hello"]}}"#;
        let req = parse_request(line, true).unwrap();
        assert_eq!(prompt_tokens(&req), 3);
    }

    #[test]
    fn cost_adds_the_most_the_answer_may_write() {
        let line = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}],"max_tokens":100,"n":2}}"#;
        let req = parse_request(line, true).unwrap();
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}],"max_tokens":100,"n":2}"#;
        assert_eq!(max_output_tokens(body), 200);
        assert_eq!(request_cost(&req, body), 9 + 200);
        assert_eq!(
            max_output_tokens(r#"{"max_completion_tokens":7,"max_tokens":100}"#),
            7
        );
        assert_eq!(max_output_tokens(r#"{"model":"m"}"#), 0);
    }
}
