//! WHIP end to end through the product page: headless Chromium (fake camera) signs in at `/`,
//! goes live over WHIP for 20 s, a second page plays the HLS with hls.js, the page stops the
//! stream; then ffprobe checks the HLS: H.264 + Opus, keyframe at every segment start, segments
//! near the target duration (storef asks the browser for keyframes with PLI).

mod common;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_goes_live_from_the_page_and_hls_js_plays_it() {
    require_tool("chromium");
    require_tool("node");
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/puppeteer-core").exists(),
        "tests/js has no node_modules: run the README's test command (scripts/test.sh runs npm ci there)"
    );
    let s = Server::start(&[("STOREF_HLS_TARGET_DURATION", "2")]);
    let tok = token("whip-user", 3600);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio.png");
    let out = tokio::process::Command::new("node")
        .arg(js.join("studio_e2e.mjs"))
        .arg(s.url(""))
        .arg(&tok)
        .arg("20")
        .arg(&shot)
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null);
    assert_eq!(
        r["ok"],
        true,
        "page run failed: {stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    assert!(shot.exists(), "screenshot saved at {}", shot.display());
    let play = &r["play"];
    assert_eq!(play["errors"], serde_json::json!([]), "hls.js errors: {r}");
    let (t0, t1) = (play["t0"].as_f64().unwrap(), play["t1"].as_f64().unwrap());
    assert!(
        t1 > t0 + 1.0,
        "hls.js currentTime must advance while live: {t0} -> {t1}"
    );
    assert!(
        r["vod"].as_str().unwrap_or("").ends_with("/video.mp4"),
        "{r}"
    );

    // The stream, now stopped: read its playlist whole.
    let list: Value = client()
        .get(s.url("/api/streams"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let st = &list["streams"][0];
    assert_eq!(st["status"], "stopped");
    let id = st["id"].as_str().unwrap();
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let text = get_text(&pl).await.1;
    let entries = playlist_entries(&text);
    assert!(entries.len() >= 6, "20 s at a 2 s target:\n{text}");
    for (k, e) in entries.iter().enumerate() {
        if k + 1 < entries.len() {
            assert!(
                e.0 <= 4.0,
                "segment {k} is {} s: keyframes must be requested:\n{text}",
                e.0
            );
        }
    }
    let codecs = ffprobe_json(&pl, &["-show_entries", "stream=codec_type,codec_name"]);
    let names: Vec<String> = codecs["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(names.contains(&"h264".to_string()), "{names:?}");
    assert!(names.contains(&"opus".to_string()), "{names:?}");
    run(ffmpeg().args(["-xerror", "-i", &pl, "-f", "null", "-"]));
    let dir = tempfile::tempdir().unwrap();
    assert_segments_start_on_keyframes(&s, id, &entries, dir.path()).await;
    assert!(
        count_packets(&pl, "a:0") > 500,
        "about 50 Opus packets a second"
    );
}
