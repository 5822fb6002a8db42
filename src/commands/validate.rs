//! `batchline validate`: keep the records whose token structure holds in every target
//! model, checked with several real tokenizers at once.
//!
//! Rules ([`crate::tokenize::rules`]) are parsed and the tokenizers
//! ([`crate::tokenize::registry`]) loaded, in parallel, before any record is read; a syntax
//! error (with its position) or a bad tokenizer file ends the run with exit status 2.
//! Workers parse and evaluate the records of a whole chunk in parallel, each with its own
//! chunk-count memo ([`EvalCache`], taken from a pool); the single writer appends valid
//! records and rejects in input order, so the output is the same whatever the thread count.
//!
//! # Output
//! Valid records are written as they were read (the line's bytes, `\n`-terminated), in
//! input order. With `--annotate` each gets a last member `"_tokens"`:
//! `{"tokens(prompt + \" \" + single_token)": {"llama3": 12, "qwen3": 12}, ...}`, one entry
//! per distinct `tokens(...)` expression that was evaluated for the record (canonical text),
//! one count per tokenizer; an existing `_tokens` member is replaced in place. The rest of
//! the line is kept byte for byte.
//!
//! # Rejects
//! The shared shape ([`crate::io::rejects`]). A record that broke rules:
//! `{"file", "line", "offset", "reason": "rules_failed", "message": "failed: NAME, NAME",
//! ["custom_id"], "failed": [{"rule", "reason"}], "counts", "text"}`, the failed rules in
//! rule order with why each failed, and the counts in the `_tokens` shape above. A line
//! that is not a JSON object (`invalid_json`), not UTF-8 (`invalid_utf8`) or too long
//! (`line_too_long`) has the shared members only; `--on-error` applies to those, never
//! to records that break rules.
//!
//! # `--target N`
//! The writer stops at the N-th valid record in input order; workers may have evaluated a
//! few chunks more, but nothing after that record is written or counted, so output, rejects
//! and report are the same whatever the thread count. The report says how many records
//! (and lines, and bytes) were read up to there.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::{json_str, CommonOptions, Outcome, RejectRoute, Summary};
use crate::engine::{self, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::io::output::{commit_all, AtomicFile, Output, OutputSpec};
use crate::io::paths::PathClaims;
use crate::io::rejects::{self, Reject};

/// The reason code of a record that broke rules.
pub const RULES_FAILED: &str = "rules_failed";
use crate::json;
use crate::report::Throughput;
use crate::tokenize::{
    parse_rules_file, take_tokenizer_lines, EvalCache, LoadOptions, Rule, RuleError, RuleSet,
    TokenizerSet, TokenizerSource, TokenizerSpec,
};

/// The member `--annotate` adds to each valid record.
pub const ANNOTATION_KEY: &str = "_tokens";

/// Everything `validate` needs to know.
#[derive(Clone, Debug)]
pub struct ValidateConfig {
    pub input: InputSpec,
    pub output: OutputSpec,
    /// `--tokenizer` arguments, in order (the order of every per-tokenizer count); the
    /// `tokenizer` lines of `rules_file` come after them.
    pub tokenizers: Vec<TokenizerSpec>,
    /// `--revision`: for the Hub tokenizers that name none.
    pub revision: Option<String>,
    /// `--rule` arguments (`expr` or `name: expr`), in order; evaluated before the rules
    /// of `rules_file`.
    pub rules: Vec<String>,
    /// `--rules FILE`: one rule per line, `#` comments and blank lines ignored.
    pub rules_file: Option<PathBuf>,
    /// Count the special tokens the tokenizers add (BOS, ...).
    pub special: bool,
    /// Add the counts to the valid records (`_tokens`).
    pub annotate: bool,
    /// Stop after this many valid records.
    pub target: Option<u64>,
    /// `--report FILE`: the summary as JSON.
    pub report: Option<PathBuf>,
    pub common: CommonOptions,
}

impl ValidateConfig {
    pub fn new(input: InputSpec, output: OutputSpec) -> ValidateConfig {
        ValidateConfig {
            input,
            output,
            tokenizers: Vec::new(),
            revision: None,
            rules: Vec::new(),
            rules_file: None,
            special: false,
            annotate: false,
            target: None,
            report: None,
            common: CommonOptions::default(),
        }
    }
}

/// `(name, value)` pairs serialised as a JSON object, in this order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One tokenizer of the run, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct TokenizerInfo {
    pub name: String,
    /// The file, or the OpenAI encoding's name.
    pub source: String,
    /// Whether the exact chunked count applies (else the full pipeline runs per text).
    pub chunked: bool,
}

/// One rule of the run, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    pub name: String,
    /// The expression as written.
    pub rule: String,
    /// Records that broke it.
    pub failed: u64,
}

/// What `run` reports (stderr, `--json`, `--report FILE`).
#[derive(Clone, Debug, Serialize)]
pub struct ValidateSummary {
    pub command: &'static str,
    pub input: String,
    pub output: String,
    pub rejects_file: Option<String>,
    pub tokenizers: Vec<TokenizerInfo>,
    pub rules: Vec<RuleInfo>,
    /// Lines read (blank ones included); with `--target`, up to the last valid record.
    pub lines: u64,
    pub blank: u64,
    /// Non-blank lines read.
    pub records: u64,
    pub valid: u64,
    pub invalid: u64,
    /// Lines that are not a JSON object (or not UTF-8, or too long); part of `invalid`.
    pub invalid_json: u64,
    /// Records that broke each rule, by rule name in rule order (a record can break several).
    pub failures: Ordered<u64>,
    /// `valid / records` (0 when there is no record).
    pub success_rate: f64,
    /// Sum of every count per tokenizer: over the records read, over each distinct
    /// `tokens(...)` expression evaluated for the record.
    pub tokens: Ordered<u64>,
    pub target: Option<u64>,
    /// The run stopped at `--target` before the end of the input.
    pub stopped_early: bool,
    /// Bytes read and time spent reading and evaluating (tokenizer loading excluded).
    pub throughput: Throughput,
    pub records_per_s: f64,
    /// Time spent loading the tokenizers (in parallel).
    pub load_seconds: f64,
    /// Whole run, loading included.
    pub total_seconds: f64,
    #[serde(skip)]
    pub outcome: Outcome,
    #[serde(skip)]
    pub data_on_stdout: bool,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Summary for ValidateSummary {
    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        self.data_on_stdout
    }

    /// The human report: a few lines for stderr.
    fn human(&self) -> String {
        let mut s = format!(
            "validate: {} records, {} valid ({:.1}%), {} invalid",
            self.records,
            self.valid,
            self.success_rate * 100.0,
            self.invalid
        );
        if self.invalid_json > 0 {
            s.push_str(&format!(" ({} not JSON objects)", self.invalid_json));
        }
        if let Some(t) = self.target {
            if self.stopped_early {
                s.push_str(&format!(
                    "\n  target of {t} valid records reached after reading {} records ({} lines)",
                    self.records, self.lines
                ));
            } else {
                s.push_str(&format!(
                    "\n  target of {t} valid records not reached: the input ended"
                ));
            }
        }
        for r in &self.rules {
            s.push_str(&format!("\n  failed {:>8}  {}", r.failed, r.name));
        }
        if !self.tokens.0.is_empty() {
            let parts: Vec<String> = self
                .tokens
                .0
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect();
            s.push_str(&format!("\n  tokens: {}", parts.join(", ")));
        }
        s.push_str(&format!(
            "\n  {}, {:.0} records/s; tokenizers loaded in {:.2} s; total {:.2} s",
            self.throughput.human(),
            self.records_per_s,
            self.load_seconds,
            self.total_seconds
        ));
        s
    }
}

/// How one non-blank line ended, in input order within its chunk.
#[derive(Clone, Copy, Debug)]
struct Entry {
    line: u64,
    /// Input offset just past the line (its newline included).
    end: u64,
    valid: bool,
    bad_json: bool,
    /// Ends of this line's bytes in `ChunkOut::out` / `rejects` / `failed`.
    out_end: usize,
    rej_end: usize,
    failed_end: usize,
}

/// A worker's outcome for one chunk.
struct ChunkOut {
    entries: Vec<Entry>,
    out: Vec<u8>,
    /// Rejects in line order; `true`: an unreadable line (`--on-error` applies), else
    /// a record that broke rules (always kept).
    rejects: Vec<(bool, Reject)>,
    /// Indices of the failed rules, per entry (see `Entry::failed_end`).
    failed: Vec<u32>,
    /// Per entry, the count sums per tokenizer (`width` values each).
    tokens: Vec<u64>,
}

/// Shared read-only state of the workers.
struct Ctx<'a> {
    rules: &'a RuleSet,
    names: Vec<String>,
    annotate: bool,
    write_rejects: bool,
    pool: Mutex<Vec<EvalCache>>,
}

/// Writes the counts as `{"EXPR": {"TOKENIZER": N, ...}, ...}`.
fn write_counts(buf: &mut Vec<u8>, names: &[String], counts: &[(String, Vec<usize>)]) {
    use std::io::Write;
    buf.push(b'{');
    for (i, (expr, per)) in counts.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        json_str(buf, expr);
        buf.extend_from_slice(b":{");
        for (j, (name, n)) in names.iter().zip(per).enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            json_str(buf, name);
            let _ = write!(buf, ":{n}");
        }
        buf.push(b'}');
    }
    buf.push(b'}');
}

/// The record's `custom_id` (a string, or a number as written).
fn custom_id(v: &Value) -> Option<Cow<'_, str>> {
    match v.get("custom_id")? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

impl Ctx<'_> {
    fn take_cache(&self) -> EvalCache {
        let popped = self.pool.lock().expect("cache pool").pop();
        popped.unwrap_or_else(|| self.rules.new_cache())
    }

    fn give_cache(&self, c: EvalCache) {
        self.pool.lock().expect("cache pool").push(c);
    }

    /// A record that broke rules: the shared shape plus `failed` and `counts`.
    fn rules_reject(
        &self,
        line: u64,
        offset: u64,
        id: Option<&str>,
        failed: &[(&str, &str)],
        counts: &[(String, Vec<usize>)],
        text: &str,
    ) -> Reject {
        let names: Vec<&str> = failed.iter().map(|(rule, _)| *rule).collect();
        let mut b = b"\"failed\":[".to_vec();
        for (i, (rule, why)) in failed.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.extend_from_slice(b"{\"rule\":");
            json_str(&mut b, rule);
            b.extend_from_slice(b",\"reason\":");
            json_str(&mut b, why);
            b.push(b'}');
        }
        b.extend_from_slice(b"],\"counts\":");
        write_counts(&mut b, &self.names, counts);
        Reject::with_text(
            line,
            offset,
            RULES_FAILED,
            format!("failed: {}", names.join(", ")),
            text,
            false,
        )
        .with_custom_id(id.map(str::to_string))
        .with_extra(String::from_utf8(b).expect("JSON is UTF-8"))
    }

    /// Writes a valid record, with `_tokens` added when annotating.
    fn write_valid(&self, out: &mut Vec<u8>, text: &str, counts: &[(String, Vec<usize>)]) {
        if !self.annotate {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
            return;
        }
        let mut ann = Vec::with_capacity(64);
        write_counts(&mut ann, &self.names, counts);
        // The line parsed as an object, so these succeed.
        let root = json::text::root(text).expect("parsed line has a root");
        let members = json::text::object_members(text, root.clone()).unwrap_or_default();
        if let Some((_, r)) = members
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == ANNOTATION_KEY)
        {
            out.extend_from_slice(&text.as_bytes()[..r.start]);
            out.extend_from_slice(&ann);
            out.extend_from_slice(&text.as_bytes()[r.end..]);
        } else {
            let close = root.end - 1; // the object's '}'
            out.extend_from_slice(&text.as_bytes()[..close]);
            if !members.is_empty() {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(ANNOTATION_KEY.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(&ann);
            out.extend_from_slice(&text.as_bytes()[close..]);
        }
        out.push(b'\n');
    }

    fn chunk(&self, chunk: &Chunk) -> ChunkOut {
        let width = self.names.len();
        let mut o = ChunkOut {
            entries: Vec::new(),
            out: Vec::with_capacity(chunk.len() / 4),
            rejects: Vec::new(),
            failed: Vec::new(),
            tokens: Vec::new(),
        };
        let mut cache = self.take_cache();
        let chunk_end = chunk.offset + chunk.len() as u64;
        for line in chunk.lines() {
            if line.is_blank() {
                continue;
            }
            let end = if line.is_cut() {
                chunk_end
            } else {
                // Just past the line's newline, from its position in the chunk.
                let data: &[u8] = &chunk.bytes;
                let mut e =
                    line.bytes.as_ptr() as usize - data.as_ptr() as usize + line.bytes.len();
                if data[e..].starts_with(b"\r\n") {
                    e += 2;
                } else if data.get(e) == Some(&b'\n') {
                    e += 1;
                }
                chunk.offset + e as u64
            };
            let base = o.tokens.len();
            o.tokens.resize(base + width, 0);
            let mut valid = false;
            let mut bad_json = false;
            let parsed: std::result::Result<(&str, Value), Reject> = match Reject::unreadable(&line)
            {
                Some(r) => Err(r),
                None => line
                    .text()
                    .map_err(|e| format!("invalid UTF-8: {e}"))
                    .and_then(|t| match serde_json::from_str::<Value>(t) {
                        Ok(v @ Value::Object(_)) => Ok((t, v)),
                        Ok(v) => Err(format!(
                            "invalid JSON: the line is {}, not an object",
                            match v {
                                Value::Array(_) => "an array",
                                Value::String(_) => "a string",
                                Value::Number(_) => "a number",
                                Value::Bool(_) => "a boolean",
                                _ => "null",
                            }
                        )),
                        Err(e) => Err(format!("invalid JSON: {e}")),
                    })
                    .map_err(|m| {
                        Reject::new(
                            line.number,
                            line.offset,
                            rejects::reason::INVALID_JSON,
                            m,
                            line.bytes,
                            false,
                        )
                    }),
            };
            match parsed {
                Err(r) => {
                    bad_json = true;
                    // Without a rejects file only the first few are needed (to stop the
                    // run, or to be echoed).
                    if self.write_rejects || o.rejects.len() < 6 {
                        o.rejects.push((true, r));
                    }
                }
                Ok((text, record)) => {
                    let verdict = self.rules.evaluate(&record, &mut cache);
                    for (_, per) in &verdict.counts {
                        for (t, &n) in o.tokens[base..].iter_mut().zip(per) {
                            *t += n as u64;
                        }
                    }
                    if verdict.valid {
                        valid = true;
                        self.write_valid(&mut o.out, text, &verdict.counts);
                    } else {
                        for f in &verdict.failed {
                            o.failed.push(f.index as u32);
                        }
                        if self.write_rejects {
                            let failed: Vec<(&str, &str)> = verdict
                                .failed
                                .iter()
                                .map(|f| (f.name.as_str(), f.reason.as_str()))
                                .collect();
                            let r = self.rules_reject(
                                line.number,
                                line.offset,
                                custom_id(&record).as_deref(),
                                &failed,
                                &verdict.counts,
                                text,
                            );
                            o.rejects.push((false, r));
                        }
                    }
                }
            }
            o.entries.push(Entry {
                line: line.number,
                end,
                valid,
                bad_json,
                out_end: o.out.len(),
                rej_end: o.rejects.len(),
                failed_end: o.failed.len(),
            });
        }
        self.give_cache(cache);
        o
    }
}

/// Totals over the consumed records.
#[derive(Default)]
struct Totals {
    lines: u64,
    bytes: u64,
    records: u64,
    valid: u64,
    invalid_json: u64,
    failures: Vec<u64>,
    tokens: Vec<u64>,
}

struct Writer {
    out: Output,
    rejects: RejectRoute,
    /// A rejects file or a report was asked for: a closed stdout does not stop the run.
    side_files: bool,
    totals: Totals,
    target: Option<u64>,
    width: usize,
}

impl Writer {
    fn consume(&mut self, chunk: &Chunk, o: ChunkOut) -> Result<Flow> {
        let t = &mut self.totals;
        let mut cut: Option<usize> = None;
        let mut failed_start = 0;
        for (i, e) in o.entries.iter().enumerate() {
            t.records += 1;
            if e.bad_json {
                t.invalid_json += 1;
            }
            for &r in &o.failed[failed_start..e.failed_end] {
                t.failures[r as usize] += 1;
            }
            failed_start = e.failed_end;
            for (sum, n) in t
                .tokens
                .iter_mut()
                .zip(&o.tokens[i * self.width..(i + 1) * self.width])
            {
                *sum += n;
            }
            if e.valid {
                t.valid += 1;
                if self.target == Some(t.valid) {
                    cut = Some(i);
                    break;
                }
            }
        }
        let (out_end, rej_end) = match cut {
            Some(i) => {
                let e = &o.entries[i];
                t.lines = e.line;
                t.bytes += e.end - chunk.offset;
                (e.out_end, e.rej_end)
            }
            None => {
                t.lines = chunk.first_line + chunk.line_count - 1;
                t.bytes += chunk.len() as u64
                    + chunk
                        .oversize_len
                        .map_or(0, |n| n.saturating_sub(chunk.len() as u64));
                (o.out.len(), o.rejects.len())
            }
        };
        self.out.write_all(&o.out[..out_end])?;
        for (bad_line, r) in o.rejects.into_iter().take(rej_end) {
            if bad_line {
                self.rejects.route(r)?;
            } else {
                self.rejects.keep(&r)?;
            }
        }
        if self.out.is_closed() && !self.side_files {
            return Err(Error::BrokenPipe);
        }
        Ok(if cut.is_some() {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }
}

/// Turns a rule error into a usage error that shows where it is.
fn rule_error(e: RuleError, args: &[String], file_text: Option<&str>) -> Error {
    let (src, column) = match &e {
        RuleError::Syntax { rule, column, .. } => (args.get(rule - 1).map(String::as_str), *column),
        RuleError::FileSyntax { line, column, .. } => {
            (file_text.and_then(|t| t.lines().nth(line - 1)), *column)
        }
        _ => (None, 0),
    };
    let mut msg = match &e {
        RuleError::Syntax { .. } | RuleError::FileSyntax { .. } => format!("syntax error in {e}"),
        _ => e.to_string(),
    };
    if let Some(src) = src {
        let pad: String = src
            .chars()
            .take(column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        msg.push_str(&format!("\n  {src}\n  {pad}^"));
    }
    Error::Usage(msg)
}

/// Parses the `--rule` arguments then the `--rules` file.
/// The rules of `--rule` and `--rules FILE`, and the tokenizers declared in the file.
pub fn parse_rules(cfg: &ValidateConfig) -> Result<(Vec<Rule>, Vec<TokenizerSpec>)> {
    let mut rules = Vec::new();
    let mut tokenizers = Vec::new();
    for (i, src) in cfg.rules.iter().enumerate() {
        rules.push(Rule::parse_arg(i + 1, src).map_err(|e| rule_error(e, &cfg.rules, None))?);
    }
    if let Some(path) = &cfg.rules_file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let name = path.display().to_string();
        let (text, specs) =
            take_tokenizer_lines(&name, &text).map_err(|e| Error::Usage(e.to_string()))?;
        tokenizers = specs;
        let more =
            parse_rules_file(&name, &text).map_err(|e| rule_error(e, &cfg.rules, Some(&text)))?;
        rules.extend(more);
    }
    if rules.is_empty() {
        return Err(Error::Usage(
            "no rule given (use --rule RULE or --rules FILE)".into(),
        ));
    }
    Ok((rules, tokenizers))
}

pub fn run(cfg: &ValidateConfig) -> Result<ValidateSummary> {
    let started = Instant::now();
    if cfg.target == Some(0) {
        return Err(Error::Usage("--target must be at least 1".into()));
    }
    // Outputs must differ from each other and from the input.
    let mut claims = PathClaims::new();
    claims.input(&cfg.input)?;
    claims.output(&cfg.output)?;
    if let Some(r) = &cfg.common.rejects {
        claims.output(r)?;
    }
    if let Some(p) = &cfg.report {
        claims.output_path(p)?;
    }
    if cfg.output.is_stdout() && matches!(cfg.common.rejects, Some(OutputSpec::Stdout)) {
        return Err(Error::Usage(
            "the output and the rejects cannot both go to stdout".into(),
        ));
    }

    // Everything that can be wrong with the arguments, before any record is read.
    let (rules, file_tokenizers) = parse_rules(cfg)?;
    let specs: Vec<TokenizerSpec> = cfg
        .tokenizers
        .iter()
        .cloned()
        .chain(file_tokenizers)
        .collect();
    if cfg.revision.is_some()
        && !specs
            .iter()
            .any(|s| matches!(s.source, TokenizerSource::Hub { .. }))
    {
        return Err(Error::Usage(
            "--revision is for Hub tokenizers (ORG/NAME), and none was given".into(),
        ));
    }
    let input = OpenInput::open(&cfg.input)?;
    let load_started = Instant::now();
    // Hub tokenizers may be downloaded here: progress as the engine's, Ctrl-C stops it.
    let load = LoadOptions {
        revision: cfg.revision.clone(),
        progress: cfg.common.engine.progress,
        cancel: Some(cfg.common.engine.cancel.as_atomic()),
        ..LoadOptions::default()
    };
    let set = TokenizerSet::load_with(&specs, &load).map_err(|e| {
        if cfg.common.engine.cancel.is_cancelled() {
            Error::Interrupted
        } else {
            Error::Usage(e.to_string())
        }
    })?;
    let load_seconds = load_started.elapsed();
    let rule_set =
        RuleSet::new(rules, set, cfg.special).map_err(|e| rule_error(e, &cfg.rules, None))?;

    let names: Vec<String> = rule_set
        .tokenizers()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let width = names.len();
    let ctx = Ctx {
        rules: &rule_set,
        names: names.clone(),
        annotate: cfg.annotate,
        write_rejects: cfg.common.rejects.is_some(),
        pool: Mutex::new(Vec::new()),
    };
    let mut writer = Writer {
        out: Output::create(&cfg.output, cfg.common.sync)?,
        rejects: RejectRoute::open(input.name().to_string(), &cfg.common)?,
        side_files: cfg.report.is_some() || matches!(cfg.common.rejects, Some(OutputSpec::Path(_))),
        totals: Totals {
            failures: vec![0; rule_set.rules().len()],
            tokens: vec![0; width],
            ..Totals::default()
        },
        target: cfg.target,
        width,
    };
    let stats = engine::run(
        input,
        &cfg.common.engine,
        |chunk| ctx.chunk(chunk),
        |chunk, out| writer.consume(&chunk, out),
    )?;
    let Writer {
        out,
        rejects,
        totals: t,
        ..
    } = writer;
    // Finish every file (the report below too), then commit them all.
    let mut out = out;
    out.flush_stdout()?;
    let stdout_closed = out.is_closed();
    let mut pending: Vec<_> = rejects.finish_pending()?.into_iter().collect();
    pending.extend(out.finish_pending()?);

    let elapsed: Duration = stats.elapsed;
    let secs = elapsed.as_secs_f64();
    let invalid = t.records - t.valid;
    let blank = t.lines.saturating_sub(t.records);
    let summary = ValidateSummary {
        command: "validate",
        input: cfg.input.display_name(),
        output: cfg.output.display_name(),
        rejects_file: cfg.common.rejects.as_ref().map(|r| r.display_name()),
        tokenizers: rule_set
            .tokenizers()
            .iter()
            .map(|tk| TokenizerInfo {
                name: tk.name().to_string(),
                source: tk.origin(),
                chunked: tk.is_chunkable(),
            })
            .collect(),
        rules: rule_set
            .rules()
            .iter()
            .zip(&t.failures)
            .map(|(r, &failed)| RuleInfo {
                name: r.name.clone(),
                rule: r.source.clone(),
                failed,
            })
            .collect(),
        lines: t.lines,
        blank,
        records: t.records,
        valid: t.valid,
        invalid,
        invalid_json: t.invalid_json,
        failures: Ordered(
            rule_set
                .rules()
                .iter()
                .map(|r| r.name.clone())
                .zip(t.failures.iter().copied())
                .collect(),
        ),
        success_rate: if t.records > 0 {
            round3(t.valid as f64 / t.records as f64)
        } else {
            0.0
        },
        tokens: Ordered(names.into_iter().zip(t.tokens.iter().copied()).collect()),
        target: cfg.target,
        stopped_early: stats.stopped_early,
        throughput: Throughput::new(t.bytes, elapsed),
        records_per_s: if secs > 0.0 {
            (t.records as f64 / secs).round()
        } else {
            0.0
        },
        load_seconds: round3(load_seconds.as_secs_f64()),
        total_seconds: round3(started.elapsed().as_secs_f64()),
        outcome: Outcome::of(invalid, stdout_closed),
        data_on_stdout: cfg.output.is_stdout()
            || matches!(cfg.common.rejects, Some(OutputSpec::Stdout)),
    };
    if let Some(path) = &cfg.report {
        let mut f = AtomicFile::create(path, cfg.common.sync)?;
        let mut text = serde_json::to_vec_pretty(&summary).expect("summary serialises");
        text.push(b'\n');
        f.write_all(&text)?;
        pending.push(f.finish_pending()?);
    }
    commit_all(pending)?;
    Ok(summary)
}
