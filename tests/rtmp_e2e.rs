//! RTMP ingest end to end: real ffmpeg pushes to storef, HLS and VOD are read back with ffprobe.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn push(clip: &std::path::Path, url: &str) -> std::process::Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .spawn()
        .expect("ffmpeg")
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

async fn stop(s: &Server, tok: &str, id: &str) -> Value {
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_push_becomes_hls_and_vod() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 6);
    let frames = count_packets(clip.to_str().unwrap(), "v:0");
    let s = Server::start(&[("STOREF_LIVE_RECONNECT_WINDOW", "60s")]);
    let tok = token("rtmp-user", 3600);
    let started = start_stream(&s, &tok).await;
    let id = started["streamId"].as_str().unwrap().to_string();
    let key = started["streamKey"].as_str().unwrap().to_string();
    assert_eq!(
        started["rtmpUrl"],
        format!("rtmp://127.0.0.1:{}/live", s.rtmp_port)
    );
    let url = format!("{}/{key}", started["rtmpUrl"].as_str().unwrap());

    // A wrong key is refused; ffmpeg exits with an error.
    let bad = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&clip)
        .args(["-t", "1", "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{}/live/not-a-key", s.rtmp_port))
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a wrong stream key must be refused");

    let mut child = push(&clip, &url);
    // While it publishes, the status shows the publisher and a second publisher is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = status(&s, &tok, &id).await;
    assert_eq!(st["stream"]["publisher"]["protocol"], "rtmp", "{st}");
    let dup = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&clip)
        .args(["-t", "1", "-c", "copy", "-f", "flv", &url])
        .output()
        .unwrap();
    assert!(
        !dup.status.success(),
        "a second publisher on the same key must be refused"
    );
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let live = playlist_entries(&get_text(&pl).await.1);
    assert!(!live.is_empty(), "segments listed while publishing");
    assert!(child.wait().unwrap().success());
    // The publisher left: its last segment is committed, the stream stays live for the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = status(&s, &tok, &id).await;
    assert_eq!(st["stream"]["status"], "live");
    assert!(st["stream"]["publisher"].is_null(), "{st}");

    let stopped = stop(&s, &tok, &id).await;
    let text = get_text(&pl).await.1;
    let entries = playlist_entries(&text);
    assert_eq!(
        count_packets(&pl, "v:0"),
        frames,
        "every pushed frame is in the HLS"
    );
    run(ffmpeg().args(["-xerror", "-i", &pl, "-f", "null", "-"]));
    // Every segment but the last (closed when the publisher left, not by a keyframe) has its
    // keyframe-to-listed latency in the histogram, and none took a second.
    let metrics = get_text(&s.url("/metrics")).await.1;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };
    let closed_by_keyframe = (entries.len() - 1) as f64;
    assert_eq!(
        sample("storef_segment_listing_seconds_count{protocol=\"rtmp\"}"),
        closed_by_keyframe
    );
    assert_eq!(
        sample("storef_segment_listing_seconds_bucket{protocol=\"rtmp\",le=\"1\"}"),
        closed_by_keyframe
    );
    assert_eq!(
        sample("storef_segment_listing_seconds_count{protocol=\"whip\"}"),
        0.0
    );
    // Segments near the GOP (1 s) at a 2 s target: every one but the last is 2 s.
    for (k, e) in entries.iter().enumerate() {
        if k + 1 < entries.len() {
            assert!((e.0 - 2.0).abs() < 0.04, "segment {k} is {}s:\n{text}", e.0);
        }
        assert!(!e.2, "one publish, no discontinuity");
    }
    assert_segments_start_on_keyframes(&s, &id, &entries, dir.path()).await;
    // Continuous timestamps and A/V start together.
    let pk = packets(&pl, "v:0");
    let mut pts: Vec<f64> = pk.iter().map(|p| p.0).collect();
    pts.sort_by(f64::total_cmp);
    for w in pts.windows(2) {
        assert!((w[1] - w[0] - 1.0 / 30.0).abs() < 0.002, "gap {:?}", w);
    }
    let streams = ffprobe_json(&pl, &["-show_entries", "stream=codec_type,start_time"]);
    let starts: Vec<f64> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_time"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 2, "video and audio");
    assert!(
        (starts[0] - starts[1]).abs() <= 0.05,
        "A/V start {starts:?}"
    );

    let vod = dir.path().join("vod.mp4");
    download(stopped["videoUrl"].as_str().unwrap(), &vod).await;
    assert_eq!(count_packets(vod.to_str().unwrap(), "v:0"), frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_inside_the_window_continues_and_expiry_stops() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 3);
    let frames = count_packets(clip.to_str().unwrap(), "v:0");
    let s = Server::start(&[("STOREF_LIVE_RECONNECT_WINDOW", "4s")]);
    let tok = token("rtmp-user", 3600);
    let started = start_stream(&s, &tok).await;
    let id = started["streamId"].as_str().unwrap().to_string();
    let url = format!(
        "{}/{}",
        started["rtmpUrl"].as_str().unwrap(),
        started["streamKey"].as_str().unwrap()
    );
    assert!(push(&clip, &url).wait().unwrap().success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(push(&clip, &url).wait().unwrap().success());
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let entries = playlist_entries(&get_text(&pl).await.1);
    let discs = entries.iter().filter(|e| e.2).count();
    assert_eq!(discs, 1, "the reconnect starts exactly one discontinuity");
    // No publisher for longer than the window: stopped as POST /stop would, VOD created.
    let mut st = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        st = status(&s, &tok, &id).await;
        if st["stream"]["status"] == "stopped" {
            break;
        }
    }
    assert_eq!(st["stream"]["status"], "stopped", "{st}");
    assert!(st["stream"]["videoId"].is_string());
    assert_eq!(count_packets(&pl, "v:0"), 2 * frames);
    let vod = dir.path().join("vod.mp4");
    download(st["stream"]["videoUrl"].as_str().unwrap(), &vod).await;
    assert_eq!(count_packets(vod.to_str().unwrap(), "v:0"), 2 * frames);
    // The stopped stream's key is refused.
    assert!(!push(&clip, &url).wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_publishing_keeps_segments_and_the_stream() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 8);
    let s = Server::start(&[("STOREF_LIVE_RECONNECT_WINDOW", "60s")]);
    let tok = token("rtmp-user", 3600);
    let started = start_stream(&s, &tok).await;
    let id = started["streamId"].as_str().unwrap().to_string();
    let url = format!(
        "{}/{}",
        started["rtmpUrl"].as_str().unwrap(),
        started["streamKey"].as_str().unwrap()
    );
    let mut child = push(&clip, &url);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let before = playlist_entries(&get_text(&pl).await.1);
    assert!(!before.is_empty(), "segments listed after 5 s");
    let s = s.restart(&[("STOREF_LIVE_RECONNECT_WINDOW", "60s")]);
    let _ = child.wait();
    let after = playlist_entries(&get_text(&pl).await.1);
    assert!(after.len() >= before.len());
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "acknowledged segments unchanged"
    );
    let st = status(&s, &tok, &id).await;
    assert_eq!(st["stream"]["status"], "live", "{st}");
    // The publisher comes back: same playlist, after a discontinuity.
    assert!(push(&clip, &url).wait().unwrap().success());
    let again = playlist_entries(&get_text(&pl).await.1);
    assert!(again.len() > after.len());
    assert!(again[after.len()].2, "the reconnect starts a discontinuity");
    stop(&s, &tok, &id).await;
    run(ffmpeg().args(["-xerror", "-i", &pl, "-f", "null", "-"]));
}
