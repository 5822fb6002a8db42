# Shared helpers for the side-by-side benchmark scripts (sourced, not run).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
GEN="python3 $SHARED/tools/gen_batch.py"
PEERS=$SHARED/bench/peers
DATA=${DATA:-/tmp/batchline-bench}
BL=${BL:-$ROOT/target/release/batchline}
mkdir -p "$DATA"

build_release() { (cd "$ROOT" && cargo build --release --quiet); }

# Python venv with the peers' libraries.
peer_python() {
  if [ ! -x /tmp/peers/bin/python ]; then
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install -q json_repair orjson tokenizers >&2
  fi
  echo /tmp/peers/bin/python
}

# measure LABEL BYTES CMD...: runs CMD once; prints label, wall seconds, MB/s, CPU seconds
# (user+sys, less sensitive to other load on the machine) and peak RSS.
measure() {
  local label=$1 bytes=$2; shift 2
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$DATA/.rss" "$@" > /dev/null 2> "$DATA/.err" || { echo "FAILED: $label"; cat "$DATA/.err"; return 1; }
  t1=$(date +%s.%N)
  rss=$(tail -1 "$DATA/.rss")
  python3 - "$label" "$bytes" "$t0" "$t1" $rss <<'PY'
import sys
label, b, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rss, user, sys_ = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
s = t1 - t0
print(f"| {label} | {s:.2f} s | {b/1e6/s:.0f} MB/s | {user+sys_:.2f} s | {rss/1024:.0f} MB |")
PY
  echo "$t0 $t1" > "$DATA/.last"
}
