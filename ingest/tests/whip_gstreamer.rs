//! GStreamer 1.22 `whipsink` (webrtcbin + libnice, RSA-2048 DTLS certificate) publishes H.264
//! and Opus over WHIP. Proves the DTLS backend takes RSA client certificates and that the offer's
//! quirks (bundle-only audio on port 0, `OPUS`, 42c01f) negotiate.
//!
//! libnice never pairs with a 127.0.0.1 server candidate and gathers nothing with only `lo`, so
//! the test makes a network namespace with a veth pair (10.99.0.1 ↔ 10.99.0.2) and re-runs itself
//! inside it (`ip netns exec`): WHIP UDP on 10.99.0.1, HTTP on 127.0.0.1 of the namespace. Needs
//! root, iproute2, and the GStreamer packages listed in testdata/whip/build-whipsink.sh; the
//! plugin is built on first use into $WHIPSINK_CACHE (default target/whipsink).

mod whip_support;

use ingest::publish::IngestEvent;
use ingest::whip::{WhipConfig, WhipServer};
use packager::{Codec, TrackKind};
use std::process::Command;
use std::time::{Duration, Instant};
use whip_support::{block_on, nal_units, require, rerun_in_netns, serve};

const INNER: &str = "STOREF_WHIP_GST_INNER";
const SECONDS: u64 = 12;

#[test]
fn gstreamer_whipsink_publishes_h264_and_opus() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    require("ip", "iproute2");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    rerun_in_netns(
        "whipgst",
        "gstreamer_whipsink_publishes_h264_and_opus",
        INNER,
    );
}

fn inner() {
    block_on(async {
        let (whip, _task) = WhipServer::start(WhipConfig {
            udp_addr: "10.99.0.1:0".parse().unwrap(),
            ice_timeout: Duration::from_secs(3),
            ..WhipConfig::default()
        })
        .await
        .unwrap();
        let (http, mut published) = serve(whip.clone()).await;
        let url = format!("http://{http}/api/whip");
        // testing/whipsink-pipeline.sh, with the bearer token. whipsink ignores SIGINT and sends
        // no DELETE, so the end of the publish is the peer vanishing.
        let pipeline = format!(
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1 \
             ! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bframes=0 \
             ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 \
             ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! whip.sink_0 \
             audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc \
             ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 \
             ! whip.sink_1 whipsink name=whip whip-endpoint={url} auth-token={}",
            whip_support::KEY
        );
        let mut gst = tokio::process::Command::new("timeout")
            .args([
                "-k",
                "2",
                "-s",
                "KILL",
                &SECONDS.to_string(),
                "gst-launch-1.0",
                "-q",
            ])
            .args(pipeline.split_whitespace())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut p = tokio::time::timeout(Duration::from_secs(30), published.recv())
            .await
            .expect("whipsink did not POST an offer in 30 s")
            .unwrap();
        let mut tracks = Vec::new();
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut closed = false;
        let deadline = Instant::now() + Duration::from_secs(SECONDS + 30);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), p.events.recv()).await {
                Ok(Some(IngestEvent::Tracks(t))) => tracks.push(t),
                Ok(Some(IngestEvent::Frame(f))) if f.kind == TrackKind::Video => {
                    video.push((f.dts, f.keyframe, f.data))
                }
                Ok(Some(IngestEvent::Frame(f))) => audio.push(f.dts),
                Ok(Some(IngestEvent::Stats(_))) => {}
                Ok(Some(IngestEvent::Frames(_))) => panic!("WHIP sends frames one by one"),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => {}
            }
        }
        let _ = gst.wait().await;
        assert!(closed, "publisher not ended after whipsink went away");
        let first = tracks
            .first()
            .expect("no Tracks: DTLS with the RSA certificate failed?");
        let v = first.iter().find(|t| t.kind == TrackKind::Video).unwrap();
        let Codec::H264 {
            avcc,
            width,
            height,
        } = &v.codec
        else {
            panic!("{v:?}")
        };
        assert_eq!((*width, *height), (1280, 720));
        assert_eq!(
            &avcc[1..4],
            &[0x42, 0xc0, 0x1f],
            "x264 constrained baseline 3.1"
        );
        assert!(first.iter().any(|t| matches!(t.codec, Codec::Opus { .. })));
        let keyframes = video.iter().filter(|f| f.1).count();
        let span = (video.last().unwrap().0 - video[0].0) as f64 / 90_000.0;
        let fps = (video.len() - 1) as f64 / span;
        let a_rate =
            (audio.len() - 1) as f64 / ((audio.last().unwrap() - audio[0]) as f64 / 48_000.0);
        eprintln!(
            "gstreamer: {} video frames over {span:.1} s ({fps:.1} fps), {keyframes} keyframes, {} opus ({a_rate:.1}/s)",
            video.len(),
            audio.len()
        );
        assert!(video[0].1);
        assert!(span > (SECONDS - 6) as f64, "span {span}");
        assert!((24.0..=31.0).contains(&fps), "fps {fps}");
        assert!(
            keyframes as f64 >= span / 2.0 - 1.0,
            "key-int-max=60 at 30 fps: one per 2 s"
        );
        assert!((45.0..=55.0).contains(&a_rate), "opus rate {a_rate}");
        let mut annexb = Vec::new();
        for (_, _, data) in &video {
            for n in nal_units(data).expect("length prefixes") {
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(n);
            }
        }
        let file = std::env::temp_dir().join(format!("whip-gst-{}.h264", std::process::id()));
        std::fs::write(&file, &annexb).unwrap();
        let dec = Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-f", "h264", "-i"])
            .arg(&file)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            dec.status.success(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
        let _ = std::fs::remove_file(&file);
    });
}
