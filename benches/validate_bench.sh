#!/usr/bin/env bash
# Benchmark of `batchline validate` against the Python peer (HF `tokenizers`, encode_batch),
# side by side in one run on the same records and the same tokenizer files.
#
#   benches/validate_bench.sh [LINES] [THREADS]   (default 50000 records, all cores)
#
# Data: gen_batch.py scenarios --lines LINES under /tmp/batchline-bench; tokenizers: Llama 3
# and Qwen3 from scripts/fetch_tokenizers.sh (fetched if missing, sha256-checked) and the
# committed Claude file. Rules: the three acceptance rules of the issue. Python:
# /tmp/peers (created with `tokenizers` if missing). Prints each tool's wall and CPU seconds,
# MB/s and records/s (whole process, tokenizer loading included), the ratio, and whether
# the valid sets are identical (same records in the same order, compared as parsed JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-50000}
THREADS=${2:-}
SHARED=${SHARED:-/work/shared}
DIR=${BENCH_DIR:-/tmp/batchline-bench}
TOK=${TOKENIZERS_DIR:-/tmp/batchline-tokenizers}
mkdir -p "$DIR"
REC="$DIR/scenarios-$LINES.jsonl"
[ -s "$REC" ] || python3 "$SHARED/tools/gen_batch.py" scenarios --lines "$LINES" > "$REC"
[ -s "$TOK/llama3.json" ] && [ -s "$TOK/qwen3.json" ] || scripts/fetch_tokenizers.sh "$TOK" >&2
PY=/tmp/peers/bin/python
if ! { [ -x "$PY" ] && "$PY" -c 'import tokenizers' 2>/dev/null; }; then
  python3 -m venv /tmp/peers && /tmp/peers/bin/pip install -q tokenizers
fi
cargo build --release -q
BIN=target/release/batchline
CLAUDE=fixtures/tokenizers/claude.json
BYTES=$(stat -c %s "$REC")
echo "records: $REC ($LINES lines, $(awk "BEGIN{printf \"%.1f\", $BYTES/1e6}") MB), $(nproc) cores; tokenizers llama3, qwen3, claude"
cat "$REC" "$TOK/llama3.json" "$TOK/qwen3.json" "$CLAUDE" > /dev/null   # warm the page cache

T=/usr/bin/time
THR=()
[ -n "$THREADS" ] && THR=(--threads "$THREADS")
"$T" -f "%e %U %S %M" -o "$DIR/validate-ours.time" "$BIN" validate "$REC" -o "$DIR/validate-ours.jsonl" \
  --tokenizer "llama3=$TOK/llama3.json" --tokenizer "qwen3=$TOK/qwen3.json" --tokenizer "claude=$CLAUDE" \
  --rule 'same(tokens(prompt + " " + single_token))' \
  --rule 'same(tokens(prompt + " " + multi_token))' \
  --rule 'tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1' \
  --report "$DIR/validate-report.json" -q "${THR[@]}" || [ $? -eq 1 ]
"$T" -f "%e %U %S %M" -o "$DIR/validate-peer.time" "$PY" "$SHARED/bench/peers/validate_py.py" "$REC" \
  "$TOK/llama3.json" "$TOK/qwen3.json" "$CLAUDE" > "$DIR/validate-peer.jsonl" 2> "$DIR/validate-peer.err"

python3 - "$BYTES" "$LINES" "$DIR" <<'PY'
import json, sys
b, n, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def t(name):
    wall, user, sys_, rss = open(f"{d}/validate-{name}.time").read().split()[-4:]
    return float(wall), float(user) + float(sys_), int(rss) / 1024
def rows(path):
    return [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
(ow, oc, orss), (pw, pc, prss) = t("ours"), t("peer")
rep = json.load(open(f"{d}/validate-report.json"))
mb = b / 1e6
for label, w, c, rss in [("batchline validate", ow, oc, orss), ("validate_py (tokenizers)", pw, pc, prss)]:
    print(f"{label:26}: {w:6.2f} s wall  {mb / w:6.1f} MB/s  {n / w:8.0f} records/s   cpu {c:6.2f} s   peak {rss:5.0f} MB")
print(f"   batchline: tokenizers loaded in {rep['load_seconds']:.2f} s; reading + evaluating "
      f"{rep['throughput']['seconds']:.2f} s ({rep['throughput']['mb_per_s']:.0f} MB/s, "
      f"{rep['records_per_s']:.0f} records/s)")
print(f"   peer: {open(f'{d}/validate-peer.err').read().strip()}")
ours, peer = rows(f"{d}/validate-ours.jsonl"), rows(f"{d}/validate-peer.jsonl")
same = ours == peer
print(f"valid: batchline {len(ours)}, peer {len(peer)}; identical valid sets (same order): {'yes' if same else 'NO'}")
print(f"ratio: {pw / ow:.1f}x wall-clock, {pc / oc:.1f}x cpu time")
sys.exit(0 if same else 1)
PY
