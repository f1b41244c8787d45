//! ICE-TCP (RFC 6544 passive host candidates, RFC 4571 framing).
//!
//! - Headless Debian chromium publishes to an answer that carries only the TCP candidate
//!   (`advertise_udp: false`): ICE connects over TCP, H.264 and Opus arrive, the UDP socket gets
//!   nothing.
//! - With both candidates, chromium takes UDP (TCP ranks lower), and garbage, an oversized frame,
//!   an unknown ufrag and a silent connection on the TCP port are each closed without disturbing it.
//! - GStreamer `whipsink` (webrtcbin + libnice, a second ICE-TCP implementation) publishes over
//!   TCP only too, in a network namespace as in whip_gstreamer.rs.
//! - The cap on connections that have not authenticated.
//!
//! Needs Debian `chromium` + `fonts-liberation`, and node with tests/js's puppeteer-core.
//!
//! Loopback is enough: Chromium 156 pairs its active TCP candidate with storef's passive one on
//! 127.0.0.1 without `--allow-loopback-in-peer-connection` or a network namespace (the selected
//! pair is a peer-reflexive 127.0.0.1 TCP candidate against storef's host candidate), unlike
//! libnice in whip_gstreamer.rs.

mod whip_support;

use ingest::publish::IngestEvent;
use ingest::whip::rfc4571::{frame, MAX_FRAME};
use ingest::whip::{WhipConfig, WhipHandle, WhipServer};
use packager::TrackKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use whip_support::{block_on, js_dir, require, rerun_in_netns, serve, Published};

const SECONDS: u64 = 8;

async fn server(advertise_udp: bool) -> WhipHandle {
    let (whip, _task) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        tcp_addr: Some("127.0.0.1:0".parse().unwrap()),
        advertise_udp,
        ice_timeout: Duration::from_secs(3),
        stats_interval: Duration::from_secs(1),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    whip
}

/// Starts chromium publishing for [`SECONDS`] to `whip`; returns the publish and node's process.
async fn chromium(whip: &WhipHandle) -> (Published, tokio::process::Child) {
    require("chromium", "chromium fonts-liberation");
    require("node", "nodejs");
    let js = js_dir();
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
    let p = tokio::time::timeout(Duration::from_secs(60), published.recv())
        .await
        .expect("chromium did not POST an offer in 60 s")
        .unwrap();
    (p, node)
}

#[derive(Default)]
struct Received {
    /// (dts, keyframe, received at)
    video: Vec<(i64, bool, Instant)>,
    audio: usize,
    stats: Vec<serde_json::Value>,
}

impl Received {
    fn take(&mut self, ev: IngestEvent) {
        match ev {
            IngestEvent::Frame(f) => match f.kind {
                TrackKind::Video => self.video.push((f.dts, f.keyframe, Instant::now())),
                TrackKind::Audio => self.audio += 1,
            },
            IngestEvent::Stats(s) => self.stats.push(s),
            IngestEvent::Tracks(_) => {}
            IngestEvent::Frames(_) => panic!("WHIP sends frames one by one"),
        }
    }

    fn keyframes(&self) -> usize {
        self.video.iter().filter(|v| v.1).count()
    }
}

async fn node_report(node: tokio::process::Child) -> serde_json::Value {
    let out = node.wait_with_output().await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("node said: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("chromium: {report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_over_ice_tcp_when_only_tcp_is_offered() {
    let whip = server(false).await;
    assert!(whip.candidates().is_empty());
    let tcp = whip.tcp_local_addr().unwrap();
    assert_eq!(whip.tcp_candidates(), [tcp]);
    let (mut p, node) = chromium(&whip).await;

    let mut got = Received::default();
    let deadline = Instant::now() + Duration::from_secs(SECONDS + 30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), p.events.recv()).await {
            Ok(Some(ev)) => got.take(ev),
            Ok(None) => break, // chromium closed, ICE timeout ended the publisher
            Err(_) => {}
        }
    }
    let report = node_report(node).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    let pair = &report["selectedPair"];
    assert_eq!(pair["local"]["protocol"], "tcp", "{pair}");
    assert_eq!(pair["remote"]["protocol"], "tcp", "{pair}");
    assert_eq!(pair["remote"]["tcpType"], "passive", "{pair}");
    assert_eq!(pair["remote"]["port"], tcp.port(), "{pair}");

    let t = whip.transport_stats();
    eprintln!(
        "ICE-TCP: {} video frames ({} keyframes), {} Opus frames, {t:?}",
        got.video.len(),
        got.keyframes(),
        got.audio
    );
    assert_eq!(t.udp_datagrams, 0, "nothing may have come over UDP: {t:?}");
    // Every media frame came in at least one RFC 4571 frame (plus STUN, DTLS, RTCP).
    assert!(t.tcp_frames as usize > got.video.len() + got.audio, "{t:?}");
    assert_eq!(t.tcp_dropped, 0, "{t:?}");
    // Media flowed: ~30 fps video starting on a keyframe, ~50 Opus packets/s.
    assert!(
        got.video.first().is_some_and(|v| v.1),
        "first frame must be a keyframe"
    );
    let secs = SECONDS as f64;
    assert!(
        got.video.len() as f64 > secs * 0.6 * 15.0,
        "{} video frames",
        got.video.len()
    );
    assert!(
        got.audio as f64 > secs * 0.6 * 50.0,
        "{} Opus frames",
        got.audio
    );
    assert!(got.video.windows(2).all(|w| w[1].0 > w[0].0));
    let s = got.stats.last().expect("no Stats");
    assert_eq!(s["transport"], "tcp", "{s}");
    assert!(
        got.stats
            .iter()
            .any(|s| s["ice_state"] == "connected" || s["ice_state"] == "completed"),
        "storef's ICE agent never connected: {:?}",
        got.stats
            .iter()
            .map(|s| &s["ice_state"])
            .collect::<Vec<_>>()
    );
    assert_eq!(s["audio_codec"], "opus", "{s}");
}

/// Opens a connection to `addr`, sends `bytes`, and says how long until storef closed it (None:
/// still open after `wait`).
async fn closed_after(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Duration> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    if !bytes.is_empty() {
        c.write_all(bytes).await.unwrap();
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, c.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Some(t0.elapsed()),
        Ok(Ok(n)) => panic!("storef answered {n} bytes: {:?}", &buf[..n]),
        Err(_) => None,
    }
}

/// A Binding request with USERNAME, PRIORITY and a bogus MESSAGE-INTEGRITY (what str0m's parser
/// requires), framed.
fn stun_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&[0x00, 0x06]);
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x7f, 0x1e, 0xff]); // PRIORITY
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut p = vec![0x00, 0x01];
    p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    p.extend_from_slice(&[0x42; 12]);
    p.extend_from_slice(&attrs);
    let mut out = Vec::new();
    frame(&p, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tcp_connections_are_closed_while_chromium_publishes_over_udp() {
    let whip = server(true).await;
    let tcp = whip.tcp_local_addr().unwrap();
    let (mut p, node) = chromium(&whip).await;

    let mut got = Received::default();
    let mut bad = None;
    let deadline = Instant::now() + Duration::from_secs(SECONDS + 30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), p.events.recv()).await {
            Ok(Some(ev)) => got.take(ev),
            Ok(None) => break,
            Err(_) => {}
        }
        // Once media flows, throw the bad connections at the TCP port, all at once.
        if bad.is_none() && got.video.len() > 30 {
            let frames_before = got.video.len();
            bad = Some((
                frames_before,
                tokio::spawn(async move {
                    let wait = Duration::from_secs(6);
                    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
                    let mut rtp = Vec::new();
                    frame(&[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], &mut rtp).unwrap();
                    let oversized = ((MAX_FRAME + 1) as u16).to_be_bytes().to_vec();
                    let unknown = stun_request("nosuchufrag:abcd");
                    let r = tokio::join!(
                        closed_after(tcp, &http, wait),
                        closed_after(tcp, &rtp, wait),
                        closed_after(tcp, &[0xff, 0xff], wait),
                        closed_after(tcp, &oversized, wait),
                        closed_after(tcp, &unknown, wait),
                        // Says nothing (one zero-length frame): dropped after ice_timeout (3 s).
                        closed_after(tcp, &[0, 0], wait),
                    );
                    [r.0, r.1, r.2, r.3, r.4, r.5]
                }),
            ));
        }
    }
    let report = node_report(node).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    // Both candidates offered: the UDP pair wins (TCP's candidates rank lower).
    let pair = &report["selectedPair"];
    assert_eq!(pair["local"]["protocol"], "udp", "{pair}");
    assert_eq!(pair["remote"]["protocol"], "udp", "{pair}");
    let s = got.stats.last().expect("no Stats");
    assert_eq!(s["transport"], "udp", "{s}");

    let (frames_before, closes) = bad.expect("video never flowed");
    let closes = closes.await.unwrap();
    eprintln!("bad TCP connections closed after {closes:?}");
    for (i, c) in closes.iter().take(5).enumerate() {
        assert!(
            c.is_some_and(|d| d < Duration::from_secs(1)),
            "bad connection {i} not closed at once: {c:?}"
        );
    }
    assert!(
        closes[5].is_some_and(|d| d >= Duration::from_secs(3) && d < Duration::from_secs(5)),
        "silent connection: {:?}",
        closes[5]
    );
    let t = whip.transport_stats();
    eprintln!(
        "UDP publisher: {} video frames ({} after the bad input), {} Opus frames, {t:?}",
        got.video.len(),
        got.video.len() - frames_before,
        got.audio
    );
    // Besides the six, chromium may open a TCP connection of its own for the TCP pair while the
    // UDP checks are under way (a CI run on a loaded machine did: one, never checked because
    // UDP won first, so silent until the ICE timeout or closed by chromium, which is no drop).
    let chromium_tcp = t
        .tcp_connections
        .checked_sub(6)
        .expect("bad connections not counted");
    assert!(chromium_tcp <= 2, "{t:?}");
    // Five were refused at once for what they sent; the silent one (and a silent chromium one)
    // timed out.
    assert_eq!(t.tcp_dropped - t.tcp_timed_out, 5, "{t:?}");
    assert!((1..=1 + chromium_tcp).contains(&t.tcp_timed_out), "{t:?}");
    // The UDP publisher did not notice: frames kept coming after the bad input, with no stall
    // (OpenH264 under test runs at 15-30 fps; 10 fps is the floor whip_chromium.rs allows too).
    let after = &got.video[frames_before..];
    assert!(
        after.len() as f64 > (SECONDS as f64 - 3.0) * 10.0,
        "{} frames after",
        after.len()
    );
    let stall = after
        .windows(2)
        .map(|w| w[1].2 - w[0].2)
        .max()
        .unwrap_or_default();
    assert!(
        stall < Duration::from_millis(700),
        "video stalled {stall:?}"
    );
    assert!(
        got.audio as f64 > SECONDS as f64 * 0.6 * 50.0,
        "{} Opus frames",
        got.audio
    );
    assert!(got.video.windows(2).all(|w| w[1].0 > w[0].0));
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_and_time_out() {
    let (whip, _task) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        tcp_addr: Some("127.0.0.1:0".parse().unwrap()),
        ice_timeout: Duration::from_secs(2),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    let tcp = whip.tcp_local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(tcp).await.unwrap());
    }
    // The 65th is refused at once; the 64 stay open until the ICE timeout.
    let t0 = Instant::now();
    let refused = closed_after(tcp, &[], Duration::from_secs(1)).await;
    assert!(refused.is_some(), "65th connection not refused");
    let mut buf = [0u8; 8];
    for c in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let t = whip.transport_stats();
    assert_eq!((t.tcp_connections, t.tcp_dropped), (65, 65), "{t:?}");
    assert_eq!(
        t.tcp_timed_out, 64,
        "the refused 65th did not time out: {t:?}"
    );
    // Once they are gone, a new connection is accepted again (and held).
    assert_eq!(
        closed_after(tcp, &[], Duration::from_millis(500)).await,
        None
    );
}

const GST_INNER: &str = "STOREF_WHIP_TCP_GST_INNER";

#[test]
fn gstreamer_whipsink_publishes_over_ice_tcp() {
    if std::env::var_os(GST_INNER).is_some() {
        return gstreamer_inner();
    }
    require("ip", "iproute2");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    rerun_in_netns(
        "whiptcp",
        "gstreamer_whipsink_publishes_over_ice_tcp",
        GST_INNER,
    );
}

fn gstreamer_inner() {
    block_on(async {
        let (whip, _task) = WhipServer::start(WhipConfig {
            udp_addr: "10.99.0.1:0".parse().unwrap(),
            tcp_addr: Some("10.99.0.1:0".parse().unwrap()),
            advertise_udp: false,
            ice_timeout: Duration::from_secs(3),
            stats_interval: Duration::from_secs(1),
            ..WhipConfig::default()
        })
        .await
        .unwrap();
        let (http, mut published) = serve(whip.clone()).await;
        let url = format!("http://{http}/api/whip");
        let pipeline = format!(
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1 \
             ! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bframes=0 \
             ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 \
             ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! whip.sink_0 \
             audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc \
             ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 \
             ! whip.sink_1 whipsink name=whip whip-endpoint={url} auth-token={}",
            whip_support::KEY
        );
        let secs = 10u64;
        let mut gst = tokio::process::Command::new("timeout")
            .args([
                "-k",
                "2",
                "-s",
                "KILL",
                &secs.to_string(),
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
        let mut got = Received::default();
        let deadline = Instant::now() + Duration::from_secs(secs + 30);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), p.events.recv()).await {
                Ok(Some(ev)) => got.take(ev),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let _ = gst.wait().await;
        let t = whip.transport_stats();
        eprintln!(
            "whipsink over ICE-TCP: {} video frames ({} keyframes), {} Opus frames, {t:?}",
            got.video.len(),
            got.keyframes(),
            got.audio
        );
        assert_eq!(t.udp_datagrams, 0, "{t:?}");
        assert_eq!(t.tcp_dropped, 0, "{t:?}");
        assert!(t.tcp_frames as usize > got.video.len() + got.audio, "{t:?}");
        assert!(
            got.video.first().is_some_and(|v| v.1),
            "first frame must be a keyframe"
        );
        // x264 at 30 fps with a keyframe every 2 s, Opus at 50 packets/s, for most of the run.
        assert!(
            got.video.len() as f64 > (secs - 5) as f64 * 25.0,
            "{}",
            got.video.len()
        );
        assert!(got.keyframes() >= 2, "{}", got.keyframes());
        assert!(got.audio as f64 > (secs - 5) as f64 * 45.0, "{}", got.audio);
        assert!(got.video.windows(2).all(|w| w[1].0 > w[0].0));
        let s = got.stats.last().expect("no Stats");
        assert_eq!(s["transport"], "tcp", "{s}");
    });
}
