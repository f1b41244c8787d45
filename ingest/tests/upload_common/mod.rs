// Helpers shared by the upload_* integration tests (`mod upload_common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A directory for this test binary's generated fixtures.
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory per test binary, reused across runs (ffmpeg overwrites with -y).
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(env!("CARGO_CRATE_NAME"));
        std::fs::create_dir_all(&d).expect("create fixture dir");
        d
    })
}

/// Runs a command that must succeed (ffmpeg/ffprobe are required: the CI installs Debian's
/// `ffmpeg`; a missing tool fails the test instead of skipping it).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is Debian's ffmpeg installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The 6 s source every fixture is cut from: H.264 High with 3 B-frames and a 1 s GOP, 48 kHz
/// AAC (`sine` alone would be 44.1 kHz).
pub fn source_clip() -> PathBuf {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let out = work_dir().join("source.mp4");
        run(Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "6",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "high",
                "-bf",
                "3",
                "-g",
                "30",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
            ])
            .arg(&out));
        out
    })
    .clone()
}

/// Remuxes (or re-encodes) the source clip with extra ffmpeg arguments into `name`.
pub fn derive(name: &str, before_input: &[&str], args: &[&str]) -> PathBuf {
    let src = source_clip();
    let out = work_dir().join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"])
        .args(before_input)
        .arg("-i")
        .arg(&src)
        .args(args)
        .arg(&out);
    run(&mut cmd);
    out
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub key: bool,
}

/// Per stream: codec type ("video"/"audio"), time base denominator, duration in seconds.
#[derive(Debug, Clone)]
pub struct ProbeStream {
    pub codec_type: String,
    pub timebase_den: u32,
    pub duration: f64,
    pub packets: Vec<Packet>,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split('|')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// ffprobe's view of `path`: its streams and every packet (`-show_packets`), K flags included.
pub fn probe(path: &Path) -> Vec<ProbeStream> {
    let streams = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_type,time_base,duration",
            "-of",
            "compact=p=0",
        ])
        .arg(path));
    let mut out: Vec<ProbeStream> = streams
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| ProbeStream {
            codec_type: field(l, "codec_type").unwrap_or_default().to_string(),
            timebase_den: field(l, "time_base")
                .and_then(|t| t.split('/').nth(1))
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            duration: field(l, "duration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(f64::NAN),
            packets: Vec::new(),
        })
        .collect();
    let packets = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts,duration,flags",
            "-of",
            "compact=p=0",
        ])
        .arg(path));
    for l in packets.lines().filter(|l| l.contains("stream_index=")) {
        let idx: usize = field(l, "stream_index")
            .and_then(|v| v.parse().ok())
            .expect("stream_index");
        let num = |n: &str| field(l, n).and_then(|v| v.parse().ok()).unwrap_or(i64::MIN);
        out[idx].packets.push(Packet {
            pts: num("pts"),
            dts: num("dts"),
            duration: num("duration"),
            key: field(l, "flags").is_some_and(|f| f.starts_with('K')),
        });
    }
    out
}
