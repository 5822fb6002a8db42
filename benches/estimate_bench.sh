#!/usr/bin/env bash
# Throughput of `batchline estimate` (see README "### estimate").
# Usage: benches/estimate_bench.sh [MB]   (default 256; data is generated under /tmp)
# BL=path/to/batchline uses that binary instead of building target/release.
source "$(dirname "$0")/common.sh"
MB=${1:-256}
IN=$DATA/requests-$MB.jsonl
[ -s "$IN" ] || $GEN requests --mb "$MB" > "$IN"
BYTES=$(stat -L -c %s "$IN")
if [ -z "${BL_GIVEN:-}" ]; then build_release; fi
BL=${BL_GIVEN:-$BL}
echo "input: $IN ($BYTES bytes), $(nproc) cores"
echo "| command | wall | throughput | CPU | peak RSS |"
echo "|---|---|---|---|---|"
cat "$IN" > /dev/null   # warm page cache
measure "batchline estimate FILE" "$BYTES" "$BL" estimate "$IN" --quiet
measure "batchline estimate --threads 1" "$BYTES" "$BL" estimate "$IN" --quiet --threads 1
measure "batchline estimate - (stdin)" "$BYTES" sh -c "'$BL' estimate - --quiet < '$IN'"
measure "batchline shard --check --max-tokens (same token counting)" "$BYTES" sh -c "'$BL' shard '$IN' --check --max-tokens 1000000000 --quiet > /dev/null"
