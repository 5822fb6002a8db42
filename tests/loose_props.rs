//! Property and adversarial tests for `loose::parse`: it never panics, always returns
//! valid JSON, reads strict JSON unchanged, never invents data when a value is cut, and
//! finishes on megabyte-sized hostile inputs with work linear in their size (counted by
//! `parse_measured`, never timed).

use batchline::loose::{parse, parse_measured, LooseValue, ParseOptions, Refusal, Repair};
use proptest::prelude::*;
use serde_json::Value;

const LOOSE: ParseOptions = ParseOptions {
    strict: false,
    provider_truncated: false,
};

/// Every returned value is valid JSON and every refusal reason is documented.
fn check_output(r: &Result<Vec<LooseValue>, Refusal>) {
    match r {
        Ok(vals) => {
            assert!(!vals.is_empty());
            for v in vals {
                // Numbers are kept as written, so a value may hold a number that is valid
                // JSON (RFC 8259 sets no range) but beyond what serde_json's f64 holds:
                // the grammar check decides then.
                if let Err(e) = serde_json::from_str::<Value>(&v.json) {
                    let grammar = batchline::json::scan::document(v.json.as_bytes());
                    if !(e.to_string().contains("number out of range") && grammar.is_ok()) {
                        panic!("invalid JSON output {:?}: {e}", v.json);
                    }
                }
                for r in &v.repairs {
                    assert!(Repair::ALL.contains(r));
                }
            }
        }
        Err(r) => assert!(
            Refusal::REASONS.contains(&r.reason),
            "undocumented reason {}",
            r.reason
        ),
    }
}

fn run_all_opts(text: &str) {
    for strict in [false, true] {
        for provider_truncated in [false, true] {
            check_output(&parse(
                text,
                &ParseOptions {
                    strict,
                    provider_truncated,
                },
            ));
        }
    }
}

const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    ",",
    ":",
    " ",
    "\n",
    "a",
    "key",
    "1",
    "-",
    "0",
    ".",
    "e",
    "true",
    "True",
    "None",
    "NaN",
    "null",
    "//",
    "/*",
    "*/",
    "#",
    "\\",
    "\\u",
    "\\ud800",
    "```",
    "```json\n",
    "~~~",
    "<think>",
    "</think>",
    "<answer>",
    "“",
    "”",
    "‘",
    "’",
    "\u{feff}",
    "%",
    "é",
    "\t",
    "\u{1}",
    "Here is the JSON:",
    "example",
    "corrected",
    "😀",
    "1,000",
    "{\"a\":",
    "[1,",
    "\"x\"",
];

fn loose_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..120).prop_map(|v| v.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
        "[a-z\"'\\\\ {}\\[\\],:`<>#/*\n]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"' ]{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `out` is a complete-prefix sub-structure of `orig`, the value the cut text began:
/// same container type; every array element present is complete and equal to the
/// original element at its index (a prefix); every object member present is complete and
/// equal to the original member, except at most one (the cut-container path) whose value
/// is a non-empty container of the same type that is itself such a sub-structure.
fn is_cut_sub(out: &Value, orig: &Value) -> bool {
    match (out, orig) {
        (Value::Object(o), Value::Object(g)) => {
            let mut partial = 0;
            o.iter().all(|(k, v)| {
                let Some(gv) = g.get(k) else { return false };
                if v == gv {
                    return true;
                }
                partial += 1;
                partial == 1 && is_nonempty_container(v) && is_cut_sub(v, gv)
            })
        }
        (Value::Array(o), Value::Array(g)) => o.len() <= g.len() && o[..] == g[..o.len()],
        _ => false,
    }
}

fn is_nonempty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_loose_pieces(text in loose_text()) {
        run_all_opts(&text);
    }

    #[test]
    fn never_panics_on_any_string(text in any::<String>()) {
        run_all_opts(&text);
    }

    #[test]
    fn never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        run_all_opts(&String::from_utf8_lossy(&bytes));
    }

    /// Whatever the input, the work is at most a constant times its length.
    #[test]
    fn work_is_linear_in_any_input(
        pieces in loose_text(),
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        reps in 1usize..40,
    ) {
        for text in [pieces.clone(), String::from_utf8_lossy(&bytes).into_owned(), pieces.repeat(reps)] {
            let w = max_work(&text);
            prop_assert!(w <= WORK_PER_BYTE * text.len() as u64 + WORK_FLOOR, "{w} for {} bytes: {text:?}", text.len());
        }
    }

    /// Mutated JSON (a value with pieces of loose text spliced in), repeated: linear too.
    #[test]
    fn work_is_linear_in_mutated_json(v in json_value(), cut in any::<prop::sample::Index>(), junk in loose_text(), reps in 1usize..30) {
        let json = serde_json::to_string(&v).unwrap();
        let at = (0..=json.len()).filter(|&i| json.is_char_boundary(i)).nth(cut.index(json.len() + 1)).unwrap_or(0);
        let text = format!("{}{junk}{}", &json[..at], &json[at..]).repeat(reps);
        let w = max_work(&text);
        prop_assert!(w <= WORK_PER_BYTE * text.len() as u64 + WORK_FLOOR, "{w} for {} bytes", text.len());
    }

    #[test]
    fn strict_json_roundtrips(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        let got = parse(&text, &LOOSE).map_err(|r| TestCaseError::fail(format!("{text}: {r}")))?;
        prop_assert_eq!(got.len(), 1);
        prop_assert!(got[0].repairs.is_empty(), "{} repairs {:?}", text, got[0].repairs);
        prop_assert!(!got[0].truncated);
        prop_assert_eq!(&got[0].json, &serde_json::to_string(&v).unwrap());
        // serde_json's default float parsing is not exact: compare through the same parser.
        let back: Value = serde_json::from_str(&got[0].json).unwrap();
        let want: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, want);
        // Strict mode accepts it too.
        let strict = ParseOptions { strict: true, provider_truncated: false };
        prop_assert!(parse(&text, &strict).is_ok());
    }

    #[test]
    fn fenced_strict_json_roundtrips(v in json_value()) {
        let text = format!("Here you go:\n```json\n{}\n```\nDone.", serde_json::to_string_pretty(&v).unwrap());
        let got = parse(&text, &LOOSE).map_err(|r| TestCaseError::fail(format!("{text}: {r}")))?;
        prop_assert_eq!(got.len(), 1);
        let back: Value = serde_json::from_str(&got[0].json).unwrap();
        let want: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        prop_assert_eq!(back, want);
    }

    /// A valid JSON value cut at a random byte never gains a value: the result is a
    /// `truncated` refusal or a complete-prefix sub-structure of the original.
    #[test]
    fn cut_values_never_invent(v in json_value(), frac in 0.0f64..1.0, pretty in any::<bool>()) {
        prop_assume!(v.is_array() || v.is_object());
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut k = ((text.len() as f64) * frac) as usize;
        while !text.is_char_boundary(k) { k -= 1; }
        let cut = &text[..k.max(1)];
        let whole = cut.len() == text.len();
        match parse(cut, &LOOSE) {
            Ok(vals) => {
                prop_assert_eq!(vals.len(), 1, "{}", cut);
                let out: Value = serde_json::from_str(&vals[0].json).unwrap();
                if whole {
                    prop_assert_eq!(&out, &v);
                } else {
                    prop_assert!(is_nonempty_container(&out), "{} -> empty {}", cut, vals[0].json);
                    prop_assert!(is_cut_sub(&out, &v), "{} -> {} not within {}", cut, vals[0].json, text);
                }
                prop_assert_eq!(vals[0].truncated, !whole);
            }
            Err(r) => {
                prop_assert!(!whole, "{} refused: {}", cut, r);
                prop_assert_eq!(r.reason, "truncated", "{}: {}", cut, r);
            }
        }
    }

    /// The same, for a record list wrapped in an object (the common answer shape) and
    /// for an array of records: complete records are never lost or altered.
    #[test]
    fn cut_record_lists_keep_complete_records(n in 1usize..6, frac in 0.0f64..1.0, wrapped in any::<bool>()) {
        let recs: Vec<Value> = (0..n)
            .map(|i| serde_json::json!({"id": i, "text": format!("item {i}, \"q\" {{x}}"), "tags": ["a", "b"]}))
            .collect();
        let v = if wrapped { serde_json::json!({"items": recs}) } else { Value::Array(recs.clone()) };
        let text = serde_json::to_string(&v).unwrap();
        let k = ((text.len() as f64) * frac) as usize;
        let cut = &text[..k.max(1)];
        // Records whose closing brace is inside the cut.
        let complete = recs.iter().scan(if wrapped { 10 } else { 1 }, |at, r| {
            let s = serde_json::to_string(r).unwrap();
            *at += s.len() + 1;
            Some(*at - 1)
        }).take_while(|&end| end <= cut.len()).count();
        match parse(cut, &LOOSE) {
            Ok(vals) => {
                let out: Value = serde_json::from_str(&vals[0].json).unwrap();
                let got = if wrapped { out["items"].clone() } else { out.clone() };
                prop_assert_eq!(got, Value::Array(recs[..complete].to_vec()), "{}", cut);
            }
            Err(r) => {
                prop_assert_eq!(complete, 0, "{} refused: {}", cut, r);
                prop_assert_eq!(r.reason, "truncated");
            }
        }
    }
}

/// Most work per input byte allowed (the passes over the text, the value reads, and up to
/// 16 fence-aware reads that may run to the end of the text), and a floor for tiny inputs.
const WORK_PER_BYTE: u64 = 40;
const WORK_FLOOR: u64 = 256;

/// The most work `parse` does on `text` under any options.
fn max_work(text: &str) -> u64 {
    let mut w = 0;
    for strict in [false, true] {
        for provider_truncated in [false, true] {
            let (r, n) = parse_measured(
                text,
                &ParseOptions {
                    strict,
                    provider_truncated,
                },
            );
            check_output(&r);
            w = w.max(n);
        }
    }
    w
}

/// Builds about 1 MB by repeating `unit`.
fn mb(unit: &str) -> String {
    unit.repeat((1 << 20) / unit.len().max(1))
}

#[test]
fn adversarial_megabytes_finish() {
    let units = [
        "[",
        "{",
        "\"",
        "'",
        "{\"a\":",
        "{\"a\":\"",
        "[1,",
        "1,",
        "}",
        "]",
        ",",
        "```\n",
        "```json\n[\"",
        "```\n{",
        "<think>",
        "</think>",
        "<answer>",
        "\\",
        "\"\\",
        "“",
        "a\" ",
        "' ",
        "{a",
        "[{\"a\":[",
        "/*",
        "//",
        "#",
        " ",
        "\n",
        "{}",
        "[]",
        "{} ",
        "{x} ",
        "[a] ",
        "NaN",
        "tru",
        "-",
        "0",
        "{\"a\":1}\n",
        "\"a\":\"b\",",
        "Example: {\"a\": 1}\n",
    ];
    for unit in units {
        // Linear: twice the input is at most about twice the work.
        let small = unit.repeat((1 << 15) / unit.len());
        let (w1, w2) = (max_work(&small), max_work(&small.repeat(2)));
        eprintln!(
            "{unit:?}: {} work per byte, x{:.2} for twice the input",
            w1 / small.len() as u64,
            w2 as f64 / w1 as f64
        );
        assert!(
            w1 <= WORK_PER_BYTE * small.len() as u64,
            "{unit:?}: {w1} for {} bytes",
            small.len()
        );
        assert!(
            w2 * 10 <= w1 * 21 + 10 * WORK_FLOOR,
            "{unit:?}: {w1} then {w2} for twice the input"
        );
        let text = mb(unit);
        let start = std::time::Instant::now();
        check_output(&parse(&text, &LOOSE));
        check_output(&parse(
            &text,
            &ParseOptions {
                strict: true,
                provider_truncated: true,
            },
        ));
        // Wrapped in an open array and in an open fence as well.
        check_output(&parse(&format!("[{text}"), &LOOSE));
        check_output(&parse(&format!("```json\n{text}"), &LOOSE));
        eprintln!("{unit:?}: {:?}", start.elapsed());
    }
}

#[test]
fn adversarial_random_mixes_finish() {
    // A fixed xorshift so the test is deterministic without extra crates.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..4 {
        let mut s = String::with_capacity(1 << 20);
        while s.len() < (1 << 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(PIECES[(x % PIECES.len() as u64) as usize]);
        }
        run_all_opts(&s);
    }
}

#[test]
fn deep_nesting_is_refused_not_recursed() {
    let r = parse(&"[".repeat(1 << 20), &LOOSE).unwrap_err();
    assert_eq!(r.reason, "too_deep");
    let r = parse(&"{\"a\":".repeat(1 << 18), &LOOSE).unwrap_err();
    assert_eq!(r.reason, "too_deep");
    let ok = format!("{}{}", "[".repeat(512), "]".repeat(512));
    assert!(parse(&ok, &LOOSE).is_ok());
}

#[test]
fn large_valid_input_is_fast_path() {
    let item =
        r#"{"prompt":"translate the café menu","single_token":"data","n":12345678901234567890}"#;
    let text = format!("[{}]", vec![item; 20000].join(","));
    let got = parse(&text, &LOOSE).unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].repairs.is_empty());
    assert_eq!(got[0].json, text);
}
