//! Fast, borrowing check of a Batch API request line.
//!
//! One pass of serde_json over the line validates all of it as JSON while keeping only
//! what the commands need: `custom_id`, `method`, `url`, `body.model`, `body.stream`,
//! the number of embedding inputs, and (only when asked) the raw text of the prompt
//! fields for token counting. Strings without escapes are borrowed, never copied;
//! every other value is skipped without building a tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::endpoint::Endpoint;

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

/// Raw JSON of the body fields that carry prompt text.
#[derive(Debug, Default)]
pub struct PromptFields<'a> {
    pub messages: Option<&'a RawValue>,
    pub input: Option<&'a RawValue>,
    pub prompt: Option<&'a RawValue>,
    pub instructions: Option<&'a RawValue>,
}

/// The JSON type of a field we expected to be a string, or the string.
enum Field<'a> {
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other(if v { "true" } else { "false" }))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other("null"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other("an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other("an array"))
    }
}

/// The top-level object's fields, as found.
#[derive(Default)]
struct Found<'a> {
    custom_id: Option<Field<'a>>,
    method: Option<Field<'a>>,
    url: Option<Field<'a>>,
    body: Option<Body<'a>>,
}

#[derive(Default)]
struct Body<'a> {
    is_object: bool,
    kind: &'static str,
    model: Option<Field<'a>>,
    stream_true: bool,
    inputs: u64,
    prompt: PromptFields<'a>,
}

struct LineVisitor {
    want_prompt: bool,
}

fn dup<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key \"{key}\""))
}

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Found<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let mut found = Found::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "custom_id" => {
                    if found.custom_id.replace(map.next_value()?).is_some() {
                        return Err(dup("custom_id"));
                    }
                }
                "method" => {
                    if found.method.replace(map.next_value()?).is_some() {
                        return Err(dup("method"));
                    }
                }
                "url" => {
                    if found.url.replace(map.next_value()?).is_some() {
                        return Err(dup("url"));
                    }
                }
                "body" => {
                    let body = map.next_value_seed(BodySeed {
                        want_prompt: self.want_prompt,
                    })?;
                    if found.body.replace(body).is_some() {
                        return Err(dup("body"));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

struct BodySeed {
    want_prompt: bool,
}

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Body<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
        let mut body = Body {
            is_object: true,
            kind: "an object",
            ..Body::default()
        };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "model" => {
                    if body.model.replace(map.next_value()?).is_some() {
                        return Err(dup("body.model"));
                    }
                }
                "stream" => {
                    body.stream_true = matches!(map.next_value::<Field>()?, Field::Other("true"))
                }
                "input" => {
                    if self.want_prompt {
                        let raw: &'de RawValue = map.next_value()?;
                        body.inputs = count_inputs(raw);
                        body.prompt.input = Some(raw);
                    } else {
                        body.inputs = map.next_value::<InputCount>()?.0;
                    }
                }
                "messages" if self.want_prompt => body.prompt.messages = Some(map.next_value()?),
                "prompt" if self.want_prompt => body.prompt.prompt = Some(map.next_value()?),
                "instructions" if self.want_prompt => {
                    body.prompt.instructions = Some(map.next_value()?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Body {
            kind: "an array",
            ..Body::default()
        })
    }
    fn visit_str<E>(self, _: &str) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "a string",
            ..Body::default()
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "a boolean",
            ..Body::default()
        })
    }
    fn visit_i64<E>(self, _: i64) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "a number",
            ..Body::default()
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "a number",
            ..Body::default()
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "a number",
            ..Body::default()
        })
    }
    fn visit_unit<E>(self) -> Result<Body<'de>, E> {
        Ok(Body {
            kind: "null",
            ..Body::default()
        })
    }
}

/// Number of embedding inputs in `input`: each element of an array of strings or of
/// token arrays; a string or a single token array (array of numbers) is one.
struct InputCount(u64);

impl<'de> Deserialize<'de> for InputCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an input")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputCount, A::Error> {
                let mut n = 0u64;
                let mut numbers = false;
                while let Some(kind) = seq.next_element::<Field>()? {
                    if n == 0 && matches!(kind, Field::Other("a number")) {
                        numbers = true;
                    }
                    n += 1;
                }
                Ok(InputCount(if numbers { 1 } else { n }))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputCount, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(InputCount(1))
            }
            fn visit_str<E>(self, _: &str) -> Result<InputCount, E> {
                Ok(InputCount(1))
            }
            fn visit_bool<E>(self, _: bool) -> Result<InputCount, E> {
                Ok(InputCount(1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<InputCount, E> {
                Ok(InputCount(1))
            }
            fn visit_u64<E>(self, _: u64) -> Result<InputCount, E> {
                Ok(InputCount(1))
            }
            fn visit_f64<E>(self, _: f64) -> Result<InputCount, E> {
                Ok(InputCount(1))
            }
            fn visit_unit<E>(self) -> Result<InputCount, E> {
                Ok(InputCount(0))
            }
        }
        d.deserialize_any(V)
    }
}

fn count_inputs(raw: &RawValue) -> u64 {
    serde_json::from_str::<InputCount>(raw.get())
        .map(|c| c.0)
        .unwrap_or(1)
}

fn describe(field: &Option<Field>) -> &'static str {
    match field {
        None => "missing",
        Some(Field::Str(_)) => "a string",
        Some(Field::Other(kind)) => kind,
    }
}

/// Checks one request line (already known to be UTF-8) and returns its fields, or the
/// reason it is not a valid Batch API request line. `want_prompt` keeps the raw prompt
/// fields for token counting.
pub fn parse_request(line: &str, want_prompt: bool) -> Result<RequestLine<'_>, String> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = de
        .deserialize_map(LineVisitor { want_prompt })
        .and_then(|f| de.end().map(|_| f))
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let custom_id = match found.custom_id {
        Some(Field::Str(s)) if !s.is_empty() => s,
        Some(Field::Str(_)) => return Err("custom_id is empty".into()),
        ref other => {
            return Err(format!(
                "custom_id must be a non-empty string, found {}",
                describe(other)
            ))
        }
    };
    match &found.method {
        Some(Field::Str(m)) if m == "POST" => {}
        Some(Field::Str(m)) => return Err(format!("method must be \"POST\", found \"{m}\"")),
        other => {
            return Err(format!(
                "method must be \"POST\", found {}",
                describe(other)
            ))
        }
    }
    let (url, endpoint) = match found.url {
        Some(Field::Str(u)) => match Endpoint::from_url(&u) {
            Some(e) => (u, e),
            None => {
                return Err(format!(
                    "unknown url \"{u}\" (known: {})",
                    Endpoint::known_urls()
                ))
            }
        },
        ref other => return Err(format!("url must be a string, found {}", describe(other))),
    };
    let body = match found.body {
        Some(b) if b.is_object => b,
        Some(b) => return Err(format!("body must be an object, found {}", b.kind)),
        None => return Err("body must be an object, found missing".into()),
    };
    let model = match body.model {
        Some(Field::Str(m)) if !m.is_empty() => m,
        Some(Field::Str(_)) => return Err("body.model is empty".into()),
        ref other => {
            return Err(format!(
                "body.model must be a string, found {}",
                describe(other)
            ))
        }
    };
    if body.stream_true {
        return Err("body.stream is true: streaming is not allowed in a batch".into());
    }
    Ok(RequestLine {
        custom_id,
        endpoint,
        url,
        model,
        inputs: body.inputs,
        prompt: body.prompt,
    })
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
