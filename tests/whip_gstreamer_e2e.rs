//! WHIP end to end with a second, non-browser WebRTC stack: GStreamer `whipsink` (webrtcbin +
//! libnice) publishes 720p30 H.264 (1 s GOP) + Opus for 12 s to the storef binary's `whipUrl`
//! with the stream key as bearer token; the stream is then stopped and what storef wrote is
//! read back with ffprobe/ffmpeg: segments, keyframes, codecs, frame count, the listing-latency
//! histogram, the VOD.
//!
//! libnice never pairs with a 127.0.0.1 server candidate, so the test makes a network namespace
//! with a veth pair and re-runs itself inside it (`ip netns exec`): storef's WebRTC UDP on
//! 10.99.0.1, its HTTP on the namespace's 127.0.0.1. whipsink is built on first use into
//! $WHIPSINK_CACHE (tests/common/netns.rs); scripts/test.sh installs the GStreamer packages.

mod common;
use common::netns::{block_on, rerun_in_netns};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const INNER: &str = "STOREF_WHIP_GST_E2E_INNER";
/// How long whipsink runs (SIGKILL then: it ignores SIGINT and never sends DELETE).
const SECONDS: u64 = 12;
const TARGET: f64 = 2.0;

#[test]
fn gstreamer_whipsink_to_storef_hls_and_vod() {
    if std::env::var_os(INNER).is_some() {
        return block_on(inner());
    }
    for tool in ["ip", "gst-launch-1.0", "ffprobe", "ffmpeg"] {
        require_tool(tool);
    }
    rerun_in_netns("whipe2e", "gstreamer_whipsink_to_storef_hls_and_vod", INNER);
}

async fn status(s: &Server, tok: &str, id: &str) -> Value {
    client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn inner() {
    let udp = format!("10.99.0.1:{}", free_udp_port());
    let s = Server::start(&[
        ("STOREF_WEBRTC_UDP_ADDR", udp.as_str()),
        // UDP only: libnice would skip a 127.0.0.1 TCP candidate anyway.
        ("STOREF_WEBRTC_TCP_ADDR", ""),
        // whipsink vanishes without DELETE: the publish ends when ICE times out.
        ("STOREF_WEBRTC_ICE_TIMEOUT", "3s"),
        ("STOREF_HLS_TARGET_DURATION", "2"),
        ("STOREF_LIVE_RECONNECT_WINDOW", "60s"),
    ]);
    let tok = token("whip-gst", 3600);
    let started = start_stream(&s, &tok).await;
    let id = started["streamId"].as_str().unwrap().to_string();
    let key = started["streamKey"].as_str().unwrap().to_string();
    let whip_url = started["whipUrl"].as_str().expect("whipUrl").to_string();
    assert_eq!(whip_url, s.url("/api/whip"));

    // testing/whipsink-pipeline.sh at 1280x720, a keyframe every 30 frames (1 s).
    let pipeline = format!(
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 \
         ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 \
         ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! whip.sink_0 \
         audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc \
         ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 \
         ! whip.sink_1 whipsink name=whip whip-endpoint={whip_url} auth-token={key}"
    );
    let t0 = Instant::now();
    let mut gst = tokio::process::Command::new("timeout")
        .args(["-k", "2", "-s", "KILL", &SECONDS.to_string()])
        .arg("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch-1.0");

    // While it publishes, the stream's status names the WHIP publisher.
    let mut live_protocol = Value::Null;
    while t0.elapsed() < Duration::from_secs(SECONDS - 2) {
        let st = status(&s, &tok, &id).await;
        if st["stream"]["publisher"]["protocol"] != Value::Null {
            live_protocol = st["stream"]["publisher"]["protocol"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        live_protocol,
        "whip",
        "no WHIP publisher in the status; server log:\n{}",
        s.log()
    );
    let connected_after = t0.elapsed().as_secs_f64();
    let _ = gst.wait().await;
    let published = t0.elapsed().as_secs_f64();

    // The publisher is gone once ICE times out; its last segment is written then.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(&s, &tok, &id).await;
        if st["stream"]["publisher"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "publisher never ended: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stopped: Value = r.json().await.unwrap();

    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let text = get_text(&pl).await.1;
    let entries = playlist_entries(&text);
    // Media flows for at most SECONDS minus the connection set-up: 12 s at a 2 s target with a
    // 1 s GOP is 4 to 6 segments.
    assert!(
        entries.len() >= 4,
        "segments:\n{text}\nserver log:\n{}",
        s.log()
    );
    for (k, e) in entries.iter().enumerate() {
        assert!(!e.2, "one publish, no discontinuity:\n{text}");
        if k + 1 < entries.len() {
            assert!(
                e.0 <= TARGET * 1.25,
                "segment {k} is {} s (1 s GOP, {TARGET} s target):\n{text}",
                e.0
            );
        }
    }
    let codecs = ffprobe_json(&pl, &["-show_entries", "stream=codec_type,codec_name"]);
    let mut names: Vec<(String, String)> = codecs["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_string(),
                s["codec_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("audio".to_string(), "opus".to_string()),
            ("video".to_string(), "h264".to_string())
        ]
    );
    run(ffmpeg().args(["-xerror", "-i", &pl, "-f", "null", "-"]));

    // Every frame whipsink sent while connected is in the HLS. The frames span exactly what the
    // playlist says (30 fps, no holes: < 2 % off, i.e. at most a few frames at the edges) and fit
    // the wall clock: no more than the time from connection to SIGKILL allows (+ 1 s for ICE and
    // DTLS finishing after the status already showed the publisher), and no less than that
    // window minus 3 s (the connection set-up after the status appeared and the wait for the
    // first keyframe, at most 1 s with key-int-max=30).
    let frames = count_packets(&pl, "v:0") as f64;
    let listed: f64 = entries.iter().map(|e| e.0).sum();
    assert!(
        (frames - listed * 30.0).abs() <= listed * 30.0 * 0.02,
        "{frames} frames for {listed} s listed:\n{text}"
    );
    let window = published - connected_after;
    assert!(
        frames <= (window + 1.0) * 30.0 && frames >= (window - 3.0) * 30.0,
        "{frames} frames for a {window:.1} s publish window (connected after {connected_after:.1} s)"
    );
    let opus = count_packets(&pl, "a:0") as f64;
    assert!(
        (opus - listed * 50.0).abs() <= listed * 50.0 * 0.05,
        "{opus} Opus packets (20 ms) for {listed} s"
    );
    let pk = packets(&pl, "v:0");
    let mut pts: Vec<f64> = pk.iter().map(|p| p.0).collect();
    pts.sort_by(f64::total_cmp);
    for w in pts.windows(2) {
        assert!(w[1] - w[0] < 0.1, "a hole in the video: {w:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    assert_segments_start_on_keyframes(&s, &id, &entries, dir.path()).await;

    // One listing-latency observation per segment closed by a keyframe: all but the last, which
    // the publisher's end closed.
    let metrics = get_text(&s.url("/metrics")).await.1;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };
    assert_eq!(
        sample("storef_segment_listing_seconds_count{protocol=\"whip\"}"),
        (entries.len() - 1) as f64,
        "{text}"
    );
    assert_eq!(
        sample("storef_segment_listing_seconds_count{protocol=\"rtmp\"}"),
        0.0
    );
    // The media came over UDP (one datagram or more per frame); nothing was dropped over TCP.
    assert!(
        sample("storef_whip_udp_datagrams_total") > frames,
        "{metrics}"
    );
    assert_eq!(sample("storef_whip_tcp_dropped_total"), 0.0, "{metrics}");

    assert_eq!(stopped["success"], true, "{stopped}");
    assert_eq!(status(&s, &tok, &id).await["stream"]["status"], "stopped");
    let vod = dir.path().join("vod.mp4");
    download(stopped["videoUrl"].as_str().expect("videoUrl"), &vod).await;
    assert_eq!(count_packets(vod.to_str().unwrap(), "v:0") as f64, frames);
    eprintln!(
        "whip e2e: {} segments, {frames} frames, {opus} opus packets over {listed:.2} s; connected after {connected_after:.1} s",
        entries.len()
    );
}
