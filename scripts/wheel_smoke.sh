#!/usr/bin/env bash
# Builds the pip wheel (pyproject.toml: maturin, bindings = "bin"), installs it into a
# fresh venv and runs batchline from that venv's PATH on the shipped fixture. .ci/run calls
# it after scripts/test.sh; the dev profile reuses target/debug (only the binary is linked
# again), so it adds about 15-20 s there (more the first time maturin is installed).
# PROFILE=release builds the wheel users get (`pip install .` does the same).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dev}"
tools="${BATCHLINE_MATURIN_VENV:-$PWD/target/maturin-venv}"
if ! "$tools/bin/maturin" --version >/dev/null 2>&1; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check 'maturin>=1.5,<2'
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$tools/bin/maturin" build --profile "$profile" --out "$work/wheels"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$work"/wheels/batchline-*.whl
export PATH="$work/venv/bin:$PATH"
test "$(command -v batchline)" = "$work/venv/bin/batchline"
batchline --version
batchline shard fixtures/requests.jsonl --out-dir "$work/shards" --json > "$work/summary.json"
python3 - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
summary = json.loads((work / "summary.json").read_text())
json.loads((work / "shards" / "manifest.json").read_text())
lines = sum(len(p.read_text().splitlines()) for p in (work / "shards").glob("*.jsonl"))
assert summary["lines"] == 200 and lines == 200, (summary, lines)
print(f"wheel ok: batchline from the venv sharded 200 requests into {len(list((work / 'shards').glob('*.jsonl')))} files")
PY
