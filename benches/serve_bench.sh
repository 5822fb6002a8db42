#!/usr/bin/env bash
# Benchmark of `batchline serve --echo`:
#   1. a LINES-request batch (default 50,000, one model) from upload to downloaded output:
#      wall time of each step and of the whole, the server's peak RSS;
#   2. a ~190 MB batch upload on a fresh server: how much it raises the server's peak RSS
#      (the body is streamed to disk; the target is < 64 MB);
#   3. the direct chat endpoint under load: examples/serve_load.rs with CONNS connections
#      for SECS seconds (requests/s, p50/p99 latency), client and server on the same cores.
#
#   benches/serve_bench.sh [LINES] [CONNS] [SECS]     (default 50000 32 10)
#
# Data: gen_batch.py requests --models 1 under /tmp/batchline-bench/serve. Servers bind
# 127.0.0.1 on a free port and are stopped with SIGTERM (their PIDs only).
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-50000}
CONNS=${2:-32}
SECS=${3:-10}
SHARED=${SHARED:-/work/shared}
DIR=${BENCH_DIR:-/tmp/batchline-bench}/serve
mkdir -p "$DIR"
cargo build --release -q --bin batchline --example serve_load
BIN=target/release/batchline
LOAD=target/release/examples/serve_load
REQ=$DIR/requests-$LINES.jsonl
BIG=$DIR/requests-190mb.jsonl
[ -s "$REQ" ] || python3 "$SHARED/tools/gen_batch.py" requests --lines "$LINES" --models 1 > "$REQ"
[ -s "$BIG" ] || python3 "$SHARED/tools/gen_batch.py" requests --mb 190 --models 1 > "$BIG"
ENDPOINT=$(head -1 "$REQ" | python3 -c 'import json,sys;print(json.load(sys.stdin)["url"])')

PID=
URL=
start_server() {
  rm -rf "$1"
  : > "$DIR/server.out"
  "$BIN" serve --echo --port 0 --data-dir "$1" > "$DIR/server.out" 2> "$DIR/server.err" &
  PID=$!
  for _ in $(seq 200); do [ -s "$DIR/server.out" ] && break; sleep 0.05; done
  URL=$(head -1 "$DIR/server.out" | sed 's/^listening on //')
}
stop_server() { kill -TERM "$PID"; wait "$PID" || true; }
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null || true' EXIT
status_kb() { awk -v k="$1:" '$1==k{print $2}' "/proc/$PID/status"; }
field() { python3 -c "import json,sys;print(json.load(sys.stdin)$1)"; }
now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.2f\", $2-$1}"; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. A whole batch.
start_server "$DIR/data-batch"
cat "$REQ" > /dev/null
t0=$(now)
FID=$(curl -sf "$URL/v1/files" -F purpose=batch -F "file=@$REQ" | field '["id"]')
t1=$(now)
BID=$(curl -sf "$URL/v1/batches" -H 'content-type: application/json' \
  -d "{\"input_file_id\":\"$FID\",\"endpoint\":\"$ENDPOINT\",\"completion_window\":\"24h\"}" | field '["id"]')
while :; do
  B=$(curl -sf "$URL/v1/batches/$BID")
  case $(echo "$B" | field '["status"]') in completed|failed|expired|cancelled) break ;; esac
  sleep 0.1
done
t2=$(now)
OUT=$(echo "$B" | field '["output_file_id"]')
curl -sf "$URL/v1/files/$OUT/content" -o "$DIR/output.jsonl"
t3=$(now)
PEAK=$(status_kb VmHWM)
stop_server
echo "batch: $LINES requests ($(stat -c %s "$REQ") bytes), status $(echo "$B" | field '["status"]'), counts $(echo "$B" | field '["request_counts"]')"
echo "batch: output $(wc -l < "$DIR/output.jsonl") lines, $(stat -c %s "$DIR/output.jsonl") bytes"
echo "batch: upload $(secs "$t0" "$t1") s, create→completed $(secs "$t1" "$t2") s, download $(secs "$t2" "$t3") s, total $(secs "$t0" "$t3") s; server peak RSS $((PEAK / 1024)) MB"

# 2. A big upload's memory.
start_server "$DIR/data-upload"
RSS0=$(status_kb VmRSS)
cat "$BIG" > /dev/null
t0=$(now)
curl -sf "$URL/v1/files" -F purpose=batch -F "file=@$BIG" > /dev/null
t1=$(now)
HWM=$(status_kb VmHWM)
stop_server
echo "upload: $(stat -c %s "$BIG") bytes in $(secs "$t0" "$t1") s; RSS before $((RSS0 / 1024)) MB, peak after $((HWM / 1024)) MB: increase $(((HWM - RSS0) / 1024)) MB (target < 64 MB)"

# 3. The direct chat endpoint under load.
start_server "$DIR/data-load"
"$LOAD" "$URL" "$CONNS" 1 > /dev/null   # warm-up
R=$("$LOAD" "$URL" "$CONNS" "$SECS")
PEAK=$(status_kb VmHWM)
stop_server
echo "chat: $CONNS connections, $SECS s: $R; server peak RSS $((PEAK / 1024)) MB"
