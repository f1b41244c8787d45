//! The `rtmp_load` generator against `ingest::rtmp::serve`: 5 publishers replay an FLV made by
//! ffmpeg from a generated clip; every publisher's frames arrive and none falls behind.
//! Needs `ffmpeg` and `ffprobe` on PATH.

use ingest::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use ingest::rtmp::{serve, RtmpConfig};
use packager::TrackKind;
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Counts each key's video and audio frames until its publisher goes away.
struct CountingGate {
    counts: Arc<Mutex<HashMap<String, (usize, usize)>>>,
}

impl PublishGate for CountingGate {
    fn start_publish(&self, key: &str, _info: PublisherInfo) -> Result<Publisher, Refusal> {
        if !key.starts_with("load") {
            return Err(Refusal::UnknownKey);
        }
        let (tx, mut rx) = mpsc::channel::<IngestEvent>(256);
        let counts = self.counts.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let mut c = counts.lock().unwrap();
                let entry = c.entry(key.clone()).or_default();
                for f in e.frames() {
                    match f.kind {
                        TrackKind::Video => entry.0 += 1,
                        TrackKind::Audio => entry.1 += 1,
                    }
                }
            }
        });
        Ok(Publisher {
            stream_id: "s".into(),
            events: tx,
            cancel: CancellationToken::new(),
        })
    }
}

fn ffprobe_packets(path: &std::path::Path, stream: &str) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe installed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_publishers_replay_an_flv_in_real_time() {
    let dir = std::env::temp_dir().join(format!("storef-rtmp-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flv = dir.join("clip.flv");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30",
        ])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(&flv)
        .status()
        .expect("ffmpeg installed");
    assert!(status.success());
    let video_packets = ffprobe_packets(&flv, "v:0");
    let audio_packets = ffprobe_packets(&flv, "a:0");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let gate = Arc::new(CountingGate {
        counts: counts.clone(),
    });
    tokio::spawn(serve(listener, gate, RtmpConfig::default()));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtmp_load"))
        .args(["--url", &format!("rtmp://{addr}/live"), "--flv"])
        .arg(&flv)
        .args(["--count", "5", "--json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert_eq!(r["error"], serde_json::Value::Null);
        assert_eq!(r["fellBehind"], false);
        // Every tag but onMetaData went out: the frames, the AVC and AAC sequence headers and
        // ffmpeg's AVC end-of-sequence tag.
        assert_eq!(r["tags"], video_packets + audio_packets + 3, "{r}");
        assert!(r["lagP99Ms"].as_f64().unwrap() < 200.0, "{r}");
    }
    // Give the server tasks a moment to deliver the last frames.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = counts.lock().unwrap();
    assert_eq!(counts.len(), 5);
    for (key, (video, audio)) in counts.iter() {
        assert_eq!(*video, video_packets, "{key}");
        assert_eq!(*audio, audio_packets, "{key}");
    }
}
