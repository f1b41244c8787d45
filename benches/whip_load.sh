#!/usr/bin/env bash
# WHIP ingest load benchmark (issue 5): N GStreamer whipsink publishers (webrtcbin + libnice, a
# second WebRTC stack) publish 720p30 H.264 + Opus to the real storef binary (WHIP -> DTLS/SRTP
# -> depacketizer -> segmenter -> disk -> sled -> live.m3u8), then the same N publishers to the
# peer, GStreamer's own WHIP server (`whipserversrc`, crate gst-plugin-webrtc, same 0.15.4
# release as whipsink) remuxing each stream without decoding into 2 s Matroska segments with
# `splitmuxsink muxer=matroskamux`, in the same run on the same input. (hlssink2 was the first
# choice: its mpegtsmux in GStreamer 1.22 stops at the second fragment with "Stream type change
# from 06 to 8f" on Opus; mp4mux stops on "Buffer has no PTS", and with h264timestamper on
# "Queued GOP time is negative".) The peer does less than storef: no fsync, no database, no
# playlist, no CMAF fragmenting. Each peer stream is its own gst-launch process (see run_peer),
# which adds per-process overhead to its CPU and RSS: one process for all N measured 0.575 /
# 0.698 CPU s/stream and 6.4 / 4.4 MiB/stream at N = 10 / 50, but one splitmuxsink error stops
# every stream in it.
#
# If storef stops answering HTTP (seen at N = 50: a sled deadlock, every sled-io thread in
# flush_async while Db::apply's apply_batch waits for the write lock), the row says so
# ("histogram no-answer") and gdb's thread stacks are saved next to its log (KEEP=1).
#
#   benches/whip_load.sh [N ...]          default: 10 50
#   env: SECONDS_PUBLISHED (30), PEER=0 skips the peer, KEEP=1 keeps the temp dir,
#        STOREF_BIN overrides the binary, WHIPSINK_CACHE (default ~/.cache/storef-whipsink) holds
#        the GStreamer plugins built from crates.io (whipsink ~90 s, the peer's plugin ~5 min, once).
#
# Encode once, fan out: one videotestsrc ! x264enc (tune=zerolatency, key-int-max=60 = 2 s) and
# one opusenc feed N rtph264pay/rtpopuspay + whipsink branches through `tee`, so the encoder costs
# the same for every N and the publishers' CPU (reported) is mostly SRTP/DTLS and libnice.
# libnice never pairs with a 127.0.0.1 candidate, so everything runs in a network namespace with
# a veth pair (10.99.0.1 server, 10.99.0.2 the publishers' second address), as the WHIP tests do.
#
# Per N it prints: CPU seconds per stream of each server over the publishing window (utime+stime
# from /proc/PID/stat, from the publisher's start until the last segments are written), the
# ratio, peak RSS (VmHWM) per stream above idle, storef's segment-listing latency p50/p99/max
# (closing keyframe reaching the packager -> segment durable and listed in live.m3u8: the exact
# `listing_ms` of every debug "segment listed" log line) next to its /metrics histogram count,
# publishers that connected (status JSON showed a "whip" publisher) / produced segments, segment
# durations (mean, max, every segment but each stream's last) against the 2 s target, and the
# publisher process's CPU (to show the encoder was not the bottleneck).
# storef asks a publisher for a keyframe (PLI) when a segment runs past 1.25 x target; with one
# shared encoder every such request (and the PLI each new session sends) forces a keyframe for
# all N, which shifts x264's 2 s cadence: with many publishers segments then close on requested
# keyframes (~2.6 s) instead of the natural ones. The count of requests is printed with them.
# The peer has no comparable listing-latency probe: n/a. Its segment durations are every
# finished fragment's (ffprobe), its "connected" = publishers whose first fragment was opened;
# pipelines stopped by an ERROR are counted (their CPU up to then is included).
#
# Needs root (ip netns), iproute2, curl, jq, and the GStreamer packages scripts/test.sh installs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STOREF_BIN=${STOREF_BIN:-$TARGET/release/storef}
CACHE=${WHIPSINK_CACHE:-$HOME/.cache/storef-whipsink}
SECS=${SECONDS_PUBLISHED:-30}
NS_LIST=("$@")
[ ${#NS_LIST[@]} -gt 0 ] || NS_LIST=(10 50)
TCK=$(getconf CLK_TCK)
NETNS=whipload$$
SERVER_IP=10.99.0.1
HTTP_PORT=8080

for tool in ip curl jq gst-launch-1.0; do
  command -v "$tool" >/dev/null || {
    echo "$tool missing: run scripts/test.sh once (it installs the packages)" >&2
    exit 1
  }
done
if [ ! -x "$STOREF_BIN" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --bin storef)
fi
sh "$ROOT/ingest/testdata/whip/build-whipsink.sh" "$CACHE"

# The peer: gst-plugin-webrtc (whipserversrc) from crates.io, built like whipsink (its defaults
# need aws-lc; the whip feature alone with ring builds against Debian's GStreamer 1.22), and kept
# in its own plugin directory so the tests' GST_PLUGIN_PATH does not load it.
PEER_DIR=$CACHE/peer
build_peer() {
  [ -f "$PEER_DIR/libgstrswebrtc.so" ] && return 0
  local fetch=$CACHE/peer-fetch src
  mkdir -p "$fetch/src"
  cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "whipserversrc-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
gst-plugin-webrtc = { version = "=0.15.4", default-features = false, features = ["whip", "rustls-ring"] }
[workspace]
EOF
  : >"$fetch/src/lib.rs"
  (cd "$fetch" && cargo fetch -q)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/gst-plugin-webrtc-0.15.4 | head -n 1)
  rm -rf "$CACHE/peer-src"
  cp -r "$src" "$CACHE/peer-src"
  grep -q '^\[workspace\]' "$CACHE/peer-src/Cargo.toml" || printf '\n[workspace]\n' >>"$CACHE/peer-src/Cargo.toml"
  (cd "$CACHE/peer-src" && CARGO_TARGET_DIR=$CACHE/target cargo build -q --release --lib \
    --no-default-features --features whip,rustls-ring)
  mkdir -p "$PEER_DIR"
  cp "$CACHE/target/release/libgstrswebrtc.so" "$PEER_DIR/"
}
[ "${PEER:-1}" = 1 ] && build_peer

WORK=$(mktemp -d /tmp/whip-bench.XXXXXX)
# Servers and publishers run under `ip netns exec` (which execs them: $! is their pid); the
# pids are kept in a file for the trap, which also removes the namespace.
cleanup() {
  local p
  for p in $(cat "$WORK/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$NETNS" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NETNS"
nsx() { ip netns exec "$NETNS" "$@"; }
nsx ip link set lo up
nsx ip link add v0 type veth peer name v1
nsx ip addr add $SERVER_IP/24 dev v0
nsx ip addr add 10.99.0.2/24 dev v1
nsx ip link set v0 up
nsx ip link set v1 up

cpu_ticks() { # utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    # Fields after the ")" of comm: utime and stime are fields 14 and 15 of the whole line.
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
secs_of() { awk -v a="$1" -v b="$2" -v t="$TCK" 'BEGIN {printf "%.2f", (b - a) / t}'; }

wait_http() {
  for _ in $(seq 200); do
    nsx curl -s -m 2 -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "$1 never answered" >&2
  return 1
}

# publisher N URL_0 TOKEN_0 URL_1 TOKEN_1 ... : one encoder, N whipsink branches. whipsink ignores
# SIGINT and sends no DELETE; the publish ends with SIGKILL, the server notices by ICE timeout.
publisher() {
  local n=$1 i p
  shift
  p="videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1
     ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bframes=0 bitrate=2500
     ! video/x-h264,profile=constrained-baseline ! tee name=vt
     audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! tee name=at"
  for i in $(seq 0 $((n - 1))); do
    p="$p vt. ! queue ! rtph264pay config-interval=-1 pt=96
       ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w$i.sink_0
       at. ! queue ! rtpopuspay pt=111
       ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w$i.sink_1
       whipsink name=w$i whip-endpoint=$1 auth-token=$2"
    shift 2
  done
  # shellcheck disable=SC2086
  GST_PLUGIN_PATH=$CACHE/target/release exec ip netns exec "$NETNS" gst-launch-1.0 -q $p
}

# stats FILE_OF_NUMBERS -> "p50 p99 max count" (exact order statistics, nearest rank)
stats() {
  sort -g "$1" | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan nan nan 0"; exit }
    i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
    printf "%.1f %.1f %.1f %d\n", v[i50], v[i99], v[NR], NR }'
}

# durations PLAYLIST... -> "mean max count" of every EXTINF but each playlist's last
durations() {
  awk '/^#EXTINF:/ { d = $0; sub(/^#EXTINF:/, "", d); sub(/,.*/, "", d); v[FILENAME, ++k[FILENAME]] = d }
    END { for (f in k) for (i = 1; i < k[f]; i++) { x = v[f, i]; s += x; if (x > m) m = x; c++ }
      if (c) printf "%.2f %.2f %d\n", s / c, m, c; else print "nan nan 0" }' "$@" 2>/dev/null || echo "nan nan 0"
}

run_storef() { # N -> "cpu_s rss_kb_per_stream hwm_kb connected with_segments p50 p99 max lines hist mean max segs gst_cpu_s asks"
  local n=$1 dir=$WORK/storef-$1 secret=bench-secret-$RANDOM$RANDOM pid token base
  mkdir -p "$dir"
  base=http://$SERVER_IP:$HTTP_PORT
  local env=(STOREF_HTTP_ADDR=$SERVER_IP:$HTTP_PORT STOREF_RTMP_ENABLED=false
    STOREF_STORAGE_DATA_DIR=$dir/data STOREF_AUTH_JWT_SECRET=$secret
    STOREF_WEBRTC_UDP_ADDR=$SERVER_IP:8189 STOREF_WEBRTC_TCP_ADDR= STOREF_WEBRTC_ICE_TIMEOUT=3s
    STOREF_HLS_TARGET_DURATION=2 RUST_LOG=storef::live=debug,info)
  (cd "$dir" && exec ip netns exec "$NETNS" env "${env[@]}" "$STOREF_BIN" serve --config /dev/null \
    >"$dir/storef.log" 2>&1) &
  pid=$!
  echo "$pid" >>"$WORK/pids"
  wait_http "$base/metrics"
  token=$(cd "$dir" && env "${env[@]}" "$STOREF_BIN" token --user bench)
  local args=() ids=() resp
  for _ in $(seq "$n"); do
    resp=$(nsx curl -sf -m 10 -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"title":"bench"}' "$base/api/streams/start")
    args+=("$(jq -r .whipUrl <<<"$resp")" "$(jq -r .streamKey <<<"$resp")")
    ids+=("$(jq -r .streamId <<<"$resp")")
  done
  local rss0 t0 t1 g0 g1 gst hwm
  rss0=$(kb "$pid" VmRSS)
  t0=$(cpu_ticks "$pid")
  publisher "$n" "${args[@]}" >"$dir/gst.log" 2>&1 &
  gst=$!
  echo "$gst" >>"$WORK/pids"
  g0=$(cpu_ticks "$gst")
  sleep $((SECS / 2))
  # Half way: which streams show a WHIP publisher.
  local connected=0 id st
  for id in "${ids[@]}"; do
    st=$(nsx curl -sf -m 10 -H "Authorization: Bearer $token" "$base/api/streams/$id") || break
    jq -e '.stream.publisher.protocol == "whip"' >/dev/null <<<"$st" && connected=$((connected + 1))
  done
  sleep $((SECS - SECS / 2))
  g1=$(cpu_ticks "$gst")
  kill -9 "$gst"
  wait "$gst" 2>/dev/null || true
  sleep 5 # ICE timeout (3 s) ends each publish; its last segment is written then
  t1=$(cpu_ticks "$pid")
  hwm=$(kb "$pid" VmHWM)
  local hist with_segments=0
  hist=$(nsx curl -sf -m 10 "$base/metrics" |
    awk '$1 == "storef_segment_listing_seconds_count{protocol=\"whip\"}" {print $2}') || true
  if [ -z "$hist" ]; then
    hist=no-answer
    echo "N=$n: storef stopped answering HTTP (thread stacks: $dir/threads.txt, KEEP=1 keeps it)" >&2
    command -v gdb >/dev/null && gdb -p "$pid" -batch -ex 'thread apply all bt 30' \
      >"$dir/threads.txt" 2>/dev/null || true
  fi
  for i in "${!ids[@]}"; do
    [ "$hist" = no-answer ] && break
    nsx curl -sf -m 10 -H "Authorization: Bearer $token" "$base/api/streams/${ids[$i]}/live.m3u8" \
      >"$dir/pl-$i.m3u8" || true
    grep -q '^#EXTINF' "$dir/pl-$i.m3u8" && with_segments=$((with_segments + 1))
  done
  kill -TERM "$pid"
  sleep 2
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sed -n 's/.*segment listed.*listing_ms=\([0-9.e+-]*\).*/\1/p' "$dir/storef.log" >"$dir/listing_ms"
  echo "$(secs_of "$t0" "$t1") $(((hwm - rss0) / n)) $hwm $connected $with_segments \
$(stats "$dir/listing_ms") ${hist:-nan} $(durations "$dir"/pl-*.m3u8) $(secs_of "$g0" "$g1") \
$(grep -c 'asked the publisher for a keyframe' "$dir/storef.log" || true)"
}

run_peer() { # N -> "cpu_s rss_kb_per_stream hwm_kb connected with_segments mean max segs gst_cpu_s errors"
  local n=$1 dir=$WORK/peer-$1 i p pid args=() gst kids=()
  # One gst-launch per publisher: splitmuxsink sometimes stops its pipeline at the first fragment
  # ("Timestamping error on input streams: Queued GOP time is negative"), and one pipeline for
  # all N would lose every stream. They are children of one holder shell that reaps them, so
  # the CPU of one that dies early still counts (the holder's cutime + cstime).
  (
    for i in $(seq 0 $((n - 1))); do
      mkdir -p "$dir/$i"
      # whipserversrc holds one session; the decodebin3 inside stops at the encoded caps asked
      # for, so nothing is decoded.
      p="whipserversrc name=s signaller::host-addr=http://$SERVER_IP:$((9000 + i))/ stun-server=stun://127.0.0.1:9
         s.video_0 ! video/x-h264 ! h264parse ! queue ! m.video
         s.audio_0 ! audio/x-opus ! opusparse ! queue ! m.audio_0
         splitmuxsink name=m muxer=matroskamux max-size-time=2000000000 location=$dir/$i/seg%05d.mkv"
      # shellcheck disable=SC2086
      GST_PLUGIN_PATH=$PEER_DIR ip netns exec "$NETNS" gst-launch-1.0 -q $p >"$dir/server-$i.log" 2>&1 &
      echo $! >>"$dir/kids"
    done
    wait
    exec sleep 100000
  ) 2>/dev/null &
  pid=$!
  echo "$pid" >>"$WORK/pids"
  for i in $(seq 0 $((n - 1))); do
    args+=("http://$SERVER_IP:$((9000 + i))/whip/endpoint" "peer")
    for _ in $(seq 300); do
      nsx curl -s -m 2 -o /dev/null -X OPTIONS "http://$SERVER_IP:$((9000 + i))/whip/endpoint" && break
      sleep 0.1
    done
  done
  mapfile -t kids <"$dir/kids"
  cat "$dir/kids" >>"$WORK/pids"
  local rss0=0 t0 t1 g0 g1 hwm=0 connected=0 with_segments=0 f k errors
  for k in "${kids[@]}"; do rss0=$((rss0 + $(kb "$k" VmRSS))); done
  t0=$(cpu_ticks "${kids[@]}")
  publisher "$n" "${args[@]}" >"$dir/gst.log" 2>&1 &
  gst=$!
  echo "$gst" >>"$WORK/pids"
  g0=$(cpu_ticks "$gst")
  sleep "$SECS"
  g1=$(cpu_ticks "$gst")
  kill -9 "$gst"
  wait "$gst" 2>/dev/null || true
  sleep 5
  for k in "${kids[@]}"; do hwm=$((hwm + $(kb "$k" VmHWM 2>/dev/null || echo 0))); done
  kill -9 "${kids[@]}" 2>/dev/null || true
  sleep 1 # the holder reaps them: its cutime + cstime is then all of their CPU
  t1=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $14 + $15}')
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  errors=$(grep -l '^ERROR' "$dir"/server-*.log 2>/dev/null | wc -l)
  [ "$errors" = 0 ] || grep -h -m1 '^ERROR' "$dir"/server-*.log | sort | uniq -c >&2
  # Matroska fragments are readable as they are written; the one open at the end has no duration.
  : >"$dir/durations"
  for i in $(seq 0 $((n - 1))); do
    ls "$dir/$i"/seg*.mkv >/dev/null 2>&1 && connected=$((connected + 1))
    local any=0
    for f in "$dir/$i"/seg*.mkv; do
      [ -s "$f" ] || continue
      ffprobe -v error -show_entries format=duration -of csv=p=0 "$f" 2>/dev/null |
        grep -E '^[0-9.]+$' >>"$dir/durations" && any=1
    done
    with_segments=$((with_segments + any))
  done
  echo "$(secs_of "$t0" "$t1") $(((hwm - rss0) / n)) $hwm $connected $with_segments \
$(awk '{ s += $1; if ($1 > m) m = $1; c++ } END { if (c) printf "%.2f %.2f %d", s / c, m, c; else printf "nan nan 0" }' "$dir/durations") \
$(secs_of "$g0" "$g1") $errors"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $SECS s published per run" >&2
ROWS=()
for n in "${NS_LIST[@]}"; do
  echo "N=$n: storef ..." >&2
  read -r s_cpu s_rss s_hwm s_conn s_segd s_p50 s_p99 s_max s_lines s_hist s_mean s_dmax s_nseg s_gst \
    s_asks <<<"$(run_storef "$n")"
  g_cpu=nan g_rss=0 g_hwm=0 g_conn=0 g_segd=0 g_mean=nan g_dmax=nan g_nseg=0 g_gst=nan g_err=0
  if [ "${PEER:-1}" = 1 ]; then
    echo "N=$n: gstreamer whipserversrc ..." >&2
    read -r g_cpu g_rss g_hwm g_conn g_segd g_mean g_dmax g_nseg g_gst g_err <<<"$(run_peer "$n")"
  fi
  ROWS+=("$(awk -v n="$n" -v sc="$s_cpu" -v gc="$g_cpu" -v sr="$s_rss" -v sh="$s_hwm" -v gr="$g_rss" \
    -v p50="$s_p50" -v p99="$s_p99" -v mx="$s_max" -v lines="$s_lines" -v hist="$s_hist" \
    -v sc2="$s_conn" -v ss="$s_segd" -v gc2="$g_conn" -v gs="$g_segd" \
    -v sm="$s_mean" -v sx="$s_dmax" -v sn="$s_nseg" -v gm="$g_mean" -v gx="$g_dmax" -v gn="$g_nseg" \
    -v sg="$s_gst" -v gg="$g_gst" -v asks="$s_asks" -v gerr="$g_err" 'BEGIN {
      printf "| %d | %.3f | %s | %s | %.0f KiB (%.0f MiB total) | %.0f KiB | %s / %s / %s ms (%d lines, histogram %s) | %d / %d | %d / %d (%d pipelines stopped by an error) | %s / %s s (%d; %d keyframe requests) | %s / %s s (%d) | %s / %s |",
        n, sc / n, (gc == "nan" ? "n/a" : sprintf("%.3f", gc / n)),
        (gc > 0 ? sprintf("%.2f", sc / gc) : "n/a"), sr, sh / 1024, gr,
        p50, p99, mx, lines, hist, sc2, ss, gc2, gs, gerr, sm, sx, sn, asks, gm, gx, gn, sg, gg }')")
  echo "load average now $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "| N | storef CPU s/stream | whipserversrc CPU s/stream | ratio storef/peer | storef peak RSS/stream (above idle) | peer peak RSS/stream | storef listing latency p50 / p99 / max | storef publishers connected / with segments | peer connected / with segments | storef segment mean / max (count) | peer segment mean / max (count) | publisher gst CPU s (storef run / peer run) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo "($SECS s of 1280x720 30 fps H.264 constrained baseline ~2.5 Mb/s, 2 s GOP + Opus per publisher, encoded once; target 2 s; $(nproc) cores; load average at end $(cut -d' ' -f1-3 /proc/loadavg))"
