#!/usr/bin/env bash
# RTMP ingest load benchmark (issue 3): N concurrent publishers replay a 10 s 720p H.264+AAC FLV
# (2 s GOP) at real-time pace against the real storef binary (RTMP -> segmenter -> disk -> sled ->
# live.m3u8), then the same N against nginx with its RTMP module (`hls on`), in the same run.
#
#   benches/rtmp_vs_nginx.sh [N ...]          default: 10 50
#   env: LOOPS (3: the clip is replayed 3 times, 30 s of media per publisher),
#        SAMPLE (publishers whose playlists are polled for listing latency; default min(N,10)),
#        KEEP=1 keeps the temp dir, STOREF_BIN / RTMP_LOAD_BIN override the binaries.
#
# Per N it prints: CPU seconds per stream of each server (utime+stime from /proc/PID/stat around
# the publishing, nginx: master + workers), their ratio, storef's peak RSS (VmHWM) per stream
# above its idle RSS, segment-listing latency p50/p99 (closing keyframe written by the publisher
# -> segment listed in the playlist, polled over HTTP from the server itself every 5 ms while one
# is awaited; an upper bound),
# storef's own measure of the same for every segment of every stream (closing keyframe reaching
# its packager -> listed, from its debug log), and how many publishers fell behind real time by
# more than 1 s or failed. STOREF_RTMP_WORKERS sets storef's [rtmp] workers (default 0: one per
# core; the nginx reference config runs worker_processes 1).
#
# Needs: ffmpeg, curl, jq, nginx + libnginx-mod-rtmp (installed here when missing), release builds
# of storef and rtmp_load (built here when missing: CARGO_TARGET_DIR, default ./target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STOREF_BIN=${STOREF_BIN:-$TARGET/release/storef}
RTMP_LOAD_BIN=${RTMP_LOAD_BIN:-$TARGET/release/rtmp_load}
LOOPS=${LOOPS:-3}
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(10 50)
TCK=$(getconf CLK_TCK)

if [ ! -x "$STOREF_BIN" ] || [ ! -x "$RTMP_LOAD_BIN" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --bin storef &&
    CARGO_TARGET_DIR=$TARGET cargo build --release -p ingest --bin rtmp_load)
fi
if [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  apt-get install -y --no-install-recommends nginx libnginx-mod-rtmp >/dev/null
fi

WORK=$(mktemp -d /tmp/rtmp-bench.XXXXXX)
# Servers are started inside $(…) subshells, so their pids are kept in a file for the trap.
cleanup() {
  local p
  for p in $(cat "$WORK/pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

CLIP=$WORK/clip.flv
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 10 \
  -c:v libx264 -preset veryfast -profile:v high -bf 3 -g 60 -keyint_min 60 -sc_threshold 0 \
  -b:v 2500k -maxrate 2500k -bufsize 5000k -c:a aac -b:a 128k -f flv "$CLIP"

# Free TCP ports from a per-run base so parallel runs (CI, other helpers) do not collide.
BASE=$((20000 + ($$ % 20000)))
HTTP_PORT=$BASE RTMP_PORT=$((BASE + 1)) NGINX_PORT=$((BASE + 2)) NGINX_HTTP_PORT=$((BASE + 3))

cpu_ticks() { # utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    # Fields after the ")" of comm: utime and stime are fields 14 and 15 of the whole line.
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}

# load_summary FILE -> "behind_or_failed samples p50 p99 max unlisted"
load_summary() {
  local behind lat
  behind=$(awk -F'\t' 'NR > 1 && NF == 9 && $1 != "latency" && $9 != "ok"' "$1" | wc -l)
  lat=$(awk -F'\t' '$1 == "latency" && $2 != "streams" {print $3, $4, $5, $6, $7}' "$1")
  echo "$behind ${lat:-0 nan nan nan 0}"
}

run_storef() { # N -> "cpu_s rss_kb_per_stream hwm_kb behind samples p50 p99 max unlisted"
  local n=$1 dir=$WORK/storef-$1 secret=bench-secret-$RANDOM$RANDOM pid token
  mkdir -p "$dir"
  local env=(STOREF_HTTP_ADDR=127.0.0.1:$HTTP_PORT STOREF_RTMP_ADDR=127.0.0.1:$RTMP_PORT
    STOREF_STORAGE_DATA_DIR=$dir/data STOREF_AUTH_JWT_SECRET=$secret STOREF_WEBRTC_ENABLED=false
    STOREF_LOG_FILTER=info,storef::live=debug STOREF_RTMP_WORKERS=${STOREF_RTMP_WORKERS:-0})
  (cd "$dir" && exec env "${env[@]}" "$STOREF_BIN" serve >"$dir/storef.log" 2>&1) &
  pid=$!
  echo "$pid" >>"$WORK/pids"
  wait_port "$HTTP_PORT"
  wait_port "$RTMP_PORT"
  token=$(cd "$dir" && env "${env[@]}" "$STOREF_BIN" token --user bench)
  local keys=() ids=() resp
  for _ in $(seq "$n"); do
    resp=$(curl -sf -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"title":"bench"}' "http://127.0.0.1:$HTTP_PORT/api/streams/start")
    keys+=("$(jq -r .streamKey <<<"$resp")")
    ids+=("$(jq -r .streamId <<<"$resp")")
  done
  local rss0 t0 t1
  rss0=$(kb "$pid" VmRSS)
  t0=$(cpu_ticks "$pid")
  "$RTMP_LOAD_BIN" --url "rtmp://127.0.0.1:$RTMP_PORT/live" --flv "$CLIP" --loops "$LOOPS" \
    --keys "$(IFS=,; echo "${keys[*]}")" --ids "$(IFS=,; echo "${ids[*]}")" \
    --latency-playlist "http://127.0.0.1:$HTTP_PORT/api/streams/{id}/live.m3u8" \
    --latency-sample "${SAMPLE:-$((n < 10 ? n : 10))}" >"$dir/load.tsv" 2>"$dir/load.err" || true
  sleep 1 # the last segment of each publish is written when the publisher leaves
  t1=$(cpu_ticks "$pid")
  local hwm
  hwm=$(kb "$pid" VmHWM)
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" 'BEGIN {printf "%.3f", (b - a) / t}') \
$(((hwm - rss0) / n)) $hwm $(load_summary "$dir/load.tsv") $(internal_latency "$dir/storef.log")"
}

# internal_latency LOG -> "count p50 p99 max": storef's own measure of every segment of every
# stream (closing keyframe reaching the packager -> listed), from its debug 'segment listed' lines.
internal_latency() {
  grep -o 'listing_ms=[0-9.]*' "$1" | cut -d= -f2 | sort -g | awk '{v[NR] = $1}
    END {
      if (NR == 0) { print "0 nan nan nan"; exit }
      i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
      i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1; if (i99 > NR) i99 = NR
      printf "%d %.1f %.1f %.1f\n", NR, v[i50], v[i99], v[NR]
    }'
}

run_nginx() { # N -> "cpu_s rss_kb_per_stream hwm_kb behind samples p50 p99 max unlisted"
  local n=$1 dir=$WORK/nginx-$1 master workers
  mkdir -p "$dir/hls"
  # The shared reference config, moved to this run's port, pid file, log and HLS directory.
  sed -e "s#127.0.0.1:19350#127.0.0.1:$NGINX_PORT#" -e "s#/tmp/nginx-rtmp.pid#$dir/nginx.pid#" \
    -e "s#/tmp/nginx-rtmp-error.log#$dir/error.log#" -e "s#/tmp/nginx-hls#$dir/hls#" \
    "$ROOT/../shared/testing/nginx-rtmp.conf" >"$dir/nginx.conf"
  # Players (and the latency probe) fetch nginx's playlists from nginx's own HTTP server, as they
  # fetch storef's from storef: both servers answer the same polls. Without access log, so nginx
  # does no more per request than it must.
  cat >>"$dir/nginx.conf" <<EOF
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_HTTP_PORT;
        location /hls/ {
            alias $dir/hls/;
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            add_header Cache-Control no-cache;
        }
    }
}
EOF
  nginx -c "$dir/nginx.conf" -p "$dir/" 2>"$dir/stderr" &
  master=$!
  echo "$master" >>"$WORK/pids"
  wait_port "$NGINX_PORT"
  wait_port "$NGINX_HTTP_PORT"
  workers=$(pgrep -P "$master" | tr '\n' ' ')
  local rss0=0 t0 t1 hwm=0 p keys=()
  for p in $workers; do rss0=$((rss0 + $(kb "$p" VmRSS))); done
  for i in $(seq "$n"); do keys+=("bench$i"); done
  # shellcheck disable=SC2086
  t0=$(cpu_ticks "$master" $workers)
  "$RTMP_LOAD_BIN" --url "rtmp://127.0.0.1:$NGINX_PORT/live" --flv "$CLIP" --loops "$LOOPS" \
    --keys "$(IFS=,; echo "${keys[*]}")" \
    --latency-playlist "http://127.0.0.1:$NGINX_HTTP_PORT/hls/{key}.m3u8" \
    --latency-sample "${SAMPLE:-$((n < 10 ? n : 10))}" >"$dir/load.tsv" 2>"$dir/load.err" || true
  sleep 1
  # shellcheck disable=SC2086
  t1=$(cpu_ticks "$master" $workers)
  for p in $workers; do hwm=$((hwm + $(kb "$p" VmHWM))); done
  kill -QUIT "$master"
  wait "$master" 2>/dev/null || true
  echo "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" 'BEGIN {printf "%.3f", (b - a) / t}') \
$(((hwm - rss0) / n)) $hwm $(load_summary "$dir/load.tsv")"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $LOOPS x 10 s of media per publisher" >&2
ROWS=()
for n in "${NS[@]}"; do
  echo "N=$n: storef ..." >&2
  read -r s_cpu s_rss s_hwm s_behind s_samples s_p50 s_p99 s_max s_unlisted i_n i_p50 i_p99 i_max <<<"$(run_storef "$n")"
  echo "N=$n: nginx-rtmp ..." >&2
  read -r g_cpu g_rss g_hwm g_behind g_samples g_p50 g_p99 g_max g_unlisted <<<"$(run_nginx "$n")"
  ROWS+=("$(awk -v n="$n" -v sc="$s_cpu" -v gc="$g_cpu" -v sr="$s_rss" -v sh="$s_hwm" -v gr="$g_rss" \
    -v sp50="$s_p50" -v sp99="$s_p99" -v ss="$s_samples" -v su="$s_unlisted" -v sb="$s_behind" \
    -v gp50="$g_p50" -v gp99="$g_p99" -v gb="$g_behind" \
    -v icount="$i_n" -v ip50="$i_p50" -v ip99="$i_p99" -v imax="$i_max" 'BEGIN {
      printf "| %d | %.3f | %.3f | %s | %.0f KiB (%.0f MiB total) | %.0f KiB | %s / %s ms (%d samples, %d unlisted) | %s / %s / %s ms (%d segments) | %s / %s ms | %d | %d |",
        n, sc / n, gc / n, (gc > 0 ? sprintf("%.2f", sc / gc) : "n/a"), sr, sh / 1024, gr,
        sp50, sp99, ss, su, ip50, ip99, imax, icount, gp50, gp99, sb, gb }')")
  echo "load average now $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "| N | storef CPU s/stream | nginx CPU s/stream | ratio storef/nginx | storef peak RSS/stream (above idle) | nginx peak RSS/stream | storef listing latency p50/p99 (polled) | storef listing latency p50/p99/max (its log, every segment) | nginx listing latency p50/p99 (polled) | storef publishers behind/failed | nginx publishers behind/failed |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo "($LOOPS x 10 s of 720p30 H.264 ~2.5 Mb/s + AAC 128 kb/s per publisher; $(nproc) cores; load average at end $(cut -d' ' -f1-3 /proc/loadavg))"
