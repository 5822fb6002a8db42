//! `json_scan` accepts exactly the texts serde_json accepts: valid documents of every
//! shape, and the same documents damaged in every way (a byte cut, added or replaced,
//! the text cut short). Spans of object members match what serde_json reads there.

use batchline::json::scan::{document, object, only_whitespace_after, value};
use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
struct Member<'a> {
    #[serde(borrow)]
    k: &'a RawValue,
}

fn serde_accepts(s: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(s).is_ok()
}

fn scan_accepts(s: &str) -> bool {
    document(s.as_bytes()).is_ok()
}

/// Numbers written in every form JSON allows (and serde_json keeps as written).
fn number_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,25}"],
        proptest::option::of("[0-9]{1,6}"),
        proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,3}")),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, sign, d)) = exp {
                s.push_str(&e);
                s.push_str(&sign);
                s.push_str(&d);
            }
            s
        })
}

fn string_text() -> impl Strategy<Value = String> {
    // Plain text, multibyte text, and every escape.
    proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 ,:{}\\[\\]]{1,8}",
            Just("é東😀".to_string()),
            Just("\\\"".to_string()),
            Just("\\\\".to_string()),
            Just("\\/".to_string()),
            Just("\\n\\t\\r\\b\\f".to_string()),
            Just("\\u00e9".to_string()),
            Just("\\uD83D\\uDE00".to_string()),
            Just("\\udc00".to_string()),
        ],
        0..6,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

/// A JSON document as text, with varied whitespace.
fn json_text() -> impl Strategy<Value = String> {
    let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just(" \r\n ")];
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number_text(),
        string_text(),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        let ws = ws.clone();
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..6), ws.clone())
                .prop_map(|(items, w)| format!("[{w}{}{w}]", items.join(&format!("{w},{w}")))),
            (
                proptest::collection::vec((string_text(), inner), 0..6),
                ws.clone()
            )
                .prop_map(|(members, w)| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("{k}{w}:{w}{v}"))
                        .collect();
                    format!("{{{w}{}{w}}}", body.join(","))
                }),
        ]
    })
}

/// One kind of damage applied at a position (a fraction of the text's length).
#[derive(Debug, Clone)]
enum Damage {
    Cut,
    Delete,
    Insert(char),
    Replace(char),
}

fn damage() -> impl Strategy<Value = Damage> {
    let interesting = prop_oneof![
        Just('"'),
        Just('\\'),
        Just(','),
        Just(':'),
        Just('{'),
        Just('}'),
        Just('['),
        Just(']'),
        Just('0'),
        Just('-'),
        Just('.'),
        Just('e'),
        Just('+'),
        Just('u'),
        Just(' '),
        Just('\t'),
        Just('\u{1}'),
        Just('\u{1f}'),
        Just('x'),
        Just('n'),
    ];
    prop_oneof![
        Just(Damage::Cut),
        Just(Damage::Delete),
        interesting.clone().prop_map(Damage::Insert),
        interesting.prop_map(Damage::Replace),
    ]
}

fn apply(text: &str, damage: &Damage, at: f64) -> String {
    let chars: Vec<char> = text.chars().collect();
    let i = ((chars.len() as f64) * at) as usize;
    let mut out: Vec<char> = chars.clone();
    match damage {
        Damage::Cut => out.truncate(i),
        Damage::Delete if i < out.len() => {
            out.remove(i);
        }
        Damage::Delete => {}
        Damage::Insert(c) => out.insert(i.min(out.len()), *c),
        Damage::Replace(c) if i < out.len() => out[i] = *c,
        Damage::Replace(c) => out.push(*c),
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8000))]

    #[test]
    fn valid_documents_are_accepted(text in json_text()) {
        prop_assert!(serde_accepts(&text), "generator made invalid JSON: {text}");
        prop_assert!(scan_accepts(&text), "refused valid JSON: {text}");
    }

    #[test]
    fn damaged_documents_agree_with_serde(
        text in json_text(),
        d in damage(),
        at in 0.0f64..1.0,
        d2 in proptest::option::of((damage(), 0.0f64..1.0)),
    ) {
        let mut bad = apply(&text, &d, at);
        if let Some((d2, at2)) = d2 {
            bad = apply(&bad, &d2, at2);
        }
        prop_assert_eq!(scan_accepts(&bad), serde_accepts(&bad), "text: {:?}", bad);
    }

    #[test]
    fn member_spans_hold_what_serde_reads(text in json_text()) {
        let doc = format!("{{\"k\": {text}, \"z\" : 1}}");
        let mut spans = Vec::new();
        let b = doc.as_bytes();
        let span = object(b, 0, |k, at| {
            let v = value(b, at)?;
            spans.push((k.to_vec(), v.clone()));
            Ok(v.end)
        }).unwrap();
        only_whitespace_after(b, span.end).unwrap();
        prop_assert_eq!(span, 0..doc.len());
        prop_assert_eq!(spans.len(), 2);
        prop_assert_eq!(&spans[0].0, b"\"k\"");
        let theirs: Member = serde_json::from_str(&doc).unwrap();
        prop_assert_eq!(&doc[spans[0].1.clone()], theirs.k.get());
        prop_assert_eq!(&doc[spans[1].1.clone()], "1");
    }
}

#[test]
fn deep_nesting_agrees_with_serde() {
    for depth in [126, 127, 128, 129, 130, 1000, 20_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(scan_accepts(&text), serde_accepts(&text), "depth {depth}");
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            scan_accepts(&text),
            serde_accepts(&text),
            "depth {depth} with a value"
        );
    }
}

/// A result line of every shape the classifier reads, built around a generated value.
fn result_line(v: &str, shape: usize) -> String {
    match shape % 5 {
        0 => format!(
            r#"{{"id":"b","custom_id":"a","response":{{"status_code":200,"request_id":"r","body":{v}}},"error":null}}"#
        ),
        1 => format!(r#"{{"custom_id":"a","result":{{"type":"succeeded","message":{v}}}}}"#),
        2 => format!(r#"{{"key":"k","response":{v}}}"#),
        3 => format!(r#"{{"custom_id":"a","status":"ok","request":{{}},"response":{v}}}"#),
        _ => format!(
            r#"{{"custom_id":"a","response":{{"status_code":500,"body":{{"error":{v}}}}},"error":null}}"#
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Arbitrary bytes never panic the scanner, the classifier, the request reader, the
    /// join fast path or the nested-key check.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = document(&bytes);
        let _ = batchline::batch::classify::classify(&bytes, true);
        let _ = batchline::batch::outcome::parse_request_side(&bytes);
        let _ = batchline::batch::outcome::scan_ok_result(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(r) = document(text.as_bytes()) {
            let _ = batchline::json::text::nested_problem(text.as_bytes(), r, 0);
        }
    }

    /// Damaged result lines: never a panic, and the fast path of join never calls ok a
    /// usable line the classifier calls failed (it may only defer).
    #[test]
    fn damaged_result_lines_classify_consistently(
        text in json_text(),
        shape in 0usize..5,
        d in proptest::option::of((damage(), 0.0f64..1.0)),
    ) {
        let mut line = result_line(&text, shape);
        if let Some((d, at)) = d {
            line = apply(&line, &d, at);
        }
        // The fast path reads only both ends of a line (join checks the whole line
        // when it uses it): on a line the classifier can read, it never disagrees.
        let full = batchline::batch::classify::classify(line.as_bytes(), true);
        if let (Some(id), Ok(c)) = (batchline::batch::outcome::scan_ok_result(line.as_bytes()), &full) {
            prop_assert!(
                c.verdict.is_ok() && c.custom_id == id,
                "fast path ok, classifier {:?}: {}", c.verdict, line
            );
        }
    }
}
