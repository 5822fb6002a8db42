//! Rule evaluation on hand-made records whose counts were checked with the Python
//! `tokenizers` library (claude.json, mistral-7b.json, and o200k_base in HF form).

use std::sync::Arc;

use batchline::tokenize::{
    parse_rules_file, OpenAiEncoding, Rule, RuleError, RuleSet, Tokenizer, TokenizerSet,
};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tokenizers");

const ACCEPTANCE: [&str; 3] = [
    r#"same(tokens(prompt + " " + single_token))"#,
    r#"same(tokens(prompt + " " + multi_token))"#,
    r#"tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1"#,
];

fn claude() -> Arc<Tokenizer> {
    Arc::new(Tokenizer::from_file("claude", format!("{FIXTURES}/claude.json")).unwrap())
}
fn mistral() -> Arc<Tokenizer> {
    Arc::new(Tokenizer::from_file("mistral-7b", format!("{FIXTURES}/mistral-7b.json")).unwrap())
}
fn o200k() -> Arc<Tokenizer> {
    Arc::new(Tokenizer::openai("o200k", OpenAiEncoding::O200kBase))
}

fn rule_set(rules: &[&str], toks: Vec<Arc<Tokenizer>>, special: bool) -> RuleSet {
    let rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::parse_arg(i + 1, r).unwrap())
        .collect();
    RuleSet::new(rules, TokenizerSet::new(toks).unwrap(), special).unwrap()
}

fn rec(p: &str, s: &str, m: &str) -> Value {
    json!({"prompt": p, "single_token": s, "multi_token": m})
}

#[test]
fn acceptance_rules() {
    let rs = rule_set(&ACCEPTANCE, vec![claude(), mistral(), o200k()], false);
    let mut cache = rs.new_cache();
    assert_eq!(
        rs.token_exprs(),
        [
            r#"tokens(prompt + " " + single_token)"#,
            r#"tokens(prompt + " " + multi_token)"#
        ]
    );

    // claude 6/7, mistral 6/8, o200k 6/7
    let v = rs.evaluate(&rec("the cat sat on the", "mat", "matingness"), &mut cache);
    assert!(!v.valid);
    assert_eq!(
        v.counts,
        vec![
            (
                r#"tokens(prompt + " " + single_token)"#.to_string(),
                vec![6, 6, 6]
            ),
            (
                r#"tokens(prompt + " " + multi_token)"#.to_string(),
                vec![7, 8, 7]
            ),
        ]
    );
    let failed: Vec<(&str, &str)> = v
        .failed
        .iter()
        .map(|f| (f.name.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (
                ACCEPTANCE[1],
                "differs across tokenizers: claude=7, mistral-7b=8, o200k=7"
            ),
            (ACCEPTANCE[2], "false for mistral-7b (2 == 1)"),
        ]
    );

    // claude 2/2, mistral 2/2 ... "say the"/"say theingness": 2/4 everywhere: same ok, diff 2
    let v = rs.evaluate(&rec("say", "the", "theingness"), &mut cache);
    assert_eq!(v.failed.len(), 1);
    assert_eq!(v.failed[0].name, ACCEPTANCE[2]);
    assert_eq!(
        v.failed[0].reason,
        "false for claude (2 == 1), mistral-7b (2 == 1), o200k (2 == 1)"
    );

    // Without mistral the first record is valid.
    let rs2 = rule_set(&ACCEPTANCE, vec![claude(), o200k()], false);
    let mut cache2 = rs2.new_cache();
    let v = rs2.evaluate(&rec("the cat sat on the", "mat", "matingness"), &mut cache2);
    assert!(v.valid, "{v:?}");
    assert!(v.failed.is_empty());
    assert_eq!(v.counts[0].1, [6, 6]);
    assert_eq!(v.counts[1].1, [7, 7]);
}

#[test]
fn special_tokens_flag() {
    let rs = rule_set(&["tokens(prompt) >= 0"], vec![claude(), mistral()], true);
    let mut cache = rs.new_cache();
    let v = rs.evaluate(&json!({"prompt": "hello world"}), &mut cache);
    assert_eq!(v.counts[0].1, [2, 4]); // mistral adds <s>
    let rs = rule_set(&["tokens(prompt) >= 0"], vec![claude(), mistral()], false);
    let v = rs.evaluate(&json!({"prompt": "hello world"}), &mut rs.new_cache());
    assert_eq!(v.counts[0].1, [2, 3]);
}

#[test]
fn missing_field_and_type_errors() {
    let rs = rule_set(
        &[
            ACCEPTANCE[0],
            "len(prompt) > 3",
            "short: len(n) < 5",
            "meta.lang == \"en\"",
            "tokens(n) > 0",
            "n / 0 == 1",
            "prompt + 1 == 2",
            "not prompt",
        ],
        vec![claude(), o200k()],
        false,
    );
    let mut cache = rs.new_cache();
    let v = rs.evaluate(&json!({"prompt": "hi", "n": 7}), &mut cache);
    let reasons: Vec<(&str, &str)> = v
        .failed
        .iter()
        .map(|f| (f.name.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (ACCEPTANCE[0], "missing field single_token"),
            ("len(prompt) > 3", "false (2 > 3)"),
            ("short", "len() expects a string or an array, got int"),
            ("meta.lang == \"en\"", "missing field meta.lang"),
            ("tokens(n) > 0", "tokens() expects a string, got int"),
            ("n / 0 == 1", "division by zero"),
            ("prompt + 1 == 2", "cannot add string and int"),
            ("not prompt", "'not' expects a boolean, got string"),
        ]
    );
    assert!(v.counts.is_empty());
    // Not an object at all.
    let v = rs.evaluate(&json!([1, 2]), &mut cache);
    assert_eq!(v.failed[0].reason, "missing field prompt");
}

#[test]
fn same_and_broadcasting() {
    let rs = rule_set(
        &[
            "same(tokens(a))",
            "same(len(a))",
            "same(tokens(a) * 0)",
            "tokens(a) == tokens(a)",
            "tokens(a) + 1 > len(a) / 100",
            "same(tokens(a) - tokens(b))",
        ],
        vec![claude(), mistral(), o200k()],
        false,
    );
    let mut cache = rs.new_cache();
    // "the cat sat on the mat": 6/6/6 ; "the cat sat on the matingness": 7/8/7
    let v = rs.evaluate(
        &json!({"a": "the cat sat on the mat", "b": "the cat sat on the matingness"}),
        &mut cache,
    );
    let names: Vec<&str> = v.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["same(tokens(a) - tokens(b))"]);
    assert_eq!(
        v.failed[0].reason,
        "differs across tokenizers: claude=-1, mistral-7b=-2, o200k=-1"
    );
    assert_eq!(v.counts.len(), 2);
}

#[test]
fn arithmetic_logic_paths() {
    let rs = rule_set(
        &[
            "1 + 2 * 3 == 7",
            "(1 + 2) * 3 == 9",
            "7 % 3 == 1 and -7 / 2 == -3",
            "\"ab\" + \"c\" == s",
            "a.b.1 == 20 and a.c.0.d == true",
            "x.0 == \"zero\"",
            "f > 1 and f < 2 and f * 2 == 3",
            "not false or missing.field",
            "not (false and missing.field)",
            "n == null and s != 3 and s < \"abd\"",
        ],
        vec![],
        false,
    );
    let v = rs.evaluate(
        &json!({"s": "abc", "a": {"b": [10, 20], "c": [{"d": true}]}, "x": {"0": "zero"}, "f": 1.5, "n": null}),
        &mut rs.new_cache(),
    );
    assert!(v.valid, "{:?}", v.failed);
}

#[test]
fn rule_set_errors_before_any_record() {
    let rules = vec![Rule::parse_arg(1, "tokens(p) > 1").unwrap()];
    let e = RuleSet::new(rules, TokenizerSet::default(), false).unwrap_err();
    assert!(matches!(e, RuleError::NoTokenizer(_)));
    let e = RuleSet::new(vec![], TokenizerSet::default(), false).unwrap_err();
    assert_eq!(e, RuleError::Empty);
    let e = Rule::parse_arg(3, r#"same(tokens(prompt + " " + single_token)"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule 3, column 41: expected ')', found end of rule"
    );
    let rules = parse_rules_file("r.txt", "a: 1 == 1\na: 2 == 2\n").unwrap();
    let e = RuleSet::new(rules, TokenizerSet::default(), false).unwrap_err();
    assert_eq!(e, RuleError::DuplicateName("a".into()));
}

#[test]
fn rules_file_with_acceptance_rules() {
    let text = format!(
        "# acceptance rules\nsame_single: {}\n\nsame_multi: {}\none_more: {}\n",
        ACCEPTANCE[0], ACCEPTANCE[1], ACCEPTANCE[2]
    );
    let rules = parse_rules_file("rules.txt", &text).unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["same_single", "same_multi", "one_more"]);
    let rs = RuleSet::new(
        rules,
        TokenizerSet::new(vec![claude(), o200k()]).unwrap(),
        false,
    )
    .unwrap();
    let mut cache = rs.new_cache();
    // claude/o200k: "hello world" 2/2, "hello worldingful" 4/4 -> one_more fails
    let v = rs.evaluate(&rec("hello", "world", "worldingful"), &mut cache);
    assert_eq!(v.failed.len(), 1);
    assert_eq!(v.failed[0].name, "one_more");
    assert!(
        rs.evaluate(&rec("the cat sat on the", "mat", "matingness"), &mut cache)
            .valid
    );
}

#[test]
fn text_with_added_tokens_uses_full_pipeline() {
    let rs = rule_set(&["tokens(p) == 3"], vec![claude(), o200k()], false);
    let mut cache = rs.new_cache();
    // "<EOT>" is one added token in claude; "<|endoftext|>" one special token in o200k.
    let v = rs.evaluate(&json!({"p": "a <EOT> b"}), &mut cache);
    assert_eq!(v.counts[0].1[0], claude().count("a <EOT> b", false));
    let v = rs.evaluate(&json!({"p": "a<|endoftext|>b"}), &mut cache);
    assert_eq!(v.counts[0].1, [claude().count("a<|endoftext|>b", false), 3]);
}
