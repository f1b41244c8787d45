//! MediaRecorder chunk uploads (issue 7) from a real browser: headless Chromium (fake camera and
//! microphone) drives the example page at `/recorder` for 20 s in each H.264 + Opus format it
//! offers, uploading every 2 s blob as it arrives while the page's hls.js plays the live HLS.
//! After stop, the HLS must hold exactly the frames of the page's blobs concatenated into one
//! file, as H.264 + Opus in fMP4, each segment starting on a keyframe.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SECONDS: u32 = 20;

/// Frames of the blobs concatenated into one file, as ffprobe counts them, and the video's span
/// in seconds. Audio that starts before the first video frame (20 ms margin, as in
/// `tests/mediarecorder_e2e.rs`) is not counted: storef starts a run's audio with its first
/// keyframe so that A/V start together. Chromium's recorder writes 60 ms Opus packets.
fn whole_counts(files: &[PathBuf], ext: &str) -> (u64, u64, f64) {
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
    let last_video = video.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let audio = packets(w, "a:0")
        .iter()
        .filter(|p| p.0 + 0.020 > first_video + 1e-6)
        .count();
    (video.len() as u64, audio as u64, last_video - first_video)
}

/// Runs `tests/js/recorder_e2e.mjs` for one format; returns its JSON report.
async fn record_with_page(
    s: &Server,
    tok: &str,
    format: &str,
    out: &Path,
    lose_answer: Option<u32>,
) -> Value {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let run = tokio::process::Command::new("node")
        .arg(js.join("recorder_e2e.mjs"))
        .arg(s.url(""))
        .arg(tok)
        .arg(format)
        .arg(SECONDS.to_string())
        .arg(out)
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("recorder-{format}.png")))
        .args(lose_answer.map(|n| n.to_string()))
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let r: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null);
    assert_eq!(
        r["ok"],
        true,
        "{format} page run failed: {stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        s.log()
    );
    r
}

/// Records `format` with the page and checks the upload answers and the HLS. With `lose_answer`,
/// the answer to that upload request (1-based) is lost after storef handled it.
async fn check_format(s: &Server, tok: &str, format: &str, mime: &str, lose_answer: Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let r = record_with_page(s, tok, format, dir.path(), lose_answer).await;
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("recorder-{format}.png"));
    assert!(
        shot.exists(),
        "screenshot of the live page at {}",
        shot.display()
    );
    assert_eq!(r["mimeType"], mime, "{r}");
    assert_eq!(r["pageError"], "", "{r}");

    // Every blob was uploaded once, in order, and answered 200.
    let uploads = r["uploads"].as_array().unwrap();
    let produced = r["produced"].as_u64().unwrap();
    // Chromium hands over a blob when a fragment/cluster is complete after the 2 s timeslice,
    // so there are somewhat fewer blobs than SECONDS / 2.
    assert!(
        produced >= 5,
        "blobs every few seconds over {SECONDS} s: {r}"
    );
    assert_eq!(uploads.len() as u64, produced, "{r}");
    for (i, u) in uploads.iter().enumerate() {
        assert_eq!(u["seq"], i as u64, "{r}");
        assert_eq!(u["status"], 200, "{format} blob {i}: {u}");
        // Only the blob whose answer was lost is sent twice; storef recognises the same bytes.
        let lost = lose_answer == Some(i as u32 + 1);
        assert_eq!(u["attempts"], if lost { 2 } else { 1 }, "{r}");
        assert_eq!(u["duplicate"], lost, "{r}");
    }
    if let Some(n) = lose_answer {
        assert_eq!(
            r["lost"],
            serde_json::json!([{"request": n, "status": 200}]),
            "{r}"
        );
        assert_eq!(r["retries"], 1, "{r}");
    }
    let files: Vec<PathBuf> = r["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| dir.path().join(b.as_str().unwrap()))
        .collect();
    assert_eq!(files.len() as u64, produced, "every blob saved: {r}");
    let first = std::fs::read(&files[0]).unwrap();
    match format {
        "mp4" => assert_eq!(top_level_boxes(&first)[0], "ftyp", "fMP4 header blob"),
        _ => assert_eq!(first[..4], [0x1a, 0x45, 0xdf, 0xa3], "EBML header blob"),
    }
    let second = std::fs::read(&files[1]).unwrap();
    assert!(
        !second.starts_with(b"\x1a\x45\xdf\xa3")
            && top_level_boxes(&second).first().map(String::as_str) != Some("ftyp"),
        "later blobs are continuations without a header"
    );

    // hls.js in the page played the live stream.
    let play = &r["play"];
    assert_eq!(play["errors"], serde_json::json!([]), "hls.js errors: {r}");
    let (t0, t1) = (play["t0"].as_f64().unwrap(), play["t1"].as_f64().unwrap());
    assert!(
        t1 > t0 + 1.0,
        "{format}: hls.js currentTime must advance while live: {t0} -> {t1}"
    );
    assert_eq!(
        (play["width"].as_u64(), play["height"].as_u64()),
        (Some(1280), Some(720)),
        "hls.js shows the camera's picture: {r}"
    );
    assert!(r["vod"].as_str().unwrap_or("").starts_with("http"), "{r}");

    // The stream is stopped: its playlist is read whole.
    let id = r["streamId"].as_str().unwrap();
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let text = get_text(&pl).await.1;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let (video, audio, span) = whole_counts(&files, format);
    let hls_video = count_packets(&pl, "v:0");
    let hls_audio = count_packets(&pl, "a:0");
    eprintln!(
        "{format}: {produced} blobs, {} bytes; blobs hold {video} video frames over {span:.2} s / {audio} audio packets, HLS {hls_video} / {hls_audio}",
        uploads.iter().map(|u| u["bytes"].as_u64().unwrap()).sum::<u64>()
    );
    // Recording starts after the page is up and the last blob is cut at stop.
    assert!(
        span >= f64::from(SECONDS - 6) && audio >= 100,
        "{format}: {video} video frames over {span} s, {audio} audio packets"
    );
    assert_eq!(
        hls_video, video,
        "{format}: no video frame lost or duplicated"
    );
    assert_eq!(
        hls_audio, audio,
        "{format}: no Opus packet lost or duplicated"
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

    let entries = playlist_entries(&text);
    assert!(entries.len() >= 6, "{SECONDS} s at 2 s keyframes:\n{text}");
    let seg_dir = tempfile::tempdir().unwrap();
    for (k, e) in entries.iter().enumerate() {
        if k + 1 < entries.len() {
            assert!(
                e.0 <= 4.0,
                "segment {k} is {} s with a keyframe every 2 s:\n{text}",
                e.0
            );
        }
        let (one, init) = standalone_segment(s, id, k, e, seg_dir.path()).await;
        // Opus in ISO BMFF: an `Opus` sample entry with its `dOps` box (Opus-in-ISOBMFF §4.3).
        assert!(
            init.windows(4).any(|w| w == b"Opus") && init.windows(4).any(|w| w == b"dOps"),
            "init {} carries Opus",
            e.3
        );
        let pk = packets(one.to_str().unwrap(), "v:0");
        assert!(
            !pk.is_empty() && pk[0].1,
            "{format}: segment {k} starts with a keyframe"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_mediarecorder_page_uploads_mp4_and_webm_chunks() {
    require_tool("chromium");
    require_tool("node");
    require_tool("ffprobe");
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/puppeteer-core").exists(),
        "tests/js has no node_modules: run the README's test command (scripts/test.sh runs npm ci there)"
    );
    let s = Server::start(&[("STOREF_HLS_TARGET_DURATION", "2")]);
    let tok = token("recorder-page", 3600);
    check_format(&s, &tok, "mp4", "video/mp4;codecs=avc1,opus", None).await;
    // The answer to the third upload is lost on the way back: the page resends the same bytes.
    check_format(&s, &tok, "webm", "video/webm;codecs=h264,opus", Some(3)).await;
}
