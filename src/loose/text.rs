//! Finding the candidate values in a model's answer text: byte-order mark, `<think>`
//! blocks, tagged blocks, code fences and prose; then choosing among several candidates
//! (examples, corrections) and turning the parsed candidates into [`LooseValue`]s.
//!
//! Every scan here is a single forward pass (`memchr` over the bytes), and a region's
//! bytes are handed to the value parser at most a small constant number of times, so the
//! whole is linear in the input.

use super::value::{self, Fail, Parsed};
use super::{LooseValue, ParseOptions, Refusal, Repair};

/// Reasoning blocks whose content is never an answer.
const THINK_TAGS: &[(&[u8], &[u8])] = &[
    (b"<think>", b"</think>"),
    (b"<thinking>", b"</thinking>"),
    (b"<reasoning>", b"</reasoning>"),
];

/// Blocks that hold the answer.
const ANSWER_TAGS: &[(&[u8], &[u8])] = &[
    (b"<json>", b"</json>"),
    (b"<answer>", b"</answer>"),
    (b"<output>", b"</output>"),
    (b"<result>", b"</result>"),
];

/// Fence info strings that may hold JSON.
const JSON_TAGS: &[&str] = &[
    "",
    "json",
    "jsonc",
    "json5",
    "jsonl",
    "ndjson",
    "jsonlines",
    "js",
    "javascript",
    "ts",
    "typescript",
    "text",
    "txt",
    "plaintext",
    "output",
    "hjson",
];

/// Words before a value that introduce it as an example.
const EXAMPLE_CUES: &[&str] = &[
    "example",
    "e.g.",
    "for instance",
    "sample",
    "template",
    "such as",
    "like this",
    "schema",
    "input",
];

/// Words before a value that introduce it as the answer.
const ANSWER_CUES: &[&str] = &[
    "answer", "result", "output", "here is", "here's", "here are", "actual", "final", "now",
    "response", "solution", "your ",
];

/// Words before a value that introduce it as a correction of the earlier ones.
const CORRECTION_CUES: &[&str] = &[
    "corrected",
    "correction",
    "fixed",
    "updated",
    "revised",
    "oops",
    "apolog",
    "mistake",
    "let me fix",
];

/// At most this many fences get a JSON-aware read (which may run past a line-based
/// fence end); bounds the work on inputs made of many fences.
const MAX_AWARE_FENCES: usize = 16;

/// The text after removing BOM and reasoning blocks, with a map back to input offsets.
struct Body {
    text: Vec<u8>,
    /// (offset in `text`, offset in the input) at the start of each kept piece.
    map: Vec<(usize, usize)>,
}

impl Body {
    fn to_input(&self, o: usize) -> usize {
        let i = self.map.partition_point(|&(b, _)| b <= o).saturating_sub(1);
        match self.map.get(i) {
            Some(&(b, t)) => t + (o - b),
            None => o,
        }
    }

    fn to_input_end(&self, o: usize) -> usize {
        if o == 0 {
            return self.to_input(0);
        }
        self.to_input(o - 1) + 1
    }
}

/// A parsed candidate with its place in the body.
struct Cand {
    parsed: Parsed,
    start: usize,
}

/// What a scan found besides candidates.
#[derive(Default)]
struct Seen {
    /// A candidate failed before reading any JSON-like content (prose with braces).
    weak: Option<usize>,
    /// Non-whitespace text outside the values.
    prose: bool,
    aware_fences: usize,
    /// A value refusal of a candidate that starts its region (`[007]`): reported when
    /// nothing else is found, as it says more than `no_json`.
    weak_at_start: Option<Refusal>,
    /// A candidate that is JSON cut before anything complete (`{"answer": 4`).
    cut: Option<Refusal>,
    /// Repairs made while finding candidates (fences, prose around them).
    repairs: Vec<Repair>,
    /// Bytes gone through (the work meter of [`super::parse_measured`]).
    work: u64,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize, e: usize) -> usize {
    while i < e && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Only spaces or tabs between the start of the line and `p`: tags inside JSON strings
/// or sentences are not blocks.
fn at_line_start(b: &[u8], p: usize) -> bool {
    let mut i = p;
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    i == 0 || b[i - 1] == b'\n'
}

fn has_text(b: &[u8]) -> bool {
    b.iter().any(|&c| !is_ws(c) && c != b',')
}

/// Removes the BOM and reasoning blocks.
fn strip(text: &str, repairs: &mut Vec<Repair>) -> Body {
    let src = text.as_bytes();
    let mut start = 0;
    if src.starts_with("\u{feff}".as_bytes()) {
        start = 3;
        repairs.push(Repair::Bom);
    }
    let mut body = Body {
        text: Vec::new(),
        map: Vec::new(),
    };
    let mut keep_from = start;
    let mut kept: Vec<(usize, usize)> = Vec::new();
    // A lone closing tag before any opening one: everything before it is reasoning
    // (some templates put the opening tag in the prompt).
    let mut first_open = None;
    let mut first_close = None;
    for p in memchr::memchr_iter(b'<', &src[start..]) {
        let p = start + p;
        for (open, close) in THINK_TAGS {
            if first_open.is_none() && src[p..].starts_with(open) && at_line_start(src, p) {
                first_open = Some(p);
            }
            if first_close.is_none() && src[p..].starts_with(close) {
                first_close = Some((p, p + close.len()));
            }
        }
        if first_open.is_some() || first_close.is_some() {
            break;
        }
    }
    if let (None, Some((_, e))) = (first_open, first_close) {
        keep_from = e;
    }
    let mut pos = keep_from;
    while let Some(t) = next_tag_block(src, pos, THINK_TAGS) {
        kept.push((pos, t.open));
        match t.after {
            Some(after) => pos = after,
            None => {
                pos = src.len();
                break;
            }
        }
    }
    kept.push((pos, src.len()));
    if keep_from != start || kept.len() > 1 {
        repairs.push(Repair::ThinkBlock);
    }
    for (s, e) in kept {
        if s < e {
            body.map.push((body.text.len(), s));
            body.text.extend_from_slice(&src[s..e]);
        }
    }
    body
}

/// Regions inside answer tags, if any.
fn tag_regions(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(t) = next_tag_block(b, i, ANSWER_TAGS) {
        out.push(t.body);
        match t.after {
            Some(after) => i = after,
            None => break,
        }
    }
    out
}

/// A tag block found by [`next_tag_block`].
struct TagBlock {
    /// Where the opening tag starts.
    open: usize,
    /// The text between the tags (to the end of input when never closed).
    body: (usize, usize),
    /// Right after the closing tag; `None` when the tag is never closed.
    after: Option<usize>,
}

/// The first of `tags` that opens at a line start at or after `from`.
fn next_tag_block(src: &[u8], from: usize, tags: &[(&[u8], &[u8])]) -> Option<TagBlock> {
    let mut i = from;
    while let Some(off) = memchr::memchr(b'<', &src[i..]) {
        let p = i + off;
        let tag = tags
            .iter()
            .find(|(open, _)| src[p..].starts_with(open) && at_line_start(src, p));
        let Some((open, close)) = tag else {
            i = p + 1;
            continue;
        };
        let s = p + open.len();
        return Some(match memchr::memmem::find(&src[s..], close) {
            Some(n) => TagBlock {
                open: p,
                body: (s, s + n),
                after: Some(s + n + close.len()),
            },
            None => TagBlock {
                open: p,
                body: (s, src.len()),
                after: None,
            },
        });
    }
    None
}

/// A code fence.
struct Fence {
    start: usize,
    json: bool,
    content: (usize, usize),
    end: usize,
    /// The value already read by the JSON-aware attempt.
    parsed: Option<Cand>,
}

/// End of the line holding `i` (index of its `\n`, or `e`).
fn line_end(b: &[u8], i: usize, e: usize) -> usize {
    match memchr::memchr(b'\n', &b[i..e]) {
        Some(n) => i + n,
        None => e,
    }
}

/// A fence marker (3+ backticks or tildes) at `i`: its char and length.
fn marker(b: &[u8], i: usize, e: usize) -> Option<(u8, usize)> {
    let c = *b.get(i)?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let mut n = 0;
    while i + n < e && b[i + n] == c {
        n += 1;
    }
    (n >= 3).then_some((c, n))
}

fn find_fences(b: &[u8], s: usize, e: usize, opts: &ParseOptions, seen: &mut Seen) -> Vec<Fence> {
    seen.work += (e - s) as u64;
    let mut out = Vec::new();
    let mut ls = s;
    while ls < e {
        let le = line_end(b, ls, e);
        let t = ls
            + b[ls..le]
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
        let Some((c, n)) = marker(b, t, le) else {
            ls = le + 1;
            continue;
        };
        let mut i = t + n;
        while i < le && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let tag_start = i;
        while i < le && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'+' | b'-' | b'.'))
        {
            i += 1;
        }
        let tag = String::from_utf8_lossy(&b[tag_start..i]).to_ascii_lowercase();
        let json = JSON_TAGS.contains(&tag.as_str());
        let rest = skip_ws(b, i, le);
        // Content on the opening line (```json {"a": 1}```) or from the next line.
        let content_start = if rest < le && marker(b, rest, le).is_none() {
            rest
        } else {
            (le + 1).min(e)
        };
        let mut fence = Fence {
            start: ls,
            json,
            content: (content_start, e),
            end: e,
            parsed: None,
        };
        // JSON-aware: a value that ends right before a closing marker, even when its
        // strings hold fence lines.
        let first = skip_ws(b, content_start, e);
        if json
            && first < e
            && matches!(b[first], b'{' | b'[')
            && seen.aware_fences < MAX_AWARE_FENCES
        {
            seen.aware_fences += 1;
            let r = value::parse_at(&b[..e], first, opts.provider_truncated);
            seen.work += value::visited(&r, first);
            if let Ok(p) = r {
                let after = skip_ws(b, p.end, e);
                let closing = marker(b, after, e).filter(|&(c2, n2)| c2 == c && n2 >= n);
                if !p.truncated && closing.is_some() {
                    let ce = line_end(b, after, e);
                    fence.content = (content_start, after);
                    fence.end = ce;
                    fence.parsed = Some(Cand {
                        start: first,
                        parsed: p,
                    });
                }
            }
        }
        if fence.parsed.is_none() {
            // Line-based end: a line that is only a marker, or a line ending in one.
            let mut l = content_start;
            while l < e {
                let le2 = line_end(b, l, e);
                let t2 = skip_ws(b, l, le2);
                if let Some((c2, n2)) = marker(b, t2, le2) {
                    if c2 == c && n2 >= n && !has_text(&b[t2 + n2..le2]) {
                        fence.content = (content_start, l);
                        fence.end = le2;
                        break;
                    }
                }
                let mut te = le2;
                while te > t2 && is_ws(b[te - 1]) {
                    te -= 1;
                }
                let mut k = te;
                while k > t2 && b[k - 1] == c {
                    k -= 1;
                }
                if te - k >= n && k > t2 {
                    fence.content = (content_start, k);
                    fence.end = le2;
                    break;
                }
                l = le2 + 1;
            }
        }
        ls = fence.end + 1;
        out.push(fence);
    }
    out
}

/// Index just past the bracket matching the one at `p` (counting brackets only), or `e`.
fn match_end(b: &[u8], p: usize, e: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in b[p..e].iter().enumerate() {
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return p + i + 1;
                }
            }
            _ => {}
        }
    }
    e
}

fn refusal_from(f: Fail, body: &Body) -> Refusal {
    Refusal::new(
        f.reason,
        format!("{} (byte {})", f.detail, body.to_input(f.at)),
    )
}

/// `[1]` or `[12]` inside a sentence (a reference mark, not an answer): the rest of its
/// line has words, or a word character comes right before it.
fn is_citation(b: &[u8], p: usize, v: &Parsed) -> bool {
    let j = v.json.as_bytes();
    if j.len() < 3
        || j.len() > 5
        || j[0] != b'['
        || !j[1..j.len() - 1].iter().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    let le = line_end(b, v.end.min(b.len()), b.len());
    let word_before = p > 0 && b[p - 1].is_ascii_alphanumeric();
    word_before || b[v.end.min(le)..le].iter().any(|c| c.is_ascii_alphabetic())
}

/// What every region of one stripped text is read with.
#[derive(Clone, Copy)]
struct Reading<'a> {
    b: &'a [u8],
    opts: &'a ParseOptions,
    body: &'a Body,
}

/// Finds and reads the objects and arrays in `b[s..e]`; prose between them is skipped.
fn scan(
    r: Reading,
    s: usize,
    e: usize,
    cands: &mut Vec<Cand>,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let Reading { b, opts, body } = r;
    let src = &b[..e];
    let first = skip_ws(b, s, e);
    let mut pos = s;
    seen.work += (e - s) as u64;
    loop {
        let Some(off) = memchr::memchr2(b'{', b'[', &src[pos..]) else {
            if has_text(&src[pos..]) {
                seen.prose = true;
            }
            return Ok(());
        };
        let p = pos + off;
        if has_text(&src[pos..p]) {
            seen.prose = true;
        }
        let read = value::parse_at(src, p, opts.provider_truncated);
        seen.work += value::visited(&read, p);
        match read {
            Ok(v) if v.truncated && v.tokens == 0 && p != first => {
                seen.weak.get_or_insert(p);
                seen.prose = true;
                return Ok(());
            }
            Ok(v) if p != first && is_citation(src, p, &v) => {
                seen.prose = true;
                pos = v.end;
            }
            Ok(v) => {
                pos = v.end;
                cands.push(Cand {
                    parsed: v,
                    start: p,
                });
            }
            Err(f) if f.reason == "truncated" => {
                // Cut before anything complete: it ends the text. JSON cut short when
                // it starts the region or read a key; otherwise prose with a brace.
                if p == first || f.strong {
                    seen.cut.get_or_insert(refusal_from(f, body));
                } else {
                    seen.weak.get_or_insert(p);
                    seen.prose = true;
                }
                return Ok(());
            }
            Err(f) if f.strong => return Err(refusal_from(f, body)),
            Err(f) => {
                let next = match_end(src, p, e).max(f.at + 1).min(e);
                if p == first
                    && seen.weak_at_start.is_none()
                    && matches!(
                        f.reason,
                        "invalid_number" | "unbalanced_quote" | "missing_value"
                    )
                {
                    seen.weak_at_start = Some(refusal_from(f, body));
                }
                seen.weak.get_or_insert(p);
                seen.prose = true;
                pos = next;
            }
        }
    }
}

/// A fence holding nothing but one strict JSON scalar (`42`, `"text"`, `null`).
fn scalar(b: &[u8], s: usize, e: usize, opts: &ParseOptions, seen: &mut Seen) -> Option<Cand> {
    let first = skip_ws(b, s, e);
    if first >= e || matches!(b[first], b'{' | b'[') {
        return None;
    }
    let r = value::parse_at(&b[..e], first, opts.provider_truncated);
    seen.work += value::visited(&r, first);
    let p = r.ok()?;
    if !p.repairs.is_empty() || has_text(&b[p.end..e]) || b[p.end..e].contains(&b',') {
        return None;
    }
    Some(Cand {
        parsed: p,
        start: first,
    })
}

/// Candidates in one region (the whole body, or one answer tag).
fn region(
    r: Reading,
    s: usize,
    e: usize,
    cands: &mut Vec<Cand>,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let Reading { b, opts, body } = r;
    let first = skip_ws(b, s, e);
    // Starts like JSON and is nothing but values: fences in its strings are content.
    if first < e && matches!(b[first], b'{' | b'[') {
        let mut tmp = Vec::new();
        let mut tseen = Seen::default();
        let first_try = scan(r, s, e, &mut tmp, &mut tseen);
        seen.work += tseen.work;
        if first_try.is_ok() && !tmp.is_empty() && !tseen.prose && tseen.weak.is_none() {
            cands.append(&mut tmp);
            if let Some(r) = tseen.cut {
                seen.cut.get_or_insert(r);
            }
            return Ok(());
        }
    }
    let fences = find_fences(b, s, e, opts, seen);
    if !fences.is_empty() {
        let before = cands.len();
        let mut outside = Vec::new();
        let mut prev = s;
        for f in fences {
            outside.push((prev, f.start));
            prev = (f.end + 1).min(e);
            if !f.json {
                continue;
            }
            match f.parsed {
                Some(c) => cands.push(c),
                None => match scalar(b, f.content.0, f.content.1, opts, seen) {
                    Some(c) => cands.push(c),
                    None => scan(r, f.content.0, f.content.1, cands, seen)?,
                },
            }
        }
        outside.push((prev, e));
        if cands.len() > before {
            push(&mut seen.repairs, Repair::CodeFence);
            if outside.iter().any(|&(a, z)| a < z && has_text(&b[a..z])) {
                push(&mut seen.repairs, Repair::Prose);
            }
            // Values outside the fences are never dropped unseen.
            let mut extra = Vec::new();
            for (a, z) in outside {
                if a < z {
                    scan(r, a, z, &mut extra, seen)?;
                }
            }
            if !extra.is_empty() {
                outside_values(b, cands, before, extra, body, seen)?;
            }
            return Ok(());
        }
        // No JSON in the fences: look in the prose around them.
        for (a, z) in outside {
            if a < z {
                scan(r, a, z, cands, seen)?;
            }
        }
        if cands.len() > before {
            push(&mut seen.repairs, Repair::Prose);
        }
        return Ok(());
    }
    scan(r, s, e, cands, seen)
}

/// Values found outside the code fences when fences hold JSON (`cands[before..]`). The
/// fence marks the answer, so a value outside one is taken only as a correction:
/// - introduced as a correction ("Oops, corrected: {...}"): it supersedes everything
///   before it, fenced or not, as without fences (`superseded`);
/// - the same JSON as a fenced value (a restatement: "Equivalent to {...}"): dropped,
///   nothing is lost;
/// - introduced as an example ("e.g.", "like", "such as"...): dropped
///   (`example_skipped`);
/// - anything else: which value is the answer is a guess, so the text is refused
///   (`ambiguous`).
fn outside_values(
    b: &[u8],
    cands: &mut Vec<Cand>,
    before: usize,
    extra: Vec<Cand>,
    body: &Body,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let mut all: Vec<(Cand, bool)> = cands
        .drain(before..)
        .map(|c| (c, true))
        .chain(extra.into_iter().map(|c| (c, false)))
        .collect();
    all.sort_by_key(|(c, _)| c.start);
    let gap = |all: &[(Cand, bool)], i: usize| {
        let s = if i == 0 { 0 } else { all[i - 1].0.parsed.end };
        let e = all[i].0.start;
        b[s.max(e.saturating_sub(400)).min(e)..e].to_ascii_lowercase()
    };
    let mut corrected = false;
    if let Some(i) = (1..all.len())
        .rev()
        .find(|&i| has_cue(&gap(&all, i), CORRECTION_CUES))
    {
        all.drain(..i);
        push(&mut seen.repairs, Repair::Superseded);
        corrected = true;
    }
    let fenced_json: Vec<String> = all
        .iter()
        .filter(|(_, f)| *f)
        .map(|(c, _)| c.parsed.json.clone())
        .collect();
    let mut kept = Vec::with_capacity(all.len());
    for i in 0..all.len() {
        let (c, fenced) = &all[i];
        // The first value left after a correction is the correction itself.
        if *fenced || (i == 0 && corrected) {
            kept.push(i);
            continue;
        }
        if fenced_json.contains(&c.parsed.json) {
            continue;
        }
        let g = gap(&all, i);
        if has_cue(&g, EXAMPLE_CUES) || has_cue(&g, &[" like "]) {
            push(&mut seen.repairs, Repair::ExampleSkipped);
            continue;
        }
        return Err(Refusal::new(
            "ambiguous",
            format!(
                "a value outside the code fences (at byte {}) is not introduced as a correction; cannot tell which is the answer",
                body.to_input(c.start)
            ),
        ));
    }
    let mut k = 0;
    for (i, (c, _)) in all.into_iter().enumerate() {
        if kept.get(k) == Some(&i) {
            cands.push(c);
            k += 1;
        }
    }
    Ok(())
}

fn push(repairs: &mut Vec<Repair>, r: Repair) {
    if !repairs.contains(&r) {
        repairs.push(r);
    }
}

/// The last 400 bytes of the text before candidate `i`, lowercased.
fn gap_text(b: &[u8], cands: &[Cand], i: usize) -> Vec<u8> {
    let s = if i == 0 { 0 } else { cands[i - 1].parsed.end };
    let e = cands[i].start;
    let s = s.max(e.saturating_sub(400)).min(e);
    b[s..e].to_ascii_lowercase()
}

fn has_cue(gap: &[u8], cues: &[&str]) -> bool {
    cues.iter()
        .any(|c| memchr::memmem::find(gap, c.as_bytes()).is_some())
}

/// Chooses among several candidates: corrections replace earlier values, examples
/// followed by an answer are dropped; several values left where one sits inside a
/// sentence are ambiguous.
fn select(
    b: &[u8],
    cands: Vec<Cand>,
    repairs: &mut Vec<Repair>,
    body: &Body,
) -> Result<Vec<Cand>, Refusal> {
    let cands = select_cued(b, cands, repairs, body)?;
    if cands.len() < 2 {
        return Ok(cands);
    }
    // A value with words after it on its line is part of a sentence ("the text {"a": 1}
    // was given"): with other values around, which of them is the answer is a guess.
    // Candidates are in text order, so one forward cursor finds each line end.
    // Each scan stops at the next candidate, so the whole is linear.
    let mut nl = 0usize;
    for (i, c) in cands.iter().enumerate() {
        let e = c.parsed.end.min(b.len());
        if nl < e {
            nl = line_end(b, e, b.len());
        }
        let stop = cands.get(i + 1).map_or(nl, |n| n.start.min(nl)).max(e);
        if b[e..stop].iter().any(|x| x.is_ascii_alphabetic()) {
            return Err(Refusal::new(
                "ambiguous",
                format!(
                    "{} values and one is inside a sentence; cannot tell which is the answer (value at byte {})",
                    cands.len(),
                    body.to_input(c.start)
                ),
            ));
        }
    }
    Ok(cands)
}

fn select_cued(
    b: &[u8],
    mut cands: Vec<Cand>,
    repairs: &mut Vec<Repair>,
    body: &Body,
) -> Result<Vec<Cand>, Refusal> {
    if cands.len() < 2 {
        return Ok(cands);
    }
    let gaps: Vec<Vec<u8>> = (0..cands.len()).map(|i| gap_text(b, &cands, i)).collect();
    if let Some(i) = (1..cands.len())
        .rev()
        .find(|&i| has_cue(&gaps[i], CORRECTION_CUES))
    {
        cands.drain(..i);
        push(repairs, Repair::Superseded);
        return Ok(cands);
    }
    let n = cands.len();
    let ex: Vec<bool> = gaps.iter().map(|g| has_cue(g, EXAMPLE_CUES)).collect();
    let k = ex.iter().take_while(|&&x| x).count();
    if k == n || !ex.iter().any(|&x| x) {
        return Ok(cands);
    }
    let ambiguous = |at: usize| {
        Refusal::new(
            "ambiguous",
            format!(
                "{n} values and some are introduced as examples; cannot tell which is the answer (value at byte {})",
                body.to_input(at)
            ),
        )
    };
    if k == 0 {
        let j = ex.iter().position(|&x| x).unwrap_or(0);
        return Err(ambiguous(cands[j].start));
    }
    if ex[k..].iter().any(|&x| x) {
        return Err(ambiguous(cands[k].start));
    }
    if has_cue(&gaps[k], ANSWER_CUES) {
        cands.drain(..k);
        push(repairs, Repair::ExampleSkipped);
        return Ok(cands);
    }
    // "Here are sample records:" followed by a plain list: all of them are the answer.
    if gaps[k..]
        .iter()
        .all(|g| !g.iter().any(|c| c.is_ascii_alphabetic()))
    {
        return Ok(cands);
    }
    Err(ambiguous(cands[k].start))
}

/// JSON whose quotes are all backslash-escaped (`{\"a\": 1}`: a JSON string's content
/// without its outer quotes). Decoded only when the whole text is a valid string body
/// and the decoded text is strict JSON, so nothing is guessed.
fn escaped_json(
    text: &str,
    b: &[u8],
    opts: &ParseOptions,
    repairs: &[Repair],
    work: &mut u64,
) -> Option<Vec<LooseValue>> {
    *work += b.len() as u64;
    let first = skip_ws(b, 0, b.len());
    let rest = &b[first..];
    if !(rest.starts_with(b"{\\\"") || rest.starts_with(b"[\\\"") || rest.starts_with(b"[{\\\"")) {
        return None;
    }
    let mut end = b.len();
    while end > first && is_ws(b[end - 1]) {
        end -= 1;
    }
    let inner = std::str::from_utf8(&b[first..end]).ok()?;
    let decoded: String = serde_json::from_str(&format!("\"{inner}\"")).ok()?;
    let values = super::fast_path(&decoded, opts, work)?;
    let span = 0..text.len();
    Some(
        values
            .into_iter()
            .map(|v| {
                let mut rs = repairs.to_vec();
                push(&mut rs, Repair::EscapedJson);
                for r in v.repairs {
                    push(&mut rs, r);
                }
                LooseValue {
                    span: span.clone(),
                    ..LooseValue { repairs: rs, ..v }
                }
            })
            .collect(),
    )
}

/// The loose path: everything the strict fast path did not accept.
pub(crate) fn extract(
    text: &str,
    opts: &ParseOptions,
    work: &mut u64,
) -> Result<Vec<LooseValue>, Refusal> {
    let mut repairs = Vec::new();
    // Stripping and the tag search: a few passes over the text.
    *work += 2 * text.len() as u64;
    let body = strip(text, &mut repairs);
    let b = &body.text[..];
    if !has_text(b) && !b.contains(&b',') {
        return Err(if opts.provider_truncated {
            Refusal::new("truncated", "the answer was cut before any value")
        } else if repairs.contains(&Repair::ThinkBlock) {
            Refusal::new("no_json", "the text holds only a reasoning block")
        } else {
            Refusal::new("empty", "the text is empty")
        });
    }
    if let Some(values) = escaped_json(text, b, opts, &repairs, work) {
        return Ok(values);
    }
    let mut cands = Vec::new();
    let mut seen = Seen::default();
    let result = extract_from(b, opts, &body, &mut repairs, &mut cands, &mut seen);
    *work += seen.work;
    result?;
    finish(b, cands, repairs, seen, &body)
}

/// Finds the candidates of the stripped text `b`.
fn extract_from(
    b: &[u8],
    opts: &ParseOptions,
    body: &Body,
    repairs: &mut Vec<Repair>,
    cands: &mut Vec<Cand>,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let tags = tag_regions(b);
    let r = Reading { b, opts, body };
    if tags.is_empty() {
        region(r, 0, b.len(), cands, seen)?;
    } else {
        for &(s, e) in &tags {
            region(r, s, e, cands, seen)?;
        }
        if !cands.is_empty() {
            repairs.push(Repair::TagBlock);
        }
    }
    if cands.is_empty() {
        if opts.provider_truncated {
            return Err(Refusal::new(
                "truncated",
                "the answer was cut before any complete value",
            ));
        }
        if let Some(r) = seen.cut.take() {
            return Err(r);
        }
        if let Some(r) = seen.weak_at_start.take() {
            return Err(r);
        }
        return Err(match seen.weak {
            Some(at) => Refusal::new(
                "no_json",
                format!(
                    "braces in prose but no JSON value (first at byte {})",
                    body.to_input(at)
                ),
            ),
            None => Refusal::new("no_json", "no JSON object or array in the text"),
        });
    }
    Ok(())
}

/// Chooses among the candidates and turns them into values.
fn finish(
    b: &[u8],
    cands: Vec<Cand>,
    mut repairs: Vec<Repair>,
    mut seen: Seen,
    body: &Body,
) -> Result<Vec<LooseValue>, Refusal> {
    for r in std::mem::take(&mut seen.repairs) {
        push(&mut repairs, r);
    }
    if seen.prose {
        push(&mut repairs, Repair::Prose);
    }
    let cands = select(b, cands, &mut repairs, body)?;
    if cands.len() > 1 {
        push(&mut repairs, Repair::SeveralValues);
    }
    // A last value cut before anything complete was dropped: the answer was cut, and
    // the last returned value says so.
    let cut_after = seen.cut.is_some();
    let last = cands.len().saturating_sub(1);
    Ok(cands
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, cut_after && i == last))
        .map(|(c, cut)| {
            let mut rs = repairs.clone();
            for r in c.parsed.repairs {
                push(&mut rs, r);
            }
            LooseValue {
                json: c.parsed.json,
                repairs: rs,
                truncated: c.parsed.truncated || cut,
                span: body.to_input(c.start)..body.to_input_end(c.parsed.end),
            }
        })
        .collect())
}
