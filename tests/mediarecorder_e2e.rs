//! MediaRecorder chunk uploads (issue 7) against the real server, with blobs recorded by
//! Chromium 156's MediaRecorder (`ingest/testdata/upload/chromium156_mediarecorder_*`): the first
//! blob holds the header, later ones only fragments/clusters. The HLS must carry every frame the
//! concatenated blobs hold, as H.264 + Opus, with a keyframe at every segment start.

mod common;
use common::*;
use std::path::PathBuf;

fn blobs(prefix: &str, ext: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ingest/testdata/upload");
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i:03}.{ext}")))
        .take_while(|p| p.exists())
        .collect()
}

/// Frames of the blobs concatenated into one file, as ffprobe counts them. Audio that ends
/// before the first video frame is not counted: storef starts a run's audio with its first
/// keyframe so that A/V start together.
fn whole_counts(files: &[PathBuf], ext: &str) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join(format!("whole.{ext}"));
    let bytes: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    std::fs::write(&whole, bytes).unwrap();
    let w = whole.to_str().unwrap();
    let video = packets(w, "v:0");
    let first_video = video.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    // Opus packets are 20 ms.
    let audio = packets(w, "a:0")
        .iter()
        .filter(|p| p.0 + 0.020 > first_video + 1e-6)
        .count();
    (video.len() as u64, audio as u64)
}

async fn stop(s: &Server, tok: &str, id: &str) {
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn check_hls(s: &Server, id: &str, video: u64, audio: u64) {
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    assert_eq!(
        count_packets(&pl, "v:0"),
        video,
        "no video frame lost or duplicated"
    );
    assert_eq!(
        count_packets(&pl, "a:0"),
        audio,
        "no Opus packet lost or duplicated"
    );
    let c = ffprobe_json(&pl, &["-show_entries", "stream=codec_name"]);
    let names: Vec<&str> = c["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"h264") && names.contains(&"opus"),
        "{names:?}"
    );
    run(ffmpeg().args(["-xerror", "-i", &pl, "-f", "null", "-"]));
    let entries = playlist_entries(&get_text(&pl).await.1);
    let dir = tempfile::tempdir().unwrap();
    assert_segments_start_on_keyframes(s, id, &entries, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fmp4_and_webm_recorder_blobs_become_hls() {
    require_tool("ffprobe");
    let s = Server::start(&[]);
    let tok = token("recorder", 3600);
    for ext in ["mp4", "webm"] {
        let files = blobs("chromium156_mediarecorder_h264_opus_kf1s", ext);
        assert!(files.len() >= 4, "fixtures for {ext}");
        let (video, audio) = whole_counts(&files, ext);
        let id = start_stream(&s, &tok).await["streamId"]
            .as_str()
            .unwrap()
            .to_string();
        // A continuation blob before any header is refused: fMP4 fragments are recognisable
        // (400, upload the header first); Chromium's WebM blobs start mid-element and look like
        // no media file at all (415).
        let (st, b) = upload(&s, &tok, &id, "0", &files[1]).await;
        let msg = b["message"].as_str().unwrap_or_default();
        if ext == "mp4" {
            assert_eq!(st, 400, "{b}");
            assert!(msg.contains("header"), "{b}");
        } else {
            assert_eq!(st, 415, "{b}");
            assert!(msg.contains("MediaRecorder"), "{b}");
        }
        // Blob 2 before blob 1: it waits, then both are read in order.
        let order = [0usize, 2, 1].into_iter().chain(3..files.len());
        for i in order {
            let (st, b) = upload(&s, &tok, &id, &i.to_string(), &files[i]).await;
            assert_eq!(st, 200, "{ext} blob {i}: {b}");
        }
        stop(&s, &tok, &id).await;
        check_hls(&s, &id, video, audio).await;
    }
    // VP8 is refused with what to record instead.
    let vp8 = blobs("chromium156_mediarecorder_vp8_opus", "webm");
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, b) = upload(&s, &tok, &id, "0", &vp8[0]).await;
    assert_eq!(st, 415, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("codecs=avc1,opus"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_run_survives_sigkill() {
    require_tool("ffprobe");
    let files = blobs("chromium156_mediarecorder_h264_opus_nokf", "webm");
    let (video, audio) = whole_counts(&files, "webm");
    let s = Server::start(&[]);
    let tok = token("recorder", 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    let half = files.len() / 2;
    for (i, f) in files.iter().enumerate().take(half) {
        let (st, b) = upload(&s, &tok, &id, &i.to_string(), f).await;
        assert_eq!(st, 200, "{b}");
    }
    // Blobs without forced keyframes: the open segment spans chunks and lives in memory; a
    // crash must not lose the acknowledged frames in it.
    let s = s.restart(&[]);
    for (i, f) in files.iter().enumerate().skip(half) {
        let (st, b) = upload(&s, &tok, &id, &i.to_string(), f).await;
        assert_eq!(st, 200, "{b}");
    }
    stop(&s, &tok, &id).await;
    check_hls(&s, &id, video, audio).await;
}
