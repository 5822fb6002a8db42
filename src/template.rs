//! Prompt templates and the records they are filled from.
//!
//! A template is text with `{field}` placeholders: `{a.b}` reaches into nested objects
//! (`{a.0}` into arrays), `{{` and `}}` are literal braces. It is compiled once and
//! rendered once per record, either as plain text or directly as the escaped content of
//! a JSON string (what `build` writes), so that a string field without escapes is
//! copied byte for byte. A string value is inserted as its text; any other value as
//! compact JSON (`42`, `true`, `null`, `["a","b"]`).
//!
//! A [`Record`] is one input line parsed once: its top-level fields are kept as raw,
//! borrowed JSON and only the fields a template asks for are looked at further.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Literal text, plain and pre-escaped for a JSON string.
    Lit { plain: String, escaped: Vec<u8> },
    /// A placeholder: a dotted path.
    Field(FieldPath),
}

/// A dotted field path such as `meta.lang` (kept whole for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    pub text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `a.b.c`; every segment must be non-empty.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.is_empty() {
            return Err("empty field name".into());
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("bad field path \"{text}\": empty segment"));
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A compiled template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `src`. Errors: a `{` never closed, a `}` not doubled, an empty `{}`, a
    /// `{` inside a placeholder, an empty path segment (`{a..b}`).
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(format!(
                        "template: unmatched '}}' at byte {i} (write '}}}}' for a literal brace)"
                    ))
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let end = rest.find(['{', '}']).filter(|&j| rest.as_bytes()[j] == b'}').ok_or_else(|| {
                        format!("template: '{{' at byte {i} is not closed (write '{{{{' for a literal brace)")
                    })?;
                    let name = &rest[..end];
                    let path =
                        FieldPath::parse(name).map_err(|e| format!("template: {e} at byte {i}"))?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit {
                            escaped: escaped(&lit),
                            plain: std::mem::take(&mut lit),
                        });
                    }
                    parts.push(Part::Field(path));
                    // Skip the placeholder's characters and its closing brace.
                    while let Some(&(j, _)) = chars.peek() {
                        if j > i + end + 1 {
                            break;
                        }
                        chars.next();
                    }
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit {
                escaped: escaped(&lit),
                plain: lit,
            });
        }
        Ok(Template { parts })
    }

    /// The field paths the template uses, in order (repeats included).
    pub fn fields(&self) -> impl Iterator<Item = &FieldPath> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Lit { .. } => None,
        })
    }

    /// True when the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.fields().next().is_none()
    }

    /// Appends the rendering as the escaped content of a JSON string (no quotes).
    pub fn render_escaped(&self, rec: &Record, out: &mut Vec<u8>) -> Result<(), LookupError> {
        for part in &self.parts {
            match part {
                Part::Lit { escaped, .. } => out.extend_from_slice(escaped),
                Part::Field(path) => rec.get(path)?.write_escaped(out),
            }
        }
        Ok(())
    }

    /// Appends the rendering as plain text.
    pub fn render(&self, rec: &Record, out: &mut String) -> Result<(), LookupError> {
        for part in &self.parts {
            match part {
                Part::Lit { plain, .. } => out.push_str(plain),
                Part::Field(path) => rec.get(path)?.write_plain(out),
            }
        }
        Ok(())
    }
}

/// Why a field could not be found in a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupError {
    /// The full path asked for.
    pub field: String,
    /// Set when a prefix of the path was found but is not an object or array.
    pub not_container: Option<String>,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.not_container {
            None => write!(f, "record has no field \"{}\"", self.field),
            Some(prefix) => write!(
                f,
                "record has no field \"{}\" (\"{prefix}\" is not an object or array)",
                self.field
            ),
        }
    }
}

/// A value found in a record: raw JSON, or plain text (the line itself with `--text`).
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Raw(&'a str),
    Text(&'a str),
}

impl<'a> Val<'a> {
    /// The JSON type's name: "string", "number", "object", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Text(_) => "string",
            Val::Raw(r) => crate::json::scan::kind_name(r),
        }
    }

    pub fn is_string(&self) -> bool {
        self.kind() == "string"
    }

    /// The text of a string value, unescaped (borrowed when it has no escapes); the
    /// compact JSON of any other value.
    pub fn to_text(&self) -> Cow<'a, str> {
        match *self {
            Val::Text(t) => Cow::Borrowed(t),
            Val::Raw(r) if r.starts_with('"') => {
                let inner = &r[1..r.len() - 1];
                if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
                    return Cow::Borrowed(inner);
                }
                let mut s = String::with_capacity(inner.len());
                unescape(inner, |p| match p {
                    Piece::Run(t) => s.push_str(t),
                    Piece::Char(c) => s.push(c),
                    // Not representable in UTF-8: shown as U+FFFD in plain text.
                    Piece::LoneSurrogate(_) => s.push('\u{FFFD}'),
                });
                Cow::Owned(s)
            }
            Val::Raw(r) => compact(r),
        }
    }

    /// Appends the value as template text would show it, escaped for a JSON string.
    pub fn write_escaped(&self, out: &mut Vec<u8>) {
        match *self {
            // Inside a valid JSON string, text between escapes holds no quote and no control
            // character, so it is already in the form serde_json would write: it is copied,
            // and only the escapes are rewritten into serde_json's form.
            Val::Raw(r) if r.starts_with('"') => {
                let inner = &r[1..r.len() - 1];
                unescape(inner, |p| match p {
                    Piece::Run(t) => out.extend_from_slice(t.as_bytes()),
                    Piece::Char(c) => escape_into(c.encode_utf8(&mut [0; 4]), out),
                    // Kept as written: valid JSON, and the API gets what the record had.
                    Piece::LoneSurrogate(e) => out.extend_from_slice(e.as_bytes()),
                })
            }
            _ => escape_into(&self.to_text(), out),
        }
    }

    /// Appends the value as template text would show it.
    pub fn write_plain(&self, out: &mut String) {
        out.push_str(&self.to_text());
    }

    /// Appends the value as compact JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match *self {
            Val::Text(t) => {
                out.push(b'"');
                escape_into(t, out);
                out.push(b'"');
            }
            Val::Raw(r) => out.extend_from_slice(compact(r).as_bytes()),
        }
    }
}

/// One input record: its top-level fields, raw and borrowed from the line.
#[derive(Debug)]
pub struct Record<'a> {
    fields: Vec<(Cow<'a, str>, Val<'a>)>,
}

impl<'a> Record<'a> {
    /// Parses a JSONL line that must hold one JSON object (validated whole).
    pub fn parse(line: &'a str) -> Result<Record<'a>, String> {
        let mut de = serde_json::Deserializer::from_str(line);
        let fields = match de.deserialize_any(ObjectVisitor) {
            Ok(Some(f)) => f,
            Ok(None) => return Err("record is not a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        de.end().map_err(|e| format!("invalid JSON: {e}"))?;
        // Duplicate keys are refused at every depth (the top level above): a path into a
        // nested object must never have two answers. Nesting has one limit for every
        // command ([`crate::json::MAX_DEPTH`]).
        for (k, v) in &fields {
            if v.starts_with('{') || v.starts_with('[') {
                use crate::json::text::{nested_problem, NestedProblem};
                match nested_problem(v.as_bytes(), 0..v.len(), 1) {
                    None => {}
                    Some((_, NestedProblem::DuplicateKey(dup))) => {
                        return Err(format!("duplicate key \"{dup}\" inside \"{k}\""))
                    }
                    Some((_, NestedProblem::TooDeep)) => {
                        return Err(format!(
                            "\"{k}\" nests deeper than {} levels",
                            crate::json::MAX_DEPTH
                        ))
                    }
                }
            }
        }
        Ok(Record {
            fields: fields.into_iter().map(|(k, v)| (k, Val::Raw(v))).collect(),
        })
    }

    /// The record of a `--text` line: `{"text": line}`.
    pub fn text(line: &'a str) -> Record<'a> {
        Record {
            fields: vec![(Cow::Borrowed("text"), Val::Text(line))],
        }
    }

    /// Looks a dotted path up.
    pub fn get(&self, path: &FieldPath) -> Result<Val<'a>, LookupError> {
        let missing = |not_container: Option<String>| LookupError {
            field: path.text.clone(),
            not_container,
        };
        let first = &path.segments[0];
        let mut cur = match self.fields.iter().find(|(k, _)| k == first) {
            Some((_, v)) => *v,
            None => return Err(missing(None)),
        };
        for (i, seg) in path.segments.iter().enumerate().skip(1) {
            let raw = match cur {
                Val::Raw(r) => r,
                Val::Text(_) => return Err(missing(Some(path.segments[..i].join(".")))),
            };
            cur = match raw.as_bytes().first() {
                Some(b'{') => {
                    // Records from `parse` are valid with unique keys; one built
                    // otherwise gets "no field" rather than a panic.
                    let obj = parse_object(raw).map_err(|_| missing(None))?;
                    match obj.into_iter().find(|(k, _)| k == seg) {
                        Some((_, v)) => Val::Raw(v),
                        None => return Err(missing(None)),
                    }
                }
                Some(b'[') => {
                    let idx: usize = seg.parse().map_err(|_| missing(None))?;
                    let arr: Vec<&RawValue> =
                        serde_json::from_str(raw).map_err(|_| missing(None))?;
                    match arr.get(idx) {
                        Some(v) => Val::Raw(v.get()),
                        None => return Err(missing(None)),
                    }
                }
                _ => return Err(missing(Some(path.segments[..i].join(".")))),
            };
        }
        Ok(cur)
    }
}

/// Parses a raw JSON object into its fields; a later duplicate of a key is an error.
fn parse_object(raw: &str) -> Result<Vec<(Cow<'_, str>, &str)>, String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    match de.deserialize_any(ObjectVisitor) {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err("not an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Collects an object's fields as raw values; `None` for any other JSON value.
struct ObjectVisitor;

type Fields<'a> = Vec<(Cow<'a, str>, &'a str)>;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Option<Fields<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Fields<'de> = Vec::with_capacity(8);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let v: &'de RawValue = map.next_value()?;
            if fields.iter().any(|(old, _)| *old == k) {
                return Err(de::Error::custom(format_args!("duplicate key \"{k}\"")));
            }
            fields.push((k, v.get()));
        }
        Ok(Some(fields))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Removes the whitespace between the tokens of valid JSON (strings are kept as written).
pub fn compact(raw: &str) -> Cow<'_, str> {
    let b = raw.as_bytes();
    if !b.iter().any(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(b.len());
    let (mut in_str, mut esc) = (false, false);
    for &c in b {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            if c == b'"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    Cow::Owned(String::from_utf8(out).expect("only ASCII whitespace was removed"))
}

/// `s` escaped as the content of a JSON string.
pub fn escaped(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    escape_into(s, &mut v);
    v
}

/// A piece of a JSON string's content, as [`unescape`] finds it.
enum Piece<'a> {
    /// Text without escapes.
    Run(&'a str),
    /// The character of an escape.
    Char(char),
    /// A `\uD8xx` escape not part of a surrogate pair (JSON allows it; UTF-8 cannot hold it).
    LoneSurrogate(&'a str),
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut n = 0;
    for &c in &b[..4] {
        n = n * 16 + (c as char).to_digit(16)?;
    }
    Some(n)
}

/// Walks the content of a valid JSON string (between its quotes), one run of plain
/// text or one escape at a time.
fn unescape<'a>(inner: &'a str, mut f: impl FnMut(Piece<'a>)) {
    let b = inner.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        let p = i + k;
        if p > i {
            f(Piece::Run(&inner[i..p]));
        }
        let c = match b.get(p + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'u') => {
                let Some(hi) = hex4(&b[p + 2..]) else {
                    // Not valid JSON (the parser would have refused it): keep it as text.
                    f(Piece::Run(&inner[p..p + 2]));
                    i = p + 2;
                    continue;
                };
                let mut end = p + 6;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    let lo = (b.get(end) == Some(&b'\\') && b.get(end + 1) == Some(&b'u'))
                        .then(|| hex4(&b[end + 2..]))
                        .flatten()
                        .filter(|lo| (0xDC00..0xE000).contains(lo));
                    match lo {
                        Some(lo) => {
                            end += 6;
                            Some(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        }
                        None => None,
                    }
                } else {
                    Some(hi)
                };
                match code.and_then(char::from_u32) {
                    Some(c) => f(Piece::Char(c)),
                    None => f(Piece::LoneSurrogate(&inner[p..end])),
                }
                i = end;
                continue;
            }
            _ => {
                f(Piece::Run(&inner[p..p + 1]));
                i = p + 1;
                continue;
            }
        };
        f(Piece::Char(c));
        i = p + 2;
    }
    if i < b.len() {
        f(Piece::Run(&inner[i..]));
    }
}

/// Appends `s` escaped as the content of a JSON string, exactly as serde_json does:
/// `"` `\` and control characters; everything else (non-ASCII included) as is.
pub fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping.
        if i + 8 <= bytes.len() {
            let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !crate::json::text::word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if b >= 0x20 && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, rec: &str) -> Result<String, String> {
        let t = Template::compile(t)?;
        let r = Record::parse(rec)?;
        let mut s = String::new();
        t.render(&r, &mut s).map_err(|e| e.to_string())?;
        let mut e = Vec::new();
        t.render_escaped(&r, &mut e).map_err(|e| e.to_string())?;
        // The escaped form is exactly serde_json's escaping of the plain form.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(String::from_utf8(e).unwrap(), json[1..json.len() - 1]);
        Ok(s)
    }

    #[test]
    fn fields_nested_and_literal_braces() {
        let rec = r#"{"a":"x","n":{"b":"y","c":[1,"two"]},"k":3}"#;
        assert_eq!(
            render("{a}-{n.b} {{lit}} }}{{", rec).unwrap(),
            "x-y {lit} }{"
        );
        assert_eq!(render("{n.c.1}/{n.c.0}", rec).unwrap(), "two/1");
        assert_eq!(render("no fields", rec).unwrap(), "no fields");
        assert_eq!(render("", rec).unwrap(), "");
    }

    #[test]
    fn non_string_values_are_compact_json() {
        let rec = r#"{"n": 1.5, "b": true, "z": null, "o": { "k" : [1, 2, "a b"] }}"#;
        assert_eq!(
            render("{n} {b} {z} {o}", rec).unwrap(),
            r#"1.5 true null {"k":[1,2,"a b"]}"#
        );
    }

    #[test]
    fn escapes_round_trip() {
        let rec = r#"{"t":"q\"uote\\ tab\t nl\n \u0001 \u00e9 é 😀 \/"}"#;
        assert_eq!(
            render("<{t}>", rec).unwrap(),
            "<q\"uote\\ tab\t nl\n \u{1} é é 😀 />"
        );
        assert_eq!(render("\"{{}}\"\n", r#"{}"#).unwrap(), "\"{}\"\n");
    }

    #[test]
    fn missing_fields_are_named() {
        let rec = r#"{"a":"x","n":{"b":"y"}}"#;
        assert_eq!(render("{b}", rec).unwrap_err(), "record has no field \"b\"");
        assert_eq!(
            render("{n.c}", rec).unwrap_err(),
            "record has no field \"n.c\""
        );
        assert_eq!(
            render("{a.c}", rec).unwrap_err(),
            "record has no field \"a.c\" (\"a\" is not an object or array)"
        );
    }

    #[test]
    fn compile_errors() {
        for bad in [
            "{", "a{b", "}", "a}b", "{}", "{a..b}", "{.a}", "{a{b}}", "{a",
        ] {
            assert!(
                Template::compile(bad).is_err(),
                "{bad:?} should not compile"
            );
        }
        let t = Template::compile("{x}{y.z}{x}").unwrap();
        let names: Vec<_> = t.fields().map(|f| f.text.as_str()).collect();
        assert_eq!(names, ["x", "y.z", "x"]);
        assert!(Template::compile("{{}}").unwrap().is_literal());
    }

    #[test]
    fn records_must_be_objects_without_duplicate_keys() {
        assert!(Record::parse("[1]")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(Record::parse("\"s\"")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(Record::parse("{\"a\":1,\"a\":2}")
            .unwrap_err()
            .contains("duplicate key"));
        assert!(Record::parse("{\"a\":1} x")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(Record::parse("{\"a\":")
            .unwrap_err()
            .contains("invalid JSON"));
        let r = Record::parse(r#"{"a\u0062":"v"}"#).unwrap();
        assert_eq!(
            r.get(&FieldPath::parse("ab").unwrap()).unwrap().to_text(),
            "v"
        );
    }

    #[test]
    fn text_records() {
        let r = Record::text("say \"hi\"");
        let t = Template::compile("Q: {text}").unwrap();
        let mut e = Vec::new();
        t.render_escaped(&r, &mut e).unwrap();
        assert_eq!(e, b"Q: say \\\"hi\\\"");
        assert!(t.render(&Record::text(""), &mut String::new()).is_ok());
    }

    #[test]
    fn escapes_are_rewritten_as_serde_json_writes_them() {
        let rec = r#"{"t":"a\u0022b\u005c\u000a\u001F\u00e9\ud83d\ude00\/\b\f"}"#;
        assert_eq!(render("{t}", rec).unwrap(), "a\"b\\\n\u{1f}é😀/\u{8}\u{c}");
        // A lone surrogate cannot be UTF-8: kept as its escape in JSON output, U+FFFD in text.
        let r = Record::parse(r#"{"t":"x\ud800y"}"#).unwrap();
        let t = Template::compile("{t}").unwrap();
        let mut e = Vec::new();
        t.render_escaped(&r, &mut e).unwrap();
        assert_eq!(e, br"x\ud800y");
        let mut p = String::new();
        t.render(&r, &mut p).unwrap();
        assert_eq!(p, "x\u{FFFD}y");
    }

    proptest::proptest! {
        #[test]
        fn raw_strings_render_as_serde_json_escapes(s in "\\PC*|[\\x00-\\x7f]*") {
            // Any JSON spelling of the string (ASCII-only here) renders in serde_json's form.
            let mut ascii = String::from("\"");
            for c in s.chars() {
                if c.is_ascii() {
                    let j = serde_json::to_string(&c.to_string()).unwrap();
                    ascii.push_str(&j[1..j.len() - 1]);
                } else {
                    for u in c.encode_utf16(&mut [0u16; 2]) {
                        ascii.push_str(&format!("\\u{u:04X}"));
                    }
                }
            }
            ascii.push('"');
            let rec = format!("{{\"t\":{ascii}}}");
            let t = Template::compile("{t}").unwrap();
            let r = Record::parse(&rec).unwrap();
            let mut e = Vec::new();
            t.render_escaped(&r, &mut e).unwrap();
            let json = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(e).unwrap(), &json[1..json.len() - 1]);
            let mut p = String::new();
            t.render(&r, &mut p).unwrap();
            proptest::prop_assert_eq!(p, s);
        }
    }

    proptest::proptest! {
        #[test]
        fn escape_matches_serde_json(s in "\\PC*|[\\x00-\\x7f]*") {
            let json = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(escaped(&s), json[1..json.len() - 1].as_bytes());
        }
    }
}
