//! Headless Debian chromium (fake camera + microphone, OpenH264) publishes over WHIP for 10 s.
//!
//! Needs Debian `chromium` + `fonts-liberation`, and node with tests/js's puppeteer-core
//! (`npm ci` in tests/js is run on first use).

mod whip_support;

use ingest::publish::IngestEvent;
use ingest::whip::{WhipConfig, WhipServer};
use packager::{Codec, TrackKind};
use std::time::{Duration, Instant};
use whip_support::{js_dir, nal_units, require, serve};

const SECONDS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_h264_and_opus_then_vanishes() {
    require("chromium", "chromium fonts-liberation");
    require("node", "nodejs");
    let js = js_dir();
    let (whip, _task) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        ice_timeout: Duration::from_secs(3),
        stats_interval: Duration::from_secs(1),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    let (http, mut published) = serve(whip.clone()).await;

    let node = tokio::process::Command::new("node")
        .arg(js.join("whip_publish.mjs"))
        .arg(format!("http://{http}/"))
        .arg(format!("http://{http}/api/whip"))
        .arg(SECONDS.to_string())
        .arg(whip_support::KEY)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let mut p = tokio::time::timeout(Duration::from_secs(60), published.recv())
        .await
        .expect("chromium did not POST an offer in 60 s")
        .unwrap();

    // Garbage on the shared media port all through the publish must not disturb it.
    let udp = whip.local_addr();
    let garbage = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0u32..2000 {
            let first = [0x00u8, 0x16, 0x80, 0x90][i as usize % 4];
            let mut d = vec![first; 20 + (i as usize * 7) % 1200];
            d[1..5].copy_from_slice(&i.to_be_bytes());
            let _ = sock.send_to(&d, udp).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let mut tracks = Vec::new();
    let mut video = Vec::new(); // (dts, keyframe, data, received at)
    let mut audio = Vec::new();
    let mut stats = Vec::new();
    let mut keyframe_asked: Option<Instant> = None;
    let mut closed_at = None;
    let deadline = Instant::now() + Duration::from_secs(SECONDS + 60);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), p.events.recv()).await {
            Ok(Some(IngestEvent::Tracks(t))) => tracks.push(t),
            Ok(Some(IngestEvent::Frame(f))) => match f.kind {
                TrackKind::Video => video.push((f.dts, f.keyframe, f.data, Instant::now())),
                TrackKind::Audio => audio.push((f.dts, f.data)),
            },
            Ok(Some(IngestEvent::Stats(s))) => stats.push(s),
            Ok(Some(IngestEvent::Frames(_))) => panic!("WHIP sends frames one by one"),
            Ok(None) => {
                closed_at = Some(Instant::now());
                break;
            }
            Err(_) => {}
        }
        // Halfway through, ask for a keyframe as the segmenter would.
        if keyframe_asked.is_none() && video.len() > 100 {
            whip.request_keyframe(&p.session_id).await.unwrap();
            keyframe_asked = Some(Instant::now());
        }
    }
    garbage.abort();
    assert!(whip.unrouted_datagrams() > 500, "garbage was not seen");
    let out = node.wait_with_output().await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("node said: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("chromium: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    assert!(
        closed_at.is_some(),
        "publisher never ended after chromium closed"
    );

    // Tracks: H.264 from in-band SPS/PPS, Opus with the defaults storef promises.
    let first = tracks.first().expect("no Tracks event");
    let v = first.iter().find(|t| t.kind == TrackKind::Video).unwrap();
    let Codec::H264 {
        avcc,
        width,
        height,
    } = &v.codec
    else {
        panic!("{v:?}")
    };
    assert_eq!((*width, *height), (640, 360));
    assert_eq!(v.timescale, 90_000);
    assert_eq!(avcc[0], 1);
    assert_eq!(avcc[4], 0xff, "4-byte NAL lengths");
    let a = first.iter().find(|t| t.kind == TrackKind::Audio).unwrap();
    assert_eq!(
        a.codec,
        Codec::Opus {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000
        }
    );
    assert_eq!(a.timescale, 48_000);

    // Video: starts on a keyframe, plausible frame rate, monotonic, length-prefixed, no AUDs.
    assert!(video[0].1, "first video frame must be a keyframe");
    let span = (video.last().unwrap().0 - video[0].0) as f64 / 90_000.0;
    let fps = (video.len() - 1) as f64 / span;
    eprintln!(
        "video: {} frames over {span:.1} s = {fps:.1} fps, {} keyframes; audio: {} frames",
        video.len(),
        video.iter().filter(|f| f.1).count(),
        audio.len()
    );
    assert!(span > SECONDS as f64 * 0.7, "video span {span}");
    assert!((10.0..=31.0).contains(&fps), "fps {fps}");
    assert!(video.windows(2).all(|w| w[1].0 > w[0].0));
    let mut annexb = Vec::new();
    for (_, key, data, _) in &video {
        let nals = nal_units(data).expect("bad length prefixes");
        assert!(!nals.is_empty());
        assert!(
            nals.iter().all(|n| !n.is_empty() && n[0] & 0x1f != 9),
            "AUD left in"
        );
        assert_eq!(*key, nals.iter().any(|n| n[0] & 0x1f == 5));
        for n in nals {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(n);
        }
    }
    // The PLI was honoured: a keyframe within 2 s of the request.
    let asked = keyframe_asked.expect("never asked for a keyframe");
    let answered = video
        .iter()
        .find(|f| f.1 && f.3 > asked)
        .map(|f| f.3 - asked);
    assert!(
        answered.is_some_and(|d| d < Duration::from_secs(2)),
        "keyframe after request: {answered:?}"
    );

    // Opus: ~50 packets/s of 20 ms, monotonic, in sync with video within half a second.
    let a_span = (audio.last().unwrap().0 - audio[0].0) as f64 / 48_000.0;
    let a_rate = (audio.len() - 1) as f64 / a_span;
    assert!((45.0..=55.0).contains(&a_rate), "opus packets/s {a_rate}");
    assert!(audio.windows(2).all(|w| w[1].0 > w[0].0));
    let skew = audio[0].0 as f64 / 48_000.0 - video[0].0 as f64 / 90_000.0;
    assert!(skew.abs() < 0.5, "A/V start skew {skew}");

    // Stats name the protocol and the codecs.
    let s = stats.last().expect("no Stats");
    assert_eq!(s["protocol"], "whip");
    assert_eq!(s["audio_codec"], "opus");
    assert!(
        s["video_codec"].as_str().unwrap().starts_with("avc1.42"),
        "{s}"
    );

    // ffmpeg decodes every picture.
    let dir = std::env::temp_dir().join(format!("whip-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("video.h264");
    std::fs::write(&file, &annexb).unwrap();
    let dec = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-f", "h264", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        dec.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&dec.stderr)
    );
}
