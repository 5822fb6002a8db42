//! Validation of a batch input file as OpenAI does it: every bad line is reported in
//! `errors.data[]` with OpenAI's code and its 1-based line; file-wide problems (empty,
//! too many requests) have `line: null`. The file is read line by line, never whole.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::store::BatchError;
use crate::batch::tokens::prompt_tokens;
use crate::batch::{limits, parse_request, Endpoint};

/// At most this many line errors are listed; the rest are counted in the last entry.
const MAX_LISTED: usize = 1000;

/// What a valid input file holds.
#[derive(Debug, Clone)]
pub struct Validated {
    pub total: u64,
    pub model: String,
    /// Prompt tokens of all requests, counted with the model's real encoding.
    pub prompt_tokens: u64,
}

/// The limits a file is checked against (flags of `serve`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_requests: u64,
    pub max_embedding_inputs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_requests: limits::MAX_REQUESTS,
            max_embedding_inputs: limits::MAX_EMBEDDING_INPUTS,
        }
    }
}

fn err(code: &str, message: String, param: Option<&str>, line: Option<u64>) -> BatchError {
    BatchError {
        code: code.to_string(),
        message,
        param: param.map(str::to_string),
        line,
    }
}

/// Checks the input file of a batch for `endpoint`. `Err` holds the errors that fail the
/// batch; an `Err` from the outer result is a read failure of the file itself.
pub fn validate(
    path: &Path,
    endpoint: Endpoint,
    limits: Limits,
) -> io::Result<Result<Validated, Vec<BatchError>>> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut buf = Vec::new();
    let mut errors = Vec::new();
    let mut more_errors = 0u64;
    let mut ids: HashSet<String> = HashSet::new();
    let mut model: Option<String> = None;
    let mut lines = 0u64;
    let mut tokens = 0u64;
    let mut inputs = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lines += 1;
        let n = lines;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match check_line(text, n, endpoint, &mut ids, &mut model) {
            Ok((t, i)) => {
                tokens += t;
                inputs += i;
            }
            Err(e) if errors.len() < MAX_LISTED => errors.push(e),
            Err(_) => more_errors += 1,
        }
    }
    if lines == 0 {
        errors.push(err(
            "empty_file",
            "The batch input file is empty.".into(),
            None,
            None,
        ));
    }
    if lines > limits.max_requests {
        errors.push(err(
            "too_many_tasks",
            format!(
                "The batch input file contains {lines} requests; the limit is {} per batch.",
                limits.max_requests
            ),
            None,
            None,
        ));
    }
    if endpoint == Endpoint::Embeddings && inputs > limits.max_embedding_inputs {
        errors.push(err(
            "too_many_tasks",
            format!(
                "The batch holds {inputs} embedding inputs; the limit is {} per batch.",
                limits.max_embedding_inputs
            ),
            None,
            None,
        ));
    }
    if more_errors > 0 {
        errors.push(err(
            "too_many_errors",
            format!(
                "{more_errors} more lines have errors (only the first {MAX_LISTED} are listed)."
            ),
            None,
            None,
        ));
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    Ok(Ok(Validated {
        total: lines,
        model: model.unwrap_or_default(),
        prompt_tokens: tokens,
    }))
}

/// Checks one line; returns its prompt tokens and embedding inputs.
fn check_line(
    text: &[u8],
    n: u64,
    endpoint: Endpoint,
    ids: &mut HashSet<String>,
    model: &mut Option<String>,
) -> Result<(u64, u64), BatchError> {
    let line = Some(n);
    let not_json = || {
        err(
            "invalid_json_line",
            "This line is not parseable as valid JSON.".into(),
            None,
            line,
        )
    };
    let Ok(s) = std::str::from_utf8(text) else {
        return Err(not_json());
    };
    let Ok(v) = serde_json::from_str::<Value>(s) else {
        return Err(not_json());
    };
    let Value::Object(o) = &v else {
        return Err(err(
            "invalid_json_line",
            "This line is not a JSON object.".into(),
            None,
            line,
        ));
    };
    let missing = |p: &str| {
        err(
            "missing_required_parameter",
            format!("Missing required parameter: '{p}'."),
            Some(p),
            line,
        )
    };
    let invalid = |p: &str, m: String| err("invalid_value", m, Some(p), line);
    let custom_id = match o.get("custom_id") {
        None | Some(Value::Null) => return Err(missing("custom_id")),
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => {
            return Err(invalid(
                "custom_id",
                "Invalid 'custom_id': expected a non-empty string.".into(),
            ))
        }
    };
    match o.get("method") {
        None | Some(Value::Null) => return Err(missing("method")),
        Some(Value::String(m)) if m == "POST" => {}
        Some(_) => {
            return Err(invalid(
                "method",
                "Invalid 'method': only 'POST' is supported.".into(),
            ))
        }
    }
    match o.get("url") {
        None | Some(Value::Null) => return Err(missing("url")),
        Some(Value::String(u)) if Endpoint::from_url(u) == Some(endpoint) => {}
        Some(u) => {
            let shown = u.as_str().map_or_else(|| u.to_string(), str::to_string);
            return Err(err(
                "url_mismatch",
                format!(
                    "The provided URL '{shown}' does not match the batch endpoint '{}'.",
                    endpoint.url()
                ),
                Some("url"),
                line,
            ));
        }
    }
    let body = match o.get("body") {
        None | Some(Value::Null) => return Err(missing("body")),
        Some(Value::Object(b)) => b,
        Some(_) => {
            return Err(invalid(
                "body",
                "Invalid 'body': expected an object.".into(),
            ))
        }
    };
    let m = match body.get("model") {
        None | Some(Value::Null) => return Err(missing("body.model")),
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(invalid(
                "body.model",
                "Invalid 'body.model': expected a non-empty string.".into(),
            ))
        }
    };
    if body.get("stream") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "body.stream",
            "Streaming ('stream': true) is not supported in the Batch API.".into(),
        ));
    }
    match model {
        None => *model = Some(m.clone()),
        Some(first) if first != m => {
            return Err(err(
                "model_mismatch",
                format!(
                    "The model '{m}' differs from the model '{first}' of the file's first request; a batch uses one model."
                ),
                Some("body.model"),
                line,
            ))
        }
        Some(_) => {}
    }
    if !ids.insert(custom_id.clone()) {
        return Err(err(
            "duplicate_custom_id",
            format!("The custom_id '{custom_id}' is used by an earlier line; custom_ids must be unique within a batch."),
            Some("custom_id"),
            line,
        ));
    }
    // The library's request check sees what a JSON tree hides (a duplicate key, a lone
    // surrogate) and gives the prompt fields for counting tokens with the real encoding.
    let req = parse_request(s, true).map_err(|reason| {
        err(
            "invalid_json_line",
            format!("This line is not a valid request: {reason}."),
            None,
            line,
        )
    })?;
    Ok((prompt_tokens(&req), req.inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(id: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"hello world"}}]}}}}"#
        )
    }

    fn run(lines: &[String], limits: Limits) -> Result<Validated, Vec<BatchError>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        validate(f.path(), Endpoint::ChatCompletions, limits).unwrap()
    }

    #[test]
    fn a_good_file_counts_requests_and_tokens() {
        let v = run(
            &[line("a", "gpt-4o"), line("b", "gpt-4o")],
            Limits::default(),
        )
        .unwrap();
        assert_eq!(v.total, 2);
        assert_eq!(v.model, "gpt-4o");
        assert_eq!(v.prompt_tokens, 2 * 9);
    }

    #[test]
    fn each_bad_line_gets_its_code_and_line() {
        let errs = run(
            &[
                line("a", "gpt-4o"),
                "{not json".into(),
                line("a", "gpt-4o"),
                line("c", "gpt-4o-mini"),
                line("d", "gpt-4o").replace("/v1/chat/completions", "/v1/embeddings"),
                line("e", "gpt-4o").replace("\"model\"", "\"stream\":true,\"model\""),
                r#"{"method":"POST"}"#.into(),
                "[1]".into(),
            ],
            Limits::default(),
        )
        .unwrap_err();
        let got: Vec<(&str, Option<u64>)> =
            errs.iter().map(|e| (e.code.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("invalid_json_line", Some(2)),
                ("duplicate_custom_id", Some(3)),
                ("model_mismatch", Some(4)),
                ("url_mismatch", Some(5)),
                ("invalid_value", Some(6)),
                ("missing_required_parameter", Some(7)),
                ("invalid_json_line", Some(8)),
            ]
        );
    }

    #[test]
    fn file_wide_limits() {
        let errs = run(&[], Limits::default()).unwrap_err();
        assert_eq!(errs[0].code, "empty_file");
        let limits = Limits {
            max_requests: 1,
            ..Limits::default()
        };
        let errs = run(&[line("a", "m"), line("b", "m")], limits).unwrap_err();
        assert_eq!(errs[0].code, "too_many_tasks");
        assert_eq!(errs[0].line, None);
    }
}
