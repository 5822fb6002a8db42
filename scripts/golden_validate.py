#!/usr/bin/env python3
"""Golden expectations for tests/validate.rs, computed with the Python `tokenizers` library.

Reads fixtures/scenarios.jsonl (made by `python3 ../shared/tools/gen_batch.py scenarios
--lines 200 --seed 7`) and writes fixtures/scenarios_golden.json:
  {"tokenizers": [...],
   "records": [{"custom_id", "index", "single": {NAME: n}, "multi": {NAME: n}}, ...],
   "valid": [[custom_id, index], ...]}
where single/multi are len(tok.encode(prompt + " " + single_token / multi_token,
add_special_tokens=False).ids), and `valid` lists, in input order, the records that pass the
three acceptance rules with every tokenizer:
  same(tokens(prompt + " " + single_token))
  same(tokens(prompt + " " + multi_token))
  tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1

Tokenizers: the committed claude.json and mistral-7b.json, and o200k_base from its HF
form gpt4o.json (fetched by scripts/fetch_tokenizers.sh into FETCHED_DIR, default
/tmp/batchline-tokenizers; the Rust side uses the embedded encoding).

Usage: python3 scripts/golden_validate.py [FETCHED_DIR]   (from the crate root; needs
`pip install tokenizers`)."""
import json, os, sys
import tokenizers
from tokenizers import Tokenizer

fetched = sys.argv[1] if len(sys.argv) > 1 else "/tmp/batchline-tokenizers"
files = {
    "claude": "fixtures/tokenizers/claude.json",
    "mistral": "fixtures/tokenizers/mistral-7b.json",
    "o200k": f"{fetched}/gpt4o.json",
}
for path in files.values():
    if not os.path.exists(path):
        sys.exit(f"missing {path}: run scripts/fetch_tokenizers.sh {fetched}")
toks = {name: Tokenizer.from_file(path) for name, path in files.items()}
recs = [json.loads(l) for l in open("fixtures/scenarios.jsonl", encoding="utf-8") if l.strip()]
out = {"tokenizers_version": tokenizers.__version__, "tokenizers": list(files), "records": [], "valid": []}
for r in recs:
    a = r["prompt"] + " " + r["single_token"]
    b = r["prompt"] + " " + r["multi_token"]
    single = {n: len(t.encode(a, add_special_tokens=False).ids) for n, t in toks.items()}
    multi = {n: len(t.encode(b, add_special_tokens=False).ids) for n, t in toks.items()}
    out["records"].append({"custom_id": r["custom_id"], "index": r["index"],
                           "single": single, "multi": multi})
    sv, mv = set(single.values()), set(multi.values())
    if len(sv) == 1 and len(mv) == 1 and mv.pop() - sv.pop() == 1:
        out["valid"].append([r["custom_id"], r["index"]])
with open("fixtures/scenarios_golden.json", "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"tokenizers {tokenizers.__version__}: {len(recs)} records, {len(out['valid'])} valid "
      "-> fixtures/scenarios_golden.json", file=sys.stderr)
