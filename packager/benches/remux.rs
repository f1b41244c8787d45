//! Remux throughput: storef's segmenter + fMP4 writer against `ffmpeg -c copy -f hls` on the
//! same 60 s 720p H.264 + AAC file, timed in the same run.
//!
//! Both sides do the whole job from file to files: storef reads the MP4 from disk, parses its
//! sample tables (the test-only mp4-atom reader), segments, writes every init/segment file and
//! the playlist to a temp dir; ffmpeg does `-i long.mp4 -c copy -f hls -hls_segment_type fmp4
//! -hls_time 2 out/index.m3u8`. The fixture is generated once into the target dir.
//!
//! Run: `cargo bench -p packager --bench remux` (prints the figures; no criterion harness).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use packager::segmenter::{Output, Segmenter, SegmenterConfig};

const ROUNDS: usize = 7;

fn fixture() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench-fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let path = dir.join("long720p.mp4");
    if !path.exists() {
        eprintln!("generating {} (60 s 720p, once)…", path.display());
        common::make_clip(&path, 60, "1280x720", "aac", &["-b:a", "128k"]);
    }
    path
}

/// The storef side: file in, segment files out. Returns (segments, bytes written).
fn storef_remux(input: &Path, out: &Path) -> (usize, u64) {
    let clip = common::read_mp4(input);
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(2),
    });
    seg.begin_run(clip.tracks, false).expect("begin_run");
    let mut written = 0u64;
    let mut segments = Vec::new();
    let mut drain = |seg: &mut Segmenter, segments: &mut Vec<(u64, f64)>| {
        while let Some(o) = seg.poll_output() {
            match o {
                Output::Init(i) => {
                    std::fs::write(out.join(format!("init_{}.mp4", i.id)), &i.data).unwrap();
                    written += i.data.len() as u64;
                }
                Output::Segment(s) => {
                    let mut f =
                        std::fs::File::create(out.join(format!("seg_{}.m4s", s.sequence))).unwrap();
                    // Gathered writes of the frames' own buffers, no concatenation.
                    let mut bufs: Vec<&[u8]> = Vec::with_capacity(s.payloads.len() + 1);
                    bufs.push(&s.header);
                    bufs.extend(s.payloads.iter().map(|p| p.as_ref()));
                    write_gathered(&mut f, &bufs).unwrap();
                    written += s.len();
                    segments.push((s.sequence, s.duration_secs));
                }
            }
        }
    };
    for f in clip.frames {
        seg.push(f).expect("push");
        drain(&mut seg, &mut segments);
    }
    seg.flush();
    drain(&mut seg, &mut segments);
    let playlist = packager::hls::Playlist {
        kind: packager::hls::PlaylistKind::Vod,
        ended: true,
        target_duration_secs: 2.0,
        media_sequence: 0,
        segments: segments
            .iter()
            .map(|(n, d)| packager::hls::PlaylistSegment {
                uri: format!("seg_{n}.m4s"),
                duration_secs: *d,
                discontinuity: false,
                init_uri: "init_0.mp4".into(),
                program_date_time_ms: None,
            })
            .collect(),
    };
    std::fs::write(out.join("index.m3u8"), playlist.render()).unwrap();
    (segments.len(), written)
}

/// `write_all` over many buffers with `writev` (IOV_MAX-sized batches), handling short writes.
fn write_gathered(f: &mut std::fs::File, bufs: &[&[u8]]) -> std::io::Result<()> {
    let mut i = 0;
    let mut skip = 0usize;
    while i < bufs.len() {
        let slices: Vec<std::io::IoSlice> = bufs[i..]
            .iter()
            .take(1024)
            .enumerate()
            .map(|(k, b)| std::io::IoSlice::new(if k == 0 { &b[skip..] } else { b }))
            .collect();
        let mut n = f.write_vectored(&slices)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while i < bufs.len() {
            let left = bufs[i].len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            skip = 0;
            i += 1;
        }
    }
    Ok(())
}

fn ffmpeg_remux(input: &Path, out: &Path) {
    common::run(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(input)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_segment_type",
                "fmp4",
                "-hls_time",
                "2",
            ])
            .args(["-hls_playlist_type", "vod"])
            .arg(out.join("index.m3u8")),
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("remux bench: run with `cargo bench -p packager --bench remux`");
        return;
    }
    let input = fixture();
    let input_len = std::fs::metadata(&input).unwrap().len();
    let mut storef = Vec::new();
    let mut ffmpeg = Vec::new();
    let mut info = (0, 0);
    for round in 0..ROUNDS {
        // Alternate who goes first so page-cache warmth is shared fairly.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_storef in order {
            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            if is_storef {
                info = storef_remux(&input, dir.path());
                storef.push(t.elapsed().as_secs_f64());
                // Outside the timing: the files hold every byte the segmenter produced.
                let on_disk: u64 = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x != "m3u8"))
                    .map(|p| std::fs::metadata(p).unwrap().len())
                    .sum();
                assert_eq!(on_disk, info.1);
            } else {
                ffmpeg_remux(&input, dir.path());
                ffmpeg.push(t.elapsed().as_secs_f64());
            }
        }
    }
    let s = median(storef);
    let f = median(ffmpeg);
    // For transparency: what ffmpeg pays just to start, included in its figure.
    let startup = median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                common::run(Command::new("ffmpeg").arg("-version"));
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let mb = input_len as f64 / 1e6;
    println!(
        "input: {} ({mb:.1} MB, 60 s 720p30 H.264 + AAC), {ROUNDS} rounds, medians",
        input.display()
    );
    println!(
        "storef  segmenter+fMP4 writer (file->files): {:7.1} ms  {:8.1} MB/s  {:6.0}x realtime  ({} segments, {} bytes)",
        s * 1e3,
        mb / s,
        60.0 / s,
        info.0,
        info.1
    );
    println!(
        "ffmpeg  -c copy -f hls fmp4   (file->files): {:7.1} ms  {:8.1} MB/s  {:6.0}x realtime",
        f * 1e3,
        mb / f,
        60.0 / f
    );
    println!(
        "ffmpeg process start alone (ffmpeg -version): {:.1} ms",
        startup * 1e3
    );
    println!("throughput ratio storef/ffmpeg: {:.2}x", f / s);
    println!(
        "ratio with ffmpeg's process start taken out: {:.2}x",
        (f - startup).max(0.0) / s
    );
}
