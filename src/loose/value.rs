//! The lenient value parser: reads one JSON value (usually an object or array) from a
//! byte slice and writes it back as compact, valid JSON text.
//!
//! It is a single iterative state machine (an explicit stack of open containers, capped
//! at [`MAX_DEPTH`]), so it never recurses, looks at each input byte a bounded number of
//! times and allocates only its output. Strict JSON goes through the same code and comes
//! out with no repairs, which is how the fast path in `mod.rs` recognises it.
//!
//! Every deviation from strict JSON is either a named [`Repair`] or a [`Fail`] with a
//! reason; nothing is guessed silently. Numbers are copied byte for byte; strings are
//! copied byte for byte except for the characters that must be escaped in JSON.

use super::Repair;

/// Deepest nesting accepted; deeper input is refused with reason `too_deep`.
pub(crate) const MAX_DEPTH: usize = 512;

/// A value read successfully (possibly truncated and closed).
pub(crate) struct Parsed {
    /// Compact JSON text.
    pub json: String,
    /// Repairs applied, deduplicated, in first-applied order.
    pub repairs: Vec<Repair>,
    /// The input ended inside the value: partial elements were dropped, containers closed.
    pub truncated: bool,
    /// Byte offset just past the value (the end of input when truncated).
    pub end: usize,
    /// Complete strings, numbers, literals and containers seen: evidence that this is
    /// JSON and not prose that happens to contain a brace.
    pub tokens: usize,
}

/// Why a value could not be read.
#[derive(Debug)]
pub(crate) struct Fail {
    /// Refusal reason (snake_case, see `mod.rs`).
    pub reason: &'static str,
    /// Human message.
    pub detail: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// The text looked like JSON (a complete token was read before the problem, or the
    /// problem is a value refusal such as `NaN`), so the failure must not be ignored as prose.
    pub strong: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Array,
    Object,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Just after the opening bracket.
    First,
    /// After a comma: an element or (trailing comma) the closer.
    AfterComma,
    /// Object: after a key.
    Colon,
    /// Object: after the colon.
    Value,
    /// After a complete element.
    AfterValue,
}

struct Frame {
    kind: Kind,
    state: State,
    /// Output length after the last complete element (or the opening bracket).
    mark: usize,
    count: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Delim {
    Double,
    Single,
    TypoDouble,
    TypoSingle,
}

/// Result of reading a scalar.
#[derive(PartialEq, Eq)]
enum Scalar {
    Done,
    /// The input ended inside it: it must be dropped.
    Cut,
}

/// Byte classes for the string fast loop: 1 = needs a look (quote, backslash, control
/// char, start of a typographic quote), 0 = plain content.
static SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\'' as usize] = 1;
    t[b'\\' as usize] = 1;
    t[0xE2] = 1;
    t
};

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline]
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

#[inline]
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// A string delimiter starting at `i`, with its length in bytes.
#[inline]
fn delim_at(src: &[u8], i: usize) -> Option<(Delim, usize)> {
    match *src.get(i)? {
        b'"' => Some((Delim::Double, 1)),
        b'\'' => Some((Delim::Single, 1)),
        0xE2 if src.get(i + 1) == Some(&0x80) => match src.get(i + 2) {
            Some(0x9C) | Some(0x9D) => Some((Delim::TypoDouble, 3)),
            Some(0x98) | Some(0x99) => Some((Delim::TypoSingle, 3)),
            _ => None,
        },
        _ => None,
    }
}

const LITERALS: &[&[u8]] = &[
    b"true",
    b"false",
    b"null",
    b"True",
    b"False",
    b"None",
    b"NaN",
    b"nan",
    b"Infinity",
    b"inf",
    b"undefined",
];

enum Escape {
    /// A valid `\uXXXX` (or surrogate pair) of this many bytes.
    Valid(usize),
    /// The input ends inside the escape.
    Cut,
    Invalid,
}

/// Checks the `\u` escape at `i`: four hex digits, and surrogates only in valid pairs
/// (a lone surrogate is not a character and would make the output unreadable to most
/// JSON libraries).
fn unicode_escape(src: &[u8], i: usize) -> Escape {
    let hex4 = |at: usize| -> Result<Option<u16>, ()> {
        let h = &src[at.min(src.len())..src.len().min(at + 4)];
        if !h.iter().all(|c| c.is_ascii_hexdigit()) {
            return Err(());
        }
        if h.len() < 4 {
            return Ok(None);
        }
        let mut v = 0u16;
        for &c in h {
            let d = (c as char).to_digit(16).unwrap_or(0) as u16;
            v = v * 16 + d;
        }
        Ok(Some(v))
    };
    match hex4(i + 2) {
        Err(()) => Escape::Invalid,
        Ok(None) => Escape::Cut,
        Ok(Some(0xDC00..=0xDFFF)) => Escape::Invalid,
        Ok(Some(0xD800..=0xDBFF)) => {
            let next = &src[(i + 6).min(src.len())..src.len().min(i + 8)];
            if next.len() < 2 {
                return if b"\\u".starts_with(next) {
                    Escape::Cut
                } else {
                    Escape::Invalid
                };
            }
            if next != b"\\u" {
                return Escape::Invalid;
            }
            match hex4(i + 8) {
                Ok(Some(0xDC00..=0xDFFF)) => Escape::Valid(12),
                Ok(None) => Escape::Cut,
                _ => Escape::Invalid,
            }
        }
        Ok(Some(_)) => Escape::Valid(6),
    }
}

/// Reads values; one instance per candidate.
pub(crate) struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    repairs: Vec<Repair>,
    stack: Vec<Frame>,
    tokens: usize,
    /// The last key was quoted: its colon counts as JSON evidence.
    quoted_key: bool,
    /// The last string read took a quote as content: a later syntax error is likely that
    /// quote's fault.
    suspect_quote: bool,
    provider_truncated: bool,
    strict_only: bool,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a [u8], provider_truncated: bool) -> Self {
        Parser {
            src,
            pos: 0,
            out: Vec::new(),
            strict_only: false,
            repairs: Vec::new(),
            stack: Vec::new(),
            tokens: 0,
            quoted_key: false,
            suspect_quote: false,
            provider_truncated,
        }
    }

    /// Reserves the output for a value starting at `start`: compact output is about as
    /// long as its input, so one allocation instead of repeated regrowth.
    fn sized(mut self, start: usize) -> Self {
        self.out
            .reserve(self.src.len().saturating_sub(start).min(1 << 16));
        self
    }

    #[inline]
    fn repair(&mut self, r: Repair) {
        if !self.repairs.contains(&r) {
            self.repairs.push(r);
        }
    }

    /// Stop at the first repair (the strict fast path: the loose path will reread).
    pub(crate) fn strict_only(mut self) -> Self {
        self.strict_only = true;
        self
    }

    fn fail(&self, reason: &'static str, at: usize, detail: impl Into<String>) -> Fail {
        let strong = self.tokens > 0
            || matches!(
                reason,
                "nan" | "infinity" | "undefined" | "percent" | "thousands_separator" | "too_deep"
            );
        Fail {
            reason,
            detail: detail.into(),
            at,
            strong,
        }
    }

    fn finish(self, truncated: bool, end: usize) -> Result<Parsed, Fail> {
        // Output is copied from valid UTF-8 at char boundaries; checked with SIMD (the
        // std check was a fifth of `extract`'s time), never trusted blindly. Should a
        // copy ever split a character, the text is refused: a replacement character
        // would be a changed value.
        if simdutf8::basic::from_utf8(&self.out).is_err() {
            return Err(Fail {
                reason: "syntax",
                detail: "internal error: the value read is not UTF-8; refused rather than altered"
                    .into(),
                at: end,
                strong: true,
            });
        }
        // SAFETY: validated as UTF-8 just above.
        let json = unsafe { String::from_utf8_unchecked(self.out) };
        Ok(Parsed {
            json,
            repairs: self.repairs,
            truncated,
            end,
            tokens: self.tokens,
        })
    }

    /// Skips whitespace and (as a repair) `//`, `/* */` and `#` comments.
    fn skip_ws(&mut self) {
        let src = self.src;
        loop {
            while self.pos < src.len() && is_ws(src[self.pos]) {
                self.pos += 1;
            }
            if self.pos >= src.len() {
                return;
            }
            match (src[self.pos], src.get(self.pos + 1)) {
                (b'/', Some(b'/')) | (b'#', _) => {
                    self.repair(Repair::Comment);
                    self.pos = match memchr::memchr(b'\n', &src[self.pos..]) {
                        Some(n) => self.pos + n,
                        None => src.len(),
                    };
                }
                (b'/', Some(b'*')) => {
                    self.repair(Repair::Comment);
                    self.pos = match memchr::memmem::find(&src[self.pos + 2..], b"*/") {
                        Some(n) => self.pos + 2 + n + 2,
                        None => src.len(),
                    };
                }
                _ => return,
            }
        }
    }

    /// Is a quote that ends at `j` a closing delimiter? Yes when what follows (after
    /// whitespace) can follow a string: `, : } ]`, another quote (missing comma), a
    /// comment, or the end of input. Otherwise it is taken as an unescaped inner quote.
    fn closes(&self, mut j: usize) -> bool {
        let src = self.src;
        while j < src.len() && is_ws(src[j]) {
            j += 1;
        }
        if j >= src.len() {
            return true;
        }
        match src[j] {
            b',' | b':' | b'}' | b']' | b'"' | b'\'' => true,
            b'/' => matches!(src.get(j + 1), Some(b'/') | Some(b'*')),
            0xE2 => delim_at(src, j).is_some(),
            _ => false,
        }
    }

    /// Does an arithmetic or call operator (`+ * / ( ?`, not a comment) come at `j`
    /// (after whitespace)? After a value, that makes the text an expression.
    fn operator_follows(&self, mut j: usize) -> bool {
        let src = self.src;
        while j < src.len() && is_ws(src[j]) {
            j += 1;
        }
        match src.get(j) {
            Some(b'+') | Some(b'*') | Some(b'(') | Some(b'?') => true,
            Some(b'/') => !matches!(src.get(j + 1), Some(b'/') | Some(b'*')),
            _ => false,
        }
    }

    /// Reads a string at `self.pos` (which holds an opening delimiter).
    fn string(&mut self, delim: Delim, dlen: usize) -> Result<Scalar, Fail> {
        let src = self.src;
        let start = self.pos;
        match delim {
            Delim::Double => {}
            Delim::Single => self.repair(Repair::SingleQuotes),
            Delim::TypoDouble | Delim::TypoSingle => self.repair(Repair::TypographicQuotes),
        }
        self.pos += dlen;
        self.out.push(b'"');
        let mut run = self.pos;
        let mut inner_quote = false;
        let mut inner_count = 0usize;
        let paired = matches!(delim, Delim::Double | Delim::TypoDouble);
        // Escapes seen: `\b \f \n \r \t` (valid, but also how an unescaped Windows path
        // or LaTeX command starts) and invalid ones (backslash kept).
        let mut letter_escape = false;
        let mut bad_escape = false;
        loop {
            // Fast skip over plain content, eight bytes at a time.
            if delim == Delim::Double {
                while let Some(w) = src.get(self.pos..self.pos + 8) {
                    let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                    if crate::json::text::word_needs_escape(w) {
                        break;
                    }
                    self.pos += 8;
                }
                while self.pos < src.len() && !matches!(src[self.pos], b'"' | b'\\' | 0..=0x1F) {
                    self.pos += 1;
                }
            } else {
                while self.pos < src.len() && SPECIAL[src[self.pos] as usize] == 0 {
                    self.pos += 1;
                }
            }
            if self.pos >= src.len() {
                if inner_quote && !self.provider_truncated {
                    return Err(self.fail(
                        "unbalanced_quote",
                        start,
                        "a string never closes and contains a quote that may have been meant to close it",
                    ));
                }
                return Ok(Scalar::Cut);
            }
            let b = src[self.pos];
            match b {
                b'"' | b'\'' => {
                    let own = match delim {
                        Delim::Double | Delim::TypoDouble => b == b'"',
                        Delim::Single | Delim::TypoSingle => b == b'\'',
                    };
                    if own && self.closes(self.pos + 1) {
                        if paired && inner_count % 2 == 1 {
                            return Err(self.odd_quotes(start));
                        }
                        if letter_escape && bad_escape {
                            return Err(self.mixed_escapes(start));
                        }
                        self.out.extend_from_slice(&src[run..self.pos]);
                        self.pos += 1;
                        self.out.push(b'"');
                        self.tokens += 1;
                        self.suspect_quote = inner_quote;
                        return Ok(Scalar::Done);
                    }
                    if own {
                        if self.operator_follows(self.pos + 1) {
                            // `"x" + "y"`: JavaScript concatenation, not a quote inside
                            // one string (which would make the value `x" + "y`).
                            return Err(self.fail(
                                "expression",
                                self.pos + 1,
                                "a JavaScript-style expression is not a JSON value",
                            ));
                        }
                        self.repair(Repair::UnescapedQuote);
                        inner_quote = true;
                        inner_count += 1;
                    }
                    if b == b'"' {
                        // A double quote in a single-quoted string: if the string never
                        // closes, the delimiters may be mismatched (`'text"`).
                        inner_quote |= delim == Delim::Single;
                        self.out.extend_from_slice(&src[run..self.pos]);
                        self.out.extend_from_slice(b"\\\"");
                        self.pos += 1;
                        run = self.pos;
                    } else {
                        self.pos += 1;
                    }
                }
                0xE2 => match delim_at(src, self.pos) {
                    Some((d, n)) => {
                        let own = matches!(
                            (delim, d),
                            (Delim::TypoDouble, Delim::TypoDouble)
                                | (Delim::TypoSingle, Delim::TypoSingle)
                        );
                        if own && self.closes(self.pos + n) {
                            if paired && inner_count % 2 == 1 {
                                return Err(self.odd_quotes(start));
                            }
                            if letter_escape && bad_escape {
                                return Err(self.mixed_escapes(start));
                            }
                            self.out.extend_from_slice(&src[run..self.pos]);
                            self.pos += n;
                            self.out.push(b'"');
                            self.tokens += 1;
                            self.suspect_quote = inner_quote;
                            return Ok(Scalar::Done);
                        }
                        if own {
                            self.repair(Repair::UnescapedQuote);
                            inner_quote = true;
                            inner_count += 1;
                        }
                        self.pos += n;
                    }
                    None => self.pos += 1,
                },
                b'\\' => {
                    self.out.extend_from_slice(&src[run..self.pos]);
                    let Some(&e) = src.get(self.pos + 1) else {
                        return Ok(Scalar::Cut);
                    };
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            letter_escape |= e.is_ascii_alphabetic();
                            self.out.push(b'\\');
                            self.out.push(e);
                            self.pos += 2;
                        }
                        b'u' => match unicode_escape(src, self.pos) {
                            Escape::Valid(n) => {
                                self.out.extend_from_slice(&src[self.pos..self.pos + n]);
                                self.pos += n;
                            }
                            Escape::Cut => return Ok(Scalar::Cut),
                            Escape::Invalid => {
                                // Bad hex or a lone surrogate: keep the backslash.
                                bad_escape = true;
                                self.repair(Repair::InvalidEscape);
                                self.out.extend_from_slice(b"\\\\");
                                self.pos += 1;
                            }
                        },
                        b'\'' => {
                            if delim != Delim::Single {
                                self.repair(Repair::EscapedApostrophe);
                            }
                            self.out.push(b'\'');
                            self.pos += 2;
                        }
                        _ => {
                            // Keep the backslash: `C:\Users` stays `C:\\Users`.
                            bad_escape = true;
                            self.repair(Repair::InvalidEscape);
                            self.out.extend_from_slice(b"\\\\");
                            self.pos += 1;
                        }
                    }
                    run = self.pos;
                }
                _ => {
                    // Raw control character.
                    self.out.extend_from_slice(&src[run..self.pos]);
                    self.repair(Repair::ControlChar);
                    match b {
                        b'\n' => self.out.extend_from_slice(b"\\n"),
                        b'\r' => self.out.extend_from_slice(b"\\r"),
                        b'\t' => self.out.extend_from_slice(b"\\t"),
                        _ => {
                            const HEX: &[u8; 16] = b"0123456789abcdef";
                            self.out.extend_from_slice(b"\\u00");
                            self.out.push(HEX[(b >> 4) as usize]);
                            self.out.push(HEX[(b & 15) as usize]);
                        }
                    }
                    self.pos += 1;
                    run = self.pos;
                }
            }
        }
    }

    /// A string with an invalid escape (so its backslashes were not escaped) and a valid
    /// letter escape: is `C:\Users\new` a path or a line break? A guess either way.
    fn mixed_escapes(&self, start: usize) -> Fail {
        Fail {
            reason: "ambiguous_escape",
            detail: "a string mixes unescaped backslashes (`\\U`, `\\d`) with `\\n`, `\\t`, `\\f`, `\\b` or `\\r`: a line break or a backslash is a guess".into(),
            at: start,
            strong: true,
        }
    }

    fn odd_quotes(&self, start: usize) -> Fail {
        Fail {
            reason: "unbalanced_quote",
            detail: "a string holds an odd number of unescaped quotes: where it ends is a guess"
                .into(),
            at: start,
            strong: true,
        }
    }

    /// Reads a number exactly as written; `in_container` enables the checks that need
    /// context (a number cut by the end of input, `1,000`).
    fn number(&mut self, in_container: bool) -> Result<Scalar, Fail> {
        let src = self.src;
        let s = self.pos;
        let digits = |p: &mut usize| {
            let st = *p;
            while *p < src.len() && src[*p].is_ascii_digit() {
                *p += 1;
            }
            *p - st
        };
        let mut p = s;
        if src.get(p) == Some(&b'-') {
            p += 1;
        }
        match src.get(p) {
            None => return Ok(Scalar::Cut),
            Some(b'0') => {
                p += 1;
                if src.get(p).is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.fail("invalid_number", s, "number with a leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(&mut p);
            }
            Some(b'I') | Some(b'i') => {
                return self.word_at(p, s);
            }
            Some(_) => return Err(self.fail("invalid_number", s, "invalid number")),
        }
        if src.get(p) == Some(&b'.') {
            p += 1;
            if p >= src.len() {
                return Ok(Scalar::Cut);
            }
            if digits(&mut p) == 0 {
                return Err(self.fail(
                    "invalid_number",
                    s,
                    "number without digits after the point",
                ));
            }
        }
        if matches!(src.get(p), Some(b'e') | Some(b'E')) {
            p += 1;
            if matches!(src.get(p), Some(b'+') | Some(b'-')) {
                p += 1;
            }
            if p >= src.len() {
                return Ok(Scalar::Cut);
            }
            if digits(&mut p) == 0 {
                return Err(self.fail("invalid_number", s, "number with an empty exponent"));
            }
        }
        match src.get(p) {
            None if in_container || self.provider_truncated => return Ok(Scalar::Cut),
            None => {}
            Some(b'%') => {
                return Err(self.fail("percent", p, "a percentage is not a JSON number"));
            }
            Some(&b) if is_ident(b) || b == b'.' => {
                return Err(self.fail(
                    "invalid_number",
                    s,
                    format!("number followed by {:?}", b as char),
                ));
            }
            Some(b',') => {
                let next = src.get(p + 1).copied().unwrap_or(b' ');
                let in_object = self.stack.last().is_some_and(|f| f.kind == Kind::Object);
                let grouped = next.is_ascii_digit()
                    && (in_object
                        || (next == b'0' && src.get(p + 2).is_some_and(|b| b.is_ascii_digit())));
                if grouped && p - s <= 4 {
                    return Err(self.fail(
                        "thousands_separator",
                        s,
                        "number with a thousands separator",
                    ));
                }
            }
            _ => {}
        }
        self.out.extend_from_slice(&src[s..p]);
        self.pos = p;
        self.tokens += 1;
        self.suspect_quote = false;
        Ok(Scalar::Done)
    }

    /// Reads a bare word in value position: a JSON or Python literal, or a refusal.
    fn word_at(&mut self, p: usize, s: usize) -> Result<Scalar, Fail> {
        let src = self.src;
        let mut e = p;
        while e < src.len() && is_ident(src[e]) {
            e += 1;
        }
        let w = &src[p..e];
        let neg = p > s;
        let lit: Option<(&[u8], bool)> = match w {
            b"true" | b"false" | b"null" if !neg => Some((w, false)),
            b"True" if !neg => Some((b"true", true)),
            b"False" if !neg => Some((b"false", true)),
            b"None" if !neg => Some((b"null", true)),
            b"NaN" | b"nan" => return Err(self.fail("nan", s, "NaN has no JSON value")),
            b"Infinity" | b"inf" | b"Inf" | b"INF" | b"infinity" => {
                return Err(self.fail("infinity", s, "Infinity has no JSON value"))
            }
            b"undefined" => return Err(self.fail("undefined", s, "undefined has no JSON value")),
            _ => None,
        };
        match lit {
            Some((text, python)) => {
                if python {
                    self.repair(Repair::PythonLiteral);
                }
                self.out.extend_from_slice(text);
                self.pos = e;
                self.tokens += 1;
                Ok(Scalar::Done)
            }
            None => {
                if e >= src.len() && !w.is_empty() && LITERALS.iter().any(|l| l.starts_with(w)) {
                    return Ok(Scalar::Cut);
                }
                // `Math.max(1, 2)`, `new Date()`, `Date.now()`, `x + 1`: code, whose
                // value would have to be computed.
                let mut j = e;
                while j < src.len() && is_ws(src[j]) {
                    j += 1;
                }
                if w == b"new"
                    || matches!(src.get(j), Some(b'.') | Some(b'('))
                    || self.operator_follows(e)
                {
                    return Err(self.fail(
                        "expression",
                        s,
                        "a JavaScript-style expression is not a JSON value",
                    ));
                }
                Err(self.fail("unquoted_value", s, "an unquoted word is not a JSON value"))
            }
        }
    }

    /// Starts a value at `self.pos`: reads a scalar or opens a container.
    fn value(&mut self, in_container: bool) -> Result<Option<Scalar>, Fail> {
        let src = self.src;
        let b = src[self.pos];
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.fail(
                        "too_deep",
                        self.pos,
                        format!("nesting deeper than {MAX_DEPTH}"),
                    ));
                }
                self.out.push(b);
                self.pos += 1;
                self.stack.push(Frame {
                    kind: if b == b'{' { Kind::Object } else { Kind::Array },
                    state: State::First,
                    mark: self.out.len(),
                    count: 0,
                });
                Ok(None)
            }
            b'-' | b'0'..=b'9' => self.number(in_container).map(Some),
            b'.' | b'+' if src.get(self.pos + 1).is_some_and(|c| c.is_ascii_digit()) => Err(self
                .fail(
                    "invalid_number",
                    self.pos,
                    "a number must start with a digit or '-'",
                )),
            _ => {
                if let Some((d, n)) = delim_at(src, self.pos) {
                    return self.string(d, n).map(Some);
                }
                if is_ident_start(b) {
                    return self.word_at(self.pos, self.pos).map(Some);
                }
                Err(self.unexpected("a value"))
            }
        }
    }

    fn unexpected(&self, wanted: &str) -> Fail {
        let at = self.pos;
        let shown = match std::str::from_utf8(&self.src[at..self.src.len().min(at + 4)]) {
            Ok(s) => s
                .chars()
                .next()
                .map(|c| format!("{c:?}"))
                .unwrap_or_default(),
            Err(_) => format!("byte 0x{:02x}", self.src[at]),
        };
        let reason = match self.src[at] {
            _ if self.suspect_quote => "unbalanced_quote",
            b'}' | b']' => "mismatched_bracket",
            // `1 + 2`, `2 * 3`, `f(x)`, `a ? b : c` after a value: an expression.
            _ if self.operator_follows(at) => "expression",
            _ => "syntax",
        };
        self.fail(reason, at, format!("expected {wanted}, found {shown}"))
    }

    /// A scalar element finished: update the enclosing frame.
    fn element_done(&mut self) {
        let len = self.out.len();
        if let Some(f) = self.stack.last_mut() {
            f.state = State::AfterValue;
            f.count += 1;
            f.mark = len;
        }
    }

    /// A closing bracket where a value (or a key) was expected: after a comma, that
    /// comma was a trailing one. True when the outermost container closed.
    fn close_where_expected(&mut self, state: State) -> bool {
        if state == State::AfterComma {
            self.repair(Repair::TrailingComma);
        }
        self.close()
    }

    /// A comma where a value (or a key) was expected: leading when nothing came yet,
    /// otherwise doubled. Skipped.
    fn extra_comma(&mut self, state: State) {
        self.repair(if state == State::First {
            Repair::LeadingComma
        } else {
            Repair::DoubleComma
        });
        self.pos += 1;
    }

    /// Closes the top container at `self.pos` (which holds its closer).
    /// Returns true when the outermost value is complete.
    fn close(&mut self) -> bool {
        let closer = self.src[self.pos];
        self.out.push(closer);
        self.pos += 1;
        self.stack.pop();
        self.tokens += 1;
        if self.stack.is_empty() {
            return true;
        }
        self.element_done();
        false
    }

    /// The input ended inside the value: keep complete elements only.
    ///
    /// The partial element of the innermost container (a cut string, number, literal or
    /// key, or a member with no value yet) is dropped. A cut container inside an array is
    /// an incomplete element: it is dropped whole, with everything inside it. A cut
    /// container that is an object member's value keeps its complete parts (same rules,
    /// recursively), unless none remain: a member whose cut container holds nothing is
    /// dropped too. When the outermost container holds nothing complete, the value is
    /// refused (`truncated`): no data is not data. Containers never change type.
    fn truncate(mut self) -> Result<Parsed, Fail> {
        let n = self.stack.len();
        if n == 0 {
            // Unreachable: truncation happens inside a container.
            return Err(self.cut_fail());
        }
        // The deepest frame whose partial content is kept: below the first array on the
        // path from the root, the cut element is dropped whole.
        let keep = (0..n)
            .find(|&i| self.stack[i].kind == Kind::Array)
            .unwrap_or(n - 1);
        self.out.truncate(self.stack[keep].mark);
        self.stack.truncate(keep + 1);
        // Close from the inside out; an empty cut container is dropped from its parent
        // object (it is always an object member here, since arrays stop the descent).
        let mut child_kept = false;
        while let Some(f) = self.stack.pop() {
            if f.count == 0 && !child_kept {
                match self.stack.last() {
                    Some(parent) => {
                        let m = parent.mark;
                        self.out.truncate(m);
                        continue;
                    }
                    None => return Err(self.cut_fail()),
                }
            }
            self.out
                .push(if f.kind == Kind::Object { b'}' } else { b']' });
            child_kept = true;
        }
        let end = self.src.len();
        self.finish(true, end)
    }

    /// The input ended before anything complete: refused as `truncated`; strong when a
    /// token was read (the caller tells JSON that got cut from prose with a brace).
    fn cut_fail(&self) -> Fail {
        Fail {
            reason: "truncated",
            detail: "the value was cut before any complete element".into(),
            at: self.src.len(),
            strong: self.tokens > 0,
        }
    }

    /// Reads one top-level value starting at `start` (a `{` or `[`, or a scalar when the
    /// whole input is that scalar). Stops right after the value; the end of input inside
    /// a container is a truncation.
    pub(crate) fn parse(mut self, start: usize) -> Result<Parsed, Fail> {
        let src = self.src;
        self.pos = start;
        // Room for a typical answer without regrowing; small values stay small.
        self.out.reserve(src.len().saturating_sub(start).min(512));
        if self.pos >= src.len() {
            return Err(self.fail("empty", start, "no value"));
        }
        match self.value(false)? {
            Some(Scalar::Done) => {
                let end = self.pos;
                return self.finish(false, end);
            }
            Some(Scalar::Cut) => {
                return Err(self.fail("truncated", start, "value cut before it was complete"))
            }
            None => {}
        }
        loop {
            if self.strict_only && !self.repairs.is_empty() {
                return Err(self.fail("syntax", self.pos, "not strict JSON"));
            }
            self.skip_ws();
            if self.pos >= src.len() {
                return self.truncate();
            }
            let b = src[self.pos];
            let Some(top) = self.stack.last() else {
                // Unreachable: the loop returns when the outermost container closes.
                let end = self.pos;
                return self.finish(false, end);
            };
            let (kind, state, count) = (top.kind, top.state, top.count);
            let scalar = match (kind, state) {
                (Kind::Array, State::First | State::AfterComma) | (Kind::Object, State::Value) => {
                    match b {
                        b']' if kind == Kind::Array => {
                            if self.close_where_expected(state) {
                                break;
                            }
                            continue;
                        }
                        b',' if kind == Kind::Array => {
                            self.extra_comma(state);
                            continue;
                        }
                        b',' | b'}' if kind == Kind::Object => {
                            return Err(self.fail(
                                "missing_value",
                                self.pos,
                                "a key without a value",
                            ));
                        }
                        _ => {}
                    }
                    if kind == Kind::Array && count > 0 {
                        self.out.push(b',');
                    }
                    match self.value(true)? {
                        None => continue,
                        Some(s) => s,
                    }
                }
                (Kind::Array, State::AfterValue) | (Kind::Object, State::AfterValue) => {
                    let closer = if kind == Kind::Array { b']' } else { b'}' };
                    if b == b',' {
                        self.pos += 1;
                        if let Some(f) = self.stack.last_mut() {
                            f.state = State::AfterComma;
                        }
                        continue;
                    }
                    if b == closer {
                        if self.close() {
                            break;
                        }
                        continue;
                    }
                    let starts_next = match kind {
                        Kind::Array => {
                            matches!(b, b'{' | b'[' | b'-' | b'0'..=b'9')
                                || delim_at(src, self.pos).is_some()
                                || is_ident_start(b)
                        }
                        Kind::Object => delim_at(src, self.pos).is_some() || is_ident_start(b),
                    };
                    if !starts_next {
                        return Err(self.unexpected(if kind == Kind::Array {
                            "',' or ']'"
                        } else {
                            "',' or '}'"
                        }));
                    }
                    // A quote right against the end of the previous element (`'x''`,
                    // `"a""b"`, `["x"]"`) is a stray or doubled quote, not the start of
                    // the next element: where the strings end is a guess.
                    if delim_at(src, self.pos).is_some() && !is_ws(src[self.pos - 1]) {
                        return Err(self.fail(
                            "unbalanced_quote",
                            self.pos,
                            "a quote right after the end of a value: a stray or doubled quote",
                        ));
                    }
                    // Two numbers on one line with only spaces or tabs between them
                    // (`1 500`) may be one number with a space as thousands separator.
                    if kind == Kind::Array && matches!(b, b'-' | b'0'..=b'9') {
                        let mut j = self.pos;
                        while j > 0 && matches!(src[j - 1], b' ' | b'\t') {
                            j -= 1;
                        }
                        if j > 0 && src[j - 1].is_ascii_digit() {
                            return Err(self.fail(
                                "thousands_separator",
                                self.pos,
                                "numbers separated only by spaces on one line: one number with a separator, or several, is a guess",
                            ));
                        }
                    }
                    self.repair(Repair::MissingComma);
                    if let Some(f) = self.stack.last_mut() {
                        f.state = State::AfterComma;
                    }
                    continue;
                }
                (Kind::Object, State::First | State::AfterComma) => {
                    if b == b'}' {
                        if self.close_where_expected(state) {
                            break;
                        }
                        continue;
                    }
                    if b == b',' {
                        self.extra_comma(state);
                        continue;
                    }
                    if count > 0 {
                        self.out.push(b',');
                    }
                    let cut = if let Some((d, n)) = delim_at(src, self.pos) {
                        let tokens = self.tokens;
                        let r = self.string(d, n)?;
                        // A key alone is weak evidence; count it only with its colon.
                        self.tokens = tokens;
                        self.quoted_key = true;
                        r == Scalar::Cut
                    } else if is_ident_start(b) {
                        let s = self.pos;
                        let mut e = s;
                        while e < src.len() && (is_ident(src[e]) || src[e] == b'-') {
                            e += 1;
                        }
                        if e >= src.len() {
                            true
                        } else {
                            self.repair(Repair::UnquotedKey);
                            self.out.push(b'"');
                            self.out.extend_from_slice(&src[s..e]);
                            self.out.push(b'"');
                            self.pos = e;
                            self.quoted_key = false;
                            false
                        }
                    } else {
                        return Err(self.unexpected("a key or '}'"));
                    };
                    if cut {
                        return self.truncate();
                    }
                    if let Some(f) = self.stack.last_mut() {
                        f.state = State::Colon;
                    }
                    continue;
                }
                (Kind::Object, State::Colon) => {
                    if b == b',' || b == b'}' {
                        return Err(self.fail("missing_value", self.pos, "a key without a value"));
                    }
                    if b != b':' {
                        return Err(self.unexpected("':'"));
                    }
                    self.out.push(b':');
                    self.pos += 1;
                    if self.quoted_key {
                        self.tokens += 1;
                    }
                    if let Some(f) = self.stack.last_mut() {
                        f.state = State::Value;
                    }
                    continue;
                }
                (Kind::Array, State::Colon | State::Value) => {
                    // Unreachable: arrays never enter these states.
                    return Err(self.unexpected("a value"));
                }
            };
            match scalar {
                Scalar::Done => self.element_done(),
                Scalar::Cut => return self.truncate(),
            }
        }
        let end = self.pos;
        // A quote right after the outermost closer (`['a']', 'b']`) means a string inside
        // ended early: the text after it would be silently lost. Allowed only as the
        // matching half of quotes wrapped around the whole value (`'{"a": 1}'`).
        if let Some(&q) = src.get(end) {
            if delim_at(src, end).is_some() && !(start > 0 && src[start - 1] == q && q < 0x80) {
                return Err(self.fail(
                    "unbalanced_quote",
                    end,
                    "a quote right after the end of the value: a string inside may have ended early",
                ));
            }
        }
        self.finish(false, end)
    }
}

/// How many bytes a read at `start` went through: to the value's end, or to where it
/// failed. Summed by [`super::parse_measured`], which tests use to check that the work
/// stays linear in the input.
pub(crate) fn visited(r: &Result<Parsed, Fail>, start: usize) -> u64 {
    let stop = match r {
        Ok(p) => p.end,
        Err(f) => f.at,
    };
    stop.saturating_sub(start) as u64 + 1
}

/// Reads one value at `start` of `src`.
pub(crate) fn parse_at(src: &[u8], start: usize, provider_truncated: bool) -> Result<Parsed, Fail> {
    Parser::new(src, provider_truncated)
        .sized(start)
        .parse(start)
}

/// Reads one strict JSON value at `start`, giving up at the first repair.
pub(crate) fn parse_strict_at(
    src: &[u8],
    start: usize,
    provider_truncated: bool,
) -> Result<Parsed, Fail> {
    Parser::new(src, provider_truncated)
        .strict_only()
        .sized(start)
        .parse(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Vec<&'static str>, bool) {
        let p = parse_at(s.as_bytes(), 0, false).unwrap_or_else(|f| panic!("{s}: {f:?}"));
        (
            p.json,
            p.repairs.iter().map(|r| r.name()).collect(),
            p.truncated,
        )
    }

    fn err(s: &str) -> &'static str {
        match parse_at(s.as_bytes(), 0, false) {
            Ok(p) => panic!("{s}: expected failure, got {}", p.json),
            Err(f) => f.reason,
        }
    }

    #[test]
    fn strict_is_copied() {
        let (j, r, t) =
            ok(r#"{ "a" : [1, -0.0, 1e5, 12345678901234567890123], "b": "x\u00e9\n" }"#);
        assert_eq!(
            j,
            r#"{"a":[1,-0.0,1e5,12345678901234567890123],"b":"x\u00e9\n"}"#
        );
        assert!(r.is_empty());
        assert!(!t);
    }

    #[test]
    fn commas() {
        assert_eq!(ok("[1,2,]").0, "[1,2]");
        assert_eq!(ok("[1,2,]").1, ["trailing_comma"]);
        assert_eq!(ok("[,1]").1, ["leading_comma"]);
        assert_eq!(ok("[1,,2]").0, "[1,2]");
        assert_eq!(ok("[1,,2]").1, ["double_comma"]);
        assert_eq!(ok("{\"a\":1 \"b\":2}").0, "{\"a\":1,\"b\":2}");
        assert_eq!(ok("[\"a\" \"b\"]").1, ["missing_comma"]);
    }

    #[test]
    fn quotes_keys_literals_comments() {
        assert_eq!(ok("{'a': 'it's'}").0, r#"{"a":"it's"}"#);
        assert_eq!(
            ok("{a: True, b_2: None, c: False}").0,
            r#"{"a":true,"b_2":null,"c":false}"#
        );
        assert_eq!(ok("{“a”: “b”}").0, r#"{"a":"b"}"#);
        assert_eq!(ok("[1, // one\n 2 /* two */, 3 # three\n]").0, "[1,2,3]");
        assert_eq!(
            ok("{\"a\": \"say \"hi\" now\"}").0,
            r#"{"a":"say \"hi\" now"}"#
        );
        assert_eq!(ok("{\"a\": \"l1\nl2\tx\"}").0, r#"{"a":"l1\nl2\tx"}"#);
        assert_eq!(ok(r#"{"p": "C:\Users\x"}"#).0, r#"{"p":"C:\\Users\\x"}"#);
    }

    #[test]
    fn truncation() {
        assert_eq!(ok("[1, 2").0, "[1]");
        assert_eq!(ok("[1, 2 ").0, "[1,2]");
        assert_eq!(ok("{\"a\": \"x\", \"b").0, "{\"a\":\"x\"}");
        assert_eq!(ok("{\"a\": \"x\", \"b\":").0, "{\"a\":\"x\"}");
        assert_eq!(ok("{\"a\": [true, {\"c\": tr").0, "{\"a\":[true]}");
        assert_eq!(
            ok("[{\"k\":1},{\"k\":2},{\"k\":3").0,
            "[{\"k\":1},{\"k\":2}]"
        );
        assert_eq!(ok("[[1,2],[3,4").0, "[[1,2]]");
        assert_eq!(ok("[\"a\",\"b").0, "[\"a\"]");
        assert_eq!(
            ok("{\"scenarios\":[{\"a\":1},{\"a\":2},{\"a\":").0,
            "{\"scenarios\":[{\"a\":1},{\"a\":2}]}"
        );
        assert_eq!(ok("{\"meta\":{\"x\":1,\"y\":").0, "{\"meta\":{\"x\":1}}");
        assert_eq!(ok("{\"a\":1,\"m\":{\"n\":{\"x").0, "{\"a\":1}");
        assert_eq!(ok("{\"a\":1,\"m\":[{\"x\":1").0, "{\"a\":1}");
        assert_eq!(err("{\"answer\": 4"), "truncated");
        assert_eq!(err("[{\"k\":"), "truncated");
        assert_eq!(err("{"), "truncated");
        assert_eq!(err("{\"m\": {\"n\": [1"), "truncated");
        assert_eq!(ok("{}").0, "{}");
        assert_eq!(ok("[]").0, "[]");
        assert!(ok("[1 ").2);
        assert_eq!(err("[1"), "truncated");
    }

    #[test]
    fn refusals() {
        assert_eq!(err("[NaN]"), "nan");
        assert_eq!(err("[-Infinity]"), "infinity");
        assert_eq!(err("{\"a\": undefined}"), "undefined");
        assert_eq!(err("{\"a\": 1,000}"), "thousands_separator");
        assert_eq!(err("[50%]"), "percent");
        assert_eq!(err("{\"a\": }"), "missing_value");
        assert_eq!(err("{\"a\": hello}"), "unquoted_value");
        assert_eq!(err("[1, 2}"), "mismatched_bracket");
        assert_eq!(err("[007]"), "invalid_number");
        assert_eq!(err(&"[".repeat(1000)), "too_deep");
        assert_eq!(err("{\"a\": \"x\" y, \"b\": 1}"), "unbalanced_quote");
    }
}
