//! `batchline extract`: the JSON values in the model answers of Batch API result files,
//! one record per value, never invented.
//!
//! Each result line's texts are found by body shape ([`crate::batch::result`]), or at
//! `--text-field` for any JSONL; each text is read by the loose-JSON parser
//! ([`crate::loose`]) with the provider's truncation hint. Workers build the output and
//! rejects bytes of a whole chunk in parallel; the single writer appends them in input
//! order, so the output is the same whatever the thread count.
//!
//! # Records
//! `{"custom_id", "choice", ["tool_call", "tool"], ["part"], ["index"], "value", "repairs",
//! "truncated"}`, keys in that order. `value` is the parser's compact JSON text, copied as
//! is (numbers as written, key order kept). `tool_call`/`tool`: the text was a tool
//! call's arguments. `part`: the text held several values, this is the 0-based position
//! of this one. `index`: with `--explode`, the element's position in the text's list:
//! the array's elements, numbered on across the values of a text (a text of several
//! values, such as one object per line, is a list by its form: there a value that is
//! not an array is one element; a single value must be an array).
//! `truncated`: the value was cut (with `--explode`: only the last element of a cut
//! array carries it; earlier elements were complete before the cut).
//!
//! # Rejects
//! The shared shape ([`crate::io::rejects`]): `{"file", "line", "offset", "reason",
//! "message", ["custom_id"], ["choice", "tool_call", "tool", "part", "index"],
//! ["error_code", "status_code"], ["value"], "text", ["text_cut"]}`: `text` is the
//! model's text when the reject concerns a text or a value, else the result line;
//! `value` is the value's JSON for value-level rejects.
//!
//! Reasons: line level `invalid_json`, `invalid_utf8`, `line_too_long`, `bad_line` (JSON,
//! but not a result line), `api_error`, `no_text`; text level `refusal`, `no_text`, and
//! every refusal of the parser (`no_json`, `truncated`, `not_strict`...); value level
//! `not_array`, `empty_array` (`--explode`), `schema`, `not_strict` (a double-encoded
//! value under `--strict`).
//!
//! # Accounting
//! Every text ends as at least one record or one reject, so every line is blank, or
//! has a record, or has a reject: `lines = blank + lines_with_records + lines_rejected`
//! (`lines_rejected`: lines that gave no record) and `rejected` is the sum of `rejects`
//! by reason. Both are checked at the end of every run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{json_str, CommonOptions, Outcome, RejectRoute, Summary};
use crate::batch::result::{read_field, read_result, Failure, TextItem, TextSource, ToolRef};
use crate::engine::{self, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::io::output::{commit_all, Output, OutputSpec};
use crate::io::paths::PathClaims;
use crate::io::rejects::{self, Reject};
use crate::json;
use crate::loose::{self, LooseValue, ParseOptions, Repair};
use crate::report::Throughput;

/// The repair name recorded when `--schema` decoded a double-encoded value.
pub const DOUBLE_ENCODED: &str = "double_encoded";

/// Everything `extract` needs to know.
#[derive(Clone, Debug)]
pub struct ExtractConfig {
    pub inputs: Vec<InputSpec>,
    pub output: OutputSpec,
    /// Accept only values needing no repair beyond stripping.
    pub strict: bool,
    /// JSON Schema file every record's value must satisfy.
    pub schema: Option<PathBuf>,
    /// `--explode`: JSON pointer of the array to split into one record per element.
    pub explode: Option<String>,
    /// `--text-field`: JSON pointer of the text in any JSONL (instead of result shapes).
    pub text_field: Option<String>,
    /// `--id-field`: JSON pointer of the id with `--text-field`.
    pub id_field: String,
    pub common: CommonOptions,
}

impl ExtractConfig {
    pub fn new(inputs: Vec<InputSpec>, output: OutputSpec) -> ExtractConfig {
        ExtractConfig {
            inputs,
            output,
            strict: false,
            schema: None,
            explode: None,
            text_field: None,
            id_field: "/custom_id".to_string(),
            common: CommonOptions::default(),
        }
    }
}

/// What `run` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractSummary {
    pub command: &'static str,
    pub inputs: Vec<String>,
    pub output: String,
    pub rejects_file: Option<String>,
    /// Input lines, blank ones included.
    pub lines: u64,
    pub blank: u64,
    /// Lines with at least one record.
    pub lines_with_records: u64,
    /// Non-blank lines without any record (each has at least one reject).
    pub lines_rejected: u64,
    /// Texts found (answers, tool-call arguments, refusals, empty choices).
    pub texts: u64,
    /// Values the parser recovered from the texts.
    pub values: u64,
    /// Records written (after `--explode`, `--schema`).
    pub records: u64,
    /// Values that were cut (truncated answers).
    pub truncated: u64,
    /// Reject lines written.
    pub rejected: u64,
    /// Rejects by reason.
    pub rejects: BTreeMap<String, u64>,
    /// Recovered values by repair applied.
    pub repairs: BTreeMap<String, u64>,
    /// Failed requests by error code.
    pub api_errors: BTreeMap<String, u64>,
    pub throughput: Throughput,
    #[serde(skip)]
    pub outcome: Outcome,
}

/// Per-chunk (then total) counts.
#[derive(Default, Debug)]
struct Counts {
    lines: u64,
    blank: u64,
    lines_with_records: u64,
    lines_rejected: u64,
    lines_lost: u64,
    texts: u64,
    values: u64,
    records: u64,
    truncated: u64,
    rejected: u64,
    rejects: BTreeMap<&'static str, u64>,
    repairs: BTreeMap<&'static str, u64>,
    api_errors: BTreeMap<String, u64>,
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.lines_with_records += o.lines_with_records;
        self.lines_rejected += o.lines_rejected;
        self.lines_lost += o.lines_lost;
        self.texts += o.texts;
        self.values += o.values;
        self.records += o.records;
        self.truncated += o.truncated;
        self.rejected += o.rejected;
        for (k, v) in o.rejects {
            *self.rejects.entry(k).or_default() += v;
        }
        for (k, v) in o.repairs {
            *self.repairs.entry(k).or_default() += v;
        }
        for (k, v) in o.api_errors {
            *self.api_errors.entry(k).or_default() += v;
        }
    }
}

/// A worker's outcome for one chunk: finished output bytes and counts.
struct ChunkOut {
    records: Vec<u8>,
    /// The chunk's rejects in line order (without a rejects file, only the first few).
    rejects: Vec<Reject>,
    counts: Counts,
}

/// Shared, read-only state of the workers.
struct Ctx<'a> {
    cfg: &'a ExtractConfig,
    validator: Option<jsonschema::Validator>,
    schema: Option<Value>,
    write_rejects: bool,
}

/// Where a reject or record comes from.
#[derive(Clone, Copy)]
struct Origin<'a> {
    line: u64,
    offset: u64,
    custom_id: Option<&'a str>,
    choice: Option<u64>,
    tool: Option<&'a ToolRef<'a>>,
    part: Option<usize>,
    index: Option<usize>,
}

fn plain<'a>(reason: &'static str, detail: &'a str, text: &'a str) -> RejectOut<'a> {
    RejectOut {
        reason,
        detail,
        error_code: None,
        status_code: None,
        text,
        cut: false,
        value: None,
    }
}

/// A reject about to be written.
struct RejectOut<'a> {
    reason: &'static str,
    detail: &'a str,
    error_code: Option<&'a str>,
    status_code: Option<u64>,
    text: &'a str,
    cut: bool,
    value: Option<&'a str>,
}

fn push_num(buf: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    let _ = write!(buf, "{n}");
}

fn write_origin_tail(buf: &mut Vec<u8>, o: &Origin) {
    if let Some(c) = o.choice {
        buf.extend_from_slice(b",\"choice\":");
        push_num(buf, c);
    }
    if let Some(t) = o.tool {
        buf.extend_from_slice(b",\"tool_call\":");
        push_num(buf, t.index);
        buf.extend_from_slice(b",\"tool\":");
        match &t.name {
            Some(n) => json_str(buf, n),
            None => buf.extend_from_slice(b"null"),
        }
    }
    if let Some(p) = o.part {
        buf.extend_from_slice(b",\"part\":");
        push_num(buf, p as u64);
    }
    if let Some(i) = o.index {
        buf.extend_from_slice(b",\"index\":");
        push_num(buf, i as u64);
    }
}

struct ChunkState {
    out: ChunkOut,
}

impl ChunkState {
    fn reject(&mut self, ctx: &Ctx, o: &Origin, r: RejectOut) {
        let c = &mut self.out.counts;
        c.rejected += 1;
        *c.rejects.entry(r.reason).or_default() += 1;
        // Without a rejects file only the first few are needed (to stop the run, or to
        // be echoed); the counts have them all.
        if !ctx.write_rejects && self.out.rejects.len() >= 6 {
            return;
        }
        let mut extra = Vec::new();
        write_origin_tail(&mut extra, o);
        if let Some(code) = r.error_code {
            extra.extend_from_slice(b",\"error_code\":");
            json_str(&mut extra, code);
        }
        if let Some(s) = r.status_code {
            extra.extend_from_slice(b",\"status_code\":");
            push_num(&mut extra, s);
        }
        if let Some(v) = r.value {
            extra.extend_from_slice(b",\"value\":");
            extra.extend_from_slice(v.as_bytes());
        }
        // `write_origin_tail` starts every member with a comma.
        let extra = String::from_utf8(extra.split_off(extra.len().min(1))).expect("JSON is UTF-8");
        let text = if ctx.write_rejects { r.text } else { "" };
        self.out.rejects.push(
            Reject::with_text(o.line, o.offset, r.reason, r.detail, text, r.cut)
                .with_custom_id(o.custom_id.map(str::to_string))
                .with_extra(extra),
        );
    }

    fn record(&mut self, o: &Origin, value: &str, repairs: &[&'static str], truncated: bool) {
        self.out.counts.records += 1;
        let b = &mut self.out.records;
        b.extend_from_slice(b"{\"custom_id\":");
        match o.custom_id {
            Some(id) => json_str(b, id),
            None => b.extend_from_slice(b"null"),
        }
        write_origin_tail(b, o);
        b.extend_from_slice(b",\"value\":");
        b.extend_from_slice(value.as_bytes());
        b.extend_from_slice(b",\"repairs\":[");
        for (i, r) in repairs.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.push(b'"');
            b.extend_from_slice(r.as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b"],\"truncated\":");
        b.extend_from_slice(if truncated { b"true}\n" } else { b"false}\n" });
    }
}

impl Ctx<'_> {
    fn chunk(&self, chunk: &Chunk) -> ChunkOut {
        let mut st = ChunkState {
            out: ChunkOut {
                records: Vec::with_capacity(chunk.len() / 2),
                rejects: Vec::new(),
                counts: Counts::default(),
            },
        };
        for line in chunk.lines() {
            st.out.counts.lines += 1;
            if line.is_blank() {
                st.out.counts.blank += 1;
                continue;
            }
            let (records, rejected) = (st.out.counts.records, st.out.counts.rejected);
            let origin = Origin {
                line: line.number,
                offset: line.offset,
                custom_id: None,
                choice: None,
                tool: None,
                part: None,
                index: None,
            };
            let lossy;
            // A cut line may end inside a character: it is too long, not broken.
            let checked = if line.is_cut() {
                Ok(None)
            } else {
                line.text().map(Some)
            };
            let text = match checked {
                Ok(Some(t)) => Ok(t),
                Ok(None) => Err((rejects::reason::LINE_TOO_LONG, line.too_long())),
                Err(e) => Err((rejects::reason::INVALID_UTF8, e)),
            };
            match text {
                Err((reason, detail)) => {
                    lossy = String::from_utf8_lossy(line.bytes);
                    st.reject(
                        self,
                        &origin,
                        RejectOut {
                            reason,
                            detail: &detail,
                            error_code: None,
                            status_code: None,
                            text: &lossy,
                            cut: line.is_cut(),
                            value: None,
                        },
                    );
                }
                Ok(text) => self.line(&mut st, origin, text),
            }
            let c = &mut st.out.counts;
            if c.records > records {
                c.lines_with_records += 1;
            } else if c.rejected > rejected {
                c.lines_rejected += 1;
            } else {
                c.lines_lost += 1;
            }
        }
        st.out
    }

    fn line(&self, st: &mut ChunkState, origin: Origin, text: &str) {
        let (id, found) = match &self.cfg.text_field {
            Some(ptr) => read_field(text, ptr, &self.cfg.id_field),
            None => read_result(text),
        };
        let origin = Origin {
            custom_id: id.as_deref(),
            ..origin
        };
        let items = match found {
            Ok(items) if !items.is_empty() => items,
            Ok(_) => {
                let f = Failure {
                    reason: "no_text",
                    error_code: None,
                    status_code: None,
                    detail: "the line holds no text".into(),
                };
                return self.line_failure(st, &origin, text, f);
            }
            Err(f) => return self.line_failure(st, &origin, text, f),
        };
        for item in &items {
            self.text(st, origin, text, item);
        }
    }

    fn line_failure(&self, st: &mut ChunkState, origin: &Origin, line: &str, f: Failure) {
        if f.reason == "api_error" {
            let code = f.error_code.clone().unwrap_or_else(|| match f.status_code {
                Some(s) => format!("http_{s}"),
                None => "unknown".into(),
            });
            *st.out.counts.api_errors.entry(code).or_default() += 1;
        }
        st.reject(
            self,
            origin,
            RejectOut {
                reason: f.reason,
                detail: &f.detail,
                error_code: f.error_code.as_deref(),
                status_code: f.status_code,
                text: line,
                cut: false,
                value: None,
            },
        );
    }

    fn text(&self, st: &mut ChunkState, origin: Origin, line: &str, item: &TextItem) {
        st.out.counts.texts += 1;
        let mut origin = Origin {
            choice: Some(item.choice),
            tool: item.tool.as_ref(),
            ..origin
        };
        let text: &str = match &item.source {
            TextSource::Refusal(r) => {
                return st.reject(self, &origin, plain("refusal", "the model refused", r));
            }
            TextSource::Missing(why) => {
                return st.reject(self, &origin, plain("no_text", why, line));
            }
            TextSource::Text(t) => t,
            TextSource::Json(raw) => raw,
        };
        let opts = ParseOptions {
            strict: self.cfg.strict,
            provider_truncated: item.provider_truncated,
        };
        match loose::parse(text, &opts) {
            Err(r) => st.reject(self, &origin, plain(r.reason, &r.detail, text)),
            Ok(values) if values.is_empty() => st.reject(
                self,
                &origin,
                plain("no_json", "no value in the text", text),
            ),
            Ok(values) => {
                let several = values.len() > 1;
                let mut next_index = 0;
                for (p, v) in values.iter().enumerate() {
                    origin.part = several.then_some(p);
                    self.value(st, origin, text, v, several, &mut next_index);
                }
            }
        }
    }

    /// One recovered value: written, or exploded into elements numbered from
    /// `next_index` (the index runs over all the values of a text).
    fn value(
        &self,
        st: &mut ChunkState,
        origin: Origin,
        text: &str,
        v: &LooseValue,
        several: bool,
        next_index: &mut usize,
    ) {
        let c = &mut st.out.counts;
        c.values += 1;
        if v.truncated {
            c.truncated += 1;
        }
        // Repair names on the stack: no allocation per value. Room for every repair
        // there is; a value's repairs are distinct, and a repeat is skipped, so none is
        // ever left out.
        let mut names = [""; Repair::ALL.len()];
        let mut n = 0;
        for r in &v.repairs {
            if names[..n].contains(&r.name()) {
                continue;
            }
            *c.repairs.entry(r.name()).or_default() += 1;
            names[n] = r.name();
            n += 1;
        }
        let Some(ptr) = &self.cfg.explode else {
            return self.item(st, origin, text, &v.json, &names[..n], v.truncated);
        };
        let json = v.json.as_str();
        let at = if ptr.is_empty() {
            "the value"
        } else {
            ptr.as_str()
        };
        let bad = |st: &mut ChunkState, reason, detail: &str| {
            self.reject_value(st, &origin, text, json, reason, detail)
        };
        let Some(mut range) = json::text::pointer(json, ptr) else {
            return bad(
                st,
                "not_array",
                &format!("the value has no {ptr} to explode"),
            );
        };
        // --explode says an array is there: a string holding exactly one JSON array
        // (double-encoded) is decoded once, and says so.
        let decoded = decode_string_as(&json[range.clone()], false, true);
        let (src, on_edge) = match &decoded {
            Some(d) => {
                if self.cfg.strict {
                    return bad(
                        st,
                        "not_strict",
                        &format!("{at} needs a repair: double_encoded (a string holding JSON)"),
                    );
                }
                *st.out.counts.repairs.entry(DOUBLE_ENCODED).or_default() += 1;
                names[n] = DOUBLE_ENCODED;
                n += 1;
                range = 0..d.len();
                (d.as_str(), false)
            }
            // Only an array on the value's right edge can hold the cut: its last element
            // may be incomplete; earlier ones were complete before the cut.
            None => (
                json,
                v.truncated && json[range.end..].bytes().all(|b| b == b']' || b == b'}'),
            ),
        };
        let Some(elements) = json::text::array_elements(src, range.clone()) else {
            if several && ptr.is_empty() {
                // A text of several values (one per line, a numbered list) is a list by
                // its form: a value that is not an array is one element of it.
                let mut o = origin;
                o.index = Some(*next_index);
                *next_index += 1;
                return self.item(st, o, text, json, &names[..n], v.truncated);
            }
            let kind = match json.as_bytes()[range.start] {
                b'{' => "an object",
                b'"' => "a string",
                b'n' => "null",
                b't' | b'f' => "a boolean",
                _ => "a number",
            };
            return bad(st, "not_array", &format!("{at} is {kind}, not an array"));
        };
        if elements.is_empty() {
            return bad(
                st,
                "empty_array",
                &format!("{at} is an empty array: nothing to explode"),
            );
        }
        let last = elements.len() - 1;
        for (i, e) in elements.into_iter().enumerate() {
            let mut o = origin;
            o.index = Some(*next_index);
            *next_index += 1;
            self.item(st, o, text, &src[e], &names[..n], on_edge && i == last);
        }
    }

    /// Rejects a value read from `text`: the reject carries both.
    fn reject_value(
        &self,
        st: &mut ChunkState,
        origin: &Origin,
        text: &str,
        json: &str,
        reason: &'static str,
        detail: &str,
    ) {
        let r = RejectOut {
            value: Some(json),
            ..plain(reason, detail, text)
        };
        st.reject(self, origin, r)
    }

    /// One record candidate: schema check (with double-encoded decoding), then written.
    fn item(
        &self,
        st: &mut ChunkState,
        origin: Origin,
        text: &str,
        json: &str,
        repairs: &[&'static str],
        truncated: bool,
    ) {
        let (Some(validator), Some(schema)) = (&self.validator, &self.schema) else {
            return st.record(&origin, json, repairs, truncated);
        };
        let decoded = decode_doubles(json, schema);
        let mut all = Cow::Borrowed(repairs);
        let json: &str = match &decoded {
            Some(d) => {
                *st.out.counts.repairs.entry(DOUBLE_ENCODED).or_default() += 1;
                all.to_mut().push(DOUBLE_ENCODED);
                d
            }
            None => json,
        };
        let bad = |st: &mut ChunkState, reason, detail: &str| {
            self.reject_value(st, &origin, text, json, reason, detail)
        };
        if decoded.is_some() && self.cfg.strict {
            return bad(
                st,
                "not_strict",
                "the value needs a repair: double_encoded (a string holding JSON)",
            );
        }
        let value: Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => return bad(st, "schema", &format!("cannot be checked: {e}")),
        };
        let mut errors = validator.iter_errors(&value).peekable();
        if errors.peek().is_some() {
            let mut msgs: Vec<String> = Vec::new();
            let mut more = 0;
            for e in errors {
                if msgs.len() < 3 {
                    let path = e.instance_path().as_str().to_string();
                    let at = if path.is_empty() {
                        "/".to_string()
                    } else {
                        path
                    };
                    msgs.push(format!("at {at}: {e}"));
                } else {
                    more += 1;
                }
            }
            let mut detail = msgs.join("; ");
            if more > 0 {
                detail.push_str(&format!("; and {more} more"));
            }
            return bad(st, "schema", &detail);
        }
        st.record(&origin, json, &all, truncated);
    }
}

// ---- double-encoded JSON under a schema ----

/// The schema's `type` names.
fn schema_types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Follows local `$ref`s (`#/$defs/x`, `#/definitions/x`).
fn resolve<'s>(mut s: &'s Value, root: &'s Value) -> &'s Value {
    for _ in 0..32 {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
                Some(t) => s = t,
                None => return s,
            },
            _ => return s,
        }
    }
    s
}

/// When `raw` is a JSON string literal whose content is exactly one strict JSON object
/// (`obj`) or array (`arr`), that value's compact JSON text (numbers as written).
fn decode_string_as(raw: &str, obj: bool, arr: bool) -> Option<String> {
    if !raw.starts_with('"') {
        return None;
    }
    let inner = serde_json::from_str::<String>(raw).ok()?;
    let vals = loose::fast_path(&inner, &ParseOptions::default(), &mut 0)?;
    let [v] = vals.as_slice() else {
        return None;
    };
    let fits = (obj && v.json.starts_with('{')) || (arr && v.json.starts_with('['));
    fits.then(|| v.json.clone())
}

/// With a schema: every string in `json` whose schema type is object or array (and not
/// string) and that holds exactly one strict JSON value of that type is replaced by that
/// value, once (a string inside the decoded value is decoded only if its own schema asks
/// again). Returns the new JSON text, or `None` when nothing was decoded.
pub fn decode_doubles(json: &str, schema: &Value) -> Option<String> {
    let root = json::text::root(json)?;
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    walk(json, root, schema, schema, 0, &mut edits);
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(json.len());
    let mut pos = 0;
    for (r, new) in edits {
        out.push_str(&json[pos..r.start]);
        out.push_str(&new);
        pos = r.end;
    }
    out.push_str(&json[pos..]);
    Some(out)
}

fn walk(
    json: &str,
    range: std::ops::Range<usize>,
    schema: &Value,
    root: &Value,
    depth: usize,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) {
    if depth > 64 {
        return;
    }
    let schema = resolve(schema, root);
    if !schema.is_object() {
        return;
    }
    match json.as_bytes()[range.start] {
        b'"' => {
            let types = schema_types(schema);
            let wants_obj = types.contains(&"object");
            let wants_arr = types.contains(&"array");
            if !(wants_obj || wants_arr) || types.contains(&"string") {
                return;
            }
            let Some(v) = decode_string_as(&json[range.clone()], wants_obj, wants_arr) else {
                return;
            };
            let new = decode_doubles(&v, schema).unwrap_or(v);
            edits.push((range, new));
        }
        b'{' => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, r) in json::text::object_members(json, range).unwrap_or_default() {
                if let Some(sub) = props.and_then(|p| p.get(key.as_ref())).or(extra) {
                    walk(json, r, sub, root, depth + 1, edits);
                }
            }
        }
        b'[' => {
            let prefix = schema.get("prefixItems").and_then(Value::as_array);
            let items = schema.get("items");
            for (i, r) in json::text::array_elements(json, range)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let sub = match (prefix.and_then(|p| p.get(i)), items) {
                    (Some(s), _) => Some(s),
                    (None, Some(Value::Array(tuple))) => tuple.get(i),
                    (None, Some(s)) if s.is_object() => Some(s),
                    _ => None,
                };
                if let Some(sub) = sub {
                    walk(json, r, sub, root, depth + 1, edits);
                }
            }
        }
        _ => {}
    }
}

/// The single writer: appends each chunk's records in order, and routes its rejects.
struct Writer {
    out: Output,
    rejects: RejectRoute,
    counts: Counts,
}

impl Writer {
    fn consume(&mut self, out: ChunkOut) -> Result<Flow> {
        // With `--on-error fail` the chunk's first reject stops the run before its
        // records are written.
        let mut rejects = out.rejects.into_iter();
        if let Some(first) = rejects.next() {
            self.rejects.route(first)?;
        }
        self.out.write_all(&out.records)?;
        for r in rejects {
            self.rejects.route(r)?;
        }
        // Stdout's reader went away: go on only for a rejects file asked for.
        if self.out.is_closed() && !self.rejects.is_open() {
            return Err(Error::BrokenPipe);
        }
        self.counts.merge(out.counts);
        Ok(Flow::Continue)
    }
}

/// The inputs with every later naming of the same file dropped (device and inode on
/// Unix: `a`, `./a` and a link to it are one file).
fn once_each(inputs: &[InputSpec]) -> Result<Vec<InputSpec>> {
    let mut seen: std::collections::HashSet<(u64, u64, Option<std::path::PathBuf>)> =
        std::collections::HashSet::new();
    let mut out = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let id = match spec.path() {
            None => None,
            Some(p) => Some(crate::io::input::file_identity(p)?),
        };
        if id.is_none_or(|id| seen.insert(id)) {
            out.push(spec.clone());
        }
    }
    Ok(out)
}

/// Runs `extract`.
pub fn run(cfg: &ExtractConfig) -> Result<ExtractSummary> {
    if cfg.inputs.is_empty() {
        return Err(Error::Usage(
            "no input file (give RESULTS..., or - for stdin)".into(),
        ));
    }
    if cfg
        .inputs
        .iter()
        .filter(|i| **i == InputSpec::Stdin)
        .count()
        > 1
    {
        return Err(Error::Usage(
            "standard input (-) can be read only once".into(),
        ));
    }
    for p in [
        cfg.explode.as_deref(),
        cfg.text_field.as_deref(),
        Some(cfg.id_field.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        json::text::check_pointer(p).map_err(Error::Usage)?;
    }
    let (validator, schema) = match &cfg.schema {
        None => (None, None),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let schema: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Usage(format!("{}: not a JSON schema: {e}", path.display())))?;
            let v = jsonschema::validator_for(&schema).map_err(|e| {
                Error::Usage(format!("{}: invalid JSON schema: {e}", path.display()))
            })?;
            (Some(v), Some(schema))
        }
    };
    let mut claims = PathClaims::new();
    for i in &cfg.inputs {
        claims.input(i)?;
    }
    claims.output(&cfg.output)?;
    if let Some(r) = &cfg.common.rejects {
        claims.output(r)?;
    }
    // Open every input first: a missing second file fails before anything is written.
    // A file named twice (another name, a link) counts once, as in `join`: its records
    // would otherwise come out twice.
    let inputs = once_each(&cfg.inputs)?;
    let opened = inputs
        .iter()
        .map(OpenInput::open)
        .collect::<Result<Vec<_>>>()?;
    let ctx = Ctx {
        cfg,
        validator,
        schema,
        write_rejects: cfg.common.rejects.is_some(),
    };
    let mut writer = Writer {
        out: Output::create(&cfg.output, cfg.common.sync)?,
        rejects: RejectRoute::open(String::new(), &cfg.common)?,
        counts: Counts::default(),
    };
    let mut bytes = 0u64;
    let mut elapsed = Duration::ZERO;
    for input in opened {
        writer.rejects.set_file(input.name().to_string());
        let stats = engine::run(
            input,
            &cfg.common.engine,
            |chunk| ctx.chunk(chunk),
            |_chunk, out| writer.consume(out),
        )?;
        bytes += stats.bytes;
        elapsed += stats.elapsed;
    }
    let Writer {
        out,
        rejects,
        counts,
        ..
    } = writer;
    check_accounting(&counts)?;
    let mut out = out;
    out.flush_stdout()?;
    let stdout_closed = out.is_closed();
    let mut pending = rejects.finish_pending()?.into_iter().collect::<Vec<_>>();
    pending.extend(out.finish_pending()?);
    commit_all(pending)?;
    let outcome = Outcome::of(counts.rejected, stdout_closed);
    let name_map = |m: BTreeMap<&'static str, u64>| -> BTreeMap<String, u64> {
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    Ok(ExtractSummary {
        command: "extract",
        inputs: inputs.iter().map(|i| i.display_name()).collect(),
        output: cfg.output.display_name(),
        rejects_file: cfg.common.rejects.as_ref().map(|r| r.display_name()),
        lines: counts.lines,
        blank: counts.blank,
        lines_with_records: counts.lines_with_records,
        lines_rejected: counts.lines_rejected,
        texts: counts.texts,
        values: counts.values,
        records: counts.records,
        truncated: counts.truncated,
        rejected: counts.rejected,
        rejects: name_map(counts.rejects),
        repairs: name_map(counts.repairs),
        api_errors: counts.api_errors,
        throughput: Throughput::new(bytes, elapsed),
        outcome,
    })
}

/// Every line is blank, gave a record, or gave a reject; rejects add up by reason.
fn check_accounting(c: &Counts) -> Result<()> {
    let by_reason: u64 = c.rejects.values().sum();
    if c.lines_lost != 0
        || c.lines != c.blank + c.lines_with_records + c.lines_rejected
        || by_reason != c.rejected
    {
        return Err(Error::Other(format!(
            "internal error: extract accounting does not add up ({c:?}); please report it"
        )));
    }
    Ok(())
}

impl Summary for ExtractSummary {
    fn human(&self) -> String {
        let mut s = format!(
            "extract: {} lines ({} blank): {} texts, {} values, {} records written",
            self.lines, self.blank, self.texts, self.values, self.records
        );
        if self.truncated > 0 {
            s.push_str(&format!(", {} truncated", self.truncated));
        }
        s.push_str(&format!("; {} rejected", self.rejected));
        if !self.rejects.is_empty() {
            let parts: Vec<String> = self
                .rejects
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        if !self.repairs.is_empty() {
            let mut r: Vec<(&String, &u64)> = self.repairs.iter().collect();
            r.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!("; repairs: {}", parts.join(", ")));
        }
        s.push_str(&format!("; {}", self.throughput.human()));
        s
    }

    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        self.output == "<stdout>"
    }
}
