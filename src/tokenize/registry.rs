//! Tokenizer registry: HF `tokenizer.json` files and the OpenAI encodings by name,
//! loaded once, shared by threads, and counted cheaply.
//!
//! # Counting
//! [`Tokenizer::count`] runs the full pipeline (HF `encode_fast`, or `bpe-openai`) and is the
//! reference. [`TokenizerSet::count_all`] gives the same numbers much faster for the common
//! tokenizer shapes by cutting each text into *chunks* and memoising the count of each chunk
//! (per thread, in a [`CountCache`]). Chunks start at every ASCII space that follows a
//! non-whitespace character, e.g. `"hello big world"` → `"hello"`, `" big"`, `" world"`.
//!
//! Why this is exact (only applied when every condition below holds, else the full pipeline
//! runs on the whole text):
//! - Normalizer is none, NFC or NFKC. A space is a starter that never composes with its
//!   neighbours, so normalising `X + " " + Y` equals normalising `X` and `" " + Y` apart;
//!   and no non-whitespace character normalises to something ending in whitespace (checked
//!   over all code points with Python's Unicode 14 tables).
//! - The pre-tokenizer is one of the GPT-2 / cl100k / o200k / Llama 3 / Qwen2-3 split
//!   regexes (exact pattern strings, see [`SAFE_SPLIT_REGEXES`]) followed by a byte-level
//!   mapping. In every alternative of those regexes, no match contains a non-whitespace
//!   character followed by a space, so every regex match ends before such a boundary and
//!   the search restarts there; the regexes have no look-behind, `^` or `\b`, so a search
//!   started at the boundary sees only the text after it (the `$` in bpe-openai's rewrite
//!   cannot fire at a chunk end, which is never whitespace).
//! - The model is BPE without dropout: pre-tokens are tokenized independently.
//! - No added token occurs in the text (checked per text with Aho-Corasick on the raw text;
//!   added tokens with `normalized: true` disable chunking when a normalizer is present),
//!   and there is no truncation or padding.
//! - With `special`, the post-processor's `added_tokens(false)` is added to the sum.
//!
//! Unseen chunks of HF tokenizers go through a lean copy of the same pipeline (normalise,
//! regex split with the crate's own `SysRegex`, byte-level map, `Model::tokenize` per
//! piece), skipping alignment tracking and `Encoding`s; the OpenAI encodings use
//! `bpe-openai`'s `count`.
//!
//! Tests compare chunked counts with the full pipeline and with counts from the Python
//! `tokenizers` library (fixtures/tokenizers/golden.jsonl).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use serde::Deserialize;
use tokenizers::PostProcessor;

use super::error::TokenizeError;
use super::hub::{self, HubEnv};

/// Split regexes (as written in tokenizer.json files) for which chunking at
/// "non-whitespace, space" boundaries is exact. See the module documentation.
pub const SAFE_SPLIT_REGEXES: &[&str] = &[
    // cl100k_base, Llama 3
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    // Qwen2 / Qwen3
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    // o200k_base
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    // GPT-2 (the ByteLevel pre-tokenizer's own regex, `use_regex: true`)
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
];

/// The OpenAI encodings embedded through `bpe-openai`: the one enum of them, shared with
/// `shard --max-tokens` (defined in `batch::tokens`; the tokenizer-file parts are here).
pub use crate::batch::tokens::Encoding as OpenAiEncoding;

impl OpenAiEncoding {
    /// Parses `o200k_base` or `cl100k_base`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "o200k_base" => Some(Self::O200kBase),
            "cl100k_base" => Some(Self::Cl100kBase),
            _ => None,
        }
    }
    /// The special tokens of the encoding. The HF-form files of these encodings declare
    /// them as added tokens, so the HF pipeline counts each occurrence in a text as one
    /// token; we do the same.
    fn specials(self) -> &'static [&'static str] {
        match self {
            Self::O200kBase => &["<|endoftext|>", "<|endofprompt|>"],
            Self::Cl100kBase => &[
                "<|endoftext|>",
                "<|fim_prefix|>",
                "<|fim_middle|>",
                "<|fim_suffix|>",
                "<|endofprompt|>",
            ],
        }
    }
}

/// Where a tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// An HF `tokenizer.json` file.
    File(PathBuf),
    /// An OpenAI encoding embedded in the binary.
    OpenAi(OpenAiEncoding),
    /// `tokenizer.json` of a Hugging Face Hub model (`ORG/NAME`), at a revision (branch,
    /// tag or commit; `None`: the [`LoadOptions`] default, else `main`), from the local
    /// HF cache or downloaded into it ([`super::hub`]).
    Hub {
        id: String,
        revision: Option<String>,
    },
}

impl std::fmt::Display for TokenizerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizerSource::File(p) => write!(f, "{}", p.display()),
            TokenizerSource::OpenAi(e) => f.write_str(e.name()),
            TokenizerSource::Hub { id, revision } => match revision {
                Some(r) => write!(f, "hf:{id}@{r}"),
                None => write!(f, "hf:{id}"),
            },
        }
    }
}

/// How [`TokenizerSet::load_with`] finds Hub tokenizers and reports on downloads.
#[derive(Clone, Debug)]
pub struct LoadOptions<'a> {
    /// Cache, endpoint, token, offline mode (default: from the environment).
    pub hub: HubEnv,
    /// Revision for Hub specs that name none (default `main`).
    pub revision: Option<String>,
    /// Draw a download progress bar on stderr when it is a terminal.
    pub progress: bool,
    /// Set (by a Ctrl-C handler) to stop a download.
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            hub: HubEnv::from_env(),
            revision: None,
            progress: false,
            cancel: None,
        }
    }
}

/// A parsed `--tokenizer` argument: `[NAME=]SOURCE`. SOURCE is told apart in this order:
/// 1. `o200k_base` / `cl100k_base`: the embedded OpenAI encoding;
/// 2. `hf:ID[@REV]`: always a Hub model (`ID` is `NAME` or `ORG/NAME`);
/// 3. an existing file or directory: a path (so a local folder `Qwen/Qwen1.5-7B` wins);
/// 4. `ORG/NAME[@REV]` (one `/`, Hub id characters, not ending in `.json`): a Hub model;
/// 5. anything else: a path (reading it fails with the path named).
///
/// Without `NAME=`, the name is the encoding name, the Hub model's NAME, the file stem, or
/// the parent folder's name when the file is called `tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerSpec {
    pub name: String,
    pub source: TokenizerSource,
}

impl FromStr for TokenizerSpec {
    type Err = TokenizeError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| TokenizeError::BadSpec {
            spec: spec.to_string(),
            message: message.to_string(),
        };
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => {
                let n = n.trim();
                if n.is_empty() {
                    return Err(bad("empty name before '='"));
                }
                (Some(n.to_string()), v.trim())
            }
            None => (None, spec.trim()),
        };
        if value.is_empty() {
            return Err(bad("empty path"));
        }
        if let Some(enc) = OpenAiEncoding::from_name(value) {
            return Ok(TokenizerSpec {
                name: name.unwrap_or_else(|| enc.name().to_string()),
                source: TokenizerSource::OpenAi(enc),
            });
        }
        let forced = value.strip_prefix("hf:");
        if forced.is_some() || (!Path::new(value).exists() && looks_like_hub_id(value)) {
            let (id, revision) = split_revision(forced.unwrap_or(value));
            hub::check_repo_id(id).map_err(|m| bad(&m))?;
            if let Some(r) = revision {
                hub::check_revision(r).map_err(|m| bad(&m))?;
            }
            return Ok(TokenizerSpec {
                name: name.unwrap_or_else(|| id.rsplit('/').next().unwrap_or(id).to_string()),
                source: TokenizerSource::Hub {
                    id: id.to_string(),
                    revision: revision.map(str::to_string),
                },
            });
        }
        let path = PathBuf::from(value);
        let name = match name {
            Some(n) => n,
            None => {
                default_name(&path).ok_or_else(|| bad("cannot derive a name; use NAME=PATH"))?
            }
        };
        Ok(TokenizerSpec {
            name,
            source: TokenizerSource::File(path),
        })
    }
}

/// Takes the tokenizer lines out of a rules file: `tokenizer [NAME=]SOURCE` (one word
/// after the keyword, parsed as a `--tokenizer` argument; paths are relative to the
/// current directory, as on the command line). Returns the text with those lines blanked,
/// so rule errors keep their line numbers, and the specs in file order. A line like
/// `tokenizer == 3` or `tokenizer: EXPR` stays a rule.
pub fn take_tokenizer_lines(
    file: &str,
    text: &str,
) -> Result<(String, Vec<TokenizerSpec>), TokenizeError> {
    let mut rest = String::with_capacity(text.len());
    let mut specs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let word = line
            .trim()
            .strip_prefix("tokenizer")
            .filter(|r| r.starts_with([' ', '\t']))
            .map(str::trim)
            .filter(|w| {
                !w.is_empty()
                    && !w.contains(char::is_whitespace)
                    && !w.starts_with(['=', '<', '>', '!', ':', '(', '+', '-', '*', '/', '%'])
            });
        match word {
            Some(w) => {
                let spec = w
                    .parse()
                    .map_err(|e: TokenizeError| TokenizeError::BadSpec {
                        spec: w.to_string(),
                        message: format!("{file} line {}: {e}", i + 1),
                    })?;
                specs.push(spec);
            }
            None => rest.push_str(line),
        }
        rest.push('\n');
    }
    Ok((rest, specs))
}

/// `ID@REV` → (`ID`, `Some(REV)`); Hub ids never contain `@`.
fn split_revision(v: &str) -> (&str, Option<&str>) {
    match v.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (v, None),
    }
}

/// `ORG/NAME[@REV]` with Hub id characters: what a Hub id looks like and a relative path
/// of a tokenizer file does not (`dir/tokenizer.json` ends in `.json`).
fn looks_like_hub_id(v: &str) -> bool {
    let (id, _) = split_revision(v);
    id.matches('/').count() == 1
        && !id.to_ascii_lowercase().ends_with(".json")
        && hub::check_repo_id(id).is_ok()
}

fn default_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    if stem == "tokenizer" {
        if let Some(parent) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str())
        {
            return Some(parent.to_string());
        }
    }
    Some(stem.to_string())
}

enum Backend {
    Hf(Box<tokenizers::Tokenizer>),
    OpenAi(OpenAiEncoding),
}

/// One loaded tokenizer. `Send + Sync`: load once, share with `Arc`.
pub struct Tokenizer {
    name: String,
    source: TokenizerSource,
    backend: Backend,
    /// Chunked counting is exact for this tokenizer (see module docs).
    chunkable: bool,
    /// Lean per-chunk pipeline (HF tokenizers that are chunkable).
    lean: Option<Lean>,
    /// Added tokens (or OpenAI special tokens) to look for; a match disables chunking.
    added: Option<AhoCorasick>,
    /// Tokens the post-processor adds to a single sequence (BOS, ...).
    special_extra: usize,
    /// The file a Hub tokenizer was read from (in the HF cache).
    resolved: Option<PathBuf>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("chunkable", &self.chunkable)
            .field("special_extra", &self.special_extra)
            .finish()
    }
}

/// The parts of tokenizer.json that decide whether chunked counting is exact.
#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    normalizer: Option<serde_json::Value>,
    #[serde(default)]
    pre_tokenizer: Option<serde_json::Value>,
    #[serde(default)]
    truncation: Option<serde_json::Value>,
    #[serde(default)]
    padding: Option<serde_json::Value>,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    model: ModelConfig,
}

#[derive(Deserialize)]
struct AddedToken {
    content: String,
    #[serde(default)]
    normalized: bool,
}

#[derive(Deserialize)]
struct ModelConfig {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    dropout: Option<serde_json::Value>,
    // vocab and merges are skipped by serde (unknown fields are ignored).
}

/// How to normalise a chunk on the lean path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    None,
    Nfc,
    Nfkc,
}

/// The lean counting pipeline of a chunkable HF tokenizer: normalise, split with the
/// regex, map bytes to the byte-level alphabet, and run the model on each piece. This is
/// what the crate's pipeline does for these configurations, without `NormalizedString`
/// alignment tracking and without building an `Encoding`.
struct Lean {
    norm: Norm,
    regex: tokenizers::utils::SysRegex,
    /// `Split` with `Isolated` keeps the text between matches as pieces too;
    /// `Removed` + `invert` drops it (the GPT-2 ByteLevel regex isolates).
    keep_gaps: bool,
}

/// The GPT-2 regex used by the ByteLevel pre-tokenizer when `use_regex` is true.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Returns the lean pipeline spec (normalizer, regex, keep_gaps) when chunked counting is
/// exact for this configuration (see the module documentation), else `None`.
fn lean_spec(cfg: &Config) -> Option<(Norm, &str, bool)> {
    use serde_json::Value;
    let norm = match &cfg.normalizer {
        None | Some(Value::Null) => Norm::None,
        Some(n) => match n.get("type").and_then(Value::as_str) {
            Some("NFC") => Norm::Nfc,
            Some("NFKC") => Norm::Nfkc,
            _ => return None,
        },
    };
    let bool_field =
        |v: &Value, k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    let is_plain_byte_level = |v: &Value, use_regex: bool| {
        v.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && !bool_field(v, "add_prefix_space", true)
            && bool_field(v, "use_regex", true) == use_regex
    };
    let pre = cfg.pre_tokenizer.as_ref()?;
    let (regex, keep_gaps) = if is_plain_byte_level(pre, true) {
        (GPT2_REGEX, true)
    } else if pre.get("type").and_then(Value::as_str) == Some("Sequence") {
        let [split, bl] = pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)?
        else {
            return None;
        };
        let regex = split
            .get("pattern")
            .and_then(|p| p.get("Regex"))
            .and_then(Value::as_str)?;
        let keep_gaps = match (
            split.get("behavior").and_then(Value::as_str),
            bool_field(split, "invert", false),
        ) {
            (Some("Isolated"), false) => true,
            (Some("Removed"), true) => false,
            _ => return None,
        };
        let ok = split.get("type").and_then(Value::as_str) == Some("Split")
            && SAFE_SPLIT_REGEXES.contains(&regex)
            && is_plain_byte_level(bl, false);
        if !ok {
            return None;
        }
        (regex, keep_gaps)
    } else {
        return None;
    };
    let model_ok = cfg.model.kind.as_deref() == Some("BPE")
        && matches!(cfg.model.dropout, None | Some(Value::Null));
    let added_ok = norm == Norm::None || cfg.added_tokens.iter().all(|t| !t.normalized);
    let no_trunc = matches!(cfg.truncation, None | Some(Value::Null))
        && matches!(cfg.padding, None | Some(Value::Null));
    (model_ok && added_ok && no_trunc).then_some((norm, regex, keep_gaps))
}

/// GPT-2's byte → char table of the byte-level alphabet.
fn bytes_char() -> &'static [char; 256] {
    static TABLE: std::sync::LazyLock<[char; 256]> = std::sync::LazyLock::new(|| {
        let printable = |b: u32| {
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
        };
        let mut table = ['\0'; 256];
        let mut n = 0;
        for b in 0..256u32 {
            table[b as usize] = if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap()
            };
        }
        table
    });
    &TABLE
}

fn build_matcher<S: AsRef<[u8]>>(patterns: &[S]) -> Option<AhoCorasick> {
    let patterns: Vec<&[u8]> = patterns
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return None;
    }
    // Leftmost-longest, as the HF added vocabulary matches.
    let ac = AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(patterns)
        .expect("added tokens build an automaton");
    Some(ac)
}

impl Tokenizer {
    /// Loads a tokenizer from a spec (Hub ids: environment settings, no progress bar).
    pub fn load(spec: &TokenizerSpec) -> Result<Self, TokenizeError> {
        Self::load_with(spec, &LoadOptions::default())
    }

    /// Loads a tokenizer from a spec; a Hub id is found in the HF cache or downloaded
    /// into it first ([`super::hub::resolve`]).
    pub fn load_with(spec: &TokenizerSpec, opts: &LoadOptions<'_>) -> Result<Self, TokenizeError> {
        match &spec.source {
            TokenizerSource::File(p) => Self::from_file(&spec.name, p),
            TokenizerSource::OpenAi(e) => Ok(Self::openai(&spec.name, *e)),
            TokenizerSource::Hub { id, revision } => {
                let rev = revision
                    .as_deref()
                    .or(opts.revision.as_deref())
                    .unwrap_or(hub::DEFAULT_REVISION);
                let fetch = hub::FetchOptions {
                    progress: opts.progress,
                    cancel: opts.cancel,
                };
                let found = hub::resolve(&opts.hub, id, rev, fetch).map_err(|e| match e {
                    // Say why a path-looking spec went to the Hub: a mistyped local path
                    // would otherwise read as a strange Hub error.
                    TokenizeError::Hub {
                        id,
                        revision,
                        message,
                    } if !Path::new(&id).exists() => TokenizeError::Hub {
                        message: format!(
                            "{message} (read as a Hub id: there is no file or folder {id:?})"
                        ),
                        id,
                        revision,
                    },
                    e => e,
                })?;
                let mut t = Self::from_file(&spec.name, &found.path)?;
                t.source = TokenizerSource::Hub {
                    id: id.clone(),
                    revision: Some(rev.to_string()),
                };
                t.resolved = Some(found.path);
                Ok(t)
            }
        }
    }

    /// Loads an HF `tokenizer.json`. A missing or malformed file is an error naming it.
    pub fn from_file(name: &str, path: impl AsRef<Path>) -> Result<Self, TokenizeError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let malformed = |message: String| TokenizeError::Malformed {
            path: path.to_path_buf(),
            message,
        };
        let cfg: Config = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        let tok =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| malformed(e.to_string()))?;
        let special_extra = tok
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let contents: Vec<&str> = cfg
            .added_tokens
            .iter()
            .map(|t| t.content.as_str())
            .collect();
        let lean = match lean_spec(&cfg) {
            Some((norm, regex, keep_gaps)) => Some(Lean {
                norm,
                regex: tokenizers::utils::SysRegex::new(regex)
                    .map_err(|e| malformed(e.to_string()))?,
                keep_gaps,
            }),
            None => None,
        };
        Ok(Tokenizer {
            name: name.to_string(),
            source: TokenizerSource::File(path.to_path_buf()),
            chunkable: lean.is_some(),
            lean,
            added: build_matcher(&contents),
            special_extra,
            backend: Backend::Hf(Box::new(tok)),
            resolved: None,
        })
    }

    /// An OpenAI encoding (embedded, no file).
    pub fn openai(name: &str, encoding: OpenAiEncoding) -> Self {
        let _ = encoding.tokenizer().count(""); // force the lazy load now
        Tokenizer {
            name: name.to_string(),
            source: TokenizerSource::OpenAi(encoding),
            chunkable: true,
            lean: None,
            added: build_matcher(encoding.specials()),
            special_extra: 0,
            backend: Backend::OpenAi(encoding),
            resolved: None,
        }
    }

    /// The name given to this tokenizer (e.g. `llama3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &TokenizerSource {
        &self.source
    }

    /// The file it was read from: the path given, or a Hub tokenizer's file in the HF
    /// cache (`None` for the embedded encodings).
    pub fn file(&self) -> Option<&Path> {
        match &self.source {
            TokenizerSource::File(p) => Some(p),
            _ => self.resolved.as_deref(),
        }
    }

    /// Where it came from, for reports: the path, the encoding, or
    /// `hf:ID@REV (CACHED FILE)`.
    pub fn origin(&self) -> String {
        match (&self.source, &self.resolved) {
            (TokenizerSource::Hub { .. }, Some(p)) => format!("{} ({})", self.source, p.display()),
            _ => self.source.to_string(),
        }
    }

    /// Whether the fast chunked count applies to this tokenizer's configuration.
    pub fn is_chunkable(&self) -> bool {
        self.chunkable
    }

    /// Counts tokens with the full pipeline; `special` adds the post-processor's special
    /// tokens (BOS, ...). Panics if the underlying tokenizer fails (see [`Self::try_count`]).
    pub fn count(&self, text: &str, special: bool) -> usize {
        self.try_count(text, special)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Counts tokens with the full pipeline.
    pub fn try_count(&self, text: &str, special: bool) -> Result<usize, TokenizeError> {
        match &self.backend {
            Backend::Hf(t) => {
                t.encode_fast(text, special)
                    .map(|e| e.len())
                    .map_err(|e| TokenizeError::Encode {
                        name: self.name.clone(),
                        message: e.to_string(),
                    })
            }
            Backend::OpenAi(enc) => Ok(self.openai_count(*enc, text)),
        }
    }

    fn openai_count(&self, enc: OpenAiEncoding, text: &str) -> usize {
        let bpe = enc.tokenizer();
        match &self.added {
            Some(ac) if ac.is_match(text) => {
                let mut n = 0;
                let mut last = 0;
                for m in ac.find_iter(text) {
                    n += bpe.count(&text[last..m.start()]) + 1;
                    last = m.end();
                }
                n + bpe.count(&text[last..])
            }
            _ => bpe.count(text),
        }
    }

    /// Count of one chunk, without special tokens (chunks never hold added tokens): the
    /// lean pipeline for HF tokenizers, `bpe-openai` for the OpenAI encodings.
    fn count_chunk(&self, chunk: &str) -> Result<usize, TokenizeError> {
        use tokenizers::Model;
        use unicode_normalization_alignments::UnicodeNormalization;
        let (t, lean) = match (&self.backend, &self.lean) {
            (Backend::OpenAi(enc), _) => return Ok(enc.tokenizer().count(chunk)),
            (Backend::Hf(t), Some(lean)) => (t, lean),
            (Backend::Hf(_), None) => return self.try_count(chunk, false),
        };
        // NFC and NFKC leave ASCII unchanged.
        let normalized: std::borrow::Cow<str> = match lean.norm {
            _ if chunk.is_ascii() => chunk.into(),
            Norm::None => chunk.into(),
            Norm::Nfc => chunk.nfc().map(|(c, _)| c).collect::<String>().into(),
            Norm::Nfkc => chunk.nfkc().map(|(c, _)| c).collect::<String>().into(),
        };
        let table = bytes_char();
        let model = t.get_model();
        let mut buf = String::new();
        let mut piece = |s: &str| -> Result<usize, TokenizeError> {
            if s.is_empty() {
                return Ok(0);
            }
            buf.clear();
            buf.extend(s.bytes().map(|b| table[b as usize]));
            model
                .tokenize(&buf)
                .map(|v| v.len())
                .map_err(|e| TokenizeError::Encode {
                    name: self.name.clone(),
                    message: e.to_string(),
                })
        };
        let text = normalized.as_ref();
        let mut n = 0;
        let mut prev = 0;
        for (start, end) in lean.regex.find_iter(text) {
            if lean.keep_gaps && prev != start {
                n += piece(&text[prev..start])?;
            }
            n += piece(&text[start..end])?;
            prev = end;
        }
        if lean.keep_gaps && prev != text.len() {
            n += piece(&text[prev..])?;
        }
        Ok(n)
    }

    /// Whether this text may be counted chunk by chunk.
    fn chunk_ok(&self, text: &str) -> bool {
        self.chunkable && !self.added.as_ref().is_some_and(|ac| ac.is_match(text))
    }
}

/// Splits a text into chunks at every ASCII space preceded by a non-whitespace character.
pub fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut pos = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        pos = pos.max(start + 1);
        while pos < bytes.len() {
            if bytes[pos] == b' ' {
                let prev = bytes[pos - 1];
                let boundary = if prev < 0x80 {
                    !(prev as char).is_whitespace() && !(0x1c..=0x1f).contains(&prev)
                } else {
                    // pos is a char boundary (a space), so text[..pos] ends on a char.
                    text[..pos]
                        .chars()
                        .next_back()
                        .is_some_and(|c| !c.is_whitespace())
                };
                if boundary {
                    let chunk = &text[start..pos];
                    start = pos;
                    pos += 1;
                    return Some(chunk);
                }
            }
            pos += 1;
        }
        let chunk = &text[start..];
        start = bytes.len();
        Some(chunk)
    })
}

/// FxHash-style hasher: chunk keys are short strings, SipHash would dominate.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const UNKNOWN: u32 = u32::MAX;

/// A [`CountCache`] forgets everything when it holds this many chunks (~20 MB per thread at
/// most with three tokenizers), so memory stays bounded on texts with unbounded vocabulary.
pub const MAX_MEMO_ENTRIES: usize = 1 << 18;

/// Per-thread memo of chunk → count for every tokenizer of a [`TokenizerSet`].
/// Not shared between threads; create one per worker with [`TokenizerSet::new_cache`].
pub struct CountCache {
    width: usize,
    index: FxMap<Box<str>, u32>,
    counts: Vec<u32>,
    max_entries: usize,
}

impl CountCache {
    fn new(width: usize) -> Self {
        CountCache {
            width,
            index: FxMap::default(),
            counts: Vec::new(),
            max_entries: MAX_MEMO_ENTRIES,
        }
    }
    /// Number of memoised chunks.
    pub fn len(&self) -> usize {
        self.index.len()
    }
    /// Whether nothing is memoised.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.index.clear();
        self.counts.clear();
    }
    fn slot(&mut self, chunk: &str) -> usize {
        if let Some(&i) = self.index.get(chunk) {
            return i as usize * self.width;
        }
        if self.index.len() >= self.max_entries {
            self.clear();
        }
        let i = self.index.len();
        self.index.insert(chunk.into(), i as u32);
        self.counts.extend(std::iter::repeat_n(UNKNOWN, self.width));
        i * self.width
    }
}

/// The tokenizers of one run, in order. Cheap to clone (shares the tokenizers).
#[derive(Clone, Debug, Default)]
pub struct TokenizerSet {
    tokenizers: Vec<Arc<Tokenizer>>,
}

impl TokenizerSet {
    /// A set of already loaded tokenizers. Names must be distinct.
    pub fn new(tokenizers: Vec<Arc<Tokenizer>>) -> Result<Self, TokenizeError> {
        for (i, t) in tokenizers.iter().enumerate() {
            if tokenizers[..i].iter().any(|u| u.name == t.name) {
                return Err(TokenizeError::DuplicateName(t.name.clone()));
            }
        }
        Ok(TokenizerSet { tokenizers })
    }

    /// Loads every spec (in parallel threads); the first failure in spec order is returned.
    pub fn load(specs: &[TokenizerSpec]) -> Result<Self, TokenizeError> {
        Self::load_with(specs, &LoadOptions::default())
    }

    /// [`Self::load`] with Hub settings, a default revision and download progress.
    pub fn load_with(
        specs: &[TokenizerSpec],
        opts: &LoadOptions<'_>,
    ) -> Result<Self, TokenizeError> {
        // A plain parallel map: rayon's pool, results in spec order.
        use rayon::prelude::*;
        let results: Vec<Result<Tokenizer, TokenizeError>> = specs
            .par_iter()
            .map(|s| Tokenizer::load_with(s, opts))
            .collect();
        let tokenizers = results
            .into_iter()
            .map(|r| r.map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(tokenizers)
    }

    /// The tokenizers, in order.
    pub fn tokenizers(&self) -> &[Arc<Tokenizer>] {
        &self.tokenizers
    }

    /// Number of tokenizers.
    pub fn len(&self) -> usize {
        self.tokenizers.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tokenizers.is_empty()
    }

    /// Names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.tokenizers.iter().map(|t| t.name()).collect()
    }

    /// A fresh per-thread cache for [`Self::count_all`].
    pub fn new_cache(&self) -> CountCache {
        CountCache::new(self.tokenizers.len())
    }

    /// Counts `text` with every tokenizer into `out` (cleared first), chunking once and
    /// memoising chunk counts in `cache`. Equal to [`Tokenizer::try_count`] per tokenizer.
    pub fn count_all(
        &self,
        text: &str,
        special: bool,
        cache: &mut CountCache,
        out: &mut Vec<usize>,
    ) -> Result<(), TokenizeError> {
        out.clear();
        let mut fast = [false; 64];
        let mut any_fast = false;
        for (i, t) in self.tokenizers.iter().enumerate() {
            let ok = i < fast.len() && t.chunk_ok(text);
            if ok {
                fast[i] = true;
                any_fast = true;
            }
            out.push(0);
        }
        if any_fast {
            for chunk in chunks(text) {
                let base = cache.slot(chunk);
                for (i, t) in self.tokenizers.iter().enumerate() {
                    if !fast[i] {
                        continue;
                    }
                    let mut c = cache.counts[base + i];
                    if c == UNKNOWN {
                        c = t.count_chunk(chunk)? as u32;
                        cache.counts[base + i] = c;
                    }
                    out[i] += c as usize;
                }
            }
        }
        for (i, t) in self.tokenizers.iter().enumerate() {
            if fast[i] {
                if special {
                    out[i] += t.special_extra;
                }
            } else {
                out[i] = t.try_count(text, special)?;
            }
        }
        Ok(())
    }

    /// Counts `text` with the `i`-th tokenizer only, using the same cache.
    pub fn count_one(
        &self,
        i: usize,
        text: &str,
        special: bool,
        cache: &mut CountCache,
    ) -> Result<usize, TokenizeError> {
        let t = &self.tokenizers[i];
        if !t.chunk_ok(text) {
            return t.try_count(text, special);
        }
        let mut n = 0;
        for chunk in chunks(text) {
            let base = cache.slot(chunk);
            let mut c = cache.counts[base + i];
            if c == UNKNOWN {
                c = t.count_chunk(chunk)? as u32;
                cache.counts[base + i] = c;
            }
            n += c as usize;
        }
        Ok(n + if special { t.special_extra } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        let c: Vec<&str> = chunks("hello big  world").collect();
        assert_eq!(c, ["hello", " big", "  world"]);
        let c: Vec<&str> = chunks(" a b\n c  ").collect();
        assert_eq!(c, [" a", " b\n c", "  "]);
        let c: Vec<&str> = chunks("東京 you é x").collect();
        assert_eq!(c, ["東京", " you", " é", " x"]);
        assert_eq!(chunks("").count(), 0);
        assert_eq!(chunks(" ").collect::<Vec<_>>(), [" "]);
        assert_eq!(chunks("a\u{2003} b").collect::<Vec<_>>(), ["a\u{2003} b"]);
    }

    #[test]
    fn spec_parsing() {
        let s: TokenizerSpec = "llama3=/x/y.json".parse().unwrap();
        assert_eq!(s.name, "llama3");
        assert_eq!(s.source, TokenizerSource::File("/x/y.json".into()));
        let s: TokenizerSpec = "o200k_base".parse().unwrap();
        assert_eq!(s.name, "o200k_base");
        assert_eq!(s.source, TokenizerSource::OpenAi(OpenAiEncoding::O200kBase));
        let s: TokenizerSpec = "gpt4=cl100k_base".parse().unwrap();
        assert_eq!(
            s.source,
            TokenizerSource::OpenAi(OpenAiEncoding::Cl100kBase)
        );
        let s: TokenizerSpec = "models/qwen3/tokenizer.json".parse().unwrap();
        assert_eq!(s.name, "qwen3");
        let s: TokenizerSpec = "fixtures/claude.json".parse().unwrap();
        assert_eq!(s.name, "claude");
        assert!("=x".parse::<TokenizerSpec>().is_err());
        assert!("a=".parse::<TokenizerSpec>().is_err());
    }

    #[test]
    fn tokenizer_lines_of_rules_files() {
        let text =
            "# x\ntokenizer qwen=Qwen/Qwen1.5-7B\nshort: len(a) < 3\n  tokenizer o200k_base\n\
                    tokenizer == 3\ntokenizer: tokens(a) < 2\n";
        let (rest, specs) = take_tokenizer_lines("r.txt", text).unwrap();
        assert_eq!(
            rest,
            "# x\n\nshort: len(a) < 3\n\ntokenizer == 3\ntokenizer: tokens(a) < 2\n"
        );
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["qwen", "o200k_base"]);
        let e = take_tokenizer_lines("r.txt", "a == 1\ntokenizer =x\n");
        assert!(e.is_ok(), "an operator after the keyword is a rule");
        let e = take_tokenizer_lines("r.txt", "a == 1\ntokenizer x=hf:a--b\n").unwrap_err();
        assert!(e.to_string().contains("r.txt line 2"), "{e}");
    }

    #[test]
    fn hub_spec_parsing() {
        let hub = |id: &str, rev: Option<&str>| TokenizerSource::Hub {
            id: id.into(),
            revision: rev.map(Into::into),
        };
        let s: TokenizerSpec = "qwen=Qwen/Qwen1.5-7B".parse().unwrap();
        assert_eq!(
            (s.name.as_str(), s.source),
            ("qwen", hub("Qwen/Qwen1.5-7B", None))
        );
        let s: TokenizerSpec = "Qwen/Qwen1.5-7B@v1.0".parse().unwrap();
        assert_eq!(s.name, "Qwen1.5-7B");
        assert_eq!(s.source, hub("Qwen/Qwen1.5-7B", Some("v1.0")));
        let s: TokenizerSpec = "hf:gpt2".parse().unwrap();
        assert_eq!((s.name.as_str(), s.source), ("gpt2", hub("gpt2", None)));
        let s: TokenizerSpec = "x=hf:a/b@refs/pr/3".parse().unwrap();
        assert_eq!(s.source, hub("a/b", Some("refs/pr/3")));
        // Paths: two slashes, a .json name, or an existing path.
        let s: TokenizerSpec = "models/qwen3/tokenizer.json".parse().unwrap();
        assert!(matches!(s.source, TokenizerSource::File(_)));
        let s: TokenizerSpec = "models/qwen3.json".parse().unwrap();
        assert!(matches!(s.source, TokenizerSource::File(_)));
        let s: TokenizerSpec = "fixtures/tokenizers".parse().unwrap();
        assert!(matches!(s.source, TokenizerSource::File(_)));
        // A bare word stays a path; hf: makes it a Hub id.
        let s: TokenizerSpec = "gpt2".parse().unwrap();
        assert!(matches!(s.source, TokenizerSource::File(_)));
        // Bad Hub ids and revisions are refused when hf: says it is one.
        for bad in ["hf:a/b/c", "hf:a--b/c", "hf:a/b@", "hf:a/b@../x", "hf:"] {
            let e = bad.parse::<TokenizerSpec>().unwrap_err().to_string();
            assert!(e.contains("bad tokenizer spec"), "{bad}: {e}");
        }
    }
}
