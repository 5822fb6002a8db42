#!/usr/bin/env bash
# Benchmark: `batchline build` against the Python peer on the same prompt records, in
# one run. Not part of the test suite.
#
#   benches/build_bench.sh [SIZE_MB]       (default 1024; needs python3 and cargo)
#
# Environment: BENCH_DIR (default /tmp/batchline-build-bench), BATCHLINE_THREADS.
# The data file is generated once and reused (same seed, so the same bytes).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_DIR:-$here/../shared}
size_mb=${1:-1024}
dir=${BENCH_DIR:-/tmp/batchline-build-bench}
mkdir -p "$dir"
data=$dir/prompts-${size_mb}mb.jsonl

if [[ ! -s $data ]]; then
    # gen_batch.py prompts writes about 1,000 bytes per record (measured: 981 B/line).
    lines=$(( size_mb * 1024 * 1024 / 980 ))
    echo "generating $data ($lines records)..." >&2
    python3 "$shared/tools/gen_batch.py" prompts --lines "$lines" > "$data.tmp"
    mv "$data.tmp" "$data"
fi
bytes=$(stat -L -c %s "$data" 2>/dev/null || stat -L -f %z "$data")

(cd "$here" && cargo build --release --quiet)
bin=$here/target/release/batchline

# The same requests as the peer: fixed system prompt, template, id "<lang>-<id>".
system="You generate training scenarios. Reply with a JSON array of objects."
template=$'Write ten scenarios in {lang} about the following text:\n\n{text}'

# Runs a command with stdout to the file $1; prints "wall user+sys" seconds.
timed() {
    local out=$1 t
    shift
    t=$( { TIMEFORMAT='%R %U %S'; time "$@" > "$out"; } 2>&1 )
    set -- $t
    echo "$1 $(echo "$2 + $3" | bc -l)"
}

# Both write to stdout: once redirected to a file (on tmpfs when there is one, so that a
# slow disk does not decide), once to /dev/null (the transformation alone).
out_dir=${BENCH_OUT:-$( [[ -d /dev/shm ]] && echo /dev/shm || echo "$dir" )}
rs=("$bin" build "$data" --model gpt-4o-mini --system "$system" --template "$template"
    --id-template "{lang}-{id}" --temperature 0.7 --max-tokens 1024 -q)
py=(python3 "$shared/bench/peers/build_py.py" "$data" gpt-4o-mini)
# Warm the page cache so that neither tool pays for a cold read of the input.
cat "$data" > /dev/null
read -r rs_file rs_file_cpu < <(timed "$out_dir/bench-out-rs.jsonl" "${rs[@]}")
read -r py_file py_file_cpu < <(timed "$out_dir/bench-out-py.jsonl" "${py[@]}")
read -r rs_null rs_null_cpu < <(timed /dev/null "${rs[@]}")
read -r py_null py_null_cpu < <(timed /dev/null "${py[@]}")

# Same requests? (The peer sorts no keys and escapes like serde_json with
# ensure_ascii=False, except that it writes ", " and ": " separators.)
same=$(python3 - "$out_dir/bench-out-rs.jsonl" "$out_dir/bench-out-py.jsonl" <<'PY'
import json, sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
n = 0
for x, y in zip(a, b):
    if json.loads(x) != json.loads(y):
        print(f"differ at line {n + 1}"); sys.exit()
    n += 1
    if n == 20000:
        break
a.seek(0); b.seek(0)
na, nb = sum(1 for _ in a), sum(1 for _ in b)
print(f"first {n} requests identical, {na} and {nb} lines")
PY
)

rm -f "$out_dir/bench-out-rs.jsonl" "$out_dir/bench-out-py.jsonl"

mb=$(echo "$bytes / 1000000" | bc -l)
printf 'input: %s (%.0f MB, %s threads, load average %s on %s cores)\n' "$data" "$mb" \
    "${BATCHLINE_THREADS:-$(nproc)}" "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo ?)" "$(nproc)"
row() { # label wall cpu
    printf '%-28s %7.2f s wall %8.1f MB/s   %7.2f s cpu\n' "$1" "$2" "$(echo "$mb / $2" | bc -l)" "$3"
}
row "batchline build > $out_dir" "$rs_file" "$rs_file_cpu"
row "build_py.py     > $out_dir" "$py_file" "$py_file_cpu"
row "batchline build > /dev/null" "$rs_null" "$rs_null_cpu"
row "build_py.py     > /dev/null" "$py_null" "$py_null_cpu"
printf 'ratio (MB/s): %.1fx to a file, %.1fx to /dev/null\n' \
    "$(echo "$py_file / $rs_file" | bc -l)" "$(echo "$py_null / $rs_null" | bc -l)"
echo "check: $same"
