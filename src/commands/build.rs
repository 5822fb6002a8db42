//! `batchline build`: turn prompt records into Batch API request lines.
//!
//! Each input line is a JSON object (or, with `--text`, one prompt) rendered through a
//! compiled [`Template`] into one request line, or `--repeat N` of them:
//! `{"custom_id":...,"method":"POST","url":...,"body":{"model":...,...}}`. Workers render
//! whole chunks in parallel (the fixed parts of every line are pre-serialised once);
//! the single writer, in input order, only does what needs global state: duplicate
//! custom_ids, `--limit` caps and the choice of output file (`--split-by`).
//!
//! Every record ends as exactly one of: written (its request lines, and sidecar lines,
//! were written), rejected (reason in the rejects file) or over a cap (counted per
//! group). Blank lines are counted apart. `records = written + rejected + over_cap`.
//!
//! `--id hash` is the xxh3-128 hash (32 hex digits) of the endpoint URL, a newline and
//! the request body exactly as written (compact JSON, keys in the fixed order below),
//! so the same input and options give the same ids on every run, and two records that
//! give identical requests have the same id (the second is rejected as a duplicate).
//!
//! Body key order: `model`, then `instructions` (responses, from `--system`), the
//! prompt (`messages` | `input` | `prompt`), `max_tokens` (`max_output_tokens` for
//! responses), `temperature`, `response_format` (`text.format` for responses), then the
//! `--param` keys in the order given.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::{check_accounting, CommonOptions, ErrorMode, Outcome, RejectRoute, Summary};
use crate::batch::ids::{duplicate_reason, SeenIds};
use crate::batch::request::custom_id_warning;
use crate::batch::Endpoint;
use crate::engine::{self, BufferPool, Flow};
use crate::error::{Error, Result};
use crate::io::input::{Chunk, InputSpec, OpenInput};
use crate::io::output::{
    finish_all, prepare_out_dir, safe_file_name, unique_name, AtomicFile, Output, OutputSpec,
};
use crate::io::paths::PathClaims;
use crate::io::rejects::{self, Reject, RejectSink};
use crate::report::{human_bytes, Throughput};
use crate::template::{escape_into, FieldPath, Record, Template, Val};

/// How custom_ids are made.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum IdMode {
    /// Prefix (default `req-`) + line number.
    #[default]
    Line,
    /// Prefix + xxh3-128 hex of endpoint URL and body.
    Hash,
    /// Prefix + the value of a field (string or number); must be unique.
    Field(String),
    /// Prefix + a rendered template such as `{lang}-{id}`; must be unique.
    Template(String),
}

/// `--response-format`.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    /// Structured output: the schema, its name, strict mode.
    JsonSchema {
        name: String,
        schema: Value,
        strict: bool,
    },
}

/// One `--limit`: a cap on the records written for one group (`value`) or for every
/// group (`None`; the whole output without `--split-by`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub value: Option<String>,
    pub max: u64,
}

/// Everything `build` needs to know.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    pub input: InputSpec,
    /// The request file, or stdout (ignored with `out_dir`).
    pub output: OutputSpec,
    /// With `split_by`: one file per value in this directory.
    pub out_dir: Option<PathBuf>,
    pub model: String,
    /// Input lines are plain prompts (`{text}`), not JSON records.
    pub text: bool,
    pub endpoint: Endpoint,
    pub system: Option<String>,
    /// The user prompt template (default `{text}`).
    pub template: Option<String>,
    /// A field holding a ready messages array.
    pub messages_field: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub params: Vec<(String, Value)>,
    pub response_format: Option<ResponseFormat>,
    pub id: IdMode,
    /// Default: `req-` for `IdMode::Line`, empty otherwise.
    pub id_prefix: Option<String>,
    pub repeat: u32,
    pub split_by: Option<String>,
    pub limits: Vec<Limit>,
    pub sidecar: Option<PathBuf>,
    /// Write into a non-empty `out_dir`.
    pub force: bool,
    pub common: CommonOptions,
}

impl BuildConfig {
    pub fn new(input: InputSpec, model: impl Into<String>) -> BuildConfig {
        BuildConfig {
            input,
            output: OutputSpec::Stdout,
            out_dir: None,
            model: model.into(),
            text: false,
            endpoint: Endpoint::ChatCompletions,
            system: None,
            template: None,
            messages_field: None,
            max_tokens: None,
            temperature: None,
            params: Vec::new(),
            response_format: None,
            id: IdMode::Line,
            id_prefix: None,
            repeat: 1,
            split_by: None,
            limits: Vec::new(),
            sidecar: None,
            force: false,
            common: CommonOptions::default(),
        }
    }
}

/// `TEXT` or `@FILE` (read whole, one trailing newline dropped); `@@text` is the
/// literal text `@text`.
pub fn load_text_arg(flag: &str, arg: &str) -> Result<String> {
    if let Some(lit) = arg.strip_prefix("@@") {
        return Ok(format!("@{lit}"));
    }
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    let mut s =
        std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("{flag} @{path}: {e}")))?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

/// `key=value`: the value is JSON when it parses as JSON, a string otherwise.
pub fn parse_param(arg: &str) -> Result<(String, Value), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("--param {arg:?}: expected key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("--param {arg:?}: empty key"));
    }
    if key == "stream" || key == "stream_options" {
        return Err(format!(
            "--param {key}: streaming is not supported by the Batch API"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// `N` (every group) or `VALUE=N` (one group).
pub fn parse_limit(arg: &str) -> Result<Limit, String> {
    let (value, n) = match arg.rsplit_once('=') {
        Some((v, n)) => (Some(v.to_string()), n),
        None => (None, arg),
    };
    let max = n
        .trim()
        .parse()
        .map_err(|_| format!("--limit {arg:?}: expected N or VALUE=N"))?;
    Ok(Limit { value, max })
}

/// `text`, `json_object`, or `@schema.json` (a JSON Schema, or an object already of the
/// form `{"name", "schema", "strict"}`).
pub fn parse_response_format(arg: &str) -> Result<ResponseFormat> {
    match arg {
        "text" => return Ok(ResponseFormat::Text),
        "json_object" => return Ok(ResponseFormat::JsonObject),
        _ => {}
    }
    let Some(path) = arg.strip_prefix('@') else {
        return Err(Error::Usage(format!(
            "--response-format {arg:?}: expected json_object, text or @schema.json"
        )));
    };
    let bytes =
        std::fs::read(path).map_err(|e| Error::Usage(format!("--response-format @{path}: {e}")))?;
    let schema: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Usage(format!("--response-format @{path}: not JSON: {e}")))?;
    let Value::Object(obj) = &schema else {
        return Err(Error::Usage(format!(
            "--response-format @{path}: a JSON Schema must be an object"
        )));
    };
    let is_wrapper = obj.get("schema").is_some_and(Value::is_object)
        && obj.get("name").is_some_and(Value::is_string)
        && !obj.contains_key("type")
        && !obj.contains_key("properties");
    if is_wrapper {
        return Ok(ResponseFormat::JsonSchema {
            name: schema_name(obj["name"].as_str().unwrap_or_default()),
            strict: obj.get("strict").and_then(Value::as_bool).unwrap_or(true),
            schema: obj["schema"].clone(),
        });
    }
    let stem = Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ResponseFormat::JsonSchema {
        name: schema_name(&stem),
        schema,
        strict: true,
    })
}

/// A schema name as OpenAI accepts it: `[A-Za-z0-9_-]`, at most 64 characters.
fn schema_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() {
        "schema".into()
    } else {
        n
    }
}

// ---------------------------------------------------------------------------------
// The compiled plan: everything fixed is serialised once.

enum IdPlan {
    Line,
    Hash,
    Field(FieldPath),
    Template(Template),
}

enum Prompt {
    Template(Template),
    Messages(FieldPath),
}

struct Plan {
    text: bool,
    prompt: Prompt,
    /// Body up to the rendered prompt (inside its string quotes, or the messages array's
    /// first element), and from it to the end of the body.
    body_pre: Vec<u8>,
    body_post: Vec<u8>,
    /// The `--system` message, serialised, for `Messages` with chat (prepended).
    system_message: Option<Vec<u8>>,
    /// `","method":"POST","url":"...","body":`
    mid: Vec<u8>,
    url: &'static str,
    id: IdPlan,
    prefix: String,
    repeat: u32,
    split_by: Option<FieldPath>,
    sidecar: bool,
    /// Whether custom_ids may repeat and must be checked.
    track_ids: bool,
}

fn json_str(s: &str) -> Vec<u8> {
    let mut v = vec![b'"'];
    escape_into(s, &mut v);
    v.push(b'"');
    v
}

fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Usage(msg.into()))
}

impl Plan {
    fn new(cfg: &BuildConfig) -> Result<Plan> {
        let ep = cfg.endpoint;
        let chat_like = matches!(ep, Endpoint::ChatCompletions | Endpoint::Responses);
        if !matches!(
            ep,
            Endpoint::ChatCompletions
                | Endpoint::Responses
                | Endpoint::Embeddings
                | Endpoint::Completions
        ) {
            return usage(format!("build: endpoint {} is not supported", ep.url()));
        }
        if cfg.model.trim().is_empty() {
            return usage("--model must not be empty");
        }
        if cfg.system.is_some() && !chat_like {
            return usage(format!(
                "--system needs --endpoint chat or responses (not {})",
                ep.short_name()
            ));
        }
        if cfg.messages_field.is_some() {
            if !chat_like {
                return usage("--messages-field needs --endpoint chat or responses");
            }
            if cfg.template.is_some() {
                return usage("--messages-field and --template exclude each other");
            }
            if cfg.text {
                return usage("--messages-field needs JSONL records, not --text");
            }
        }
        if ep == Endpoint::Embeddings && (cfg.max_tokens.is_some() || cfg.temperature.is_some()) {
            return usage("--max-tokens and --temperature do not apply to embeddings");
        }
        if cfg.response_format.is_some() && !chat_like {
            return usage("--response-format needs --endpoint chat or responses");
        }
        if cfg.max_tokens == Some(0) {
            return usage("--max-tokens must be positive");
        }
        if let Some(t) = cfg.temperature {
            if !(0.0..=2.0).contains(&t) {
                return usage(format!("--temperature {t}: must be between 0 and 2"));
            }
        }
        if cfg.repeat == 0 {
            return usage("--repeat must be at least 1");
        }
        if cfg.split_by.is_some() != cfg.out_dir.is_some() {
            return usage("--split-by and --out-dir go together");
        }
        if cfg.common.rejects.is_some() && cfg.common.on_error == ErrorMode::Fail {
            return usage(
                "--rejects needs --on-error skip (with fail, the first bad record stops the run)",
            );
        }
        let mut seen_default = false;
        let mut seen_values = HashSet::new();
        for l in &cfg.limits {
            match &l.value {
                None if seen_default => return usage("--limit N given twice"),
                None => seen_default = true,
                Some(_) if cfg.split_by.is_none() => {
                    return usage("--limit VALUE=N needs --split-by")
                }
                Some(v) if !seen_values.insert(v.clone()) => {
                    return usage(format!("--limit {v}=N given twice"))
                }
                Some(_) => {}
            }
        }

        let model = json_str(&cfg.model);
        let content_key = match ep {
            Endpoint::ChatCompletions => "messages",
            Endpoint::Completions => "prompt",
            _ => "input",
        };
        let max_tokens_key = if ep == Endpoint::Responses {
            "max_output_tokens"
        } else {
            "max_tokens"
        };
        let format_key = if ep == Endpoint::Responses {
            "text"
        } else {
            "response_format"
        };

        // Keys this run sets itself; a --param may not set them again.
        let mut own: Vec<&str> = vec!["model", content_key];
        if ep == Endpoint::Responses && cfg.system.is_some() {
            own.push("instructions");
        }
        if cfg.max_tokens.is_some() {
            own.push(max_tokens_key);
        }
        if cfg.temperature.is_some() {
            own.push("temperature");
        }
        if cfg.response_format.is_some() {
            own.push(format_key);
        }
        let mut param_keys = HashSet::new();
        for (k, _) in &cfg.params {
            if k == "stream" || k == "stream_options" {
                return usage(format!(
                    "--param {k}: streaming is not supported by the Batch API"
                ));
            }
            if own.contains(&k.as_str()) {
                return usage(format!(
                    "--param {k}: set by another option of this run (use that option)"
                ));
            }
            if !param_keys.insert(k.as_str()) {
                return usage(format!("--param {k} given twice"));
            }
        }

        // The tail: everything after the prompt.
        let mut tail = Vec::new();
        if let Some(n) = cfg.max_tokens {
            tail.extend_from_slice(format!(",\"{max_tokens_key}\":{n}").as_bytes());
        }
        if let Some(t) = cfg.temperature {
            tail.extend_from_slice(b",\"temperature\":");
            tail.extend_from_slice(serde_json::to_string(&t).expect("finite").as_bytes());
        }
        if let Some(f) = &cfg.response_format {
            let format = match f {
                ResponseFormat::Text => serde_json::json!({"type": "text"}),
                ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                } if ep == Endpoint::Responses => {
                    serde_json::json!({"type": "json_schema", "name": name, "schema": schema, "strict": strict})
                }
                ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                } => serde_json::json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": strict}
                }),
            };
            let value = if ep == Endpoint::Responses {
                serde_json::json!({ "format": format })
            } else {
                format
            };
            tail.extend_from_slice(format!(",\"{format_key}\":").as_bytes());
            tail.extend_from_slice(
                serde_json::to_string(&value)
                    .expect("serialises")
                    .as_bytes(),
            );
        }
        for (k, v) in &cfg.params {
            tail.push(b',');
            tail.extend_from_slice(&json_str(k));
            tail.push(b':');
            tail.extend_from_slice(serde_json::to_string(v).expect("serialises").as_bytes());
        }
        tail.push(b'}');

        let system = cfg.system.as_deref();
        let mut body_pre = b"{\"model\":".to_vec();
        body_pre.extend_from_slice(&model);
        if let (Endpoint::Responses, Some(s)) = (ep, system) {
            body_pre.extend_from_slice(b",\"instructions\":");
            body_pre.extend_from_slice(&json_str(s));
        }
        body_pre.extend_from_slice(format!(",\"{content_key}\":").as_bytes());
        let system_message = match (ep, system) {
            (Endpoint::ChatCompletions, Some(s)) => {
                let mut m = b"{\"role\":\"system\",\"content\":".to_vec();
                m.extend_from_slice(&json_str(s));
                m.push(b'}');
                Some(m)
            }
            _ => None,
        };
        let mut body_post = Vec::new();
        let prompt = match &cfg.messages_field {
            Some(f) => {
                let path = FieldPath::parse(f)
                    .map_err(|e| Error::Usage(format!("--messages-field: {e}")))?;
                body_pre.push(b'[');
                body_post.push(b']');
                Prompt::Messages(path)
            }
            None => {
                let src = cfg.template.as_deref().unwrap_or("{text}");
                let t =
                    Template::compile(src).map_err(|e| Error::Usage(format!("--template: {e}")))?;
                if cfg.text {
                    if let Some(f) = t.fields().find(|f| f.text != "text") {
                        return usage(format!(
                            "--template: with --text the only field is {{text}}, not {{{f}}}"
                        ));
                    }
                }
                if ep == Endpoint::ChatCompletions {
                    body_pre.push(b'[');
                    if let Some(m) = &system_message {
                        body_pre.extend_from_slice(m);
                        body_pre.push(b',');
                    }
                    body_pre.extend_from_slice(b"{\"role\":\"user\",\"content\":\"");
                    body_post.extend_from_slice(b"\"}]");
                } else {
                    body_pre.push(b'"');
                    body_post.push(b'"');
                }
                Prompt::Template(t)
            }
        };
        body_post.extend_from_slice(&tail);

        let id = match &cfg.id {
            IdMode::Line => IdPlan::Line,
            IdMode::Hash => IdPlan::Hash,
            IdMode::Field(f) => IdPlan::Field(
                FieldPath::parse(f).map_err(|e| Error::Usage(format!("--id-field: {e}")))?,
            ),
            IdMode::Template(t) => {
                let t = Template::compile(t)
                    .map_err(|e| Error::Usage(format!("--id-template: {e}")))?;
                if t.is_literal() {
                    return usage(
                        "--id-template needs at least one {field} (else every id is the same)",
                    );
                }
                IdPlan::Template(t)
            }
        };
        let prefix = cfg.id_prefix.clone().unwrap_or_else(|| {
            if cfg.id == IdMode::Line {
                "req-".into()
            } else {
                String::new()
            }
        });
        let split_by = match &cfg.split_by {
            Some(f) => {
                Some(FieldPath::parse(f).map_err(|e| Error::Usage(format!("--split-by: {e}")))?)
            }
            None => None,
        };
        let url = ep.url();
        let mut mid = b"\",\"method\":\"POST\",\"url\":".to_vec();
        mid.extend_from_slice(&json_str(url));
        mid.extend_from_slice(b",\"body\":");
        Ok(Plan {
            text: cfg.text,
            prompt,
            body_pre,
            body_post,
            system_message,
            mid,
            url,
            track_ids: !matches!(id, IdPlan::Line),
            id,
            prefix,
            repeat: cfg.repeat,
            split_by,
            sidecar: cfg.sidecar.is_some(),
        })
    }
}

// ---------------------------------------------------------------------------------
// Workers: render a chunk.

/// A record rendered by a worker.
struct Good {
    /// Its request lines in the chunk's output buffer, and its sidecar lines.
    out: Range<usize>,
    side: Range<usize>,
    /// The line's bytes in the chunk (for a duplicate's reject entry).
    span: Range<usize>,
    /// Hash of the base custom_id, and the id, when ids must be checked for duplicates.
    id_key: u128,
    /// The base custom_id in the chunk's `ids` text, when ids must be checked.
    base_id: Option<Range<usize>>,
    /// Index into the chunk's group keys.
    group: u32,
    requests: u32,
    warnings: u32,
    warning: Option<&'static str>,
}

enum Verdict {
    Blank,
    Good(Good),
    Bad {
        span: Range<usize>,
        cut: bool,
        /// The reason code and message.
        reason: &'static str,
        message: String,
        custom_id: Option<String>,
    },
}

struct Rendered {
    out: Vec<u8>,
    side: Vec<u8>,
    /// The base custom_ids of the chunk's records, one after the other.
    ids: String,
    /// Distinct `--split-by` values met in the chunk.
    keys: Vec<String>,
    verdicts: Vec<(u64, u64, Verdict)>,
    any_bad: bool,
}

fn hex128(h: u128) -> String {
    format!("{h:032x}")
}

fn render_chunk(chunk: &Chunk, plan: &Plan, pool: &BufferPool) -> Rendered {
    let base = chunk.bytes.as_ptr() as usize;
    let est = chunk.len() + chunk.len() / 2 + 256;
    let mut r = Rendered {
        out: pool.take(est * plan.repeat as usize),
        side: if plan.sidecar {
            pool.take(chunk.len() * plan.repeat as usize + 1024)
        } else {
            Vec::new()
        },
        ids: String::new(),
        keys: Vec::new(),
        verdicts: Vec::with_capacity(chunk.line_count as usize),
        any_bad: false,
    };
    let mut body = Vec::with_capacity(4096);
    let mut id = String::new();
    for line in chunk.lines() {
        let start = line.bytes.as_ptr() as usize - base;
        let span = start..start + line.bytes.len();
        if line.is_blank() {
            r.verdicts.push((line.number, line.offset, Verdict::Blank));
            continue;
        }
        let verdict = match render_line(&line, plan, &mut r, &mut body, &mut id, span.clone()) {
            Ok(g) => Verdict::Good(g),
            Err((reason, message, custom_id)) => {
                r.any_bad = true;
                Verdict::Bad {
                    span,
                    cut: line.is_cut(),
                    reason,
                    message,
                    custom_id,
                }
            }
        };
        r.verdicts.push((line.number, line.offset, verdict));
    }
    r
}

/// A bad record: reason code, message, custom_id.
type LineError = (&'static str, String, Option<String>);

/// Reason code of a record that could not be made into a request (a field, the
/// template, the messages or the id).
pub const BAD_RECORD: &str = "bad_record";

fn render_line(
    line: &crate::io::input::Line,
    plan: &Plan,
    r: &mut Rendered,
    body: &mut Vec<u8>,
    id: &mut String,
    span: Range<usize>,
) -> Result<Good, LineError> {
    if line.is_cut() {
        return Err((rejects::reason::LINE_TOO_LONG, line.too_long(), None));
    }
    let text = line
        .text()
        .map_err(|reason| (rejects::reason::INVALID_UTF8, reason, None))?;
    let rec = if plan.text {
        Record::text(text)
    } else {
        Record::parse(text).map_err(|e| (rejects::reason::INVALID_JSON, e, None))?
    };
    let field = |path: &FieldPath, flag: &str| {
        rec.get(path)
            .map_err(|e| (BAD_RECORD, format!("{e} (used by {flag})"), None))
    };

    // Group.
    let group = match &plan.split_by {
        None => 0,
        Some(path) => {
            let v = field(path, "--split-by")?;
            if !matches!(v.kind(), "string" | "number" | "boolean") {
                return Err((
                    BAD_RECORD,
                    format!(
                        "field \"{path}\" is {}, not a value to split by (--split-by)",
                        v.kind()
                    ),
                    None,
                ));
            }
            let value = v.to_text();
            match r.keys.iter().position(|k| *k == value) {
                Some(i) => i as u32,
                None => {
                    r.keys.push(value.into_owned());
                    (r.keys.len() - 1) as u32
                }
            }
        }
    };

    // Body.
    body.clear();
    body.extend_from_slice(&plan.body_pre);
    match &plan.prompt {
        Prompt::Template(t) => {
            let before = body.len();
            t.render_escaped(&rec, body)
                .map_err(|e| (BAD_RECORD, format!("{e} (used by --template)"), None))?;
            if body.len() == before {
                return Err((
                    BAD_RECORD,
                    "the template rendered an empty prompt".into(),
                    None,
                ));
            }
        }
        Prompt::Messages(path) => {
            let v = field(path, "--messages-field")?;
            check_messages(&v).map_err(|e| {
                (
                    BAD_RECORD,
                    format!("field \"{path}\" {e} (--messages-field)"),
                    None,
                )
            })?;
            let mut arr = Vec::new();
            v.write_json(&mut arr);
            if let Some(sys) = &plan.system_message {
                body.extend_from_slice(sys);
                body.push(b',');
            }
            body.extend_from_slice(&arr[1..arr.len() - 1]);
        }
    }
    body.extend_from_slice(&plan.body_post);

    // custom_id.
    id.clear();
    id.push_str(&plan.prefix);
    match &plan.id {
        IdPlan::Line => id.push_str(itoa(line.number).as_str()),
        IdPlan::Hash => {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(plan.url.as_bytes());
            h.update(b"\n");
            h.update(body);
            id.push_str(&hex128(h.digest128()));
        }
        IdPlan::Field(path) => {
            let v = field(path, "--id-field")?;
            if !matches!(v.kind(), "string" | "number") {
                return Err((
                    BAD_RECORD,
                    format!(
                        "field \"{path}\" is {}, not a string or number (--id-field)",
                        v.kind()
                    ),
                    None,
                ));
            }
            let t = v.to_text();
            if t.is_empty() {
                return Err((
                    BAD_RECORD,
                    format!("field \"{path}\" is empty (--id-field)"),
                    None,
                ));
            }
            id.push_str(&t);
        }
        IdPlan::Template(t) => {
            let before = id.len();
            t.render(&rec, id)
                .map_err(|e| (BAD_RECORD, format!("{e} (used by --id-template)"), None))?;
            if id.len() == before {
                return Err((
                    BAD_RECORD,
                    "--id-template rendered an empty id".into(),
                    None,
                ));
            }
        }
    }

    // Lines.
    let out_start = r.out.len();
    let side_start = r.side.len();
    let mut warnings = 0;
    let mut warning = None;
    let mut full = String::new();
    for i in 0..plan.repeat {
        let cid: &str = if plan.repeat == 1 {
            id
        } else {
            full.clear();
            full.push_str(id);
            full.push('-');
            full.push_str(itoa(i as u64).as_str());
            &full
        };
        if let Some(w) = custom_id_warning(cid) {
            warnings += 1;
            warning = Some(w);
        }
        r.out.extend_from_slice(b"{\"custom_id\":\"");
        escape_into(cid, &mut r.out);
        r.out.extend_from_slice(&plan.mid);
        r.out.extend_from_slice(body);
        r.out.extend_from_slice(b"}\n");
        if plan.sidecar {
            r.side.extend_from_slice(b"{\"custom_id\":\"");
            escape_into(cid, &mut r.side);
            r.side.extend_from_slice(b"\",\"line\":");
            r.side.extend_from_slice(itoa(line.number).as_bytes());
            r.side.extend_from_slice(b",\"record\":");
            if plan.text {
                r.side.extend_from_slice(b"{\"text\":");
                Val::Text(text).write_json(&mut r.side);
                r.side.push(b'}');
            } else {
                r.side
                    .extend_from_slice(text.trim_matches([' ', '\t']).as_bytes());
            }
            r.side.extend_from_slice(b"}\n");
        }
    }
    let (id_key, base_id) = if plan.track_ids {
        let start = r.ids.len();
        r.ids.push_str(id);
        (
            xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
            Some(start..r.ids.len()),
        )
    } else {
        (0, None)
    };
    Ok(Good {
        out: out_start..r.out.len(),
        side: side_start..r.side.len(),
        span,
        id_key,
        base_id,
        group,
        requests: plan.repeat,
        warnings,
        warning,
    })
}

/// A decimal number without allocation on the hot path.
struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).expect("digits")
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa(mut n: u64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

/// A messages array: non-empty, every element an object with a string `role`.
fn check_messages(v: &Val) -> Result<(), String> {
    let Val::Raw(raw) = v else {
        return Err("is not an array".into());
    };
    if v.kind() != "array" {
        return Err(format!("is {}, not a messages array", v.kind()));
    }
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(raw).map_err(|e| format!("is not a messages array: {e}"))?;
    if items.is_empty() {
        return Err("is an empty messages array".into());
    }
    for (i, item) in items.iter().enumerate() {
        #[derive(serde::Deserialize)]
        struct Msg<'a> {
            #[serde(borrow)]
            role: Option<std::borrow::Cow<'a, str>>,
        }
        match serde_json::from_str::<Msg>(item.get()) {
            Ok(Msg { role: Some(_) }) => {}
            _ => {
                return Err(format!(
                    "element {i} is not a message object with a string \"role\""
                ))
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The writer: global state, in input order.

/// One output file (the only one without `--split-by`) and its counts.
#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    /// The `--split-by` value (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// File written (`<stdout>`; absent when no record was written for the group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub written: u64,
    pub requests: u64,
    pub over_cap: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

struct Group {
    summary: GroupSummary,
    path: Option<PathBuf>,
    out: Option<Output>,
}

struct Writer<'a> {
    cfg: &'a BuildConfig,
    pool: &'a BufferPool,
    groups: Vec<Group>,
    index: HashMap<String, usize>,
    used_names: HashSet<String>,
    /// The run's inputs and outputs: a group file may not take the name of any.
    claims: PathClaims,
    seen: SeenIds,
    sidecar: Option<AtomicFile>,
    out_bytes: u64,
    totals: BuildTotals,
    warning_kinds: BTreeMap<&'static str, u64>,
    rejects: RejectRoute,
}

/// Counts over the run: `lines = blank + records`, `records = written + rejected +
/// over_cap`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BuildTotals {
    pub lines: u64,
    pub blank: u64,
    pub records: u64,
    pub written: u64,
    pub requests: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub over_cap: u64,
    pub warnings: u64,
}

impl Writer<'_> {
    fn limit_for(&self, value: Option<&str>) -> Option<u64> {
        let specific = value.and_then(|v| {
            self.cfg
                .limits
                .iter()
                .find(|l| l.value.as_deref() == Some(v))
        });
        specific
            .or_else(|| self.cfg.limits.iter().find(|l| l.value.is_none()))
            .map(|l| l.max)
    }

    fn group_for(&mut self, value: &str) -> usize {
        if let Some(&g) = self.index.get(value) {
            return g;
        }
        let dir = self
            .cfg
            .out_dir
            .as_deref()
            .expect("split mode has an out dir");
        // A name another output of the run already has is passed over.
        let claims = &self.claims;
        let name = unique_name(
            &mut self.used_names,
            &safe_file_name(value),
            value,
            ".jsonl",
            |n| claims.would_refuse(&dir.join(n)),
        );
        self.groups.push(Group {
            summary: GroupSummary {
                value: Some(value.to_string()),
                file: None,
                written: 0,
                requests: 0,
                over_cap: 0,
                limit: self.limit_for(Some(value)),
            },
            path: Some(dir.join(name)),
            out: None,
        });
        self.index.insert(value.to_string(), self.groups.len() - 1);
        self.groups.len() - 1
    }

    fn consume(&mut self, chunk: Chunk, r: Rendered) -> Result<Flow> {
        let simple = !r.any_bad
            && self.cfg.split_by.is_none()
            && self.cfg.limits.is_empty()
            && !self.seen_needed();
        if simple {
            // Nothing needs a per-record decision: hand the whole chunk on.
            for (_, _, v) in &r.verdicts {
                self.totals.lines += 1;
                match v {
                    Verdict::Blank => self.totals.blank += 1,
                    Verdict::Good(g) => self.count_written(0, g),
                    Verdict::Bad { .. } => unreachable!("no bad verdict in a simple chunk"),
                }
            }
            self.write(0, &r.out)?;
            if let Some(s) = self.sidecar.as_mut() {
                s.write_all(&r.side)?;
            }
            self.pool.give(r.out);
            self.pool.give(r.side);
            return Ok(Flow::Continue);
        }
        let local: Vec<usize> = if self.cfg.split_by.is_some() {
            r.keys.iter().map(|k| self.group_for(k)).collect()
        } else {
            vec![0]
        };
        // Consecutive written records of one group are written with one call.
        let mut run: Option<(usize, Range<usize>, Range<usize>)> = None;
        let Rendered {
            out: out_buf,
            side: side_buf,
            verdicts,
            ids,
            ..
        } = r;
        let bufs = (&out_buf[..], &side_buf[..]);
        for (number, offset, v) in verdicts {
            self.totals.lines += 1;
            match v {
                Verdict::Blank => self.totals.blank += 1,
                Verdict::Bad {
                    span,
                    cut,
                    reason,
                    message,
                    custom_id,
                } => {
                    self.totals.records += 1;
                    self.reject(
                        Reject::new(number, offset, reason, message, &chunk.bytes[span], cut)
                            .with_custom_id(custom_id),
                    )?;
                }
                Verdict::Good(g) => {
                    if let Some(range) = &g.base_id {
                        let id = &ids[range.clone()];
                        if let Some(first) = self.seen.first(g.id_key) {
                            self.totals.records += 1;
                            self.totals.duplicates += 1;
                            let reason = duplicate_reason(id, first);
                            let rej = Reject::new(
                                number,
                                offset,
                                rejects::reason::DUPLICATE_CUSTOM_ID,
                                reason,
                                &chunk.bytes[g.span.clone()],
                                false,
                            )
                            .with_custom_id(Some(id.to_string()));
                            self.reject(rej)?;
                            continue;
                        }
                    }
                    let group = local[g.group as usize];
                    let s = &mut self.groups[group].summary;
                    if s.limit.is_some_and(|max| s.written >= max) {
                        s.over_cap += 1;
                        self.totals.records += 1;
                        self.totals.over_cap += 1;
                        continue;
                    }
                    if g.base_id.is_some() {
                        self.seen.insert(g.id_key, number);
                    }
                    self.count_written(group, &g);
                    match &mut run {
                        Some((rg, out, side)) if *rg == group && out.end == g.out.start => {
                            out.end = g.out.end;
                            side.end = g.side.end;
                        }
                        _ => {
                            if let Some(done) = run.replace((group, g.out.clone(), g.side.clone()))
                            {
                                self.flush_run(bufs, done)?;
                            }
                        }
                    }
                }
            }
        }
        if let Some(done) = run {
            self.flush_run(bufs, done)?;
        }
        self.pool.give(out_buf);
        self.pool.give(side_buf);
        Ok(Flow::Continue)
    }

    fn flush_run(
        &mut self,
        (obuf, sbuf): (&[u8], &[u8]),
        (group, out, side): (usize, Range<usize>, Range<usize>),
    ) -> Result<()> {
        self.write(group, &obuf[out])?;
        if let Some(s) = self.sidecar.as_mut() {
            s.write_all(&sbuf[side])?;
        }
        Ok(())
    }

    fn seen_needed(&self) -> bool {
        !matches!(self.cfg.id, IdMode::Line)
    }

    fn count_written(&mut self, group: usize, g: &Good) {
        self.totals.records += 1;
        self.totals.written += 1;
        self.totals.requests += u64::from(g.requests);
        let s = &mut self.groups[group].summary;
        s.written += 1;
        s.requests += u64::from(g.requests);
        if g.warnings > 0 {
            self.totals.warnings += u64::from(g.warnings);
            *self
                .warning_kinds
                .entry(g.warning.expect("kind with count"))
                .or_default() += u64::from(g.warnings);
        }
    }

    fn write(&mut self, group: usize, bytes: &[u8]) -> Result<()> {
        let g = &mut self.groups[group];
        if g.out.is_none() {
            let path = g.path.as_ref().expect("split groups have a path");
            self.claims.output_path(path)?;
            g.out = Some(Output::File(AtomicFile::create(
                path,
                self.cfg.common.sync,
            )?));
            g.summary.file = Some(path.display().to_string());
        }
        self.out_bytes += bytes.len() as u64;
        let out = g.out.as_mut().expect("output open");
        out.write_all(bytes)?;
        // Stdout's reader went away: go on only for the side files asked for.
        if out.is_closed() && self.sidecar.is_none() && !self.rejects.keeps_lines() {
            return Err(Error::BrokenPipe);
        }
        Ok(())
    }

    fn reject(&mut self, r: Reject) -> Result<()> {
        self.rejects.route(r)?;
        self.totals.rejected += 1;
        Ok(())
    }
}

/// What `run` reports.
#[derive(Clone, Debug, Serialize)]
pub struct BuildSummary {
    pub command: &'static str,
    pub input: String,
    /// The request file, `<stdout>`, or the `--out-dir`.
    pub output: String,
    pub endpoint: &'static str,
    pub model: String,
    #[serde(flatten)]
    pub totals: BuildTotals,
    pub warning_kinds: BTreeMap<&'static str, u64>,
    pub groups: Vec<GroupSummary>,
    pub rejects_file: Option<String>,
    pub sidecar: Option<String>,
    /// Bytes of request lines written (before any compression).
    pub output_bytes: u64,
    pub throughput: Throughput,
    #[serde(skip)]
    pub outcome: Outcome,
    #[serde(skip)]
    pub data_on_stdout: bool,
}

impl Summary for BuildSummary {
    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn data_on_stdout(&self) -> bool {
        self.data_on_stdout
    }

    fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "build: {} records: {} written ({} requests{}), {} rejected ({} duplicates), {} over cap; {} blank lines",
            t.records,
            t.written,
            t.requests,
            if self.groups.len() > 1 || self.groups.iter().any(|g| g.value.is_some()) {
                format!(" in {} files", self.groups.iter().filter(|g| g.file.is_some()).count())
            } else {
                String::new()
            },
            t.rejected,
            t.duplicates,
            t.over_cap,
            t.blank
        );
        if t.warnings > 0 {
            s.push_str(&format!(", {} custom_id warnings", t.warnings));
        }
        s.push_str(&format!(
            "; {} of requests; {}",
            human_bytes(self.output_bytes),
            self.throughput.human()
        ));
        s
    }
}

/// Runs `build`.
pub fn run(cfg: &BuildConfig) -> Result<BuildSummary> {
    let mut created = false;
    let result = run_inner(cfg, &mut created);
    if let (Err(_), true, Some(dir)) = (&result, created, &cfg.out_dir) {
        // Only an empty directory is removed: nothing was committed into it.
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn run_inner(cfg: &BuildConfig, created: &mut bool) -> Result<BuildSummary> {
    let plan = Plan::new(cfg)?;
    let common = &cfg.common;
    // Outputs may not overwrite the input, nor each other (group files are claimed
    // as they are created).
    let mut claims = PathClaims::new();
    claims.input(&cfg.input)?;
    if cfg.out_dir.is_none() {
        claims.output(&cfg.output)?;
    }
    if let Some(p) = &cfg.sidecar {
        claims.output_path(p)?;
    }
    if let Some(r) = &common.rejects {
        claims.output(r)?;
    }
    let input = OpenInput::open(&cfg.input)?;
    if let Some(dir) = &cfg.out_dir {
        *created = prepare_out_dir(dir, cfg.force)?;
    }
    let rejects = match common.on_error {
        ErrorMode::Skip => RejectSink::create(common.rejects.as_ref(), common.sync)?,
        ErrorMode::Fail => RejectSink::create(None, common.sync)?,
    };
    let sidecar = match &cfg.sidecar {
        Some(p) => Some(AtomicFile::create(p, common.sync)?),
        None => None,
    };
    let mut groups = Vec::new();
    if cfg.out_dir.is_none() {
        groups.push(Group {
            summary: GroupSummary {
                value: None,
                file: Some(cfg.output.display_name()),
                written: 0,
                requests: 0,
                over_cap: 0,
                limit: cfg.limits.iter().find(|l| l.value.is_none()).map(|l| l.max),
            },
            path: None,
            out: Some(Output::create(&cfg.output, common.sync)?),
        });
    }
    let pool = BufferPool::default();
    let mut writer = Writer {
        cfg,
        pool: &pool,
        groups,
        index: HashMap::new(),
        used_names: HashSet::new(),
        claims,
        seen: SeenIds::default(),
        sidecar,
        out_bytes: 0,
        totals: BuildTotals::default(),
        warning_kinds: BTreeMap::new(),
        rejects: RejectRoute::new(input.name().to_string(), common, rejects),
    };
    let stats = engine::run(
        input,
        &common.engine,
        |chunk| render_chunk(chunk, &plan, &pool),
        |chunk, r| writer.consume(chunk, r),
    )?;
    let Writer {
        groups,
        totals,
        warning_kinds,
        rejects,
        sidecar,
        out_bytes,
        ..
    } = writer;
    check_accounting(
        "build",
        totals.lines,
        &[("blank", totals.blank), ("records", totals.records)],
    )?;
    check_accounting(
        "build",
        totals.records,
        &[
            ("written", totals.written),
            ("rejected", totals.rejected),
            ("over cap", totals.over_cap),
        ],
    )?;

    // Everything is flushed and synced first; files are renamed into place only then.
    let mut groups = groups;
    for o in groups.iter_mut().filter_map(|g| g.out.as_mut()) {
        o.flush_stdout()?;
    }
    let stdout_closed = groups
        .iter()
        .any(|g| g.out.as_ref().is_some_and(Output::is_closed));
    let mut outputs = Vec::new();
    let mut summaries = Vec::new();
    for g in groups {
        outputs.extend(g.out);
        summaries.push(g.summary);
    }
    outputs.extend(sidecar.map(Output::File));
    let mut pending = finish_all(outputs)?;
    pending.extend(rejects.finish_pending()?);
    crate::io::output::commit_all(pending)?;
    for l in &cfg.limits {
        if let Some(v) = &l.value {
            if !summaries.iter().any(|g| g.value.as_deref() == Some(v)) {
                common.note(&format!(
                    "batchline: --limit {v}={}: no record had this --split-by value",
                    l.max
                ));
            }
        }
    }
    let outcome = Outcome::of(totals.rejected, stdout_closed);
    Ok(BuildSummary {
        command: "build",
        input: cfg.input.display_name(),
        output: match &cfg.out_dir {
            Some(d) => d.display().to_string(),
            None => cfg.output.display_name(),
        },
        endpoint: cfg.endpoint.url(),
        model: cfg.model.clone(),
        totals,
        warning_kinds,
        groups: summaries,
        rejects_file: common
            .rejects
            .as_ref()
            .filter(|_| common.on_error == ErrorMode::Skip)
            .map(OutputSpec::display_name),
        sidecar: cfg.sidecar.as_ref().map(|p| p.display().to_string()),
        output_bytes: out_bytes,
        throughput: Throughput::new(stats.bytes, stats.elapsed),
        outcome,
        data_on_stdout: cfg.out_dir.is_none() && cfg.output.is_stdout(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_json_or_string() {
        assert_eq!(
            parse_param("top_p=0.5").unwrap(),
            ("top_p".into(), serde_json::json!(0.5))
        );
        assert_eq!(
            parse_param("user=bob").unwrap(),
            ("user".into(), serde_json::json!("bob"))
        );
        assert_eq!(
            parse_param("stop=[\"x\"]").unwrap().1,
            serde_json::json!(["x"])
        );
        assert_eq!(parse_param("s=a=b").unwrap().1, serde_json::json!("a=b"));
        assert!(parse_param("stream=true").unwrap_err().contains("stream"));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=1").is_err());
    }

    #[test]
    fn limits_parse() {
        assert_eq!(
            parse_limit("10").unwrap(),
            Limit {
                value: None,
                max: 10
            }
        );
        assert_eq!(
            parse_limit("a=b=3").unwrap(),
            Limit {
                value: Some("a=b".into()),
                max: 3
            }
        );
        assert!(parse_limit("x").is_err());
        assert!(parse_limit("x=-1").is_err());
    }

    #[test]
    fn group_names_are_safe() {
        assert_eq!(safe_file_name("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(safe_file_name(""), "_");
        assert_eq!(safe_file_name(".hidden"), "_hidden");
        assert_eq!(safe_file_name("fr-FR"), "fr-FR");
        assert_eq!(safe_file_name("日本"), "__");
        assert_eq!(schema_name("my schema.v2"), "my_schema_v2");
    }

    #[test]
    fn itoa_writes_decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n).as_str(), n.to_string());
        }
    }
}
