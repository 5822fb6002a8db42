//! Walking valid JSON text without building a tree: find a value by JSON pointer, list
//! an array's elements or an object's members as byte ranges of the original text.
//!
//! `extract` uses it to cut records out of the parser's compact JSON (and to read
//! `--text-field` out of a result line) without re-serialising: numbers stay exactly as
//! written, key order and duplicate keys are kept. Every function expects valid JSON
//! (whitespace allowed) and returns `None` rather than panicking when it is not.

use std::borrow::Cow;
use std::ops::Range;

/// True when a little-endian word of 8 bytes holds one that ends a run of plain
/// string content, i.e. one that JSON escapes: `"`, `\` or a control character
/// (below 0x20). Shared by the loose parser and the template writer.
#[inline]
pub(crate) fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (control | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Decodes a raw JSON string token (quotes included), borrowing when it has no escapes;
/// `None` when it is not a string token or does not decode (a lone surrogate escape).
/// The crate's one string decoder.
pub fn decode_string(raw: &str) -> Option<Cow<'_, str>> {
    if raw.len() < 2 || !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// End (exclusive) of the string starting with the quote at `i` (one string skipper for
/// the crate: [`super::scan::string_end`]).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    super::scan::string_end(b, i).ok()
}

/// What [`nested_problem`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NestedProblem {
    /// A key that appears twice in one object (decoded).
    DuplicateKey(String),
    /// Nesting deeper than [`super::MAX_DEPTH`].
    TooDeep,
}

/// The first problem in the valid JSON value `b[range]`, which sits `outer` containers
/// deep: a key that appears twice in one object, at any depth (keys compared decoded:
/// `"a"` and `"\u0061"` are the same key), or nesting deeper than
/// [`super::MAX_DEPTH`]; with its position. Linear in the value: objects with many keys
/// are checked through a hash set.
pub fn nested_problem(
    b: &[u8],
    range: Range<usize>,
    outer: usize,
) -> Option<(usize, NestedProblem)> {
    use std::collections::HashSet;
    /// Keys per open object: the index of its first key in `keys`, and a set once the
    /// object has more than a few keys.
    struct Open {
        first: usize,
        set: Option<HashSet<Cow<'static, str>>>,
    }
    let mut keys: Vec<Cow<'_, str>> = Vec::new();
    let mut stack: Vec<Option<Open>> = Vec::new();
    let mut i = range.start;
    let end = range.end.min(b.len());
    while i < end {
        match b[i] {
            b'{' | b'[' if outer + stack.len() + 1 > super::MAX_DEPTH => {
                return Some((i, NestedProblem::TooDeep));
            }
            b'{' => {
                stack.push(Some(Open {
                    first: keys.len(),
                    set: None,
                }));
                i += 1;
            }
            b'[' => {
                stack.push(None);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(Some(o)) = stack.pop() {
                    keys.truncate(o.first);
                }
                i += 1;
            }
            b'"' => {
                let e = string_end(b, i)?;
                let j = skip_ws(b, e);
                let is_key = b.get(j) == Some(&b':') && matches!(stack.last(), Some(Some(_)));
                if is_key {
                    let raw = std::str::from_utf8(&b[i..e]).ok()?;
                    let key = decode_string(raw)?;
                    let Some(Some(o)) = stack.last_mut() else {
                        return None;
                    };
                    let dup = match &mut o.set {
                        Some(set) => !set.insert(Cow::Owned(key.clone().into_owned())),
                        None => keys[o.first..].contains(&key),
                    };
                    if dup {
                        return Some((i, NestedProblem::DuplicateKey(key.into_owned())));
                    }
                    if o.set.is_none() && keys.len() - o.first >= 16 {
                        let mut set: HashSet<Cow<'static, str>> = keys[o.first..]
                            .iter()
                            .map(|k| Cow::Owned(k.clone().into_owned()))
                            .collect();
                        set.insert(Cow::Owned(key.into_owned()));
                        keys.truncate(o.first);
                        o.set = Some(set);
                    } else if o.set.is_none() {
                        keys.push(key);
                    }
                }
                i = e;
            }
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i` (no leading whitespace).
pub fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The range of the whole value in `text` (outer whitespace excluded).
pub fn root(text: &str) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let s = skip_ws(b, 0);
    let e = value_end(b, s)?;
    Some(s..e)
}

/// The elements of the array at `range`, or `None` if it is not an array.
pub fn array_elements(text: &str, range: Range<usize>) -> Option<Vec<Range<usize>>> {
    let b = text.as_bytes();
    if b.get(range.start) != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, range.start + 1);
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let e = value_end(b, i)?;
        out.push(i..e);
        i = skip_ws(b, e);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some(out),
            _ => return None,
        }
    }
}

/// The members of the object at `range` as (decoded key, value range), in text order,
/// or `None` if it is not an object.
pub fn object_members(
    text: &str,
    range: Range<usize>,
) -> Option<Vec<(Cow<'_, str>, Range<usize>)>> {
    let b = text.as_bytes();
    if b.get(range.start) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, range.start + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let ke = string_end(b, i)?;
        let raw = &text[i..ke];
        let key = decode_string(raw)?;
        i = skip_ws(b, ke);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let e = value_end(b, i)?;
        out.push((key, i..e));
        i = skip_ws(b, e);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// Checks a JSON pointer's syntax (RFC 6901): empty, or tokens each after a `/`.
pub fn check_pointer(ptr: &str) -> Result<(), String> {
    if ptr.is_empty() || ptr.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{ptr:?} is not a JSON pointer (it must be empty or start with '/')"
        ))
    }
}

/// The range of the value at JSON pointer `ptr` (RFC 6901; `""` is the whole value).
/// With duplicate keys the last one wins, as in most JSON readers.
pub fn pointer(text: &str, ptr: &str) -> Option<Range<usize>> {
    let mut cur = root(text)?;
    if ptr.is_empty() {
        return Some(cur);
    }
    let rest = ptr.strip_prefix('/')?;
    for raw in rest.split('/') {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match text.as_bytes()[cur.start] {
            b'{' => {
                cur = object_members(text, cur)?
                    .into_iter()
                    .rev()
                    .find(|(k, _)| *k == token)?
                    .1;
            }
            b'[' => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                let idx: usize = token.parse().ok()?;
                cur = array_elements(text, cur)?.into_iter().nth(idx)?;
            }
            _ => return None,
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_values() {
        let t = r#" {"a": [1, "x\"]", {"b": null}], "c~/d": 12345678901234567890, "a": []} "#;
        assert_eq!(&t[pointer(t, "").unwrap()], t.trim());
        assert_eq!(&t[pointer(t, "/a").unwrap()], "[]");
        assert_eq!(&t[pointer(t, "/c~0~1d").unwrap()], "12345678901234567890");
        let first = object_members(t, root(t).unwrap()).unwrap()[0].1.clone();
        let els = array_elements(t, first).unwrap();
        let got: Vec<&str> = els.iter().map(|r| &t[r.clone()]).collect();
        assert_eq!(got, vec!["1", "\"x\\\"]\"", "{\"b\": null}"]);
        assert_eq!(pointer(t, "/a/0"), None);
        assert_eq!(pointer(t, "/zz"), None);
        let arr = "[[1],[2,3]]";
        assert_eq!(&arr[pointer(arr, "/1/1").unwrap()], "3");
        assert_eq!(pointer(arr, "/01"), None);
        assert_eq!(
            pointer("{\"k\\u0041\":1}", "/kA").map(|r| r.start),
            Some(11)
        );
    }

    #[test]
    fn invalid_text_gives_none() {
        for t in ["", "[", "{\"a\"", "[1,", "{\"a\":1,}", "\"abc"] {
            let _ = root(t).and_then(|r| array_elements(t, r.clone()).or(Some(vec![r])));
            assert!(pointer(t, "/0").is_none(), "{t:?}");
        }
    }

    #[test]
    fn duplicate_keys_at_any_depth() {
        let dup = |t: &str| match nested_problem(t.as_bytes(), 0..t.len(), 0) {
            Some((_, NestedProblem::DuplicateKey(k))) => Some(k),
            Some((_, p)) => panic!("{p:?}"),
            None => None,
        };
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let max = crate::json::MAX_DEPTH;
        assert_eq!(
            nested_problem(deep(max).as_bytes(), 0..2 * max + 1, 0),
            None
        );
        assert_eq!(
            nested_problem(deep(max).as_bytes(), 0..2 * max + 1, 1),
            Some((max - 1, NestedProblem::TooDeep))
        );
        assert_eq!(dup(r#"{"a":{"b":1,"b":2}}"#).as_deref(), Some("b"));
        assert_eq!(
            dup(r#"{"a":[{"x":1},{"x":2}],"b":{"c":{"d":1,"\u0064":2}}}"#).as_deref(),
            Some("d")
        );
        assert_eq!(dup(r#"{"a":{"b":1},"c":{"b":2},"s":"\"b\":"}"#), None);
        assert_eq!(dup(r#"["a","a",{"k":"a","a":"k"}]"#), None);
        // Many keys go through a set: still found, and distinct keys pass.
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", many.join(","));
        assert_eq!(dup(&ok), None);
        let bad = format!("{{{},\"k57\":0}}", many.join(","));
        assert_eq!(dup(&bad).as_deref(), Some("k57"));
    }
}
