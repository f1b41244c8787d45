#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each for the MP4 demuxer, a
# third of that for the others). Only the stable toolchain exists here, hence RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for dir in */fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate="$(dirname "$dir")"
  for target in $(cd "$crate" && cargo fuzz list); do
    t=$(( secs / 4 )); [ "$target" = mp4_index ] && t=$secs
    echo "== fuzz $crate/$target for ${t}s"
    corpus="$crate/fuzz/corpus/$target"; mkdir -p "$corpus"
    seeds=()
    [ -d "$crate/fuzz/seeds/$target" ] && seeds+=("$crate/fuzz/seeds/$target")
    (cd "$crate" && cargo fuzz run "$target" "fuzz/corpus/$target" ${seeds[@]+"${seeds[@]/#$crate\//}"} -- -max_total_time="$t" -rss_limit_mb=2048 2>&1 | tail -n 3)
  done
done
