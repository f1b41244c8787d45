//! Test support: runs the real `storef` binary on a free port with its own data directory, and
//! drives real tools (ffmpeg, ffprobe) against it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod netns;

pub const SECRET: &str = "test-secret-for-storef";

/// A running storef.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub rtmp_port: u16,
    pub data: PathBuf,
    pub env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

impl Server {
    /// Starts storef with a fresh data directory and extra `STOREF_*` settings.
    pub fn start(extra: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().to_path_buf();
        let mut s = Server::start_in(&data, extra, free_port(), free_port());
        s._tmp = Some(tmp);
        s
    }

    /// Starts storef on an existing data directory (a restart).
    pub fn start_in(data: &Path, extra: &[(&str, &str)], port: u16, rtmp_port: u16) -> Server {
        let mut env: Vec<(String, String)> = vec![
            ("STOREF_HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
            ("STOREF_RTMP_ADDR".into(), format!("127.0.0.1:{rtmp_port}")),
            ("STOREF_STORAGE_DATA_DIR".into(), data.display().to_string()),
            ("STOREF_AUTH_JWT_SECRET".into(), SECRET.into()),
            (
                "STOREF_WEBRTC_UDP_ADDR".into(),
                format!("127.0.0.1:{}", free_udp_port()),
            ),
            // The ICE-TCP listener defaults to 0.0.0.0:8189 too: one per server, like UDP.
            (
                "STOREF_WEBRTC_TCP_ADDR".into(),
                format!("127.0.0.1:{}", free_port()),
            ),
            ("RUST_LOG".into(), "info".into()),
        ];
        for (k, v) in extra {
            env.retain(|(a, _)| a != k);
            env.push((k.to_string(), v.to_string()));
        }
        let log = std::fs::File::create(data.join(format!("server-{port}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_storef"))
            .arg("serve")
            .arg("--config")
            .arg(empty_config())
            .envs(env.iter().map(|(a, b)| (a, b)))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn storef");
        let s = Server {
            child,
            port,
            rtmp_port,
            data: data.to_path_buf(),
            env,
            _tmp: None,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("storef did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join(format!("server-{}.log", self.port)))
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restarts on the same data directory and ports.
    pub fn restart(mut self, extra: &[(&str, &str)]) -> Server {
        self.kill9();
        let tmp = self._tmp.take();
        let mut s = Server::start_in(&self.data, extra, self.port, self.rtmp_port);
        s._tmp = tmp;
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file with nothing in it, so a developer's ./config.toml never leaks into a test.
fn empty_config() -> PathBuf {
    let p = std::env::temp_dir().join("storef-test-empty-config.toml");
    if !p.exists() {
        let _ = std::fs::write(&p, "");
    }
    p
}

/// An HS256 token like the old server's.
pub fn token(user: &str, ttl_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    token_at(user, now, now + ttl_secs, SECRET)
}

pub fn token_at(user: &str, iat: i64, exp: i64, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"id": user, "iat": iat, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// POST /api/streams/start; returns the JSON body.
pub async fn start_stream(s: &Server, tok: &str) -> Value {
    let r = client()
        .post(s.url("/api/streams/start"))
        .bearer_auth(tok)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

/// Uploads one chunk; returns (status, body).
pub async fn upload(s: &Server, tok: &str, id: &str, seq: &str, file: &Path) -> (u16, Value) {
    let bytes = std::fs::read(file).expect("chunk file");
    upload_bytes(s, tok, id, seq, bytes).await
}

pub async fn upload_bytes(
    s: &Server,
    tok: &str,
    id: &str,
    seq: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .text("sequence", seq.to_string())
        .part(
            "video_chunk",
            reqwest::multipart::Part::bytes(bytes).file_name("chunk.mp4"),
        );
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/upload")))
        .bearer_auth(tok)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ffmpeg() -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    c
}

/// A generated H.264 (High, B-frames, 1 s GOP at 30 fps) + AAC (48 kHz) clip.
pub fn make_clip(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let out = dir.join(name);
    run(ffmpeg()
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &secs.to_string(),
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
            "128k",
        ])
        .arg(&out));
    out
}

/// `ffmpeg -ss START -i clip -t DUR -c copy` as the seed session cut its chunks.
pub fn cut(clip: &Path, dir: &Path, name: &str, start: f64, dur: f64) -> PathBuf {
    let out = dir.join(name);
    run(ffmpeg()
        .args(["-ss", &start.to_string(), "-i"])
        .arg(clip)
        .args(["-t", &dur.to_string(), "-c", "copy"])
        .arg(&out));
    out
}

/// ffprobe's JSON for `args` + target.
pub fn ffprobe_json(target: &str, args: &[&str]) -> Value {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(target));
    serde_json::from_str(&out).expect("ffprobe json")
}

/// Number of packets of stream `sel` (`v:0`, `a:0`).
pub fn count_packets(target: &str, sel: &str) -> u64 {
    let v = ffprobe_json(
        target,
        &[
            "-count_packets",
            "-select_streams",
            sel,
            "-show_entries",
            "stream=nb_read_packets",
        ],
    );
    v["streams"][0]["nb_read_packets"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// (pts_time, is_keyframe) of every packet of stream `sel`.
pub fn packets(target: &str, sel: &str) -> Vec<(f64, bool)> {
    let v = ffprobe_json(
        target,
        &[
            "-select_streams",
            sel,
            "-show_entries",
            "packet=pts_time,flags",
        ],
    );
    v["packets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["pts_time"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(f64::NAN),
                        p["flags"].as_str().unwrap_or("").starts_with('K'),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Top-level box types of an MP4 file, in order.
pub fn top_level_boxes(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 8 <= data.len() {
        let mut size = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as u64;
        let kind = String::from_utf8_lossy(&data[i + 4..i + 8]).into_owned();
        if size == 1 && i + 16 <= data.len() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i + 8..i + 16]);
            size = u64::from_be_bytes(b);
        } else if size == 0 {
            size = (data.len() - i) as u64;
        }
        out.push(kind);
        if size < 8 {
            break;
        }
        i += size as usize;
    }
    out
}

/// Parses the media lines of a playlist: (extinf, uri, discontinuity-before, map uri).
pub fn playlist_entries(text: &str) -> Vec<(f64, String, bool, String)> {
    let mut out = Vec::new();
    let mut dur = None;
    let mut disc = false;
    let mut map = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            dur = rest
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|d| d.parse().ok());
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            map = rest.split('"').next().unwrap_or("").to_string();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push((
                dur.take().unwrap_or(f64::NAN),
                line.to_string(),
                disc,
                map.clone(),
            ));
            disc = false;
        }
    }
    out
}

/// Downloads `url` to `path`.
pub async fn download(url: &str, path: &Path) -> Vec<u8> {
    let r = client().get(url).send().await.expect("download");
    assert_eq!(r.status(), 200, "GET {url}");
    let b = r.bytes().await.expect("body").to_vec();
    std::fs::write(path, &b).expect("write");
    b
}

/// A listed media segment made playable on its own: its init segment (the entry's EXT-X-MAP)
/// followed by the segment, written as `seg{k}.mp4` in `dir`, so ffprobe can tell what it
/// starts with. Returns the file and the init segment's bytes.
pub async fn standalone_segment(
    s: &Server,
    id: &str,
    k: usize,
    entry: &(f64, String, bool, String),
    dir: &Path,
) -> (PathBuf, Vec<u8>) {
    let init = download(
        &s.url(&format!("/api/streams/{id}/{}", entry.3)),
        &dir.join("i.mp4"),
    )
    .await;
    let seg = download(
        &s.url(&format!("/api/streams/{id}/{}", entry.1)),
        &dir.join("s.m4s"),
    )
    .await;
    let one = dir.join(format!("seg{k}.mp4"));
    std::fs::write(&one, [init.as_slice(), &seg].concat()).expect("write segment");
    (one, init)
}

/// The video packets of every listed segment, each read on its own (see
/// [`standalone_segment`]), asserting each starts with a keyframe: a player may join at any
/// segment. Returns them per segment for callers that check more.
pub async fn assert_segments_start_on_keyframes(
    s: &Server,
    id: &str,
    entries: &[(f64, String, bool, String)],
    dir: &Path,
) -> Vec<Vec<(f64, bool)>> {
    let mut out = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        let (one, _) = standalone_segment(s, id, k, e, dir).await;
        let pk = packets(one.to_str().expect("utf-8 path"), "v:0");
        assert!(
            pk.first().is_some_and(|p| p.1),
            "segment {k} ({}) starts with a keyframe",
            e.1
        );
        out.push(pk);
    }
    out
}

/// Makes sure a Debian tool is present: the README's test command installs them; a missing one
/// is a setup error, reported loudly rather than skipped.
pub fn require_tool(name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{name} is missing: run the README's test command (scripts/test.sh), which installs it"
    );
}
