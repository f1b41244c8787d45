//! Benchmark: N GStreamer `whipsink` publishers on the one WHIP UDP socket; reports the CPU time
//! the WHIP front-end (this process: UDP task, DTLS/SRTP, depacketizing, events) spends per stream.
//!
//! Encode once, fan out: one x264enc/opusenc feeds N payloader+whipsink branches through `tee`,
//! so the encoders do not eat the two cores. Runs in a network namespace like whip_gstreamer.rs.
//! `STOREF_WHIP_BENCH_N=50 cargo test -p ingest --test whip_bench -- --ignored --nocapture`

mod whip_support;

use ingest::publish::IngestEvent;
use ingest::whip::{WhipConfig, WhipServer};
use packager::TrackKind;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use whip_support::{netns_with_veth, plugin_dir, require, serve};

const INNER: &str = "STOREF_WHIP_BENCH_INNER";
const WINDOW: Duration = Duration::from_secs(10);

fn n() -> usize {
    std::env::var("STOREF_WHIP_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// utime + stime of this process, in seconds (/proc/self/stat fields 14 and 15, clock ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
#[ignore = "benchmark (minutes of CPU): run with --ignored --nocapture"]
fn whip_publishers_cpu_per_stream() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    require("ip", "iproute2");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let plugins = plugin_dir();
    let ns = netns_with_veth("whipbench");
    let st = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "whip_publishers_cpu_per_stream",
            "--ignored",
            "--nocapture",
        ])
        .env(INNER, "1")
        .env("GST_PLUGIN_PATH", &plugins)
        .status()
        .unwrap();
    assert!(st.success(), "the benchmark inside the namespace failed");
}

fn inner() {
    let n = n();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (whip, _task) = WhipServer::start(WhipConfig {
            udp_addr: "10.99.0.1:0".parse().unwrap(),
            ..WhipConfig::default()
        })
        .await
        .unwrap();
        let (http, mut published) = serve(whip.clone()).await;
        let url = format!("http://{http}/api/whip");
        let mut p = String::from(
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1 \
             ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bframes=0 bitrate=1000 \
             ! video/x-h264,profile=constrained-baseline ! tee name=vt \
             audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! tee name=at ",
        );
        for i in 0..n {
            p.push_str(&format!(
                "vt. ! queue ! rtph264pay config-interval=-1 pt=96 \
                 ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! w{i}.sink_0 \
                 at. ! queue ! rtpopuspay pt=111 \
                 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w{i}.sink_1 \
                 whipsink name=w{i} whip-endpoint={url} auth-token={} ",
                whip_support::KEY
            ));
        }
        let mut gst = tokio::process::Command::new("gst-launch-1.0")
            .arg("-q")
            .args(p.split_whitespace())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let video: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let audio: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        for i in 0..n {
            let mut pb = tokio::time::timeout(Duration::from_secs(60), published.recv())
                .await
                .unwrap_or_else(|_| panic!("only {i} of {n} publishers came"))
                .unwrap();
            let (v, a) = (video.clone(), audio.clone());
            tokio::spawn(async move {
                while let Some(ev) = pb.events.recv().await {
                    if let IngestEvent::Frame(f) = ev {
                        let c = if f.kind == TrackKind::Video { &v[i] } else { &a[i] };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Steady state: every publisher has delivered video.
        let t0 = Instant::now();
        while video.iter().any(|c| c.load(Ordering::Relaxed) < 30) {
            assert!(t0.elapsed() < Duration::from_secs(60), "publishers never all flowed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let snap = |c: &Vec<AtomicU64>| c.iter().map(|x| x.load(Ordering::Relaxed)).collect::<Vec<_>>();
        let (v0, a0, cpu0, wall0) = (snap(&video), snap(&audio), cpu_seconds(), Instant::now());
        tokio::time::sleep(WINDOW).await;
        let (v1, a1, cpu1, wall) = (snap(&video), snap(&audio), cpu_seconds(), wall0.elapsed());
        let _ = gst.kill().await;
        let secs = wall.as_secs_f64();
        let fps: Vec<f64> = v0.iter().zip(&v1).map(|(a, b)| (b - a) as f64 / secs).collect();
        let aps: Vec<f64> = a0.iter().zip(&a1).map(|(a, b)| (b - a) as f64 / secs).collect();
        let cpu = (cpu1 - cpu0) / secs * 100.0;
        let min_fps = fps.iter().cloned().fold(f64::MAX, f64::min);
        let min_aps = aps.iter().cloned().fold(f64::MAX, f64::min);
        eprintln!(
            "whip bench: {n} publishers (640x360 30 fps ~1 Mbit/s + Opus), {secs:.1} s window: \
             WHIP process CPU {cpu:.1} % of one core = {:.2} % per stream; min video {min_fps:.1} fps, \
             min audio {min_aps:.1} packets/s",
            cpu / n as f64
        );
        assert!(min_fps > 20.0, "a publisher fell behind: {fps:?}");
        assert!(min_aps > 40.0, "{aps:?}");
    });
}
