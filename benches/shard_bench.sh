#!/usr/bin/env bash
# Side-by-side benchmark of `batchline shard` (see README "Benchmarks").
# Usage: benches/shard_bench.sh [MB]   (default 1024; data is generated under /tmp)
source "$(dirname "$0")/common.sh"
MB=${1:-1024}
IN=$DATA/requests-$MB.jsonl
[ -s "$IN" ] || $GEN requests --mb "$MB" > "$IN"
BYTES=$(stat -L -c %s "$IN")
build_release
PY=$(peer_python)
echo "input: $IN ($BYTES bytes), $(nproc) cores"
echo "| command | wall | throughput | CPU | peak RSS |"
echo "|---|---|---|---|---|"
out() { rm -rf "$DATA/out"; mkdir -p "$DATA/out"; }
cat "$IN" > /dev/null   # warm page cache: every row reads the same cached input
out; measure "cat FILE > OUT (disk floor)" "$BYTES" sh -c "cat '$IN' > '$DATA/out/cat'"
out; measure "split -C 200000000 (no checks)" "$BYTES" split -C 200000000 "$IN" "$DATA/out/x"
out; measure "batchline shard" "$BYTES" "$BL" shard "$IN" --out-dir "$DATA/out/s" --quiet
out; measure "batchline shard --no-sync" "$BYTES" "$BL" shard "$IN" --out-dir "$DATA/out/s" --quiet --no-sync
out; measure "batchline shard - (stdin)" "$BYTES" sh -c "'$BL' shard - --out-dir '$DATA/out/s' --quiet < '$IN'"
out; measure "batchline shard --check" "$BYTES" sh -c "'$BL' shard '$IN' --out-dir '$DATA/out/s' --check --quiet > /dev/null"
out; measure "shard_py.py --check (json)" "$BYTES" "$PY" "$PEERS/shard_py.py" "$IN" "$DATA/out/p" --check
out; measure "shard_py.py --check --orjson" "$BYTES" "$PY" "$PEERS/shard_py.py" "$IN" "$DATA/out/p" --check --orjson
out; measure "shard_py.py (json, writes)" "$BYTES" "$PY" "$PEERS/shard_py.py" "$IN" "$DATA/out/p"
rm -rf "$DATA/out"
