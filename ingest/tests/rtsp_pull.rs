//! `ingest::rtsp::pull` against a real RTSP server: GStreamer's rtsp-server
//! (`testdata/rtsp/rtsp_server.py`) serving live x264 + AAC on loopback, over TCP and UDP, with and
//! without digest authentication; killed and restarted mid-stream; and the failures a user meets
//! (wrong password, wrong path, nothing listening, not an RTSP server).
//!
//! Needs Debian's GStreamer Python bindings; without them every camera test fails and says what to
//! install (nothing is skipped).

use ingest::publish::{IngestEvent, Publisher};
use ingest::rtsp::{
    pull, RtspConfig, RtspError, RtspErrorKind, RtspSource, RtspState, RtspStatus, RtspTransport,
};
use packager::{Codec, MediaFrame, Track, TrackKind};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PYTHON: &str = "/usr/bin/python3";
const INSTALL: &str = "apt-get install -y --no-install-recommends python3-gi python3-gst-1.0 \
     gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
     gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/rtsp/rtsp_server.py")
}

/// A GStreamer rtsp-server process; killed on drop.
struct Camera {
    child: Child,
    port: u16,
}

impl Camera {
    /// Starts the server (`--port 0` picks a free port) and waits for its `READY <port>` line.
    fn start(args: &[&str]) -> Camera {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !args.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {PYTHON} (Debian's python3 with GStreamer bindings): {e}\ninstall: {INSTALL}")
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok());
        match port {
            Some(port) => Camera { child, port },
            None => {
                let _ = child.kill();
                let out = child.wait_with_output().ok();
                let stderr = out
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                panic!(
                    "the GStreamer RTSP server did not start (stdout {line:?}).\n\
                     stderr: {stderr}\n\
                     If GStreamer or its Python bindings are missing, install them: {INSTALL}"
                );
            }
        }
    }

    fn url(&self, userinfo: &str, path: &str) -> String {
        format!("rtsp://{userinfo}127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running pull with its event receiver and status.
struct Pull {
    events: mpsc::Receiver<IngestEvent>,
    status: watch::Receiver<RtspStatus>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), RtspError>>,
}

fn start_pull(url: &str, transport: RtspTransport, config: RtspConfig) -> Pull {
    let source = RtspSource::parse(url, transport).expect("valid url");
    let (tx, rx) = mpsc::channel(4096);
    let (status_tx, status_rx) = watch::channel(RtspStatus::new(&source));
    let cancel = CancellationToken::new();
    let factory = move || {
        Ok(Publisher {
            stream_id: "cam".into(),
            events: tx.clone(),
            cancel: CancellationToken::new(),
        })
    };
    let task = tokio::spawn(pull(source, factory, status_tx, config, cancel.clone()));
    Pull {
        events: rx,
        status: status_rx,
        cancel,
        task,
    }
}

fn quick_config() -> RtspConfig {
    RtspConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        connect_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_secs(3),
        ..RtspConfig::default()
    }
}

/// What arrived, in order; `runs[i]` are the frames after the i-th `Tracks`.
#[derive(Default)]
struct Got {
    tracks: Vec<Vec<Track>>,
    runs: Vec<Vec<MediaFrame>>,
    stats: usize,
}

impl Got {
    fn video(&self, run: usize) -> Vec<&MediaFrame> {
        self.runs[run]
            .iter()
            .filter(|f| f.kind == TrackKind::Video)
            .collect()
    }
    fn audio(&self, run: usize) -> Vec<&MediaFrame> {
        self.runs[run]
            .iter()
            .filter(|f| f.kind == TrackKind::Audio)
            .collect()
    }
    fn video_total(&self) -> usize {
        (0..self.runs.len()).map(|r| self.video(r).len()).sum()
    }
}

/// Receives until `done` holds (checked after every event) or `within` passes (a panic).
async fn collect(p: &mut Pull, got: &mut Got, within: Duration, done: impl Fn(&Got) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(got) {
        let ev = tokio::time::timeout_at(deadline, p.events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out; runs {:?}, status {:#?}",
                    got.runs.iter().map(Vec::len).collect::<Vec<_>>(),
                    *p.status.borrow()
                )
            })
            .expect("events channel open");
        match ev {
            IngestEvent::Tracks(t) => {
                got.tracks.push(t);
                got.runs.push(Vec::new());
            }
            IngestEvent::Frame(f) => got
                .runs
                .last_mut()
                .expect("a Frame before any Tracks")
                .push(f),
            IngestEvent::Stats(_) => got.stats += 1,
            IngestEvent::Frames(_) => panic!("the RTSP pull sends frames one by one"),
        }
    }
}

/// Starts a pull and receives until `video` video frames arrived.
async fn pull_until_video(url: &str, transport: RtspTransport, video: usize) -> (Pull, Got) {
    let mut p = start_pull(url, transport, quick_config());
    let mut got = Got::default();
    collect(&mut p, &mut got, Duration::from_secs(30), |g| {
        g.video_total() >= video
    })
    .await;
    (p, got)
}

/// Waits until the status satisfies `f`.
async fn wait_status(
    p: &mut Pull,
    within: Duration,
    f: impl Fn(&RtspStatus) -> bool,
) -> RtspStatus {
    let matched = match tokio::time::timeout(within, p.status.wait_for(|s| f(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    matched.unwrap_or_else(|| panic!("status never matched; last {:#?}", *p.status.borrow()))
}

fn assert_tracks_h264_aac(tracks: &[Track], sample_rate: u32) {
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    let v = &tracks[0];
    assert_eq!(v.kind, TrackKind::Video);
    assert_eq!(v.timescale, 90_000);
    match &v.codec {
        Codec::H264 {
            avcc,
            width,
            height,
        } => {
            assert_eq!((*width, *height), (320, 240));
            assert_eq!(avcc[0], 1, "avcC version");
            assert_eq!(avcc[4] & 3, 3, "4-byte NAL lengths");
        }
        c => panic!("video codec {c:?}"),
    }
    let a = &tracks[1];
    assert_eq!(a.kind, TrackKind::Audio);
    assert_eq!(a.timescale, sample_rate);
    match &a.codec {
        Codec::Aac {
            sample_rate: sr,
            channels,
            asc,
        } => {
            assert_eq!(*sr, sample_rate);
            assert_eq!(*channels, 1);
            assert_eq!(asc[0] >> 3, 2, "AAC LC");
        }
        c => panic!("audio codec {c:?}"),
    }
}

/// Every frame is a run of 4-byte-length-prefixed NAL units that exactly fills it.
fn assert_avc_sample(f: &MediaFrame) {
    let d = &f.data[..];
    let mut i = 0;
    let mut types = Vec::new();
    while i < d.len() {
        assert!(i + 4 <= d.len(), "truncated length at {i}");
        let n = u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]) as usize;
        assert!(n > 0 && i + 4 + n <= d.len(), "bad NAL length {n} at {i}");
        types.push(d[i + 4] & 0x1f);
        i += 4 + n;
    }
    if f.keyframe {
        assert!(
            types.contains(&5),
            "keyframe without an IDR slice: {types:?}"
        );
    } else {
        assert!(
            types.contains(&1),
            "non-IDR frame without a slice: {types:?}"
        );
    }
}

/// The checks every healthy run passes: 30 fps to the tick, an IDR every 30 frames, 1024-sample
/// AAC frames at the right rate, monotonic timestamps, audio in step with video.
fn assert_run_healthy(got: &Got, run: usize, sample_rate: u32) {
    let video = got.video(run);
    let audio = got.audio(run);
    assert!(video[0].keyframe, "a run starts on a keyframe");
    for f in &video {
        assert_avc_sample(f);
        assert_eq!(f.cts_offset, 0, "no B-frames from x264 zerolatency");
    }
    let deltas: Vec<i64> = video.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    assert!(
        deltas.iter().all(|d| (2_999..=3_001).contains(d)),
        "video frame spacing should be 1/30 s = 3000 ticks: {deltas:?}"
    );
    let span = video.last().unwrap().dts - video[0].dts;
    let fps = (video.len() - 1) as f64 * 90_000.0 / span as f64;
    assert!((fps - 30.0).abs() < 0.05, "fps {fps}");
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert!(keys.len() >= 2, "keyframes at {keys:?}");
    assert!(
        keys.windows(2).all(|w| w[1] - w[0] == 30),
        "keyframes every 30 frames: {keys:?}"
    );
    assert!(!audio.is_empty(), "AAC frames present");
    let adeltas: Vec<i64> = audio.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    assert!(
        adeltas.iter().all(|d| *d == 1024),
        "AAC frames are 1024 samples at {sample_rate} Hz: {adeltas:?}"
    );
    for a in &audio {
        assert!(a.keyframe && !a.data.is_empty() && a.duration == Some(1024));
    }
    // Audio covers the same time as video (in seconds), within a few frames.
    let v_secs = (span as f64) / 90_000.0;
    let a_secs = (audio.last().unwrap().dts - audio[0].dts) as f64 / f64::from(sample_rate);
    assert!(
        (v_secs - a_secs).abs() < 0.2,
        "video {v_secs} s, audio {a_secs} s"
    );
    let a_start = audio[0].dts as f64 / f64::from(sample_rate);
    let v_start = video[0].dts as f64 / 90_000.0;
    assert!(
        a_start >= v_start && a_start - v_start < 0.2,
        "audio starts with video: {a_start} vs {v_start}"
    );
}

/// Decodes frames with ffprobe (`-count_frames`) and returns how many it decoded, failing on any
/// decoder complaint. Video goes as Annex B (SPS/PPS from the avcC before each keyframe), audio
/// as ADTS built from the AudioSpecificConfig: what a player gets from the init segment.
fn ffprobe_decoded(track: &Track, frames: &[&MediaFrame], name: &str) -> usize {
    let mut out = Vec::new();
    let format = match &track.codec {
        Codec::H264 { avcc, .. } => {
            let sps_len = usize::from(u16::from_be_bytes([avcc[6], avcc[7]]));
            let sps = &avcc[8..8 + sps_len];
            let p = 8 + sps_len;
            assert_eq!(avcc[p], 1, "one PPS");
            let pps_len = usize::from(u16::from_be_bytes([avcc[p + 1], avcc[p + 2]]));
            let pps = &avcc[p + 3..p + 3 + pps_len];
            for f in frames {
                if f.keyframe {
                    for ps in [sps, pps] {
                        out.extend_from_slice(&[0, 0, 0, 1]);
                        out.extend_from_slice(ps);
                    }
                }
                let d = &f.data[..];
                let mut i = 0;
                while i + 4 <= d.len() {
                    let n = u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]) as usize;
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(&d[i + 4..i + 4 + n]);
                    i += 4 + n;
                }
            }
            "h264"
        }
        Codec::Aac { asc, .. } => {
            let aot = asc[0] >> 3;
            let sf = ((asc[0] & 7) << 1) | (asc[1] >> 7);
            let ch = (asc[1] >> 3) & 0xf;
            for f in frames {
                let len = f.data.len() + 7;
                out.extend_from_slice(&[
                    0xff,
                    0xf1,
                    ((aot - 1) << 6) | (sf << 2) | (ch >> 2),
                    ((ch & 3) << 6) | (len >> 11) as u8,
                    (len >> 3) as u8,
                    (((len & 7) as u8) << 5) | 0x1f,
                    0xfc,
                ]);
                out.extend_from_slice(&f.data);
            }
            "aac"
        }
        c => panic!("{c:?}"),
    };
    let path = std::env::temp_dir().join(format!(
        "storef-rtsp-{}-{name}.{format}",
        std::process::id()
    ));
    std::fs::write(&path, &out).unwrap();
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-f",
            format,
            "-count_frames",
            "-select_streams",
            "0",
        ])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe (Debian ffmpeg) installed");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && stderr.trim().is_empty(),
        "ffprobe {format}: {stderr}"
    );
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("a frame count")
}

/// With packet loss frames go missing, but those that arrive sit on the 30 fps grid, keyframes on
/// whole seconds, and AAC frames on 1024-sample steps.
fn assert_clock_on_grid(got: &Got, run: usize, sample_rate: u32) {
    let video = got.video(run);
    assert!(video[0].keyframe);
    let t0 = video[0].dts;
    for f in &video {
        let k = (f.dts - t0 + 1_500).div_euclid(3_000);
        assert!(
            ((f.dts - t0) - k * 3_000).abs() <= 2 + k / 100,
            "off grid: {}",
            f.dts - t0
        );
        if f.keyframe {
            assert_eq!(k % 30, 0, "keyframe at frame {k}");
        }
    }
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
    let audio = got.audio(run);
    assert!(audio
        .windows(2)
        .all(|w| (w[1].dts - w[0].dts) % 1024 == 0 && w[1].dts > w[0].dts));
    assert!(
        audio.iter().all(|a| a.duration == Some(1024)),
        "{sample_rate}"
    );
}

/// Feeds every run through storef's segmenter (1 s target) as the stream's session will, then
/// checks what HLS would carry: every segment starts on a keyframe, only the first segment of a
/// later run is a discontinuity, no frame is dropped, and ffprobe decodes each init + its
/// segments to exactly the frames sent. Returns the number of segments.
fn assert_segments_decode(got: &Got, name: &str) -> usize {
    use packager::segmenter::{Output, Segmenter, SegmenterConfig};
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(1),
    });
    let mut outputs = Vec::new();
    for (i, run) in got.runs.iter().enumerate() {
        seg.begin_run(got.tracks[i].clone(), i > 0).unwrap();
        for f in run {
            seg.push(f.clone()).unwrap();
            outputs.extend(std::iter::from_fn(|| seg.poll_output()));
        }
    }
    seg.flush();
    outputs.extend(std::iter::from_fn(|| seg.poll_output()));
    assert_eq!(seg.dropped_frames(), 0);
    let mut files: Vec<(Vec<u8>, u64, u64)> = Vec::new();
    let mut segments = 0;
    let mut discontinuities = 0;
    for o in outputs {
        match o {
            Output::Init(init) => files.push((init.data.to_vec(), 0, 0)),
            Output::Segment(m) => {
                assert!(
                    m.keyframe_start,
                    "segment {} starts on a keyframe",
                    m.sequence
                );
                discontinuities += usize::from(m.discontinuity);
                let file = files.last_mut().expect("init before segments");
                file.0.extend_from_slice(&m.header);
                for p in &m.payloads {
                    file.0.extend_from_slice(p);
                }
                file.1 += u64::from(m.video_frames);
                file.2 += u64::from(m.audio_frames);
                segments += 1;
            }
        }
    }
    assert_eq!(discontinuities, got.runs.len() - 1);
    let sent: u64 = got.video_total() as u64;
    assert_eq!(
        files.iter().map(|f| f.1).sum::<u64>(),
        sent,
        "every video frame segmented"
    );
    for (i, (bytes, video, audio)) in files.iter().enumerate() {
        let path =
            std::env::temp_dir().join(format!("storef-rtsp-{}-{name}-{i}.mp4", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        for (stream, want) in [("v:0", video), ("a:0", audio)] {
            let o = Command::new("ffprobe")
                .args(["-v", "error", "-count_frames", "-select_streams", stream])
                .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
                .arg(&path)
                .output()
                .expect("ffprobe (Debian ffmpeg) installed");
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && stderr.trim().is_empty(), "{stderr}");
            let n: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
            assert_eq!(n, *want, "{stream} frames decoded from init {i}");
        }
        let _ = std::fs::remove_file(&path);
    }
    segments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_h264_aac_at_30fps_with_keyframes_every_30() {
    // TCP-only server: a UDP SETUP would get 461, so frames prove interleaved TCP was used.
    let cam = Camera::start(&["--protocols", "tcp"]);
    let (p, got) = pull_until_video(&cam.url("", "/cam"), RtspTransport::Tcp, 151).await;
    assert_eq!(got.tracks.len(), 1);
    assert_tracks_h264_aac(&got.tracks[0], 48_000);
    assert_run_healthy(&got, 0, 48_000);
    // 150 frames span exactly 5 s of media; 5 s of 48 kHz AAC is ~234 frames.
    let audio = got.audio(0).len();
    assert!((220..=250).contains(&audio), "{audio} AAC frames for 5 s");
    assert!(got.stats >= 3, "a Stats event about once a second");
    // Every frame decodes, with only the track's config out of band.
    let video = got.video(0);
    assert_eq!(
        ffprobe_decoded(&got.tracks[0][0], &video, "tcp"),
        video.len()
    );
    let aac = got.audio(0);
    assert_eq!(ffprobe_decoded(&got.tracks[0][1], &aac, "tcp"), aac.len());
    // 151 frames, an IDR every 30, a 1 s target: five 1 s segments, then frame 150 (a keyframe)
    // alone in the one the flush closes.
    assert_eq!(assert_segments_decode(&got, "tcp"), 6);
    let s = p.status.borrow().clone();
    assert_eq!(s.state, RtspState::Streaming);
    assert_eq!(s.connections, 1);
    assert_eq!(s.failed_attempts, 0);
    let v = s.video.as_ref().unwrap();
    assert_eq!((v.width, v.height), (320, 240));
    assert_eq!(v.codec.to_ascii_lowercase(), "avc1.42c00d");
    let a = s.audio.as_ref().unwrap();
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("mp4a.40.2", 48_000, 1)
    );
    let fps = s.fps.unwrap();
    assert!((fps - 30.0).abs() < 0.5, "status fps {fps}");
    assert!(s.bitrate_bps.unwrap() > 50_000, "{:?}", s.bitrate_bps);
    assert!(s.video_frames >= 151);
    assert_eq!(s.packets_lost, 0);
    assert_eq!(s.server_tool.as_deref(), Some("GStreamer"));
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    eprintln!(
        "tcp: {} video, {} audio frames; status fps {fps}, bitrate {:?}",
        got.video(0).len(),
        audio,
        s.bitrate_bps
    );
    p.cancel.cancel();
    assert_eq!(p.task.await.unwrap(), Ok(()));
    assert_eq!(p.status.borrow().state, RtspState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_transport_44k_audio() {
    // UDP-only server; a different AAC rate proves the audio timescale follows the clock rate.
    let mut cam = Camera::start(&["--protocols", "udp", "--rate", "44100"]);
    let (mut p, got) = pull_until_video(&cam.url("", "/cam"), RtspTransport::Udp, 91).await;
    assert_tracks_h264_aac(&got.tracks[0], 44_100);
    // Loopback UDP loses nothing unless the machine is starved; if retina reports loss, check
    // what loss cannot break: the media clock.
    let lost = p.status.borrow().packets_lost;
    assert_clock_on_grid(&got, 0, 44_100);
    if lost == 0 {
        assert_run_healthy(&got, 0, 44_100);
    } else {
        eprintln!("udp: {lost} packets lost; checked timestamps only");
    }
    assert_eq!(p.status.borrow().transport, RtspTransport::Udp);
    // A camera that freezes (or a pulled cable) sends nothing and closes nothing: SIGSTOP the
    // server. Only the frame timeout (3 s here) can notice.
    let stopped = Command::new("kill")
        .args(["-STOP", &cam.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let frozen = std::time::Instant::now();
    let s = wait_status(&mut p, Duration::from_secs(15), |s| {
        s.state == RtspState::Reconnecting
    })
    .await;
    let waited = frozen.elapsed();
    let e = s.last_error.unwrap();
    assert_eq!(e.kind, RtspErrorKind::Dropped, "{e:?}");
    assert!(e.message.contains("no video for 3 s"), "{e:?}");
    assert!(waited >= Duration::from_millis(2_500), "{waited:?}");
    let _ = Command::new("kill")
        .args(["-CONT", &cam.child.id().to_string()])
        .status();
    cam.kill();
    p.cancel.cancel();
    assert_eq!(p.task.await.unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_right_and_wrong_password() {
    let cam = Camera::start(&["--user", "admin", "--password", "s3cr3t!"]);

    // Right password (percent-encoded '!' too): frames flow.
    let mut ok = start_pull(
        &cam.url("admin:s3cr3t%21@", "/cam"),
        RtspTransport::Tcp,
        quick_config(),
    );
    let mut got = Got::default();
    collect(&mut ok, &mut got, Duration::from_secs(30), |g| {
        g.video_total() >= 31
    })
    .await;
    assert_run_healthy(&got, 0, 48_000);
    assert_eq!(ok.status.borrow().source, cam.url("admin:***@", "/cam"));
    ok.cancel.cancel();
    ok.task.await.unwrap().unwrap();

    // Wrong password, bounded to 2 attempts: fails with an auth error.
    let config = RtspConfig {
        max_attempts: Some(2),
        ..quick_config()
    };
    let mut bad = start_pull(
        &cam.url("admin:wrong@", "/cam"),
        RtspTransport::Tcp,
        config.clone(),
    );
    let err = bad.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no password in messages: {err}"
    );
    let s = bad.status.borrow().clone();
    assert_eq!(s.state, RtspState::Failed);
    assert_eq!(s.failed_attempts, 2);
    assert_eq!(s.last_error.as_ref().unwrap().kind, RtspErrorKind::Auth);
    assert!(
        bad.events.try_recv().is_err(),
        "no events without a session"
    );

    // No credentials at all: the same clear status.
    let nocreds = start_pull(&cam.url("", "/cam"), RtspTransport::Tcp, config);
    let err = nocreds.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::Auth, "{err}");

    // Unbounded retries still stop knocking with a wrong password after 3 tries (camera lockout).
    let p = start_pull(
        &cam.url("admin:wrong@", "/cam"),
        RtspTransport::Tcp,
        quick_config(),
    );
    let err = p.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::Auth, "{err}");
    let s = p.status.borrow().clone();
    assert_eq!((s.state, s.failed_attempts), (RtspState::Failed, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_path_is_not_found() {
    let cam = Camera::start(&[]);
    let config = RtspConfig {
        max_attempts: Some(1),
        ..quick_config()
    };
    let p = start_pull(&cam.url("", "/nope"), RtspTransport::Tcp, config);
    let err = p.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::NotFound, "{err}");
    let s = p.status.borrow().clone();
    assert_eq!(s.state, RtspState::Failed);
    assert!(
        s.last_error.as_ref().unwrap().message.contains("404"),
        "{:?}",
        s.last_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_audio_is_left_out_with_a_note() {
    let cam = Camera::start(&["--audio", "pcmu"]);
    let mut p = start_pull(&cam.url("", "/cam"), RtspTransport::Tcp, quick_config());
    let mut got = Got::default();
    collect(&mut p, &mut got, Duration::from_secs(30), |g| {
        g.video_total() >= 31
    })
    .await;
    assert_eq!(got.tracks[0].len(), 1, "video only: {:?}", got.tracks[0]);
    assert!(got.audio(0).is_empty());
    let s = p.status.borrow().clone();
    assert_eq!(s.audio, None);
    assert_eq!(
        s.notes,
        ["audio PCMU 8000 Hz is not carried: fMP4 HLS carries AAC audio only"]
    );
    p.cancel.cancel();
    p.task.await.unwrap().unwrap();
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
    // Dropped here: nothing listens on it any more.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unreachable_and_retried() {
    let port = closed_port();
    let url = format!("rtsp://127.0.0.1:{port}/cam");

    // Unbounded: keeps retrying with backoff, showing `reconnecting` and the error.
    let mut p = start_pull(&url, RtspTransport::Tcp, quick_config());
    let s = wait_status(&mut p, Duration::from_secs(10), |s| s.failed_attempts >= 3).await;
    assert_eq!(s.state, RtspState::Reconnecting);
    assert_eq!(
        s.last_error.as_ref().unwrap().kind,
        RtspErrorKind::Unreachable
    );
    assert!(s.retry_in_ms.is_some() || s.failed_attempts >= 3);
    p.cancel.cancel();
    assert_eq!(p.task.await.unwrap(), Ok(()));
    assert_eq!(p.status.borrow().state, RtspState::Stopped);

    // Bounded: exactly N attempts, then `failed`.
    let config = RtspConfig {
        max_attempts: Some(3),
        ..quick_config()
    };
    let p = start_pull(&url, RtspTransport::Tcp, config);
    let err = p.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::Unreachable, "{err}");
    let s = p.status.borrow().clone();
    assert_eq!((s.state, s.failed_attempts), (RtspState::Failed, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_is_not_rtsp() {
    // Something that answers like a web server on the camera's port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(4) {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\n<h1>400</h1>",
            );
        }
    });
    let config = RtspConfig {
        max_attempts: Some(1),
        ..quick_config()
    };
    let p = start_pull(
        &format!("rtsp://127.0.0.1:{port}/cam"),
        RtspTransport::Tcp,
        config,
    );
    let err = p.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::NotRtsp, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_restart_reconnects_with_new_tracks() {
    let mut cam = Camera::start(&[]);
    let port = cam.port.to_string();
    let config = RtspConfig {
        // The production first backoff: one second.
        initial_backoff: Duration::from_secs(1),
        ..quick_config()
    };
    let mut p = start_pull(&cam.url("", "/cam"), RtspTransport::Tcp, config);
    let mut got = Got::default();
    collect(&mut p, &mut got, Duration::from_secs(30), |g| {
        g.video_total() >= 61
    })
    .await;

    // The camera dies mid-stream.
    cam.kill();
    let s = wait_status(&mut p, Duration::from_secs(10), |s| {
        s.state == RtspState::Reconnecting
    })
    .await;
    let e = s.last_error.unwrap();
    assert!(
        matches!(e.kind, RtspErrorKind::Dropped | RtspErrorKind::Unreachable),
        "{e:?}"
    );
    // Let at least one attempt hit the closed port.
    wait_status(&mut p, Duration::from_secs(10), |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| e.kind == RtspErrorKind::Unreachable)
    })
    .await;

    // It comes back on the same port.
    let cam2 = Camera::start(&["--port", &port]);
    let restarted = std::time::Instant::now();
    collect(&mut p, &mut got, Duration::from_secs(60), |g| {
        g.runs.len() == 2 && !g.runs[1].is_empty()
    })
    .await;
    eprintln!(
        "first frame {:?} after the camera came back",
        restarted.elapsed()
    );
    collect(&mut p, &mut got, Duration::from_secs(60), |g| {
        g.runs.len() == 2 && g.video(1).len() >= 61
    })
    .await;
    assert_eq!(
        got.tracks.len(),
        2,
        "a new Tracks event starts the second run"
    );
    assert_tracks_h264_aac(&got.tracks[1], 48_000);
    assert_run_healthy(&got, 0, 48_000);
    assert_run_healthy(&got, 1, 48_000);
    // Timestamps keep going up across the reconnect.
    let secs = |f: &MediaFrame| {
        let rate = if f.kind == TrackKind::Video {
            90_000.0
        } else {
            48_000.0
        };
        f.dts as f64 / rate
    };
    let last_before = got.runs[0].iter().map(secs).fold(0.0, f64::max);
    let first_after = got.runs[1].iter().map(secs).fold(f64::MAX, f64::min);
    assert!(first_after > last_before, "{first_after} > {last_before}");
    let segments = assert_segments_decode(&got, "restart");
    assert!(segments >= 4, "{segments} segments");
    let s = p.status.borrow().clone();
    assert_eq!(s.state, RtspState::Streaming);
    assert_eq!(s.connections, 2);
    assert_eq!(s.failed_attempts, 0);
    p.cancel.cancel();
    p.task.await.unwrap().unwrap();
    drop(cam2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_resolution_change_sends_new_tracks() {
    // The camera's encoder is reconfigured 2 s in: in-band SPS/PPS for 640x480 with an IDR.
    let cam = Camera::start(&["--switch-after", "2", "--switch-size", "640x480"]);
    let mut p = start_pull(&cam.url("", "/cam"), RtspTransport::Tcp, quick_config());
    let mut got = Got::default();
    collect(&mut p, &mut got, Duration::from_secs(30), |g| {
        g.runs.len() == 2 && g.video(1).len() >= 61
    })
    .await;
    assert_eq!(got.tracks.len(), 2);
    assert_tracks_h264_aac(&got.tracks[0], 48_000);
    match &got.tracks[1][0].codec {
        Codec::H264 { width, height, .. } => assert_eq!((*width, *height), (640, 480)),
        c => panic!("{c:?}"),
    }
    assert_eq!(got.tracks[1][1], got.tracks[0][1], "audio unchanged");
    assert!(got.video(0).len() >= 30, "the first size ran for a while");
    assert_run_healthy(&got, 1, 48_000);
    assert_segments_decode(&got, "switch");
    let after = got.video(1);
    assert_eq!(
        ffprobe_decoded(&got.tracks[1][0], &after, "switch"),
        after.len()
    );
    // Same connection: the clock just goes on, one frame later.
    let last = got.video(0).last().unwrap().dts;
    let first = got.video(1)[0].dts;
    assert!(
        (2_999..=3_001).contains(&(first - last)),
        "{last} -> {first}"
    );
    let s = p.status.borrow().clone();
    assert_eq!(s.connections, 1);
    assert_eq!(
        s.video.as_ref().map(|v| (v.width, v.height)),
        Some((640, 480))
    );
    p.cancel.cancel();
    p.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out() {
    // Accepts the TCP connection and never answers (a hung camera web stack).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let config = RtspConfig {
        max_attempts: Some(1),
        connect_timeout: Duration::from_secs(2),
        ..quick_config()
    };
    let started = std::time::Instant::now();
    let p = start_pull(
        &format!("rtsp://127.0.0.1:{port}/cam"),
        RtspTransport::Tcp,
        config,
    );
    let err = p.task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), RtspErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("DESCRIBE"), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}
