#!/usr/bin/env bash
# Runs every storef test on a fresh Debian machine: installs the real clients the tests drive
# (ffmpeg, ...) when missing, then the Rust tests of the whole workspace, then a bounded fuzz run
# of each parser of untrusted bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "== cargo test (workspace)"
cargo test --workspace --all-targets -- --test-threads=2
cargo test --workspace --doc

if [ "${STOREF_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${STOREF_FUZZ_SECONDS:-60}"
fi
