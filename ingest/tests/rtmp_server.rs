//! `ingest::rtmp::serve` against real publishers: ffmpeg (Debian 5.1, `ffmpeg -re … -f flv`) and
//! the rml_rtmp-based `PublishClient`. Needs `ffmpeg` and `ffprobe` on PATH.

use bytes::Bytes;
use ingest::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use ingest::rtmp::client::{ClientError, PublishClient};
use ingest::rtmp::{serve, RtmpConfig};
use packager::{Codec, TrackKind};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One accepted publish, as the server side sees it.
struct Accepted {
    key: String,
    info: PublisherInfo,
    events: mpsc::Receiver<IngestEvent>,
    cancel: CancellationToken,
}

/// Knows a fixed set of keys; a key whose events sender is still alive is "already publishing";
/// `stopped` keys are refused as stopped.
struct TestGate {
    keys: Vec<String>,
    stopped: Vec<String>,
    live: Mutex<HashMap<String, mpsc::WeakSender<IngestEvent>>>,
    accepted: mpsc::UnboundedSender<Accepted>,
    capacity: usize,
}

impl PublishGate for TestGate {
    fn start_publish(&self, key: &str, info: PublisherInfo) -> Result<Publisher, Refusal> {
        if self.stopped.iter().any(|k| k == key) {
            return Err(Refusal::Stopped);
        }
        if !self.keys.iter().any(|k| k == key) {
            return Err(Refusal::UnknownKey);
        }
        let mut live = self.live.lock().unwrap();
        if live.get(key).and_then(|w| w.upgrade()).is_some() {
            return Err(Refusal::AlreadyPublishing);
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        live.insert(key.to_string(), tx.downgrade());
        let cancel = CancellationToken::new();
        let _ = self.accepted.send(Accepted {
            key: key.to_string(),
            info,
            events: rx,
            cancel: cancel.clone(),
        });
        Ok(Publisher {
            stream_id: format!("stream-{key}"),
            events: tx,
            cancel,
        })
    }
}

struct Server {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Accepted>,
}

async fn start(keys: &[&str], config: RtmpConfig, capacity: usize) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, keys, config, capacity)
}

/// A listener whose connections carry 1400-byte segments, as on a real network, not loopback's
/// 64 KiB: Linux ignores a socket's wake threshold while the receive window is no bigger than
/// one segment.
fn small_mss_listener() -> tokio::net::TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_tcp_mss(1400).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(16).unwrap();
    s.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(s.into()).unwrap()
}

fn start_on(
    listener: tokio::net::TcpListener,
    keys: &[&str],
    config: RtmpConfig,
    capacity: usize,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(TestGate {
        keys: keys.iter().map(|s| s.to_string()).collect(),
        stopped: vec!["stopped".to_string()],
        live: Mutex::new(HashMap::new()),
        accepted: tx,
        capacity,
    });
    tokio::spawn(serve(listener, gate, config));
    Server { addr, accepted: rx }
}

/// Short timeouts; publishing sockets are read on ticks, so the tests using this cover that
/// mode (the ffmpeg test covers both).
fn fast_config() -> RtmpConfig {
    RtmpConfig {
        handshake_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(1500),
        stats_interval: Duration::from_millis(300),
        close_linger: Duration::from_millis(300),
        read_tick: Duration::from_millis(5),
        ..RtmpConfig::default()
    }
}

impl Server {
    async fn next_accepted(&mut self) -> Accepted {
        tokio::time::timeout(Duration::from_secs(20), self.accepted.recv())
            .await
            .expect("a publish within 20 s")
            .expect("gate alive")
    }
}

/// Collects a publish's events until the sender is dropped.
#[derive(Default, Debug)]
struct Collected {
    tracks: Vec<Vec<packager::Track>>,
    video: Vec<packager::MediaFrame>,
    audio: Vec<packager::MediaFrame>,
    stats: Vec<serde_json::Value>,
}

async fn collect(mut events: mpsc::Receiver<IngestEvent>, limit: Duration) -> Collected {
    let mut c = Collected::default();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
        for f in e.frames() {
            match f.kind {
                TrackKind::Video => c.video.push(f.clone()),
                TrackKind::Audio => c.audio.push(f.clone()),
            }
        }
        match e {
            IngestEvent::Tracks(t) => c.tracks.push(t),
            IngestEvent::Stats(s) => c.stats.push(s),
            IngestEvent::Frame(_) | IngestEvent::Frames(_) => {}
        }
    }
    c
}

/// The 6 s test clip of TESTING.md (H.264 High with B-frames, 1 s GOP, 48 kHz AAC), made once.
fn clip() -> &'static Path {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("storef-rtmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip.mp4");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=30")
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "6", "-c:v", "libx264", "-preset", "veryfast"])
            .args(["-profile:v", "high", "-bf", "3", "-g", "30"])
            .args(["-c:a", "aac", "-b:a", "128k"])
            .arg(&path)
            .status()
            .expect("ffmpeg installed");
        assert!(status.success());
        path
    })
}

/// ffprobe's packet count of one stream of the clip.
fn ffprobe_packets(path: &Path, stream: &str) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe installed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn ffmpeg_publish(path: &Path, url: &str) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-i"])
        .arg(path)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_delivers_every_frame_of_the_clip() {
    assert_eq!(RtmpConfig::default().read_tick, Duration::ZERO);
    ffmpeg_publish_delivers_every_frame(RtmpConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_read_on_ticks_delivers_every_frame_of_the_clip() {
    let config = RtmpConfig {
        read_tick: Duration::from_millis(20),
        ..RtmpConfig::default()
    };
    ffmpeg_publish_delivers_every_frame(config).await;
}

async fn ffmpeg_publish_delivers_every_frame(config: RtmpConfig) {
    let clip = clip();
    let video_packets = ffprobe_packets(clip, "v:0");
    let audio_packets = ffprobe_packets(clip, "a:0");
    let mut server = start(&["key1"], config, 64).await;
    let mut ffmpeg = ffmpeg_publish(clip, &format!("rtmp://{}/live/key1", server.addr));
    let accepted = server.next_accepted().await;
    assert_eq!(accepted.key, "key1");
    assert_eq!(accepted.info.protocol, "rtmp");
    assert_eq!(accepted.info.remote.unwrap().ip(), server.addr.ip());
    let c = collect(accepted.events, Duration::from_secs(30)).await;
    let status = ffmpeg.wait().await.unwrap();
    assert!(status.success(), "{status:?}");

    assert_eq!(c.tracks.len(), 1, "{:?}", c.tracks);
    let tracks = &c.tracks[0];
    assert!(matches!(
        tracks[0].codec,
        Codec::H264 {
            width: 640,
            height: 360,
            ..
        }
    ));
    assert!(tracks[0].codec.rfc6381().starts_with("avc1.64"));
    assert!(matches!(
        tracks[1].codec,
        Codec::Aac {
            sample_rate: 48000,
            ..
        }
    ));
    assert_eq!(tracks[1].timescale, 48000);
    assert_eq!(c.video.len(), video_packets);
    assert_eq!(c.audio.len(), audio_packets);
    // 1 s GOP at 30 fps: keyframes every 90 000 ticks, B-frames, exact audio steps.
    let keys: Vec<i64> = c
        .video
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.dts)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.windows(2).all(|w| (w[1] - w[0] - 90_000).abs() <= 90));
    assert!(c.video.iter().any(|f| f.cts_offset > 0));
    assert!(c.audio.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
    // A/V start together (both at RTMP time 0 from ffmpeg).
    assert!((c.video[0].dts / 90 - c.audio[0].dts / 48).abs() <= 50);
    // -re pacing over 6 s: at least one stats report while publishing.
    let s = c.stats.last().expect("stats while publishing");
    assert_eq!(s["videoCodec"], tracks[0].codec.rfc6381());
    assert_eq!(s["width"], 640);
    assert_eq!(s["audioSampleRate"], 48000);
    assert_eq!(
        s["remote"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    assert!(s["bitrateKbps"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_with_an_unknown_key_is_refused() {
    let server = start(&["key1"], fast_config(), 64).await;
    let ffmpeg = ffmpeg_publish(clip(), &format!("rtmp://{}/live/nope", server.addr));
    let out = tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait_with_output())
        .await
        .expect("ffmpeg gives up")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown stream key"), "{stderr}");
}

#[tokio::test]
async fn bad_and_stopped_keys_and_a_second_publisher_are_refused_with_rtmp_statuses() {
    let mut server = start(&["key1"], fast_config(), 64).await;
    let to = Duration::from_secs(5);
    match PublishClient::publish(server.addr, "live", "nope", to).await {
        Err(ClientError::Refused { code }) => assert_eq!(code, "NetStream.Publish.BadName"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
    match PublishClient::publish(server.addr, "live", "stopped", to).await {
        Err(ClientError::Refused { code }) => assert_eq!(code, "NetStream.Publish.BadName"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
    let _first = PublishClient::publish(server.addr, "live", "key1", to)
        .await
        .unwrap();
    let accepted = server.next_accepted().await;
    match PublishClient::publish(server.addr, "live", "key1", to).await {
        Err(ClientError::Refused { code }) => {
            assert_eq!(code, "NetStream.Publish.BadConnection")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
    // The first publisher is unaffected.
    assert!(!accepted.events.is_closed());
    match PublishClient::publish(server.addr, "other-app", "key1", to).await {
        Err(ClientError::Refused { .. }) | Err(ClientError::Closed) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
}

/// The first AVC and AAC sequence headers and a keyframe, as a publisher would send them.
fn avc_sequence_header() -> Bytes {
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    let mut b = vec![
        0x17,
        0,
        0,
        0,
        0,
        1,
        0x64,
        0x00,
        0x1f,
        0xff,
        0xe1,
        0,
        sps.len() as u8,
    ];
    b.extend_from_slice(sps);
    b.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
    Bytes::from(b)
}

fn video_frame(keyframe: bool) -> Bytes {
    let first = if keyframe { 0x17 } else { 0x27 };
    let nal = if keyframe { 0x65 } else { 0x41 };
    Bytes::from(vec![first, 1, 0, 0, 0, 0, 0, 0, 3, nal, 0x88, 0x84])
}

fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xaf, 0, 0x11, 0x90])
}

fn aac_frame() -> Bytes {
    Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x05, 0x20])
}

/// Publishes `seconds` of 30 fps video + 48 kHz audio (timestamps from `start_ms`), unpaced.
async fn send_media(c: &mut PublishClient, start_ms: u32, seconds: u32) {
    c.send_video(start_ms, avc_sequence_header()).await.unwrap();
    c.send_audio(start_ms, aac_sequence_header()).await.unwrap();
    let mut audio_ms = start_ms as f64;
    for i in 0..seconds * 30 {
        let ts = start_ms + i * 1000 / 30;
        c.send_video(ts, video_frame(i % 30 == 0)).await.unwrap();
        while audio_ms < f64::from(ts) + 33.3 {
            c.send_audio(audio_ms as u32, aac_frame()).await.unwrap();
            audio_ms += 1024.0 * 1000.0 / 48000.0;
        }
    }
}

#[tokio::test]
async fn tcp_close_without_fcunpublish_ends_the_publish_and_a_reconnect_continues() {
    let mut server = start(&["key1"], fast_config(), 4096).await;
    let to = Duration::from_secs(5);
    let mut c = PublishClient::publish(server.addr, "live", "key1", to)
        .await
        .unwrap();
    let first = server.next_accepted().await;
    send_media(&mut c, 0, 2).await;
    // OBS style: drop the TCP connection, no FCUnpublish/deleteStream.
    drop(c);
    let started = Instant::now();
    let got = collect(first.events, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sender dropped promptly"
    );
    assert_eq!(got.video.len(), 60);
    assert_eq!(got.tracks.len(), 1);

    // Reconnect with the same key: accepted again, a new run of events.
    let mut c = PublishClient::publish(server.addr, "live", "key1", to)
        .await
        .unwrap();
    let second = server.next_accepted().await;
    assert_eq!(second.key, "key1");
    send_media(&mut c, 2000, 1).await;
    // ffmpeg style: deleteStream ends the publish while the socket stays open.
    c.stop().await.unwrap();
    let got = collect(second.events, Duration::from_secs(5)).await;
    assert_eq!(got.tracks.len(), 1);
    assert_eq!(got.video.len(), 30);
    assert_eq!(got.video[0].dts, 2000 * 90);
    assert!(got.video[0].keyframe);
}

/// A publisher that goes quiet with fewer bytes queued than its socket's wake threshold: those
/// bytes are read anyway, by the connection's timer, long before the idle timeout (the stats
/// tick that could also lower the threshold is seconds away).
#[tokio::test]
async fn frames_below_the_wake_threshold_arrive_when_the_publisher_goes_quiet() {
    let config = RtmpConfig {
        idle_timeout: Duration::from_secs(10),
        stats_interval: Duration::from_millis(2000),
        // At ~100 kB/s this asks for 100 kB: the threshold is the cap.
        read_coalesce: Duration::from_secs(1),
        ..RtmpConfig::default()
    };
    let mut server = start_on(small_mss_listener(), &["key1"], config, 4096);
    let mut c = PublishClient::publish(server.addr, "live", "key1", Duration::from_secs(5))
        .await
        .unwrap();
    let mut accepted = server.next_accepted().await;
    let frame = |i: u32| {
        let mut b = video_frame(i.is_multiple_of(25)).to_vec();
        b.resize(2000, 0x5a);
        // The NAL unit's length prefix covers the padding.
        b[5..9].copy_from_slice(&(2000u32 - 9).to_be_bytes());
        Bytes::from(b)
    };
    c.send_video(0, avc_sequence_header()).await.unwrap();
    // 2.3 s at 50 frames/s of 2000 bytes: the 2 s stats tick raises the threshold.
    let mut i = 0;
    while i < 115 {
        c.send_video(i * 20, frame(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        i += 1;
    }
    // 3 frames, 6 kB, below the 16 KiB threshold; then nothing, the socket open.
    for _ in 0..3 {
        c.send_video(i * 20, frame(i)).await.unwrap();
        i += 1;
    }
    let quiet_at = Instant::now();
    let mut video = 0;
    while video < i {
        let e = tokio::time::timeout(Duration::from_secs(5), accepted.events.recv())
            .await
            .expect("every frame within 5 s")
            .expect("publish still open");
        video += e
            .frames()
            .iter()
            .filter(|f| f.kind == TrackKind::Video)
            .count() as u32;
    }
    let took = quiet_at.elapsed();
    // The queued-bytes read (250 ms) and the batch's wait (250 ms), well before the next stats
    // tick (~1.7 s away).
    assert!(took < Duration::from_millis(1200), "{took:?}");
    assert_eq!(video, 118);
}

#[tokio::test]
async fn a_stalled_publisher_is_closed_after_the_idle_timeout() {
    let mut server = start(&["key1"], fast_config(), 4096).await;
    let mut c = PublishClient::publish(server.addr, "live", "key1", Duration::from_secs(5))
        .await
        .unwrap();
    let accepted = server.next_accepted().await;
    send_media(&mut c, 0, 1).await;
    let stalled_at = Instant::now();
    // Send nothing more, keep the socket open.
    let got = collect(accepted.events, Duration::from_secs(10)).await;
    let after = stalled_at.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_secs(4),
        "{after:?}"
    );
    assert_eq!(got.video.len(), 30);
    // The server closed the socket.
    let mut closed = false;
    for _ in 0..20 {
        if let Err(ClientError::Closed) = c.poll_server(Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed);
}

#[tokio::test]
async fn garbage_and_truncated_handshakes_are_closed() {
    let server = start(&["key1"], fast_config(), 64).await;
    // Garbage: closed at once.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    assert!(read_to_close(&mut s, Duration::from_secs(3)).await);
    assert!(t.elapsed() < Duration::from_millis(700));
    // Truncated: C0 + half a C1, then silence: closed by the handshake timeout (0.8 s).
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[3u8; 700]).await.unwrap();
    let t = Instant::now();
    assert!(read_to_close(&mut s, Duration::from_secs(5)).await);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

async fn read_to_close(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_malformed_tag_closes_that_connection_only() {
    let mut server = start(&["a", "b"], fast_config(), 4096).await;
    let to = Duration::from_secs(5);
    let mut a = PublishClient::publish(server.addr, "live", "a", to)
        .await
        .unwrap();
    let got_a = server.next_accepted().await;
    let mut b = PublishClient::publish(server.addr, "live", "b", to)
        .await
        .unwrap();
    let got_b = server.next_accepted().await;
    send_media(&mut a, 0, 1).await;
    send_media(&mut b, 0, 1).await;
    // Sorenson H.263 in the middle of a's H.264.
    a.send_video(1100, Bytes::from_static(&[0x22, 0, 0, 0]))
        .await
        .unwrap();
    let got_a = collect(got_a.events, Duration::from_secs(5)).await;
    assert_eq!(got_a.video.len(), 30, "frames before the bad tag arrive");
    // b keeps going on the same server.
    for i in 30..60u32 {
        b.send_video(i * 1000 / 30, video_frame(i % 30 == 0))
            .await
            .unwrap();
    }
    b.stop().await.unwrap();
    let got_b = collect(got_b.events, Duration::from_secs(5)).await;
    assert_eq!(got_b.video.len(), 60);
}

#[tokio::test]
async fn cancelling_the_publisher_closes_the_connection() {
    let mut server = start(&["key1"], fast_config(), 4096).await;
    let mut c = PublishClient::publish(server.addr, "live", "key1", Duration::from_secs(5))
        .await
        .unwrap();
    let mut accepted = server.next_accepted().await;
    send_media(&mut c, 0, 1).await;
    let mut video = 0;
    while video < 30 {
        if let Some(e) = accepted.events.recv().await {
            video += e
                .frames()
                .iter()
                .filter(|f| f.kind == TrackKind::Video)
                .count();
        }
    }
    // `POST /stop`: the server cancels; the connection drops its sender and closes.
    accepted.cancel.cancel();
    let got = collect(accepted.events, Duration::from_secs(3)).await;
    assert!(got.video.is_empty());
    let mut closed = false;
    for _ in 0..20 {
        if let Err(ClientError::Closed) = c.poll_server(Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed);
}

#[tokio::test]
async fn a_stuck_stream_session_does_not_stall_other_connections() {
    // Channel capacity 1 and nobody reads "slow": its connection blocks on `send().await`.
    let mut server = start(&["slow", "fast"], fast_config(), 1).await;
    let to = Duration::from_secs(5);
    let mut slow = PublishClient::publish(server.addr, "live", "slow", to)
        .await
        .unwrap();
    let slow_accepted = server.next_accepted().await;
    let slow_task = tokio::spawn(async move {
        // This blocks once TCP buffers fill; that is fine, it is its own task.
        let _ = slow.send_video(0, avc_sequence_header()).await;
        for i in 0..300u32 {
            if slow
                .send_video(i * 33, video_frame(i % 30 == 0))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut fast = PublishClient::publish(server.addr, "live", "fast", to)
        .await
        .unwrap();
    let fast_accepted = server.next_accepted().await;
    let t = Instant::now();
    send_media(&mut fast, 0, 2).await;
    fast.stop().await.unwrap();
    let mut events = fast_accepted.events;
    let mut video = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        video += e
            .frames()
            .iter()
            .filter(|f| f.kind == TrackKind::Video)
            .count();
    }
    assert_eq!(video, 60);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    drop(slow_accepted);
    slow_task.abort();
}

/// Sends a recorded client-to-server stream over TCP in 4 KiB writes, reading (and discarding)
/// whatever the server answers, then closes the socket.
async fn replay_capture(addr: SocketAddr, capture: &'static [u8]) {
    use tokio::io::AsyncReadExt;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    for chunk in capture.chunks(4096) {
        wr.write_all(chunk).await.unwrap();
    }
    drop(wr);
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
}

#[tokio::test]
async fn obs29_capture_over_tcp_ends_its_publish_on_close() {
    // The plain handshake's C2 echoes nginx's S1, not ours; rml_rtmp accepts any C2 (upstream
    // disabled the check for Flash clients), so the recorded bytes replay as they are.
    const OBS29: &[u8] = include_bytes!("../testdata/rtmp/obs29_publish.c2s.bin");
    let mut server = start(&["obs29"], fast_config(), 4096).await;
    tokio::spawn(replay_capture(server.addr, OBS29));
    let accepted = server.next_accepted().await;
    let got = collect(accepted.events, Duration::from_secs(10)).await;
    assert_eq!(got.video.len(), 181);
    assert_eq!(got.audio.len(), 280);
    assert!(matches!(
        got.tracks[0][1].codec,
        Codec::Aac {
            sample_rate: 48000,
            channels: 2,
            ..
        }
    ));
}

#[tokio::test]
async fn ffmpeg5_capture_over_tcp_ends_its_publish_with_fcunpublish() {
    const FFMPEG5: &[u8] = include_bytes!("../testdata/rtmp/ffmpeg5_publish.c2s.bin");
    let mut server = start(&["ffmpeg5"], fast_config(), 4096).await;
    tokio::spawn(replay_capture(server.addr, FFMPEG5));
    let accepted = server.next_accepted().await;
    let got = collect(accepted.events, Duration::from_secs(10)).await;
    assert_eq!(got.video.len(), 176);
    assert_eq!(got.audio.len(), 250);
    assert!(matches!(
        got.tracks[0][1].codec,
        Codec::Aac {
            sample_rate: 44100,
            channels: 1,
            ..
        }
    ));
}
