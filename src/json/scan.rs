//! A validating scan of JSON text into byte spans, without building values.
//!
//! `join` reads every request line and every result line it writes: it needs the
//! custom_id and the spans of a few members (`body`, `response.body`, `error`), and it
//! must still refuse a line that is not JSON. serde_json does both, but it spent a third
//! of join's time walking bodies it never keeps. This scanner checks the same grammar
//! (RFC 8259) and hands back spans of the original text:
//!
//! - strings are skipped with `memchr2` on `"` and `\`, then checked for raw control
//!   bytes in one vectorised pass; escapes are checked (`\uXXXX` needs four hex digits;
//!   like serde_json, a lone surrogate is accepted);
//! - numbers follow the JSON grammar exactly (no `+1`, `01`, `1.`, `.5`, `NaN`);
//! - nesting is iterative (no recursion, so no depth limit: like serde_json's skipping,
//!   which is what checked these lines before);
//! - UTF-8 is *not* checked here: callers check the whole line once with SIMD and hand
//!   in text that is already `str`.
//!
//! A property test (`tests/json_scan_props.rs`) checks that it accepts exactly what
//! serde_json accepts, on valid documents and on every kind of damage to them.

use std::fmt;
use std::ops::Range;

/// Why a text is not JSON, and the byte (from the start of the text) where that shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.what.starts_with("duplicate") {
            // Valid JSON, but a key that may appear once appears again ([`members`]).
            write!(f, "{} at byte {}", self.what, self.at)
        } else {
            write!(f, "invalid JSON: {} at byte {}", self.what, self.at)
        }
    }
}

impl std::error::Error for ScanError {}

type Result<T> = std::result::Result<T, ScanError>;

fn fail<T>(at: usize, what: &'static str) -> Result<T> {
    Err(ScanError { at, what })
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Position of the first byte at or after `i` that ends a run of plain string
/// characters: `"`, `\\`, or a control byte (below 0x20, not allowed raw in a string);
/// `b.len()` if there is none. Sixteen bytes per step with SSE2 (every x86-64 has it).
#[inline(always)]
fn string_special(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; every load reads 16 bytes inside `b`.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let below = _mm_set1_epi8(0x1f);
            while i + 16 <= b.len() {
                let x = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                    // x <= 0x1f (unsigned) exactly when min(x, 0x1f) == x.
                    _mm_cmpeq_epi8(_mm_min_epu8(x, below), x),
                );
                let mask = _mm_movemask_epi8(hits) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// End (exclusive, after the closing quote) of the string whose opening quote is at `i`.
pub fn string_end(b: &[u8], i: usize) -> Result<usize> {
    // Callers saw the quote; it is checked again (not asserted) because a memory-mapped
    // input that another program changes may no longer hold it: an error then, never a
    // panic (the shrunken file is reported by the input layer).
    if b.get(i) != Some(&b'"') {
        return fail(i, "expected a string");
    }
    let mut j = i + 1;
    loop {
        let k = string_special(b, j);
        match b.get(k) {
            Some(b'"') => return Ok(k + 1),
            Some(b'\\') => match b.get(k + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j = k + 2,
                Some(b'u') => {
                    let hex = b.get(k + 2..k + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return fail(k, "invalid \\u escape");
                    }
                    j = k + 6;
                }
                None => return fail(b.len(), "unterminated string"),
                Some(_) => return fail(k, "invalid escape"),
            },
            Some(_) => return fail(k, "control character in a string"),
            None => return fail(b.len(), "unterminated string"),
        }
    }
}

/// End of the number starting at `i` (`-`, or a digit).
fn number_end(b: &[u8], mut i: usize) -> Result<usize> {
    let digits = |b: &[u8], mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
            return fail(i, "invalid number (leading zero)")
        }
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return fail(i, "invalid number"),
    }
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return fail(j, "invalid number");
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return fail(j, "invalid number");
        }
        i = j;
    }
    Ok(i)
}

fn literal_end(b: &[u8], i: usize, word: &'static [u8]) -> Result<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        fail(i, "expected a value")
    }
}

/// Skips `"key"` and `:` of an object member starting at `i` (after whitespace); returns
/// the key's span (quotes included) and the position after the colon.
fn member_key(b: &[u8], i: usize) -> Result<(Range<usize>, usize)> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return fail(i, "expected a string key");
    }
    let end = string_end(b, i)?;
    let j = skip_ws(b, end);
    if b.get(j) != Some(&b':') {
        return fail(j, "expected `:`");
    }
    Ok((i..end, j + 1))
}

/// Validates the JSON value that starts at `i` (leading whitespace allowed) and returns
/// its span, without the whitespace around it.
pub fn value(b: &[u8], i: usize) -> Result<Range<usize>> {
    let start = skip_ws(b, i);
    // One bit per open container: 1 for an object, 0 for an array. The first 128
    // levels live here; deeper ones (rare) in `deeper`.
    let mut stack = [0u64; 2];
    let mut deeper: Vec<u64> = Vec::new();
    let mut depth = 0usize;
    let mut i = start;
    'value: loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'"') => i = string_end(b, i)?,
            Some(&c @ (b'{' | b'[')) => {
                let close = if c == b'{' { b'}' } else { b']' };
                let j = skip_ws(b, i + 1);
                if b.get(j) == Some(&close) {
                    i = j + 1;
                } else {
                    let (word, bit) = (depth / 64, depth % 64);
                    let slot = if word < stack.len() {
                        &mut stack[word]
                    } else {
                        let w = word - stack.len();
                        if deeper.len() <= w {
                            deeper.push(0);
                        }
                        &mut deeper[w]
                    };
                    if c == b'{' {
                        *slot |= 1 << bit;
                        i = member_key(b, j)?.1;
                    } else {
                        *slot &= !(1 << bit);
                        i = j;
                    }
                    depth += 1;
                    continue 'value;
                }
            }
            Some(b't') => i = literal_end(b, i, b"true")?,
            Some(b'f') => i = literal_end(b, i, b"false")?,
            Some(b'n') => i = literal_end(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number_end(b, i)?,
            Some(_) => return fail(i, "expected a value"),
            None => return fail(i, "unexpected end, expected a value"),
        }
        // After a value: a comma leads to the next one, or containers close.
        loop {
            if depth == 0 {
                return Ok(start..i);
            }
            let top = depth - 1;
            let word = match top / 64 {
                w if w < stack.len() => stack[w],
                w => deeper[w - stack.len()],
            };
            let in_object = word >> (top % 64) & 1 == 1;
            i = skip_ws(b, i);
            match (b.get(i), in_object) {
                (Some(b','), true) => {
                    i = member_key(b, i + 1)?.1;
                    continue 'value;
                }
                (Some(b','), false) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    depth -= 1;
                    i += 1;
                }
                (None, _) => return fail(i, "unexpected end, expected `,` or a close"),
                (_, true) => return fail(i, "expected `,` or `}`"),
                (_, false) => return fail(i, "expected `,` or `]`"),
            }
        }
    }
}

/// Validates that `b` holds exactly one JSON value (whitespace around it allowed).
pub fn document(b: &[u8]) -> Result<Range<usize>> {
    let span = value(b, 0)?;
    only_whitespace_after(b, span.end)?;
    Ok(span)
}

/// Walks the object at `i` (leading whitespace allowed), checking its grammar, and
/// calls `member(key, at)` for each member in order: `key` is the raw string token
/// (quotes included, escapes as written) and `at` where its value starts (whitespace
/// may come first). `member` scans the value, usually with [`value`] (or [`object`],
/// to look inside) and returns where it ends. Returns the object's span; an error from
/// `member` stops the walk and is returned.
pub fn object<F>(b: &[u8], i: usize, mut member: F) -> Result<Range<usize>>
where
    F: FnMut(&[u8], usize) -> Result<usize>,
{
    let start = skip_ws(b, i);
    if b.get(start) != Some(&b'{') {
        return fail(start, "expected an object");
    }
    let mut i = skip_ws(b, start + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(start..i + 1);
    }
    loop {
        let (key, after_colon) = member_key(b, i)?;
        let end = member(&b[key], after_colon)?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(start..i + 1),
            None => return fail(i, "unexpected end, expected `,` or `}`"),
            Some(_) => return fail(i, "expected `,` or `}`"),
        }
    }
}

/// Checks that nothing but whitespace follows `end` in `b`.
pub fn only_whitespace_after(b: &[u8], end: usize) -> Result<()> {
    let end = skip_ws(b, end);
    if end != b.len() {
        return fail(end, "trailing characters after the value");
    }
    Ok(())
}

/// Scans the object at `at` in `b` (checking all of it) and puts the spans of the
/// members named in `names` into `slots`; a member that appears twice is an error, as
/// in a serde struct. `inside(n, at)` may scan the value of member `n` itself (to look
/// inside it in the same pass) by returning `Some`; `None` scans it plainly.
pub fn members<const N: usize>(
    b: &[u8],
    at: usize,
    names: [&'static str; N],
    duplicate: [&'static str; N],
    slots: &mut [Option<Range<usize>>; N],
    mut inside: impl FnMut(usize, usize) -> Option<Result<Range<usize>>>,
) -> Result<Range<usize>> {
    object(b, at, |key, at| {
        let inner = &key[1..key.len() - 1];
        let n = if inner.contains(&b'\\') {
            names.iter().position(|name| key_is(key, name))
        } else {
            names.iter().position(|name| inner == name.as_bytes())
        };
        let Some(n) = n else {
            return Ok(value(b, at)?.end);
        };
        if slots[n].is_some() {
            return Err(ScanError {
                at,
                what: duplicate[n],
            });
        }
        let span = match inside(n, at) {
            Some(scanned) => scanned?,
            None => value(b, at)?,
        };
        let end = span.end;
        slots[n] = Some(span);
        Ok(end)
    })
}

/// The text of a member's span; `null` counts as absent.
pub fn non_null<'a>(text: &'a str, span: &Option<Range<usize>>) -> Option<&'a str> {
    span.clone().map(|r| &text[r]).filter(|v| *v != "null")
}

/// Whether the value at `at` (whitespace first allowed) is an object.
pub fn starts_object(b: &[u8], at: usize) -> bool {
    b[at..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{')
}

/// What kind of JSON value a (valid) raw value is, for messages: "an object", "a
/// string", ...
pub fn kind_of(raw: &str) -> &'static str {
    match kind_name(raw) {
        "object" => "an object",
        "array" => "an array",
        "null" => "null",
        "boolean" => "a boolean",
        "string" => "a string",
        _ => "a number",
    }
}

/// The JSON type's name of a (valid) raw value: "object", "array", "null", "boolean",
/// "string" or "number". The crate's one answer to "what kind of value is this".
pub fn kind_name(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'n') => "null",
        Some(b't') | Some(b'f') => "boolean",
        Some(b'"') => "string",
        _ => "number",
    }
}

/// Whether a raw key token (quotes included) names `name`. Keys written with escapes
/// (`"custom\u005fid"`) are decoded first, as a JSON parser would.
#[inline]
pub fn key_is(raw: &[u8], name: &str) -> bool {
    let inner = &raw[1..raw.len() - 1];
    if inner.contains(&b'\\') {
        let decoded: Option<String> = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| serde_json::from_str(s).ok());
        decoded.as_deref() == Some(name)
    } else {
        inner == name.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        document(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_json() {
        for s in [
            "0",
            "-0",
            "1.5e+3",
            "-12.25E-2",
            "\"a\\u00e9\\n\"",
            "\"\\ud800\"",
            "[]",
            "{}",
            " [1, [2, {}], {\"a\": [null, true, false]}] ",
            "{\"a\":{\"b\":{\"c\":[]}},\"d\":\"\"}",
        ] {
            assert!(ok(s), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not() {
        for s in [
            "",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "-",
            "NaN",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "[1 2]",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\tb\"",
            "\"abc",
            "[1}",
            "{\"a\":1]",
            "[",
            "{\"a\":",
            "1 2",
            "'a'",
        ] {
            assert!(!ok(s), "{s:?}");
        }
    }

    #[test]
    fn deep_nesting_needs_no_recursion() {
        let open = "[{\"a\":".repeat(50_000);
        let close = "}]".repeat(50_000);
        assert!(ok(&format!("{open}1{close}")));
        assert!(!ok(&format!("{open}1{}", &close[1..])));
        assert!(!ok(&"[".repeat(100_000)));
    }

    #[test]
    fn walks_members_with_spans() {
        let s = br#" { "a" : [1, 2] , "b\u0063":{"x":"y"}, "d": null } "#;
        let mut seen = Vec::new();
        let span = object(s, 0, |k, at| {
            let v = value(s, at)?;
            seen.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(s[v.clone()].to_vec()).unwrap(),
            ));
            Ok(v.end)
        })
        .unwrap();
        assert_eq!(span, 1..s.len() - 1);
        assert_eq!(
            seen,
            [
                ("\"a\"".to_string(), "[1, 2]".to_string()),
                ("\"b\\u0063\"".to_string(), "{\"x\":\"y\"}".to_string()),
                ("\"d\"".to_string(), "null".to_string()),
            ]
        );
        assert!(key_is(b"\"b\\u0063\"", "bc"));
        assert!(key_is(b"\"a\"", "a"));
        assert!(!key_is(b"\"a\"", "b"));
        let skip = |b: &[u8]| object(b, 0, |_, at| Ok(value(b, at)?.end));
        assert!(skip(b"[1]").is_err());
        assert!(skip(b"{\"a\":1 \"b\":2}").is_err());
        assert!(only_whitespace_after(b"{} x", 2).is_err());
        assert!(only_whitespace_after(b"{} \n", 2).is_ok());
    }

    #[test]
    fn leading_zeros_are_named() {
        let e = document(b"[1, 01]").unwrap_err();
        assert_eq!((e.at, e.what), (4, "invalid number (leading zero)"));
        assert!(ok("[0, -0, 0.5, -0e1]"));
    }

    #[test]
    fn errors_say_where() {
        let e = document(b"{\"a\": [1, 2,, 3]}").unwrap_err();
        assert_eq!((e.at, e.what), (12, "expected a value"));
        assert_eq!(e.to_string(), "invalid JSON: expected a value at byte 12");
    }
}
