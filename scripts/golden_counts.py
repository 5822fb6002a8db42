#!/usr/bin/env python3
"""Golden token counts with the Python `tokenizers` library (the reference).

Reads fixtures/tokenizers/texts.jsonl (one JSON string per line) and writes
fixtures/tokenizers/golden.jsonl: one line per text, {"i": index, NAME: [count without
special tokens, count with special tokens], ...}.

Tokenizers: the committed claude.json and mistral-7b.json, plus, from the directory filled
by scripts/fetch_tokenizers.sh (default /tmp/batchline-tokenizers): llama3, qwen3, and the
HF forms of the OpenAI encodings (gpt4o.json -> "o200k_base", gpt35turbo.json ->
"cl100k_base"), which the Rust tests compare with bpe-openai.

Usage: python3 scripts/golden_counts.py [FETCHED_DIR]   (run from the crate root; needs
`pip install tokenizers`)."""
import json, os, sys
import tokenizers
from tokenizers import Tokenizer

fetched = sys.argv[1] if len(sys.argv) > 1 else "/tmp/batchline-tokenizers"
here = "fixtures/tokenizers"
files = {
    "claude": f"{here}/claude.json",
    "mistral-7b": f"{here}/mistral-7b.json",
    "llama3": f"{fetched}/llama3.json",
    "qwen3": f"{fetched}/qwen3.json",
    "o200k_base": f"{fetched}/gpt4o.json",
    "cl100k_base": f"{fetched}/gpt35turbo.json",
}
for name, path in files.items():
    if not os.path.exists(path):
        sys.exit(f"missing {path}: run scripts/fetch_tokenizers.sh {fetched}")
toks = {name: Tokenizer.from_file(path) for name, path in files.items()}
texts = [json.loads(l) for l in open(f"{here}/texts.jsonl", encoding="utf-8")]
with open(f"{here}/golden.jsonl", "w", encoding="utf-8") as out:
    for i, t in enumerate(texts):
        row = {"i": i}
        for name, tok in toks.items():
            row[name] = [len(tok.encode(t, add_special_tokens=False).ids),
                         len(tok.encode(t, add_special_tokens=True).ids)]
        out.write(json.dumps(row) + "\n")
print(f"tokenizers {tokenizers.__version__}: {len(texts)} texts -> {here}/golden.jsonl",
      file=sys.stderr)
