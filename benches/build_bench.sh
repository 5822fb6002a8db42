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
bytes=$(stat -c %s "$data" 2>/dev/null || stat -f %z "$data")

(cd "$here" && cargo build --release --quiet)
bin=$here/target/release/batchline

# The same requests as the peer: fixed system prompt, template, id "<lang>-<id>".
system="You generate training scenarios. Reply with a JSON array of objects."
template=$'Write ten scenarios in {lang} about the following text:\n\n{text}'

secs() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

# Warm the page cache so both read from memory.
cat "$data" > /dev/null

t_rs=$(secs "$bin" build "$data" --model gpt-4o-mini --system "$system" --template "$template" \
    --id-template "{lang}-{id}" --temperature 0.7 --max-tokens 1024 -o "$dir/out-rs.jsonl" -q)
t_py=$(secs python3 "$shared/bench/peers/build_py.py" "$data" gpt-4o-mini > "$dir/out-py.jsonl")

# Same requests? (The peer sorts no keys and escapes like serde_json with
# ensure_ascii=False, except that it writes ", " and ": " separators.)
same=$(python3 - "$dir/out-rs.jsonl" "$dir/out-py.jsonl" <<'PY'
import json, sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
n = 0
for x, y in zip(a, b):
    if json.loads(x) != json.loads(y):
        print(f"differ at line {n + 1}"); sys.exit()
    n += 1
    if n == 20000:
        break
print(f"first {n} requests identical")
PY
)

mb=$(echo "$bytes / 1000000" | bc -l)
rs=$(echo "$mb / $t_rs" | bc -l)
py=$(echo "$mb / $t_py" | bc -l)
printf 'input: %s (%.0f MB, %s threads)\n' "$data" "$mb" "${BATCHLINE_THREADS:-$(nproc)}"
printf 'batchline build: %7.2f s  %8.1f MB/s\n' "$t_rs" "$rs"
printf 'build_py.py:     %7.2f s  %8.1f MB/s\n' "$t_py" "$py"
printf 'ratio:           %7.1fx\n' "$(echo "$rs / $py" | bc -l)"
echo "check: $same"
