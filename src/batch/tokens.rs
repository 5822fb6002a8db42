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
    ///
    /// The same figure as `bpe_openai::Tokenizer::count` (the sum of the byte-pair
    /// counts of the pre-tokenizer's pieces), with the counts of short pieces (words)
    /// remembered per thread: natural text repeats its words, so most pieces are then
    /// a hash lookup instead of a byte-pair encoding.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let tok = self.tokenizer();
        let text = tok.normalize(text);
        let text = text.as_str();
        COUNTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            let remember = (RECENT_MIN..=RECENT_MAX).contains(&text.len());
            if remember {
                if let Some((_, _, n)) = cache
                    .recent
                    .iter()
                    .find(|(e, t, _)| *e == self && t.as_str() == text)
                {
                    return *n;
                }
            }
            let map = &mut cache.pieces[self as usize];
            let n = tok
                .split(text)
                .map(|piece| piece_count(tok, map, piece.as_bytes()))
                .sum::<u64>();
            if remember {
                if cache.recent.len() == RECENT {
                    cache.recent.pop_back();
                }
                cache.recent.push_front((self, text.to_string(), n));
            }
            n
        })
    }
}

/// Whole texts counted last on a thread, remembered with their count: the echo server
/// counts a prompt, then the same text again as its answer. Only texts of
/// `RECENT_MIN..=RECENT_MAX` bytes (shorter ones cost little, longer ones memory).
const RECENT: usize = 4;
const RECENT_MIN: usize = 64;
const RECENT_MAX: usize = 1 << 16;

#[derive(Default)]
struct Counts {
    /// Byte-pair counts of recent pieces, one map per [`Encoding`].
    pieces: [PieceMap; 2],
    recent: std::collections::VecDeque<(Encoding, String, u64)>,
}

/// Pieces at most this long have their count remembered.
const PIECE_MAX: usize = 32;
/// Remembered pieces per encoding and thread, at most (then the cache starts over).
const PIECES_MAX: usize = 1 << 16;

type PieceMap = std::collections::HashMap<Box<[u8]>, u32>;

thread_local! {
    static COUNTS: std::cell::RefCell<Counts> = std::cell::RefCell::new(Counts::default());
}

fn piece_count(tok: &bpe_openai::Tokenizer, map: &mut PieceMap, piece: &[u8]) -> u64 {
    if piece.len() > PIECE_MAX {
        return tok.bpe.count(piece) as u64;
    }
    if let Some(&n) = map.get(piece) {
        return n as u64;
    }
    let n = tok.bpe.count(piece);
    if map.len() >= PIECES_MAX {
        map.clear();
    }
    map.insert(piece.into(), n as u32);
    n as u64
}

/// Prompt tokens of a request line parsed with `want_prompt`.
pub fn prompt_tokens(req: &RequestLine) -> u64 {
    prompt_tokens_of_fields(req.endpoint, &req.model, &req.prompt)
}

/// [`prompt_tokens`] from the parts it reads: endpoint, model and prompt fields.
fn prompt_tokens_of_fields(
    endpoint: Endpoint,
    model: &str,
    fields: &super::request::PromptFields,
) -> u64 {
    let enc = Encoding::for_model(model);
    let parse = |raw: Option<&str>| raw.and_then(|r| serde_json::from_str::<Value>(r).ok());
    match endpoint {
        Endpoint::ChatCompletions => {
            parse(fields.messages).map_or(0, |m| messages_tokens(enc, &m) + 3)
        }
        Endpoint::Responses => {
            let instructions = parse(fields.instructions).map_or(0, |v| text_tokens(enc, &v));
            let input = match parse(fields.input) {
                Some(Value::Array(items)) => messages_tokens(enc, &Value::Array(items)) + 3,
                Some(v) => text_tokens(enc, &v),
                None => 0,
            };
            instructions + input
        }
        Endpoint::Completions => parse(fields.prompt).map_or(0, |v| text_tokens(enc, &v)),
        _ => parse(fields.input).map_or(0, |v| text_tokens(enc, &v)),
    }
}

/// Prompt tokens of a request `body` (its JSON object text) sent to `endpoint`: the
/// same figure as [`prompt_tokens`] of a request line holding this body, found by a
/// scan of the body alone (no line to build, no tree of the rest). `None` when the
/// body is not a JSON object with a string `model`, or repeats a key.
pub fn body_prompt_tokens(endpoint: Endpoint, body: &str) -> Option<u64> {
    let b = body.as_bytes();
    let mut slots = [None, None, None, None, None];
    crate::json::scan::members(
        b,
        0,
        ["model", "input", "messages", "prompt", "instructions"],
        [
            "duplicate key `body.model`",
            "duplicate key `body.input`",
            "duplicate key `body.messages`",
            "duplicate key `body.prompt`",
            "duplicate key `body.instructions`",
        ],
        &mut slots,
        |_, _| None,
    )
    .ok()?;
    let [model, input, messages, prompt, instructions] =
        slots.each_ref().map(|s| s.clone().map(|r| &body[r]));
    let model = crate::json::text::decode_string(model?.trim())?;
    Some(prompt_tokens_of_fields(
        endpoint,
        &model,
        &super::request::PromptFields {
            messages,
            input,
            prompt,
            instructions,
        },
    ))
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

    #[test]
    fn remembered_piece_counts_equal_the_tokenizer() {
        // Repeated words (cache hits), long pieces (not cached), whitespace runs,
        // digits, scripts without spaces, emoji, contractions; twice, so the second
        // pass is answered from the cache.
        let texts = [
            "hello world hello world, hello!",
            "数据 be so мир for déjà they 提示 question 안녕하세요 — “quoted” 😀🚀 straße",
            "Supercalifragilisticexpialidocious-antidisestablishmentarianism_and_more_words",
            "  leading and   inner    spaces\n\n\ttabs\r\n and 1234567 digits 3.14159",
            "I'm sure they'll say it's what we've done, isn't it? DON'T SHOUT",
            "こんにちは世界こんにちは世界こんにちは世界こんにちは世界こんにちは世界",
            &"word ".repeat(500),
            "",
            // Texts that differ only near the end, one after the other (the memo of
            // whole texts must not confuse them).
            &"a long shared prefix of the kind a system prompt has; ".repeat(3),
            &("a long shared prefix of the kind a system prompt has; ".repeat(3) + "x"),
        ];
        for _ in 0..2 {
            for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
                for t in texts {
                    assert_eq!(
                        enc.count(t),
                        enc.tokenizer().count(t) as u64,
                        "{} {t:?}",
                        enc.name()
                    );
                }
            }
        }
    }

    #[test]
    fn body_counts_equal_line_counts() {
        let bodies = [
            (
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello world"}],"name":"bob"}],"max_tokens":5}"#,
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-4.1","instructions":"be brief","input":[{"role":"user","content":"hi there"}]}"#,
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-4.1","input":"just a string"}"#,
            ),
            (
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":["a b c","d"]}"#,
            ),
            (
                "/v1/completions",
                r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Once upon"}"#,
            ),
            (
                "/v1/chat/completions",
                r#"{"model":"gpt-\u0034o","messages":[{"role":"user","content":"caf\u00e9"}]}"#,
            ),
        ];
        for (url, body) in bodies {
            let line =
                format!(r#"{{"custom_id":"x","method":"POST","url":"{url}","body":{body}}}"#);
            let req = parse_request(&line, true).unwrap();
            let want = prompt_tokens(&req);
            assert!(want > 0, "{body}");
            assert_eq!(body_prompt_tokens(req.endpoint, body), Some(want), "{body}");
        }
        let chat = Endpoint::ChatCompletions;
        assert_eq!(body_prompt_tokens(chat, r#"{"messages":[]}"#), None);
        assert_eq!(
            body_prompt_tokens(chat, r#"{"model":"m","model":"n"}"#),
            None
        );
        assert_eq!(body_prompt_tokens(chat, "[1]"), None);
    }
}
