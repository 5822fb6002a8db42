#!/usr/bin/env bash
# Benchmark of `batchline download` (not a test): a ~1 GB batch output file served by a
# local `batchline serve --echo`, downloaded by `batchline download JOB` and by `curl`
# on the same URL, side by side in one run, alternating, RUNS times each: wall seconds,
# MB/s, CPU seconds and peak RSS (/usr/bin/time). batchline writes through a partial
# file, counts lines, fsyncs and renames (also shown with --no-sync); curl just writes.
#
#   benches/download_bench.sh                  # RUNS=3, 1,050 requests x n=128 (~1.0 GB)
#   RUNS=5 LINES=500 benches/download_bench.sh # smaller file
#
# The output file: LINES chat requests whose last user message is ~8 KB of text, with
# `n: 128`: the echo model answers each with 128 copies of its text, so the output
# (~0.97 MB a line) is ~1.0 GB from a ~9 MB input. The job goes through shard, submit and
# wait like any other. Needs a release build (cargo build --release; BATCHLINE_BIN=PATH
# to use another binary). Server and
# clients share the machine's cores; the file is served from the page cache.
source "$(dirname "$0")/common.sh"
BL=${BATCHLINE_BIN:-$BL}
RUNS=${RUNS:-3}
LINES=${LINES:-1050}
DIR=$DATA/download
mkdir -p "$DIR"
[ -x "$BL" ] || { echo "build first: cargo build --release" >&2; exit 2; }

REQ=$DIR/requests-$LINES.jsonl
if [ ! -s "$REQ" ]; then
  python3 - "$LINES" > "$REQ" <<'PY'
import json, random, sys
rng = random.Random(7)
words = "the batch api writes one result line per request in any order so a client must join them back".split()
for i in range(int(sys.argv[1])):
    text = " ".join(rng.choice(words) for _ in range(1500))[:8000]
    print(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "gpt-4o-mini", "n": 128,
                               "messages": [{"role": "user", "content": text}]}}))
PY
fi

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}
trap stop_server EXIT
rm -rf "$DIR/serve-data" "$DIR/job"
"$BL" serve --echo --port 0 --data-dir "$DIR/serve-data" > "$DIR/serve.out" 2> "$DIR/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 1200); do
  grep -q '^listening on ' "$DIR/serve.out" 2>/dev/null && break
  sleep 0.05
done
URL=$(sed -n 's/^listening on //p' "$DIR/serve.out" | head -1)
[ -n "$URL" ] || { echo "serve did not start" >&2; cat "$DIR/serve.err" >&2; exit 2; }
export OPENAI_BASE_URL=$URL/v1
unset OPENAI_API_KEY AZURE_OPENAI_API_KEY

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BL" shard "$REQ" --out-dir "$DIR/job" -q
"$BL" submit "$DIR/job" -q
"$BL" wait "$DIR/job" -q
OUT_ID=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); print(l["rounds"][0]["shards"][0]["batch"]["output_file_id"])' "$DIR/job/ledger.json")
BYTES=$(curl -sf "$URL/v1/files/$OUT_ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
echo "output file $OUT_ID: $BYTES bytes ($(awk "BEGIN{printf \"%.2f\", $BYTES/1e9}") GB), $LINES lines"
# Warm the server's page cache once.
curl -sf "$URL/v1/files/$OUT_ID/content" -o /dev/null

# one LABEL CMD...: runs CMD under /usr/bin/time -v; prints a table row.
one() {
  local label=$1; shift
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$DIR/.time" "$@" > "$DIR/.out" 2> "$DIR/.err" || { echo "FAILED: $label"; tail -5 "$DIR/.err"; return 1; }
  t1=$(date +%s.%N)
  python3 - "$label" "$BYTES" "$t0" "$t1" "$DIR/.time" <<'PY'
import sys
label, b, t0, t1, tf = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
f = {}
for line in open(tf):
    k, _, v = line.strip().rpartition(": ")
    f[k] = v
rss = int(f["Maximum resident set size (kbytes)"])
cpu = float(f["User time (seconds)"]) + float(f["System time (seconds)"])
s = t1 - t0
print(f"| {label} | {s:.2f} s | {b/1e6/s:.0f} MB/s | {cpu:.2f} s | {rss/1024:.1f} MB |")
PY
}

echo "| client | wall | speed | CPU (user+sys) | peak RSS |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$RUNS"); do
  rm -f "$DIR/curl.jsonl"
  one "curl (run $r)" curl -sf "$URL/v1/files/$OUT_ID/content" -o "$DIR/curl.jsonl"
  rm -rf "$DIR/job/results"
  one "batchline download (run $r)" "$BL" download "$DIR/job" -q
  rm -rf "$DIR/job/results"
  one "batchline download --no-sync (run $r)" "$BL" download "$DIR/job" -q --no-sync
done
cmp "$DIR/curl.jsonl" "$DIR/job/results/round-0/"*.output.jsonl && echo "identical bytes: curl and batchline"
rm -f "$DIR/curl.jsonl"
rm -rf "$DIR/job/results"
