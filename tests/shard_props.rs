//! Property test of `shard` through the library: on random inputs, every line ends in
//! exactly one place, every file respects every limit and holds one (endpoint, model),
//! and each group's files, concatenated, are the group's accepted lines in input order.

use std::collections::{HashMap, HashSet};

use batchline::commands::shard::{self, ShardConfig};
use batchline::commands::ErrorMode;
use batchline::io::input::InputSpec;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Kind {
    Good {
        id: u8,
        model: u8,
        embed: bool,
        pad: u16,
    },
    Blank,
    Garbage(u8),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        8 => (0u8..40, 0u8..3, any::<bool>(), 0u16..300).prop_map(|(id, model, embed, pad)| Kind::Good { id, model, embed, pad }),
        1 => Just(Kind::Blank),
        1 => (0u8..4).prop_map(Kind::Garbage),
    ]
}

fn render(k: &Kind) -> String {
    match k {
        Kind::Good {
            id,
            model,
            embed,
            pad,
        } => {
            let text = "y".repeat(*pad as usize);
            if *embed {
                serde_json::json!({"custom_id": format!("id-{id}"), "method": "POST", "url": "/v1/embeddings",
                    "body": {"model": format!("m{model}"), "input": [text, "b"]}}).to_string()
            } else {
                serde_json::json!({"custom_id": format!("id-{id}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": format!("m{model}"), "messages": [{"role": "user", "content": text}]}}).to_string()
            }
        }
        Kind::Blank => "  ".to_string(),
        Kind::Garbage(0) => "{".to_string(),
        Kind::Garbage(1) => "{\"custom_id\":\"z\"}".to_string(),
        Kind::Garbage(2) => "null".to_string(),
        Kind::Garbage(_) => {
            "{\"custom_id\":\"q\",\"method\":\"POST\",\"url\":\"/v1/x\",\"body\":{\"model\":\"m\"}}"
                .to_string()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn every_line_is_accounted_for_and_limits_hold(
        kinds in prop::collection::vec(kind(), 0..120),
        max_requests in 1u64..12,
        max_bytes in 300u64..3000,
        max_inputs in 2u64..9,
        threads in 1usize..4,
        crlf in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let lines: Vec<String> = kinds.iter().map(render).collect();
        let sep = if crlf { "\r\n" } else { "\n" };
        std::fs::write(tmp.path().join("in.jsonl"), lines.join(sep)).unwrap();
        let mut cfg = ShardConfig::new(InputSpec::Path(tmp.path().join("in.jsonl")), Some(tmp.path().join("out")));
        cfg.max_requests = max_requests;
        cfg.max_bytes = max_bytes;
        cfg.max_embedding_inputs = max_inputs;
        cfg.common.on_error = ErrorMode::Skip;
        cfg.common.verbose = false;
        cfg.common.engine.threads = threads;
        let s = shard::run(&cfg).unwrap();
        let t = &s.totals;
        // Conservation: non-blank lines = requests + rejected.
        let nonblank = kinds.iter().filter(|k| !matches!(k, Kind::Blank)).count() as u64;
        prop_assert_eq!(t.lines, kinds.len() as u64);
        prop_assert_eq!(nonblank, t.requests + t.rejected);
        let rejects = std::fs::read_to_string(tmp.path().join("out/rejects.ndjson")).unwrap();
        prop_assert_eq!(rejects.lines().count() as u64, t.rejected);

        // Expected accepted lines per group, first occurrence of an id wins.
        let mut seen = HashSet::new();
        let mut expect: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (k, l) in kinds.iter().zip(&lines) {
            if let Kind::Good { id, model, embed, .. } = k {
                if l.len() as u64 + 1 > max_bytes || (*embed && 2 > max_inputs) || !seen.insert(*id) {
                    continue;
                }
                let url = if *embed { "/v1/embeddings" } else { "/v1/chat/completions" };
                expect.entry((url.to_string(), format!("m{model}"))).or_default().push(l.clone());
            }
        }
        let mut got: HashMap<(String, String), Vec<String>> = HashMap::new();
        for f in &s.shards {
            prop_assert!(f.requests <= max_requests);
            prop_assert!(f.bytes <= max_bytes);
            if let Some(n) = f.embedding_inputs { prop_assert!(n <= max_inputs); }
            let text = std::fs::read_to_string(tmp.path().join("out").join(&f.name)).unwrap();
            prop_assert_eq!(text.len() as u64, f.bytes);
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                prop_assert_eq!(v["url"].as_str().unwrap(), f.endpoint.as_str());
                prop_assert_eq!(v["body"]["model"].as_str().unwrap(), f.model.as_str());
            }
            got.entry((f.endpoint.clone(), f.model.clone())).or_default().extend(text.lines().map(str::to_owned));
        }
        prop_assert_eq!(got, expect);
    }
}
