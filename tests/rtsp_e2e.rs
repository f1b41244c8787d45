//! RTSP pull end to end: a real RTSP camera (GStreamer's rtsp-server, `ingest/testdata/rtsp/
//! rtsp_server.py`: live x264 320x240 at 30 fps, an IDR every second, AAC 48 kHz) is pulled by the
//! storef binary into HLS; the camera is killed and restarted mid-stream, storef is restarted, and
//! the HLS is read back with ffprobe after the stream is stopped.
//!
//! Needs Debian's GStreamer Python bindings (see [`INSTALL`]); without them the tests fail and say
//! what to install (nothing is skipped).

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const INSTALL: &str = "apt-get install -y --no-install-recommends python3-gi python3-gst-1.0 \
     gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
     gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav";

/// Fast retries, a short reconnect window (so a retried camera provably outlives it), and no
/// WHIP UDP socket (parallel test servers would fight over its fixed port).
const SETTINGS: &[(&str, &str)] = &[
    ("STOREF_RTSP_INITIAL_BACKOFF", "200ms"),
    ("STOREF_RTSP_MAX_BACKOFF", "1s"),
    ("STOREF_RTSP_FRAME_TIMEOUT", "3s"),
    ("STOREF_RTSP_CONNECT_TIMEOUT", "15s"),
    ("STOREF_LIVE_RECONNECT_WINDOW", "3s"),
    ("STOREF_WEBRTC_ENABLED", "false"),
    ("STOREF_RTMP_ENABLED", "false"),
];

/// A GStreamer RTSP server process; killed on drop.
struct Camera {
    child: Child,
    port: u16,
}

impl Camera {
    fn start(args: &[&str]) -> Camera {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ingest/testdata/rtsp/rtsp_server.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}\ninstall: {INSTALL}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        match line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            Some(port) => Camera { child, port },
            None => {
                let _ = child.kill();
                let stderr = child
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                panic!(
                    "the GStreamer RTSP server did not start (stdout {line:?}).\nstderr: {stderr}\n\
                     If GStreamer or its Python bindings are missing, install them: {INSTALL}"
                );
            }
        }
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

async fn start_pull(s: &Server, tok: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(s.url("/api/streams/start"))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .expect("start");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn status_text(s: &Server, tok: &str, id: &str) -> String {
    client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(tok)
        .send()
        .await
        .expect("status")
        .text()
        .await
        .expect("status body")
}

/// Polls the stream status until `pred` holds; panics with the last status and the log.
async fn wait_status(
    s: &Server,
    tok: &str,
    id: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v: Value = serde_json::from_str(&status_text(s, tok, id).await).expect("status json");
        if pred(&v["stream"]) {
            return v["stream"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {v}\nlog:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn segment_count(s: &Server, id: &str) -> usize {
    playlist_entries(
        &get_text(&s.url(&format!("/api/streams/{id}/live.m3u8")))
            .await
            .1,
    )
    .len()
}

async fn wait_segments(s: &Server, id: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while segment_count(s, id).await < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} segments after {within:?}; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn stop(s: &Server, tok: &str, id: &str) -> Value {
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(tok)
        .send()
        .await
        .expect("stop");
    assert_eq!(r.status(), 200);
    r.json().await.expect("stop json")
}

/// Reads the whole (stopped) playlist and checks each segment on its own: it starts on a
/// keyframe, its frames are 1/30 s apart, and its EXTINF matches its frame count at 30 fps.
/// Segments close on the first keyframe after 2 s and the camera's GOP is 1 s, so every segment
/// but the last of a run is 2 s. Returns (entries, video frames).
async fn check_segments(
    s: &Server,
    id: &str,
    dir: &std::path::Path,
) -> (Vec<(f64, String, bool, String)>, usize) {
    let text = get_text(&s.url(&format!("/api/streams/{id}/live.m3u8")))
        .await
        .1;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let entries = playlist_entries(&text);
    let mut frames = 0;
    for (k, e) in entries.iter().enumerate() {
        let (one, _) = standalone_segment(s, id, k, e, dir).await;
        let pk = packets(one.to_str().expect("utf-8 path"), "v:0");
        assert!(!pk.is_empty(), "segment {k} has video");
        assert!(pk[0].1, "segment {k} starts with a keyframe:\n{text}");
        for w in pk.windows(2) {
            assert!(
                (w[1].0 - w[0].0 - 1.0 / 30.0).abs() < 0.002,
                "segment {k}: frames {:?} are not 1/30 s apart",
                w
            );
        }
        let expected = e.0 * 30.0;
        assert!(
            (pk.len() as f64 - expected).abs() <= 1.0,
            "segment {k}: {} frames in {} s",
            pk.len(),
            e.0
        );
        let last_of_run = entries.get(k + 1).is_none_or(|n| n.2);
        if !last_of_run {
            assert!(
                (e.0 - 2.0).abs() < 0.04,
                "segment {k} is {} s:\n{text}",
                e.0
            );
        }
        frames += pk.len();
    }
    (entries, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_pull_survives_camera_and_server_restarts() {
    require_tool("ffprobe");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let mut cam = Camera::start(&["--port", &port, "--user", "admin", "--password", "secret1"]);
    let s = Server::start(SETTINGS);
    let tok = token("camera-user", 3600);
    let url = format!("rtsp://admin:secret1@127.0.0.1:{}/cam", cam.port);
    let (code, started) = start_pull(&s, &tok, json!({"title": "door", "pull": url})).await;
    assert_eq!(code, 201, "{started}");
    assert!(!started.to_string().contains("secret1"), "{started}");
    assert_eq!(
        started["pull"]["source"],
        format!("rtsp://admin:***@127.0.0.1:{}/cam", cam.port)
    );
    let id = started["streamId"].as_str().expect("streamId").to_string();

    let t0 = Instant::now();
    wait_segments(&s, &id, 1, Duration::from_secs(30)).await;
    eprintln!("first segment {:?} after POST start", t0.elapsed());
    wait_segments(&s, &id, 3, Duration::from_secs(30)).await;
    let st = wait_status(&s, &tok, &id, Duration::from_secs(10), "streaming", |st| {
        st["pull"]["state"] == "streaming" && st["pull"]["fps"].is_number()
    })
    .await;
    assert_eq!(st["publisher"]["protocol"], "rtsp", "{st}");
    assert_eq!(st["pull"]["transport"], "tcp");
    assert_eq!(st["pull"]["video"]["width"], 320);
    assert_eq!(st["pull"]["video"]["height"], 240);
    assert_eq!(st["pull"]["audio"]["sample_rate"], 48000);
    let fps = st["pull"]["fps"].as_f64().expect("fps");
    assert!((fps - 30.0).abs() < 1.0, "measured fps {fps}");
    eprintln!(
        "pull status: fps {fps}, bitrate {} b/s",
        st["pull"]["bitrate_bps"]
    );
    assert!(!status_text(&s, &tok, &id).await.contains("secret1"));

    // The camera dies for longer than the reconnect window: the pull retries, the stream stays.
    cam.kill();
    let down = Instant::now();
    let st = wait_status(
        &s,
        &tok,
        &id,
        Duration::from_secs(15),
        "reconnecting",
        |st| st["pull"]["state"] == "reconnecting" && st["publisher"].is_null(),
    )
    .await;
    let kind = st["pull"]["last_error"]["kind"].clone();
    assert!(kind == "dropped" || kind == "unreachable", "{st}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = wait_status(&s, &tok, &id, Duration::from_secs(5), "still live", |_| {
        true
    })
    .await;
    assert_eq!(
        st["status"], "live",
        "a retried camera is exempt from the reconnect window"
    );
    assert_eq!(st["pull"]["state"], "reconnecting", "{st}");
    assert_eq!(st["pull"]["last_error"]["kind"], "unreachable", "{st}");
    let before = segment_count(&s, &id).await;

    let _cam2 = Camera::start(&["--port", &port, "--user", "admin", "--password", "secret1"]);
    wait_status(
        &s,
        &tok,
        &id,
        Duration::from_secs(30),
        "reconnected",
        |st| st["pull"]["state"] == "streaming" && st["pull"]["connections"] == 2,
    )
    .await;
    eprintln!("camera down for {:?} in all", down.elapsed());
    wait_segments(&s, &id, before + 2, Duration::from_secs(30)).await;
    let live = playlist_entries(
        &get_text(&s.url(&format!("/api/streams/{id}/live.m3u8")))
            .await
            .1,
    );
    assert_eq!(
        live.iter().filter(|e| e.2).count(),
        1,
        "the camera's return is one discontinuity"
    );
    assert!(live[before].2, "at the first segment after the outage");

    // storef restarts: the pull starts again by itself.
    let before = segment_count(&s, &id).await;
    let s = s.restart(SETTINGS);
    let t1 = Instant::now();
    wait_status(&s, &tok, &id, Duration::from_secs(30), "resumed", |st| {
        st["pull"]["state"] == "streaming"
    })
    .await;
    wait_segments(&s, &id, before + 2, Duration::from_secs(30)).await;
    eprintln!(
        "pull resumed, 2 segments {:?} after the restart",
        t1.elapsed()
    );

    let stopped = stop(&s, &tok, &id).await;
    let st = wait_status(&s, &tok, &id, Duration::from_secs(5), "stopped", |_| true).await;
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pull"]["state"], "stopped", "{st}");
    let (entries, frames) = check_segments(&s, &id, dir.path()).await;
    let discs: Vec<usize> = (0..entries.len()).filter(|&k| entries[k].2).collect();
    assert_eq!(
        discs.len(),
        2,
        "one discontinuity for the camera restart, one for the server restart: {discs:?}"
    );
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let total: f64 = entries.iter().map(|e| e.0).sum();
    eprintln!(
        "{} segments, {frames} frames over {total:.2} s: {:.3} fps",
        entries.len(),
        frames as f64 / total
    );
    assert_eq!(count_packets(&pl, "v:0") as usize, frames);
    assert!(count_packets(&pl, "a:0") > 0, "the camera's AAC is carried");
    // Nothing is pulled after the stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(segment_count(&s, &id).await, entries.len());
    let vod = dir.path().join("vod.mp4");
    download(stopped["videoUrl"].as_str().expect("videoUrl"), &vod).await;
    assert_eq!(
        count_packets(vod.to_str().expect("utf-8 path"), "v:0") as usize,
        frames
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_bad_urls_and_udp() {
    require_tool("ffprobe");
    let cam = Camera::start(&["--port", "0", "--user", "admin", "--password", "right"]);
    let s = Server::start(SETTINGS);
    let tok = token("camera-user", 3600);

    for (body, needle) in [
        (
            json!({"pull": "http://admin:right@127.0.0.1/cam"}),
            "scheme",
        ),
        (json!({"pull": "rtsp://"}), "invalid RTSP URL"),
        (
            json!({"pull": format!("rtsp://127.0.0.1:{}/cam", cam.port), "transport": "sctp"}),
            "transport",
        ),
        (json!({"transport": "udp"}), "pull"),
    ] {
        let (code, v) = start_pull(&s, &tok, body.clone()).await;
        assert_eq!(code, 400, "{body} -> {v}");
        assert_eq!(v["success"], false);
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{body} -> {msg}");
        assert!(!msg.contains("right"), "{msg}");
    }

    // A wrong password: the status says so and the pull stops knocking (max_auth_attempts).
    let url = format!("rtsp://admin:wrong@127.0.0.1:{}/cam", cam.port);
    let (code, started) = start_pull(&s, &tok, json!({"pull": url})).await;
    assert_eq!(code, 201, "{started}");
    let bad = started["streamId"].as_str().expect("streamId").to_string();
    let st = wait_status(
        &s,
        &tok,
        &bad,
        Duration::from_secs(30),
        "auth failure",
        |st| st["pull"]["state"] == "failed",
    )
    .await;
    assert_eq!(st["pull"]["last_error"]["kind"], "auth", "{st}");
    assert!(
        st["pull"]["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "{st}"
    );
    assert_eq!(st["pull"]["failed_attempts"], 3, "{st}");
    assert!(!st.to_string().contains("wrong"), "{st}");

    // The right password over UDP.
    let url = format!("rtsp://admin:right@127.0.0.1:{}/cam", cam.port);
    let (code, started) = start_pull(&s, &tok, json!({"pull": url, "transport": "udp"})).await;
    assert_eq!(code, 201, "{started}");
    let id = started["streamId"].as_str().expect("streamId").to_string();
    wait_segments(&s, &id, 2, Duration::from_secs(40)).await;
    let st = wait_status(&s, &tok, &id, Duration::from_secs(10), "streaming", |st| {
        st["pull"]["state"] == "streaming"
    })
    .await;
    assert_eq!(st["pull"]["transport"], "udp");
    stop(&s, &tok, &id).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (entries, _) = check_segments(&s, &id, dir.path()).await;
    assert!(
        entries.iter().all(|e| !e.2),
        "one connection, no discontinuity"
    );

    // The failed pull's stream has no publisher and nobody retries: the window stops it.
    let st = wait_status(&s, &tok, &bad, Duration::from_secs(15), "auto-stop", |st| {
        st["status"] == "stopped"
    })
    .await;
    assert_eq!(st["segments"], 0);
}
