#!/usr/bin/env bash
# Benchmark of `batchline extract` against the Python peer (json_repair), side by side in
# one run on the same results file.
#
#   benches/extract_bench.sh [MB]     (default 100: the size of the requests file generated)
#
# Data: gen_batch.py requests (--mb MB) then gen_batch.py results (30% loose answers) under
# /tmp/batchline-bench. Python: /tmp/jr-venv or /tmp/peers (created if neither exists).
# Prints each tool's time and MB/s over the results file, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-100}
SHARED=${SHARED:-/work/shared}
DIR=${BENCH_DIR:-/tmp/batchline-bench}
mkdir -p "$DIR"
REQ="$DIR/requests-$MB.jsonl"
OUT="$DIR/results-$MB.jsonl"
ERR="$DIR/errors-$MB.jsonl"
if [ ! -s "$OUT" ]; then
  python3 "$SHARED/tools/gen_batch.py" requests --mb "$MB" > "$REQ"
  python3 "$SHARED/tools/gen_batch.py" results "$REQ" --out "$OUT" --err "$ERR"
  rm -f "$REQ"
fi
PY=""
for p in /tmp/jr-venv/bin/python /tmp/peers/bin/python; do
  if [ -x "$p" ] && "$p" -c 'import json_repair' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
  python3 -m venv /tmp/peers && /tmp/peers/bin/pip install -q json_repair orjson
  PY=/tmp/peers/bin/python
fi
cargo build --release -q
BIN=target/release/batchline
BYTES=$(stat -c %s "$OUT")
echo "results file: $OUT ($((BYTES / 1000000)) MB, $(wc -l < "$OUT") lines), $(nproc) cores"

# Warm the page cache so both tools read from memory.
cat "$OUT" > /dev/null
T=/usr/bin/time
"$T" -f "%e %U %S" -o "$DIR/ours.time" "$BIN" extract "$OUT" -o "$DIR/records.jsonl" \
  --rejects "$DIR/rejects.jsonl" --json -q > "$DIR/summary.json" || [ $? -eq 1 ]
"$T" -f "%e %U %S" -o "$DIR/peer.time" "$PY" "$SHARED/bench/peers/extract_py.py" "$OUT" \
  > "$DIR/peer.jsonl" 2> "$DIR/peer.err"

python3 - "$BYTES" "$DIR" <<'PY'
import json, sys
b, d = int(sys.argv[1]), sys.argv[2]
def t(name):
    wall, user, sys_ = map(float, open(f"{d}/{name}.time").read().split()[-3:])
    return wall, user + sys_
(ow, oc), (pw, pc) = t("ours"), t("peer")
s = json.load(open(f"{d}/summary.json"))
mb = b / 1e6
print(f"batchline extract        : {ow:6.2f} s wall {mb / ow:7.1f} MB/s   cpu {oc:6.2f} s ({mb / oc:6.1f} MB/s per cpu-second)")
print(f"   {s['texts']} texts, {s['values']} values, {s['records']} records, {s['truncated']} truncated, "
      f"{s['rejected']} rejected {s['rejects']}")
print(f"extract_py (json_repair) : {pw:6.2f} s wall {mb / pw:7.1f} MB/s   cpu {pc:6.2f} s ({mb / pc:6.1f} MB/s per cpu-second)")
print(f"   {open(f'{d}/peer.err').read().strip()}")
print(f"ratio: {pw / ow:.1f}x wall-clock, {pc / oc:.1f}x cpu time")
PY
