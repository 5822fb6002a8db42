//! The one price table: US dollars per million tokens of OpenAI models, for `estimate`,
//! `submit --dry-run` and the cost line of `run`'s summary; `--prices FILE` extends or
//! overrides it.
//!
//! Every built-in entry was checked on 2026-11-29 against these sources (cited per entry
//! below by their letter); an entry that no source supported was dropped:
//! - [G] pydantic/genai-prices, `prices/providers/openai.yml` at commit 47df840
//!   (2026-08-21), a curated table citing developers.openai.com/api/docs/pricing;
//! - [D] deploybase.ai/articles/openai-pricing ("data from OpenAI pricing page, March
//!   2026"): input and output of gpt-5/-mini/-nano, gpt-4.1/-mini/-nano, gpt-4o/-mini,
//!   o3, o3-mini, o4-mini;
//! - [C] chatgptpricing-akr.pages.dev/api-pricing ("source:
//!   developers.openai.com/api/docs/pricing", 2026): gpt-4o/-mini with cached input and
//!   batch prices, text-embedding-3-small/-large with batch prices;
//! - [R] crazyrouter.com/en/blog/gpt-5-pricing (2026-04-27): gpt-5 input, cached input
//!   (90 % off) and output;
//! - [K] kunishou/GenerativeAI-Cost (from openai.com/api/pricing): gpt-4-turbo,
//!   gpt-3.5-turbo (the 0125 price);
//! - [O] community.openai.com/t/1099176 (quoting the pricing page): o1 with cached input;
//! - [M] akushonkamen/oG-Memory `perf/rate_cards.yaml`: text-embedding-ada-002 and
//!   cached input of gpt-4.1/-mini, o4-mini;
//! - [B] help.openai.com/en/articles/9197833 (Batch API FAQ): "Each model will be
//!   offered at 50% cost discount vs. the synchronous APIs" — the batch price of every
//!   entry is half its direct price.
//!
//! Where sources disagreed the majority and the official wording won: gpt-5 cached
//! input is $0.125 ([G], [R]; [C] says $0.625), o3 is $2/$8 since the price cut of
//! 2025-06-10 ([G], [D]; older pages say $10/$40).
//!
//! Matching is deliberate, never by prefix: a model id is priced when it is an entry's
//! id or one of the dated snapshots listed with it (`gpt-4o-mini-2024-07-18`). Other
//! snapshots of a known model are not priced (they can differ: `gpt-4o-2024-05-13` was
//! $5/$15), nor are fine-tuned models (`ft:...`, priced differently from their base),
//! nor Azure deployment names (a request whose url lacks `/v1`: its `model` is a name
//! the user chose, priced by the deployment's model, region and type). Each says why,
//! and `--prices FILE` prices any of them.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Batch API's discount on every model ([B]): batch price = direct price x this.
pub const BATCH_FACTOR: f64 = 0.5;

/// The date the built-in table was checked against its sources.
pub const CHECKED_ON: &str = "2026-11-29";

/// (id, dated snapshots priced alike, input, cached input, output; $ per 1M tokens;
/// output `None`: the model writes no tokens (embeddings)).
type Entry = (
    &'static str,
    &'static [&'static str],
    f64,
    Option<f64>,
    Option<f64>,
);

const TABLE: &[Entry] = &[
    // [G] [D] [R]; snapshot from [G].
    (
        "gpt-5",
        &["gpt-5-2025-08-07"],
        1.25,
        Some(0.125),
        Some(10.00),
    ),
    (
        "gpt-5-mini",
        &["gpt-5-mini-2025-08-07"],
        0.25,
        Some(0.025),
        Some(2.00),
    ),
    (
        "gpt-5-nano",
        &["gpt-5-nano-2025-08-07"],
        0.05,
        Some(0.005),
        Some(0.40),
    ),
    // [G] [D] [M]
    (
        "gpt-4.1",
        &["gpt-4.1-2025-04-14"],
        2.00,
        Some(0.50),
        Some(8.00),
    ),
    (
        "gpt-4.1-mini",
        &["gpt-4.1-mini-2025-04-14"],
        0.40,
        Some(0.10),
        Some(1.60),
    ),
    (
        "gpt-4.1-nano",
        &["gpt-4.1-nano-2025-04-14"],
        0.10,
        Some(0.025),
        Some(0.40),
    ),
    // [G] [D] [C]; gpt-4o-2024-05-13 left out on purpose (priced $5/$15 then).
    (
        "gpt-4o",
        &["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"],
        2.50,
        Some(1.25),
        Some(10.00),
    ),
    (
        "gpt-4o-mini",
        &["gpt-4o-mini-2024-07-18"],
        0.15,
        Some(0.075),
        Some(0.60),
    ),
    // [G] [K]
    (
        "gpt-4-turbo",
        &["gpt-4-turbo-2024-04-09"],
        10.00,
        None,
        Some(30.00),
    ),
    (
        "gpt-3.5-turbo",
        &["gpt-3.5-turbo-0125"],
        0.50,
        None,
        Some(1.50),
    ),
    // [G] [D] (o4-mini cached: [G] [M])
    (
        "o4-mini",
        &["o4-mini-2025-04-16"],
        1.10,
        Some(0.275),
        Some(4.40),
    ),
    (
        "o3-mini",
        &["o3-mini-2025-01-31"],
        1.10,
        Some(0.55),
        Some(4.40),
    ),
    ("o3", &["o3-2025-04-16"], 2.00, Some(0.50), Some(8.00)),
    // [G] [O]
    ("o1", &["o1-2024-12-17"], 15.00, Some(7.50), Some(60.00)),
    // [G] only (deprecated by OpenAI; kept for old request files)
    (
        "o1-mini",
        &["o1-mini-2024-09-12"],
        1.10,
        Some(0.55),
        Some(4.40),
    ),
    // [G] [C] [M]
    ("text-embedding-3-small", &[], 0.02, None, None),
    ("text-embedding-3-large", &[], 0.13, None, None),
    ("text-embedding-ada-002", &[], 0.10, None, None),
];

/// One model's prices, US $ per million tokens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Price {
    pub input: f64,
    pub cached_input: Option<f64>,
    /// `None`: the model writes no tokens (embeddings).
    pub output: Option<f64>,
    /// Batch API prices (by default half the direct ones).
    pub batch_input: f64,
    pub batch_output: Option<f64>,
    /// Where the price comes from: `"built-in"` or the `--prices` file.
    pub source: String,
}

impl Price {
    fn builtin(input: f64, cached: Option<f64>, output: Option<f64>) -> Price {
        Price {
            input,
            cached_input: cached,
            output,
            batch_input: input * BATCH_FACTOR,
            batch_output: output.map(|o| o * BATCH_FACTOR),
            source: "built-in".into(),
        }
    }

    /// Dollars for `input` prompt tokens and `output` written tokens, at the direct or
    /// the batch price (no prompt-cache discount: which tokens hit the cache is not
    /// known in advance).
    pub fn cost(&self, input: u64, output: u64, batch: bool) -> f64 {
        let (i, o) = if batch {
            (self.batch_input, self.batch_output)
        } else {
            (self.input, self.output)
        };
        (input as f64 * i + output as f64 * o.unwrap_or(0.0)) / 1e6
    }
}

/// The table in use: the built-in entries plus those of `--prices` files (which win).
#[derive(Clone, Debug, Default)]
pub struct Prices {
    extra: HashMap<String, Price>,
}

/// A price, or why there is none.
pub type Lookup = std::result::Result<Price, String>;

impl Prices {
    /// The built-in table only.
    pub fn builtin() -> Prices {
        Prices::default()
    }

    /// The built-in table extended and overridden by `path` (see [`Prices::add_file`]).
    pub fn with_file(path: &Path) -> Result<Prices> {
        let mut p = Prices::builtin();
        p.add_file(path)?;
        Ok(p)
    }

    /// Reads a price file: CSV when its name ends `.csv`, JSON otherwise.
    ///
    /// JSON: `{"MODEL": {"input": 0.15, "output": 0.6, "cached_input": 0.075,
    /// "batch_input": 0.075, "batch_output": 0.3}, ...}` ($ per 1M tokens; only
    /// `input` is required; `output` absent means the model writes nothing; the batch
    /// prices default to half the direct ones). CSV: a header naming the columns
    /// `model,input` and any of `output,cached_input,batch_input,batch_output`, then one
    /// row per model (empty cell = absent; `#` lines are comments).
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let rows = if is_csv {
            parse_csv(&name, &text)?
        } else {
            parse_json(&name, &text)?
        };
        for (model, row) in rows {
            self.extra.insert(model, row);
        }
        Ok(())
    }

    /// The price of `model` for a request whose url is `url` (`None`: not known, as for
    /// a result line). `Err` says why there is none.
    pub fn lookup(&self, model: &str, url: Option<&str>) -> Lookup {
        if let Some(p) = self.extra.get(model) {
            return Ok(p.clone());
        }
        if url.is_some_and(|u| !u.starts_with("/v1/")) {
            return Err(format!(
                "Azure deployment name {model:?} (url without /v1): its price depends on the deployment's model, region and type; give it with --prices"
            ));
        }
        if let Some(&(_, _, i, c, o)) = TABLE
            .iter()
            .find(|(id, snaps, ..)| *id == model || snaps.contains(&model))
        {
            return Ok(Price::builtin(i, c, o));
        }
        if model.starts_with("ft:") {
            return Err(format!(
                "fine-tuned model {model:?} is priced differently from its base model; give it with --prices"
            ));
        }
        if let Some(base) = undated(model).filter(|b| TABLE.iter().any(|(id, ..)| id == b)) {
            return Err(format!(
                "snapshot {model:?} of {base} is not in the price table (snapshots may be priced differently); give it with --prices"
            ));
        }
        Err(format!(
            "no price for model {model:?} in the built-in table (checked {CHECKED_ON}); give it with --prices"
        ))
    }
}

/// `gpt-4o-2024-05-13` -> `gpt-4o`; `gpt-3.5-turbo-1106` -> `gpt-3.5-turbo`.
fn undated(model: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (head, last) = model.rsplit_once('-')?;
    if !digits(last) {
        return None;
    }
    if last.len() == 4 {
        // -MMDD, or the day of -YYYY-MM-DD
        if let Some((h2, mm)) = head.rsplit_once('-') {
            if let Some((h3, yyyy)) = h2.rsplit_once('-') {
                if digits(mm) && mm.len() == 2 && digits(yyyy) && yyyy.len() == 4 {
                    return Some(h3);
                }
            }
        }
        return Some(head);
    }
    if last.len() == 2 {
        let (h2, mm) = head.rsplit_once('-')?;
        let (h3, yyyy) = h2.rsplit_once('-')?;
        if digits(mm) && mm.len() == 2 && digits(yyyy) && yyyy.len() == 4 {
            return Some(h3);
        }
    }
    None
}

/// One row of a price file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    input: f64,
    #[serde(default)]
    output: Option<f64>,
    #[serde(default)]
    cached_input: Option<f64>,
    #[serde(default)]
    batch_input: Option<f64>,
    #[serde(default)]
    batch_output: Option<f64>,
}

fn finish(name: &str, at: &str, row: Row) -> Result<Price> {
    let all = [
        Some(row.input),
        row.output,
        row.cached_input,
        row.batch_input,
        row.batch_output,
    ];
    if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::Other(format!(
            "{name}: {at}: prices must be finite numbers of at least 0 ($ per 1M tokens)"
        )));
    }
    Ok(Price {
        input: row.input,
        cached_input: row.cached_input,
        output: row.output,
        batch_input: row.batch_input.unwrap_or(row.input * BATCH_FACTOR),
        batch_output: row.batch_output.or(row.output.map(|o| o * BATCH_FACTOR)),
        source: name.to_string(),
    })
}

fn parse_json(name: &str, text: &str) -> Result<Vec<(String, Price)>> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| {
            Error::Other(format!(
                "{name}:{}:{}: not a price file: {e} (expected {{\"MODEL\": {{\"input\": .., \"output\": ..}}}})",
                e.line(),
                e.column()
            ))
        })?;
    let mut out = Vec::with_capacity(map.len());
    for (model, v) in map {
        let row: Row = serde_json::from_value(v)
            .map_err(|e| Error::Other(format!("{name}: model {model:?}: {e}")))?;
        let at = format!("model {model:?}");
        out.push((model.clone(), finish(name, &at, row)?));
    }
    Ok(out)
}

fn parse_csv(name: &str, text: &str) -> Result<Vec<(String, Price)>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (hline, header) = lines
        .next()
        .ok_or_else(|| Error::Other(format!("{name}: empty price file")))?;
    let cols: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(str::trim)
        .collect();
    const KNOWN: [&str; 6] = [
        "model",
        "input",
        "output",
        "cached_input",
        "batch_input",
        "batch_output",
    ];
    if let Some(bad) = cols.iter().find(|c| !KNOWN.contains(c)) {
        return Err(Error::Other(format!(
            "{name}:{hline}: unknown column {bad:?} (known: {})",
            KNOWN.join(", ")
        )));
    }
    if !cols.contains(&"model") || !cols.contains(&"input") {
        return Err(Error::Other(format!(
            "{name}:{hline}: the header needs the columns model and input"
        )));
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            return Err(Error::Other(format!(
                "{name}:{n}: {} cells, the header has {}",
                cells.len(),
                cols.len()
            )));
        }
        let mut model = "";
        let mut nums: HashMap<&str, f64> = HashMap::new();
        for (c, v) in cols.iter().zip(&cells) {
            if *c == "model" {
                model = v;
            } else if !v.is_empty() {
                let x = v
                    .parse::<f64>()
                    .map_err(|_| Error::Other(format!("{name}:{n}: {c} {v:?} is not a number")))?;
                nums.insert(c, x);
            }
        }
        if model.is_empty() {
            return Err(Error::Other(format!("{name}:{n}: empty model")));
        }
        let input = *nums
            .get("input")
            .ok_or_else(|| Error::Other(format!("{name}:{n}: no input price")))?;
        let row = Row {
            input,
            output: nums.get("output").copied(),
            cached_input: nums.get("cached_input").copied(),
            batch_input: nums.get("batch_input").copied(),
            batch_output: nums.get("batch_output").copied(),
        };
        out.push((model.to_string(), finish(name, &format!("line {n}"), row)?));
    }
    Ok(out)
}

/// The direct (not Batch) price of `model` from the built-in table, per million tokens
/// (input, output), if known; for `run`, whose answers name their model.
pub fn price_of(model: &str) -> Option<(f64, f64)> {
    Prices::builtin()
        .lookup(model, None)
        .ok()
        .map(|p| (p.input, p.output.unwrap_or(0.0)))
}

/// The direct cost in dollars of `input` and `output` tokens of `model`, if priced.
pub fn cost_of(model: &str, input: u64, output: u64) -> Option<f64> {
    Prices::builtin()
        .lookup(model, None)
        .ok()
        .map(|p| p.cost(input, output, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_listed_snapshots_are_priced_and_nothing_else() {
        let p = Prices::builtin();
        assert_eq!(price_of("gpt-4o-mini-2024-07-18"), Some((0.15, 0.60)));
        assert_eq!(price_of("gpt-4o-2024-08-06"), Some((2.50, 10.00)));
        assert_eq!(price_of("gpt-4o"), Some((2.50, 10.00)));
        // Not by prefix: these are other models at other prices.
        assert_eq!(price_of("gpt-5-pro"), None);
        assert_eq!(price_of("o1-pro"), None);
        assert_eq!(price_of("gpt-4o-audio-preview"), None);
        assert_eq!(price_of("llama3"), None);
        let e = p.lookup("gpt-4o-2024-05-13", None).unwrap_err();
        assert!(e.contains("snapshot") && e.contains("gpt-4o"), "{e}");
        let e = p.lookup("gpt-3.5-turbo-1106", None).unwrap_err();
        assert!(e.contains("snapshot"), "{e}");
        let e = p.lookup("ft:gpt-4.1-mini:org::id", None).unwrap_err();
        assert!(e.contains("fine-tuned"), "{e}");
        let e = p
            .lookup("gpt-4o-mini", Some("/chat/completions"))
            .unwrap_err();
        assert!(e.contains("Azure"), "{e}");
        assert!(p
            .lookup("gpt-4o-mini", Some("/v1/chat/completions"))
            .is_ok());
        let c = cost_of("gpt-4o-mini", 1_000_000, 500_000).unwrap();
        assert!((c - 0.45).abs() < 1e-9);
    }

    #[test]
    fn the_batch_price_is_half() {
        let p = Prices::builtin().lookup("gpt-4.1-mini", None).unwrap();
        assert_eq!(p.batch_input, 0.20);
        assert_eq!(p.batch_output, Some(0.80));
        assert!((p.cost(2_000_000, 1_000_000, true) - (0.40 + 0.80)).abs() < 1e-12);
        let e = Prices::builtin()
            .lookup("text-embedding-3-small", None)
            .unwrap();
        assert_eq!(e.output, None);
        assert!((e.cost(1_000_000, 0, true) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn undated_strips_only_dates() {
        assert_eq!(undated("gpt-4o-2024-05-13"), Some("gpt-4o"));
        assert_eq!(undated("gpt-3.5-turbo-1106"), Some("gpt-3.5-turbo"));
        assert_eq!(undated("gpt-4o-mini"), None);
        assert_eq!(undated("gpt-4.1"), None);
    }

    #[test]
    fn price_files_in_json_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("p.json");
        std::fs::write(
            &j,
            r#"{"my-deploy": {"input": 1.0, "output": 4.0}, "gpt-4o-mini": {"input": 0.2, "output": 0.8, "batch_input": 0.2}}"#,
        )
        .unwrap();
        let p = Prices::with_file(&j).unwrap();
        let d = p.lookup("my-deploy", Some("/chat/completions")).unwrap();
        assert_eq!(
            (d.input, d.output, d.batch_input, d.batch_output),
            (1.0, Some(4.0), 0.5, Some(2.0))
        );
        let m = p.lookup("gpt-4o-mini", None).unwrap();
        assert_eq!(
            (m.input, m.batch_input, m.batch_output),
            (0.2, 0.2, Some(0.4))
        );
        let c = dir.path().join("p.csv");
        std::fs::write(
            &c,
            "# mine\nmodel,input,output,batch_output\nx,1,2,\ny,3,,\n",
        )
        .unwrap();
        let p = Prices::with_file(&c).unwrap();
        assert_eq!(p.lookup("x", None).unwrap().batch_output, Some(1.0));
        assert_eq!(p.lookup("y", None).unwrap().output, None);
        std::fs::write(&c, "model,input,price\n").unwrap();
        let e = Prices::with_file(&c).unwrap_err().to_string();
        assert!(e.contains("p.csv:1") && e.contains("price"), "{e}");
        std::fs::write(&c, "model,input\nx,abc\n").unwrap();
        let e = Prices::with_file(&c).unwrap_err().to_string();
        assert!(e.contains("p.csv:2") && e.contains("abc"), "{e}");
        std::fs::write(&j, r#"{"x": {"input": 1, "ouput": 2}}"#).unwrap();
        let e = Prices::with_file(&j).unwrap_err().to_string();
        assert!(e.contains("ouput"), "{e}");
        std::fs::write(&j, r#"{"x": {"input": -1}}"#).unwrap();
        assert!(Prices::with_file(&j).is_err());
    }
}
