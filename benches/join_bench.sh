#!/usr/bin/env bash
# Benchmark `batchline join` against the Python peer (json and orjson), side by side.
#
#   benches/join_bench.sh [SIZE_MB] [DATA_DIR]      (default: 1024 MB in /tmp/batchline-join-bench)
#
# Generates SIZE_MB of requests and their results with ../shared/tools/gen_batch.py (once;
# kept in DATA_DIR), builds the release binary, then runs, one after the other on the same
# data, each writing its joined output to a file in DATA_DIR:
#   batchline join REQ OUT ERR > joined     (like the peer: stdout to a file, no fsync;
#                                            run before and after the peers, slower counts)
#   batchline join REQ OUT ERR -o joined    (atomic output: synced to disk, then renamed)
#   join_py.py (json), join_py.py --orjson
# and prints wall time, MB/s over the input bytes (requests + results), ratios and peak
# RSS (/usr/bin/time), and CPU seconds (user + system: steadier than wall time on a
# shared machine; batchline uses every core, the peers one). Set BATCHLINE_THREADS to limit batchline's threads.
set -euo pipefail

SIZE_MB=${1:-1024}
DIR=${2:-/tmp/batchline-join-bench}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$(cd "$HERE/.." && pwd)/shared}
[ -d "$SHARED/tools" ] || SHARED=/work/shared
GEN=$SHARED/tools/gen_batch.py
PEER=$SHARED/bench/peers/join_py.py
VENV=${VENV:-/tmp/peers}

mkdir -p "$DIR"
REQ=$DIR/req-$SIZE_MB.jsonl
OUT=$DIR/out-$SIZE_MB.jsonl
ERR=$DIR/err-$SIZE_MB.jsonl
if [ ! -s "$ERR" ]; then
    echo "generating $SIZE_MB MB of requests and their results in $DIR ..." >&2
    python3 "$GEN" requests --mb "$SIZE_MB" > "$REQ.tmp" && mv "$REQ.tmp" "$REQ"
    python3 "$GEN" results "$REQ" --out "$OUT.tmp" --err "$ERR.tmp"
    mv "$OUT.tmp" "$OUT" && mv "$ERR.tmp" "$ERR"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import orjson" 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q orjson json_repair tokenizers
fi
(cd "$HERE" && cargo build --release -q)
BIN=$HERE/target/release/batchline

IN_BYTES=$(( $(stat -L -c %s "$REQ") + $(stat -L -c %s "$OUT") + $(stat -L -c %s "$ERR") ))
echo "input: $(stat -L -c %s "$REQ") bytes of requests, $(( $(stat -L -c %s "$OUT") + $(stat -L -c %s "$ERR") )) bytes of results; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A SECS RSS CPU
measure() { # name, command...
    local name=$1; shift
    local tf; tf=$(mktemp)
    sync; cat "$REQ" "$OUT" "$ERR" > /dev/null  # same warm page cache for everyone
    # Let the machine settle: after a peer frees its 3 to 4 GB, the VM hands that memory
    # back to the host for a few seconds, on the same 2 cores.
    sleep 5
    /usr/bin/time -f "%e %M %U %S" -o "$tf" "$@"
    local u sy
    read -r SECS[$name] RSS[$name] u sy < "$tf"
    CPU[$name]=$(awk -v u="$u" -v s="$sy" 'BEGIN { print u + s }')
    rm -f "$tf"
}

measure batchline sh -c "'$BIN' join -q '$REQ' '$OUT' '$ERR' > '$DIR/joined-bl.jsonl'"
measure batchline_o "$BIN" join -q "$REQ" "$OUT" "$ERR" -o "$DIR/joined-bl-o.jsonl"
measure py_json sh -c "'$VENV/bin/python' '$PEER' '$REQ' '$OUT' '$ERR' > '$DIR/joined-py.jsonl' 2>/dev/null"
measure py_orjson sh -c "'$VENV/bin/python' '$PEER' '$REQ' '$OUT' '$ERR' --orjson > '$DIR/joined-pyo.jsonl' 2>/dev/null"
# Once more after the peers (the machine's load drifts): the slower run counts.
measure batchline2 sh -c "'$BIN' join -q '$REQ' '$OUT' '$ERR' > '$DIR/joined-bl.jsonl'"
echo "batchline runs: ${SECS[batchline]} s and ${SECS[batchline2]} s wall, ${CPU[batchline]} and ${CPU[batchline2]} CPU-s"
CPU[batchline]=$(awk -v a="${CPU[batchline]}" -v b="${CPU[batchline2]}" 'BEGIN { print (a > b ? a : b) }')
SECS[batchline]=$(awk -v a="${SECS[batchline]}" -v b="${SECS[batchline2]}" 'BEGIN { print (a > b ? a : b) }')
RSS[batchline]=$(( RSS[batchline] > RSS[batchline2] ? RSS[batchline] : RSS[batchline2] ))

# Same requests, same statuses, same order.
for f in joined-bl-o joined-py; do
    if ! cmp -s <(grep -o '"status": *"[a-z]*"' "$DIR/joined-bl.jsonl" | tr -d ' ') \
               <(grep -o '"status": *"[a-z]*"' "$DIR/$f.jsonl" | tr -d ' '); then
        echo "WARNING: statuses differ between joined-bl and $f" >&2
    fi
done

printf '%-38s %9s %9s %9s %9s %9s %10s\n' tool seconds MB/s speedup CPU-s "CPU ratio" "peak RSS"
for name in batchline batchline_o py_json py_orjson; do
    s=${SECS[$name]}; m=${RSS[$name]}; c=${CPU[$name]}
    case $name in
        batchline) label="batchline join (> file, slower of 2)";;
        batchline_o) label="batchline join -o (atomic, fsync)";;
        py_json) label="join_py.py (json)";;
        py_orjson) label="join_py.py --orjson";;
    esac
    awk -v l="$label" -v s="$s" -v m="$m" -v c="$c" -v b="$IN_BYTES" -v base="${SECS[py_json]}" -v cbase="${CPU[py_json]}" \
        'BEGIN { printf "%-38s %9.2f %9.0f %8.1fx %9.2f %8.1fx %7.0f MB\n", l, s, b/1e6/s, base/s, c, cbase/c, m/1024 }'
done
awk -v a="${SECS[batchline]}" -v j="${SECS[py_json]}" -v o="${SECS[py_orjson]}" -v m="${RSS[batchline]}" \
    'BEGIN { printf "batchline vs json peer: %.1fx (target 20x); vs orjson peer: %.1fx (target 5x); peak RSS %.0f MB (target 512)\n", j/a, o/a, m/1024 }'
rm -f "$DIR"/joined-*.jsonl
