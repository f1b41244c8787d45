#!/bin/sh
# Builds GStreamer's `whipsink` (crates.io gst-plugin-webrtchttp 0.15.4) against Debian's GStreamer
# 1.22 into CACHE/target/release/libgstwebrtchttp.so, once; later calls return at once.
# Its defaults need GStreamer 1.24 and aws-lc, hence --no-default-features --features rustls-ring.
# Needs: gstreamer1.0-tools gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-nice
#        libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev pkg-config
# usage: build-whipsink.sh CACHE
set -eu
cache=${1:?usage: build-whipsink.sh CACHE}
so="$cache/target/release/libgstwebrtchttp.so"
[ -f "$so" ] && exit 0
mkdir -p "$cache/fetch/src"
cat > "$cache/fetch/Cargo.toml" <<EOF
[package]
name = "whipsink-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
gst-plugin-webrtchttp = { version = "=0.15.4", default-features = false, features = ["rustls-ring"] }
[workspace]
EOF
: > "$cache/fetch/src/lib.rs"
(cd "$cache/fetch" && cargo fetch)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/gst-plugin-webrtchttp-0.15.4 | head -n 1)
rm -rf "$cache/src"
cp -r "$src" "$cache/src"
cd "$cache/src"
# The cache may sit inside the storef workspace (target/): make the crate its own workspace.
grep -q '^\[workspace\]' Cargo.toml || printf '\n[workspace]\n' >> Cargo.toml
CARGO_TARGET_DIR="$cache/target" cargo build --release --no-default-features --features rustls-ring
test -f "$so"
