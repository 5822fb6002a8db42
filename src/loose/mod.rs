//! Loose JSON: recovers the JSON values in a model's answer text, or refuses with a reason.
//!
//! Models asked for JSON answer with code fences, chatty preambles, trailing commas,
//! Python literals, several objects, or a value cut off by `max_tokens`. [`parse`] recovers
//! what the model certainly meant and refuses everything it would have to guess: it never
//! turns doubt into data. Each recovery is named in [`LooseValue::repairs`]; each refusal
//! has a [`Refusal::reason`].
//!
//! # Layers
//! 1. **Strict fast path.** The text (outer whitespace aside) is one JSON value, or
//!    several objects/arrays one after the other (JSON Lines, concatenated): returned as
//!    compact JSON with no repairs. Most answers take this path.
//! 2. **Candidates.** A leading byte-order mark and `<think>` blocks are removed; tagged
//!    blocks (`<json>`, `<answer>`, `<output>`, `<result>`) and code fences narrow the
//!    search; then objects and arrays are found in the remaining text with their spans.
//! 3. **Lenient grammar** (certain extensions of JSON) and **named heuristics**
//!    (missing commas, unescaped quotes), applied while reading each candidate.
//!
//! # Recoveries (`repairs`, by name)
//! | name | what was done |
//! |---|---|
//! | `code_fence` | value taken from a code fence: ```` ``` ```` or `~~~`, any or no language tag (`json`, `jsonc`, `json5`, `jsonl`, `js`...), also an unclosed final fence; fences tagged with another language (`python`, `bash`...) are skipped; a fence inside a JSON string is string content |
//! | `tag_block` | value taken from a `<json>`, `<answer>`, `<output>` or `<result>` block |
//! | `prose` | text before, between or after the values was dropped (preambles, numbered list markers, notes, prose with braces that is not JSON, reference marks such as `[1]` inside a sentence) |
//! | `think_block` | a `<think>`, `<thinking>` or `<reasoning>` block was dropped (also an unclosed one, and everything before a lone `</think>`); JSON inside it is never returned |
//! | `bom` | leading byte-order mark dropped |
//! | `escaped_json` | the whole text is JSON with every quote backslash-escaped (`{\"a\": 1}`, a JSON string's content without its quotes) and decodes to strict JSON |
//! | `several_values` | the text holds several top-level values (one per line, concatenated, numbered list, several fences): one value each |
//! | `example_skipped` | values introduced as an example ("for example", "e.g.", "sample", "template", "schema", "input") were dropped because the next value is introduced as the answer ("here is", "result", "output", "answer"...) |
//! | `superseded` | earlier values were dropped because a later one is introduced as a correction ("corrected", "fixed", "updated", "revised", "oops", "apologies") |
//! | `trailing_comma` | `[1, 2,]`, `{"a": 1,}` |
//! | `leading_comma` | `[, 1]` |
//! | `double_comma` | `[1,, 2]` (the empty slot is dropped, never filled) |
//! | `missing_comma` | `["a" "b"]`, `{"a": 1 "b": 2}`, one item per line without commas (`[1\n2]`); never between numbers on one line (`[1 500]` is `thousands_separator`), never when a quote touches the end of the previous value (`unbalanced_quote`) |
//! | `single_quotes` | `'text'` delimiters (apostrophes inside are kept when the quote is not followed by `, : } ]`) |
//! | `typographic_quotes` | `“text”` and `‘text’` delimiters |
//! | `unquoted_key` | `{name: 1}` (identifier keys only) |
//! | `python_literal` | `True`, `False`, `None` |
//! | `comment` | `// line`, `/* block */`, `# line` outside strings |
//! | `control_char` | raw newline, tab or other control character inside a string, escaped |
//! | `unescaped_quote` | a quote inside a string that is not followed by `, : } ]`, a quote or the end (so cannot close it) is kept as content: `"say "hi" now"` |
//! | `invalid_escape` | `\U`, `\d`, `\x`, bad `\u` hex, lone surrogates (`\ud83d` without its pair)...: the backslash is kept as a character (`C:\Users` stays `C:\\Users` in JSON text, `C:\Users` as a value); a string that also holds `\n`, `\t`, `\r`, `\f` or `\b` is refused (`ambiguous_escape`) |
//! | `escaped_apostrophe` | `\'` in a double-quoted string is read as `'` (as JavaScript and Python do) |
//!
//! Output JSON is compact; strings are re-escaped only where JSON requires it; numbers are
//! copied exactly as written (`12345678901234567890`, `1e5`, `-0.0`); key order and
//! duplicate keys are kept.
//!
//! # Truncation
//! When the text ends inside a container (unclosed structure), only complete elements
//! are kept and [`LooseValue::truncated`] is set:
//! - a cut string, number, literal or key (with its colon), or a key with no value yet,
//!   is dropped, never completed: `{"a": 1, "b": "Bor` gives `{"a":1}`;
//! - inside an array, a cut element is dropped whole, also when it is a container:
//!   `[{"k":1},{"k":2},{"k":3` gives `[{"k":1},{"k":2}]`, `[[1,2],[3,4` gives `[[1,2]]`;
//! - an object member whose value is a cut container is kept with that container's
//!   complete parts, by the same rules: `{"scenarios":[{"a":1},{"a":2},{"a":` gives
//!   `{"scenarios":[{"a":1},{"a":2}]}`, `{"meta":{"x":1,"y":` gives `{"meta":{"x":1}}`;
//!   when the cut container holds nothing complete the member is dropped (`{"id": 7,
//!   "meta": {"n` gives `{"id":7}`), since an empty container would be invented data;
//! - when the outermost value holds nothing complete (`{"answer": 4`, `[{"k":`), it is
//!   refused with reason `truncated`; a complete empty `{}` or `[]` is a value.
//!
//! Containers never change type. A number at the very end of the text counts as cut
//! (`[1, 2` gives `[1]`); followed by whitespace it is complete. When several values
//! precede a last one cut before anything complete (JSON Lines cut mid-line), the
//! complete ones are returned and the last of them has `truncated` set (the answer was
//! cut; its span still ends at its own closer). When the provider reports truncation
//! ([`ParseOptions::provider_truncated`]) but every value closed, the cut fell after the
//! values (in trailing prose) and `truncated` stays false; the flag also makes a
//! top-level number at the end of the text count as cut, and an unclosed string with an
//! inner quote count as cut instead of `unbalanced_quote`.
//!
//! # Refusals (`reason`, by name)
//! | reason | when |
//! |---|---|
//! | `empty` | the text is empty or whitespace |
//! | `no_json` | no JSON object or array in the text (prose, a model's refusal, prose whose braces are not JSON, JSON only inside a `<think>` block) |
//! | `truncated` | the text was cut before any complete element of its value (`{"answer": 4`), or the provider reported truncation and the text was cut before any value |
//! | `nan` | `NaN` |
//! | `infinity` | `Infinity`, `-Infinity`, `inf` |
//! | `undefined` | `undefined` |
//! | `thousands_separator` | `1,000` where JSON would need one number; two numbers in an array separated only by spaces or tabs on one line (`[1 500, 3 250]`) |
//! | `percent` | `50%` |
//! | `invalid_number` | leading zeros (`007`), `.5`, `5.`, `0x1F`, units (`10px`) |
//! | `unquoted_value` | a bare word as a value (`{"a": yes}`) |
//! | `missing_value` | a key without a value (`{"a": }`, `{"a": 1, "b"}`): never filled with `""` or `null` |
//! | `unbalanced_quote` | which characters belong to a string is a guess: it holds an odd number of unescaped double quotes (`"a 12" ruler"`), or it never closes and holds a quote that might have closed it, or a syntax error follows a string that took a quote as content (`"He said "stop", then left"`), or a quote touches the end of a string or container (`'James''`, `"say ""hi"""`, `['a']', 'b']`): a stray or doubled quote is never dropped or read as the start of the next string; quotes wrapped around a whole value (`'{"a": 1}'`) are prose |
//! | `ambiguous_escape` | a string holds both an invalid escape (its backslashes were not escaped: `\U`, `\d`, `\s`) and `\n`, `\t`, `\r`, `\f` or `\b`: `"C:\Users\new"`, `"\frac{a}{b} \sqrt{2}"` — a line break, tab or form feed versus a backslash is a guess |
//! | `mismatched_bracket` | `[1, 2}` |
//! | `syntax` | any other text that starts like JSON but cannot be read |
//! | `ambiguous` | several values, and the text introduces some as examples with no later value introduced as the answer (or an example follows the answer), or one of them sits inside a sentence (words follow it on its line: `Answer: {"a": 1}. The input {"b": 2} was...`) |
//! | `expression` | a JavaScript-style expression where a value should be: `1 + 2`, `"x" + "y"`, `Math.max(1, 2)`, `new Date()`, `Date.now()`, `a ? b : c`: its value would have to be computed |
//! | `too_deep` | nesting deeper than 512 |
//! | `not_strict` | [`ParseOptions::strict`] and the value needed a repair beyond fence, tag, prose, think-block, BOM or several-values stripping, or was truncated |
//!
//! Several values are returned in text order. When a later value is introduced as a
//! correction, only the values from it on are kept (`superseded`); when leading values
//! are introduced as examples and the next as the answer, the examples are dropped
//! (`example_skipped`); a list of values after one introduction ("Here are three sample
//! records:") is all answer.
//!
//! A candidate that fails before reading any complete string, number or literal (`Use
//! {name} here`) is treated as prose; a candidate that fails after reading JSON-like
//! content refuses the whole text, since returning the other values would hide a lost one.
//!
//! Time and memory are linear in the input: each candidate is read by an iterative state
//! machine (no recursion, depth capped), and a failed candidate's bytes are not rescanned.

mod text;
mod value;

use std::fmt;

/// How to read a text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept only values needing no repair beyond fence, tag, prose, think-block, BOM or
    /// several-values stripping; anything else is refused with `not_strict`.
    pub strict: bool,
    /// The provider said the answer was cut (`finish_reason: length`,
    /// `incomplete_details`, `stop_reason: max_tokens`).
    pub provider_truncated: bool,
}

/// One recovered value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LooseValue {
    /// Compact JSON text: strings validly escaped, numbers exactly as written, key order
    /// and duplicate keys kept.
    pub json: String,
    /// Each repair applied, deduplicated, in first-applied order.
    pub repairs: Vec<Repair>,
    /// The value was cut: partial elements were dropped and containers closed. Also set
    /// on the last returned value when a value after it was cut before anything complete
    /// and dropped (the answer was cut).
    pub truncated: bool,
    /// Byte range of the value in the input text (its end is the end of the text when
    /// truncated).
    pub span: std::ops::Range<usize>,
}

/// A named recovery; see the module documentation for the full list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Repair {
    /// Taken from a code fence.
    CodeFence,
    /// Taken from a `<json>`/`<answer>`/`<output>`/`<result>` block.
    TagBlock,
    /// Prose around the values dropped.
    Prose,
    /// `<think>` block dropped.
    ThinkBlock,
    /// Byte-order mark dropped.
    Bom,
    /// Whole text was backslash-escaped JSON.
    EscapedJson,
    /// Several top-level values.
    SeveralValues,
    /// Values introduced as examples dropped.
    ExampleSkipped,
    /// Values followed by a correction dropped.
    Superseded,
    /// `[1,]`.
    TrailingComma,
    /// `[,1]`.
    LeadingComma,
    /// `[1,,2]`.
    DoubleComma,
    /// `[1 2]`.
    MissingComma,
    /// `'text'`.
    SingleQuotes,
    /// `“text”`, `‘text’`.
    TypographicQuotes,
    /// `{key: 1}`.
    UnquotedKey,
    /// `True`, `False`, `None`.
    PythonLiteral,
    /// `//`, `/* */`, `#`.
    Comment,
    /// Raw control character in a string.
    ControlChar,
    /// Unescaped quote inside a string kept as content.
    UnescapedQuote,
    /// Invalid escape: backslash kept.
    InvalidEscape,
    /// `\'` read as `'`.
    EscapedApostrophe,
}

impl Repair {
    /// Every repair, in documentation order.
    pub const ALL: &'static [Repair] = &[
        Repair::CodeFence,
        Repair::TagBlock,
        Repair::Prose,
        Repair::ThinkBlock,
        Repair::Bom,
        Repair::EscapedJson,
        Repair::SeveralValues,
        Repair::ExampleSkipped,
        Repair::Superseded,
        Repair::TrailingComma,
        Repair::LeadingComma,
        Repair::DoubleComma,
        Repair::MissingComma,
        Repair::SingleQuotes,
        Repair::TypographicQuotes,
        Repair::UnquotedKey,
        Repair::PythonLiteral,
        Repair::Comment,
        Repair::ControlChar,
        Repair::UnescapedQuote,
        Repair::InvalidEscape,
        Repair::EscapedApostrophe,
    ];

    /// The snake_case name used in records and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Repair::CodeFence => "code_fence",
            Repair::TagBlock => "tag_block",
            Repair::Prose => "prose",
            Repair::ThinkBlock => "think_block",
            Repair::Bom => "bom",
            Repair::EscapedJson => "escaped_json",
            Repair::SeveralValues => "several_values",
            Repair::ExampleSkipped => "example_skipped",
            Repair::Superseded => "superseded",
            Repair::TrailingComma => "trailing_comma",
            Repair::LeadingComma => "leading_comma",
            Repair::DoubleComma => "double_comma",
            Repair::MissingComma => "missing_comma",
            Repair::SingleQuotes => "single_quotes",
            Repair::TypographicQuotes => "typographic_quotes",
            Repair::UnquotedKey => "unquoted_key",
            Repair::PythonLiteral => "python_literal",
            Repair::Comment => "comment",
            Repair::ControlChar => "control_char",
            Repair::UnescapedQuote => "unescaped_quote",
            Repair::InvalidEscape => "invalid_escape",
            Repair::EscapedApostrophe => "escaped_apostrophe",
        }
    }

    /// The repair with this name.
    pub fn from_name(name: &str) -> Option<Repair> {
        Repair::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// Repairs that only strip text around a value, allowed by [`ParseOptions::strict`].
    pub fn is_stripping(self) -> bool {
        matches!(
            self,
            Repair::CodeFence
                | Repair::TagBlock
                | Repair::Prose
                | Repair::ThinkBlock
                | Repair::Bom
                | Repair::SeveralValues
        )
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why no value was returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// snake_case reason; see the module documentation for the full list.
    pub reason: &'static str,
    /// Human message, with a byte offset into the input where useful.
    pub detail: String,
}

impl Refusal {
    /// Every refusal reason, in documentation order.
    pub const REASONS: &'static [&'static str] = &[
        "empty",
        "no_json",
        "truncated",
        "nan",
        "infinity",
        "undefined",
        "thousands_separator",
        "percent",
        "invalid_number",
        "unquoted_value",
        "missing_value",
        "unbalanced_quote",
        "ambiguous_escape",
        "mismatched_bracket",
        "syntax",
        "ambiguous",
        "expression",
        "too_deep",
        "not_strict",
    ];

    pub(crate) fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Refusal {}

/// Recovers the JSON values in `text`: one [`LooseValue`] per top-level answer value, or
/// a [`Refusal`]. Never panics; time and memory are linear in `text.len()`.
pub fn parse(text: &str, opts: &ParseOptions) -> Result<Vec<LooseValue>, Refusal> {
    parse_measured(text, opts).0
}

/// [`parse`], and the work it did: the bytes its passes and value reads went through.
/// Tests check with it that the work is linear in the input (a count, not a clock).
pub fn parse_measured(text: &str, opts: &ParseOptions) -> (Result<Vec<LooseValue>, Refusal>, u64) {
    let mut work = text.len() as u64;
    let r = parse_counting(text, opts, &mut work);
    (r, work)
}

fn parse_counting(
    text: &str,
    opts: &ParseOptions,
    work: &mut u64,
) -> Result<Vec<LooseValue>, Refusal> {
    if text.bytes().all(value_ws) {
        return Err(Refusal::new("empty", "the text is empty"));
    }
    let values = match fast_path(text, opts, work) {
        Some(v) => v,
        None => text::extract(text, opts, work)?,
    };
    if opts.strict {
        for v in &values {
            let extra: Vec<&str> = v
                .repairs
                .iter()
                .filter(|r| !r.is_stripping())
                .map(|r| r.name())
                .collect();
            if !extra.is_empty() || v.truncated {
                let what = if v.truncated && extra.is_empty() {
                    "the value is truncated".to_string()
                } else {
                    format!("the value needs repairs: {}", extra.join(", "))
                };
                return Err(Refusal::new(
                    "not_strict",
                    format!("{what} (value at byte {})", v.span.start),
                ));
            }
        }
    }
    Ok(values)
}

#[inline]
fn value_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// One strict JSON value at `pos` that needed no repair, where it ends, and whether
/// the parse found it truncated (the value itself is kept untruncated: callers that
/// care refuse it).
fn strict_value(
    src: &[u8],
    pos: usize,
    opts: &ParseOptions,
    work: &mut u64,
) -> Option<(LooseValue, usize, bool)> {
    let r = value::parse_strict_at(src, pos, opts.provider_truncated);
    *work += value::visited(&r, pos);
    let p = r.ok()?;
    if !p.repairs.is_empty() {
        return None;
    }
    let v = LooseValue {
        json: p.json,
        repairs: Vec::new(),
        truncated: false,
        span: pos..p.end,
    };
    Some((v, p.end, p.truncated))
}

/// The text is strict JSON: one value, or several objects/arrays in a row.
pub(crate) fn fast_path(
    text: &str,
    opts: &ParseOptions,
    work: &mut u64,
) -> Option<Vec<LooseValue>> {
    let src = text.as_bytes();
    let mut pos = 0;
    while pos < src.len() && value_ws(src[pos]) {
        pos += 1;
    }
    let first = *src.get(pos)?;
    let mut out = Vec::new();
    if first != b'{' && first != b'[' {
        let (v, end, _) = strict_value(src, pos, opts, work)?;
        if src[end..].iter().any(|&b| !value_ws(b)) {
            return None;
        }
        out.push(v);
        return Some(out);
    }
    loop {
        let (v, end, truncated) = strict_value(src, pos, opts, work)?;
        if truncated {
            return None;
        }
        out.push(v);
        pos = end;
        while pos < src.len() && value_ws(src[pos]) {
            pos += 1;
        }
        match src.get(pos) {
            None => break,
            Some(b'{') | Some(b'[') => {}
            Some(_) => return None,
        }
    }
    if out.len() > 1 {
        for v in &mut out {
            v.repairs.push(Repair::SeveralValues);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: ParseOptions = ParseOptions {
        strict: false,
        provider_truncated: false,
    };

    /// One minimal input per repair: the repair must be reported.
    #[test]
    fn each_repair() {
        let cases: &[(Repair, &str)] = &[
            (Repair::CodeFence, "```json\n{\"a\": 1}\n```"),
            (Repair::TagBlock, "<answer>{\"a\": 1}</answer>"),
            (Repair::Prose, "Sure: {\"a\": 1}"),
            (Repair::ThinkBlock, "<think>{\"b\": 2}</think>\n{\"a\": 1}"),
            (Repair::Bom, "\u{feff}{\"a\": 1}"),
            (Repair::EscapedJson, "{\\\"a\\\": 1}"),
            (Repair::SeveralValues, "{\"a\": 1}\n{\"a\": 2}"),
            (
                Repair::ExampleSkipped,
                "For example {\"a\": 0}. Here is the answer: {\"a\": 1}",
            ),
            (Repair::Superseded, "{\"a\": 0}\nCorrected: {\"a\": 1}"),
            (Repair::TrailingComma, "[1,]"),
            (Repair::LeadingComma, "[,1]"),
            (Repair::DoubleComma, "[1,,2]"),
            (Repair::MissingComma, "[1\n2]"),
            (Repair::SingleQuotes, "{'a': 1}"),
            (Repair::TypographicQuotes, "{“a”: 1}"),
            (Repair::UnquotedKey, "{a: 1}"),
            (Repair::PythonLiteral, "[True]"),
            (Repair::Comment, "[1 // one\n]"),
            (Repair::ControlChar, "[\"a\nb\"]"),
            (Repair::UnescapedQuote, "[\"a \"b\" c\"]"),
            (Repair::InvalidEscape, "[\"C:\\Users\"]"),
            (Repair::EscapedApostrophe, "[\"don\\'t\"]"),
        ];
        assert_eq!(cases.len(), Repair::ALL.len());
        for &(r, text) in cases {
            let vals = parse(text, &OPTS).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(
                vals[0].repairs.contains(&r),
                "{text:?}: {:?} lacks {r}",
                vals[0].repairs
            );
            assert_eq!(Repair::from_name(r.name()), Some(r));
            if !r.is_stripping() {
                let strict = ParseOptions {
                    strict: true,
                    provider_truncated: false,
                };
                assert_eq!(
                    parse(text, &strict).unwrap_err().reason,
                    "not_strict",
                    "{text:?}"
                );
            }
        }
    }

    /// One minimal input per refusal reason.
    #[test]
    fn each_refusal() {
        let pt = ParseOptions {
            strict: false,
            provider_truncated: true,
        };
        let strict = ParseOptions {
            strict: true,
            provider_truncated: false,
        };
        let cases: &[(&str, &str, ParseOptions)] = &[
            ("empty", " \n", OPTS),
            ("no_json", "Sorry, I can't do that {here}.", OPTS),
            ("truncated", "Here it is: {\"a", pt),
            ("nan", "[NaN]", OPTS),
            ("infinity", "[Infinity]", OPTS),
            ("undefined", "[undefined]", OPTS),
            ("thousands_separator", "{\"n\": 1,000}", OPTS),
            ("percent", "[50%]", OPTS),
            ("invalid_number", "[007]", OPTS),
            ("unquoted_value", "{\"a\": yes}", OPTS),
            ("missing_value", "{\"a\": }", OPTS),
            ("unbalanced_quote", "[\"a 12\" ruler\"]", OPTS),
            ("ambiguous_escape", "[\"C:\\Users\\new\"]", OPTS),
            ("mismatched_bracket", "[1, 2}", OPTS),
            ("syntax", "[1, 2 = 3]", OPTS),
            ("ambiguous", "Example: {\"a\": 0} or maybe {\"a\": 1}", OPTS),
            ("expression", "{\"a\": \"x\" + \"y\"}", OPTS),
            ("too_deep", &"[".repeat(600), OPTS),
            ("not_strict", "[1,]", strict),
        ];
        assert_eq!(cases.len(), Refusal::REASONS.len());
        for (reason, text, opts) in cases {
            match parse(text, opts) {
                Ok(v) => panic!("{text:?}: expected {reason}, got {:?}", v[0].json),
                Err(r) => assert_eq!(r.reason, *reason, "{text:?}: {r}"),
            }
        }
    }

    /// Stray or doubled quotes and space-separated numbers are refused, never re-split.
    #[test]
    fn no_resplit_text() {
        for (text, reason) in [
            ("{'owner': 'James'', 'b': 1}", "unbalanced_quote"),
            ("{\"prices\": [1 500, 3 250]}", "thousands_separator"),
            ("['students']', 'x']", "unbalanced_quote"),
            ("{'a': 'students''}", "unbalanced_quote"),
            ("[\"a\"\"b\"]", "unbalanced_quote"),
            ("{\"a\": 1\"b\": 2}", "unbalanced_quote"),
            ("Answer: [\"x\"]\" and more", "unbalanced_quote"),
        ] {
            match parse(text, &OPTS) {
                Ok(v) => panic!("{text:?}: expected {reason}, got {:?}", v[0].json),
                Err(r) => assert_eq!(r.reason, reason, "{text:?}: {r}"),
            }
        }
        let v = parse("'{\"a\": 1}'", &OPTS).unwrap();
        assert_eq!(v[0].json, "{\"a\":1}");
        let v = parse("{\"a\":1}\n{\"b\":2}\n{\"c\":", &OPTS).unwrap();
        assert_eq!(v.len(), 2);
        assert!(!v[0].truncated && v[1].truncated);
        assert_eq!(parse("[1\n2]", &OPTS).unwrap()[0].json, "[1,2]");
    }

    #[test]
    fn spans_point_into_the_input() {
        let text = "\u{feff}<think>x</think>\nSure: {\"a\": 1} ok";
        let v = parse(text, &OPTS).unwrap();
        assert_eq!(&text[v[0].span.clone()], "{\"a\": 1}");
    }
}
