#!/usr/bin/env bash
# Benchmark of `batchline run` (not a test): side by side with the seeds' pattern
# (../shared/bench/peers/run_py.py: a thread pool of the official openai SDK with
# retries) against the same local `batchline serve --echo`, in requests/s and CPU
# seconds of the client (user+sys), then the RPM limit held in every 60-second window
# of the server's clock (the `created` second of each answer).
#
#   benches/run_bench.sh                 # all three parts
#   N=20000 N_LAT=20000 PARTS="fast latency rpm" benches/run_bench.sh
#
# Needs a release build (cargo build --release) and a venv with openai at
# /tmp/sdkvenv (created here when missing). The server runs on the same machine and
# takes its share of the cores: figures are for client and server together.
source "$(dirname "$0")/common.sh"
N=${N:-10000}
N_LAT=${N_LAT:-20000}
CONC=${CONC:-64}
PARTS=${PARTS:-"fast latency rpm"}
PY=/tmp/sdkvenv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import openai' 2>/dev/null; then
  python3 -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install -q openai >&2
fi
[ -x "$BL" ] || { echo "build first: cargo build --release" >&2; exit 2; }

REQ=$DATA/run_requests.jsonl
[ -s "$REQ.$N_LAT" ] || $GEN requests --lines "$N_LAT" --seed 7 > "$REQ.$N_LAT"
head -n "$N" "$REQ.$N_LAT" > "$REQ.$N"

SERVER_PID=
start_server() {  # start_server ARGS...: sets URL
  stop_server
  rm -rf "$DATA"/serve-data.*
  # The last server's first line must not be taken for this one's (a race: the
  # shell truncates serve.out in the child, after the wait below may have begun).
  rm -f "$DATA/serve.out"
  "$BL" serve --echo --port 0 --data-dir "$DATA/serve-data.$$.$RANDOM" "$@" > "$DATA/serve.out" 2> "$DATA/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 1 1200); do
    grep -q '^listening on ' "$DATA/serve.out" 2>/dev/null && break
    sleep 0.05
  done
  URL=$(sed -n 's/^listening on //p' "$DATA/serve.out" | head -1)
  [ -n "$URL" ] || { echo "serve did not start" >&2; cat "$DATA/serve.err" >&2; exit 2; }
}
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}
trap stop_server EXIT

# CPU seconds (user + sys) the server has used so far, from /proc.
server_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"
}

# client LABEL N CMD...: runs CMD; prints requests/s, wall, the client's CPU seconds
# and the server's CPU seconds during the run (both also per request: unlike wall
# clock, they hardly move with the load of other work on the machine).
client() {
  local label=$1 n=$2; shift 2
  local t0 t1 s0 s1
  s0=$(server_cpu)
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$DATA/.time" "$@" > "$DATA/.client.out" 2> "$DATA/.client.err" \
    || { echo "FAILED: $label"; tail -5 "$DATA/.client.err"; return 0; }
  t1=$(date +%s.%N)
  s1=$(server_cpu)
  python3 - "$label" "$n" "$t0" "$t1" $(tail -1 "$DATA/.time") "$s0" "$s1" <<'PY'
import sys
label, n, t0, t1, u, s, rss, s0, s1 = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:10])
w, c, srv = t1 - t0, u + s, s1 - s0
print(f"| {label} | {n} | {w:.2f} s | {n/w:.0f} req/s | {c:.2f} s | {c/n*1e6:.0f} us | {srv:.2f} s | {srv/n*1e6:.0f} us | {rss/1024:.0f} MB |")
PY
}

header() {
  echo "| client | requests | wall | requests/s | client CPU | client CPU per request | server CPU | server CPU per request | client peak RSS |"
  echo "|---|---|---|---|---|---|---|---|---|"
}

echo "$(date -u '+%F %T UTC'); $(uptime | sed 's/.*load/load/'); $(nproc) cores"

if [[ " $PARTS " == *" fast "* ]]; then
  echo "## no model latency, concurrency $CONC ($N requests, gen_batch.py --seed 7)"
  header
  start_server --concurrency 64
  rm -f "$DATA/run_out.jsonl"
  client "batchline run" "$N" "$BL" run "$REQ.$N" -o "$DATA/run_out.jsonl" --base-url "$URL/v1" --concurrency "$CONC" --quiet --no-sync
  client "run_py.py (openai SDK, $CONC threads)" "$N" "$PY" "$PEERS/run_py.py" "$REQ.$N" --base-url "$URL/v1" --workers "$CONC"
  echo
fi

if [[ " $PARTS " == *" latency "* ]]; then
  echo "## --latency-ms 200, concurrency 500 ($N_LAT requests; ideal 2,500 req/s)"
  header
  start_server --latency-ms 200ms
  rm -f "$DATA/run_out.jsonl"
  client "batchline run" "$N_LAT" "$BL" run "$REQ.$N_LAT" -o "$DATA/run_out.jsonl" --base-url "$URL/v1" --concurrency 500 --quiet --no-sync
  # Steady state, from the server's clock: answers per whole second between the first
  # and the last (embeddings carry no timestamp: scaled by the share that does).
  python3 - "$DATA/run_out.jsonl" <<'PY2'
import json, sys, collections, statistics
per, total, stamped = collections.Counter(), 0, 0
for l in open(sys.argv[1]):
    b = json.loads(l)["response"]["body"]
    t = b.get("created") or b.get("created_at")
    total += 1
    if t:
        per[t] += 1
        stamped += 1
inner = [per[t] for t in sorted(per)[1:-1]]
if inner:
    print(f"batchline run, steady state (server clock): median {statistics.median(inner) * total / stamped:.0f} req/s over {len(inner)} whole seconds")
PY2
  client "run_py.py (openai SDK, 500 threads)" "$N_LAT" "$PY" "$PEERS/run_py.py" "$REQ.$N_LAT" --base-url "$URL/v1" --workers 500
  echo
fi

if [[ " $PARTS " == *" rpm "* ]]; then
  RPM=${RPM:-1200}
  N_RPM=${N_RPM:-1800}
  echo "## --rpm $RPM on the server, none given to run ($N_RPM requests)"
  # Chat requests only: every answer then carries the server's `created` second.
  [ -s "$REQ.chat.$N_RPM" ] || $GEN requests --lines $((N_RPM * 2)) --models 1 --seed 8 > "$REQ.chat.$N_RPM"
  start_server --rpm "$RPM"
  rm -f "$DATA/run_out.jsonl"
  "$BL" run "$REQ.chat.$N_RPM" -o "$DATA/run_out.jsonl" --base-url "$URL/v1" --concurrency 64 --json --quiet \
    < /dev/null > "$DATA/rpm_summary.json" 2>/dev/null &
  RUN_PID=$!
  # Only the first N_RPM requests: stop the run (Ctrl-C) once they are answered.
  while [ "$( (cat "$DATA/run_out.jsonl" 2>/dev/null || true) | wc -l)" -lt "$N_RPM" ]; do sleep 1; done
  kill -INT "$RUN_PID"; wait "$RUN_PID" || true
  python3 - "$DATA/run_out.jsonl" "$DATA/rpm_summary.json" "$RPM" <<'PY'
import json, sys, collections
per, unstamped = collections.Counter(), 0
for l in open(sys.argv[1]):
    b = json.loads(l)["response"]["body"]
    t = b.get("created") or b.get("created_at")
    if t:
        per[t] += 1
    else:
        unstamped += 1  # embeddings carry no timestamp
s = json.load(open(sys.argv[2]))
lo, hi = min(per), max(per)
worst = max(sum(per[t] for t in range(a, a + 60)) for a in range(lo, max(lo, hi - 59) + 1))
print(f"answers: {sum(per.values())} over {hi - lo + 1} s of the server's clock; "
      f"most in any 60 s window: {worst} (limit {sys.argv[3]}); 429s: {s['rate_limited']}; "
      f"busiest second: {max(per.values())}; {unstamped} answers without a timestamp not counted; "
      f"run's summary: {s['requests_per_s']} req/s over {s['seconds']} s")
PY
fi
