#!/usr/bin/env bash
# Runs every storef test on a fresh Debian machine: installs the real clients and servers the
# tests drive when missing (ffmpeg, Chromium + puppeteer-core, GStreamer for the RTSP camera and
# the whipsink publisher, iproute2 for its network namespace), then the Rust tests of the whole
# workspace, then a bounded fuzz run of each parser of untrusted bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  ffmpeg                                   # publisher (RTMP), chunk cutter, ffprobe checker
  chromium fonts-liberation                # WHIP publisher, MediaRecorder, hls.js player
  iproute2                                 # network namespace for the GStreamer WHIP test
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-rtsp
  python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0   # the RTSP test camera
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  pkg-config libssl-dev                    # whipsink build; str0m's OpenSSL DTLS
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js drives Chromium (puppeteer-core); the machine image may bring its own node and npm,
# which Debian's npm package would conflict with.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d tests/js/node_modules/puppeteer-core ]; then
  echo "== npm ci (tests/js)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# GStreamer's whipsink is built from crates.io by the WHIP test on first use (about 90 s on an
# idle machine); keep it outside the clone so later runs on this machine reuse it.
export WHIPSINK_CACHE="${WHIPSINK_CACHE:-$HOME/.cache/storef-whipsink}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "== cargo test (workspace)"
cargo test --workspace --doc 2>&1 | tee -a "$log"
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2 2>&1 | tee -a "$log"

if [ "${STOREF_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${STOREF_FUZZ_SECONDS:-60}"
fi

# One closing line for the whole run: every test binary's counts added up.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
