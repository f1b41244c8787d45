//! Test-only helpers: a tiny progressive-MP4 reader over mp4-atom (sample tables -> MediaFrames,
//! with the edit list applied, the way a real demuxer presents them), ffmpeg fixtures and
//! writing segmenter output to a directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use mp4_atom::{Any, Atom, Codec as Entry, Decode, Header, Moov};
use packager::hls::{Playlist, PlaylistKind, PlaylistSegment};
use packager::segmenter::{Output, Segmenter};
use packager::{Codec, MediaFrame, Track, TrackKind};

pub struct Clip {
    pub tracks: Vec<Track>,
    /// All frames, interleaved by decode time.
    pub frames: Vec<MediaFrame>,
}

/// A fresh temporary directory; `STOREF_KEEP_TEST_DIRS=1` keeps it (and prints it) for a look.
pub fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("STOREF_KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("test dir kept: {}", dir.path().display());
    }
    dir
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a clip with ffmpeg (lavfi sources) unless it is already there.
pub fn make_clip(path: &Path, seconds: u32, size: &str, audio_codec: &str, extra: &[&str]) {
    if path.exists() {
        return;
    }
    let tmp = path.with_extension("part.mp4");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30",
        ])
        .args(["-c:a", audio_codec])
        .args(extra)
        .arg(&tmp);
    run(&mut cmd);
    std::fs::rename(&tmp, path).expect("rename clip");
}

/// Reads the sample tables of a progressive MP4.
pub fn read_mp4(path: &Path) -> Clip {
    let data = Bytes::from(std::fs::read(path).expect("read mp4"));
    let mut pos = 0usize;
    let mut moov = None;
    while pos < data.len() {
        let mut b = &data[pos..];
        let before = b.len();
        let h = Header::decode(&mut b).expect("box header");
        let hl = before - b.len();
        let size = h.size.unwrap_or(b.len());
        if h.kind == Moov::KIND {
            let mut body = &data[pos..pos + hl + size];
            moov = Some(Moov::decode(&mut body).expect("moov"));
        }
        pos += hl + size;
    }
    let moov = moov.expect("no moov");
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for trak in &moov.trak {
        let ts = trak.mdia.mdhd.timescale;
        let stbl = &trak.mdia.minf.stbl;
        let (kind, codec) = match stbl.stsd.codecs.first().expect("stsd") {
            Entry::Avc1(avc1) => {
                let mut avcc = Vec::new();
                avc1.avcc.encode_body(&mut avcc).expect("avcC");
                (
                    TrackKind::Video,
                    Codec::H264 {
                        avcc: avcc.into(),
                        width: avc1.visual.width,
                        height: avc1.visual.height,
                    },
                )
            }
            Entry::Mp4a(mp4a) => {
                let asc = mp4a
                    .esds
                    .es_desc
                    .dec_config
                    .dec_specific
                    .as_ref()
                    .expect("asc")
                    .raw
                    .clone();
                (
                    TrackKind::Audio,
                    Codec::Aac {
                        asc: asc.into(),
                        sample_rate: ts,
                        channels: mp4a.audio.channel_count as u8,
                    },
                )
            }
            Entry::Opus(opus) => (
                TrackKind::Audio,
                Codec::Opus {
                    channels: opus.dops.output_channel_count,
                    pre_skip: opus.dops.pre_skip,
                    input_sample_rate: opus.dops.input_sample_rate,
                },
            ),
            other => panic!("unsupported sample entry {other:?}"),
        };
        tracks.push(Track {
            kind,
            codec,
            timescale: ts,
        });
        // The first non-empty edit's media_time is where presentation starts.
        let shift = trak
            .edts
            .as_ref()
            .and_then(|e| e.elst.as_ref())
            .and_then(|e| e.entries.iter().find_map(|e| e.media_time))
            .unwrap_or(0) as i64;
        let mut durations = Vec::new();
        for e in &stbl.stts.entries {
            durations.extend(std::iter::repeat_n(e.sample_delta, e.sample_count as usize));
        }
        let mut ctts = Vec::new();
        if let Some(c) = &stbl.ctts {
            for e in &c.entries {
                ctts.extend(std::iter::repeat_n(
                    e.sample_offset,
                    e.sample_count as usize,
                ));
            }
        }
        let sizes: Vec<u32> = match &stbl.stsz.samples {
            mp4_atom::StszSamples::Identical { count, size } => vec![*size; *count as usize],
            mp4_atom::StszSamples::Different { sizes } => sizes.clone(),
        };
        let chunk_offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
            (Some(s), _) => s.entries.iter().map(|o| u64::from(*o)).collect(),
            (_, Some(c)) => c.entries.clone(),
            _ => panic!("no chunk offsets"),
        };
        let sync: Option<Vec<u32>> = stbl.stss.as_ref().map(|s| s.entries.clone());
        let mut sample = 0usize;
        let mut dts = -shift;
        for (ci, off) in chunk_offsets.iter().enumerate() {
            let chunk_no = ci as u32 + 1;
            let per = stbl
                .stsc
                .entries
                .iter()
                .rev()
                .find(|e| e.first_chunk <= chunk_no)
                .expect("stsc")
                .samples_per_chunk;
            let mut at = *off as usize;
            for _ in 0..per {
                let size = sizes[sample] as usize;
                let dur = durations[sample];
                frames.push(MediaFrame {
                    kind,
                    dts,
                    cts_offset: ctts.get(sample).copied().unwrap_or(0) as i32,
                    duration: Some(dur),
                    keyframe: kind == TrackKind::Audio
                        || sync
                            .as_ref()
                            .is_none_or(|s| s.contains(&(sample as u32 + 1))),
                    data: data.slice(at..at + size),
                });
                at += size;
                dts += i64::from(dur);
                sample += 1;
            }
        }
    }
    let ts_of = |k: TrackKind| tracks.iter().find(|t| t.kind == k).unwrap().timescale as f64;
    frames.sort_by(|a, b| {
        let ta = a.dts as f64 / ts_of(a.kind);
        let tb = b.dts as f64 / ts_of(b.kind);
        ta.partial_cmp(&tb).unwrap()
    });
    Clip { tracks, frames }
}

/// What a segmenter run wrote to a directory.
#[derive(Default)]
pub struct Written {
    pub inits: Vec<(u32, PathBuf)>,
    pub segments: Vec<(packager::segmenter::MediaSegment, PathBuf)>,
}

/// Drains the segmenter's outputs into `dir` (init_N.mp4, seg_N.m4s).
pub fn drain_to_dir(seg: &mut Segmenter, dir: &Path, out: &mut Written) {
    use std::io::Write;
    while let Some(o) = seg.poll_output() {
        match o {
            Output::Init(init) => {
                let p = dir.join(format!("init_{}.mp4", init.id));
                std::fs::write(&p, &init.data).expect("write init");
                out.inits.push((init.id, p));
            }
            Output::Segment(s) => {
                let p = dir.join(format!("seg_{}.m4s", s.sequence));
                let mut f = std::fs::File::create(&p).expect("create seg");
                f.write_all(&s.header).expect("write");
                for pl in &s.payloads {
                    f.write_all(pl).expect("write");
                }
                out.segments.push((s, p));
            }
        }
    }
}

/// A VOD playlist of what was written.
pub fn playlist(written: &Written, target: f64) -> String {
    Playlist {
        kind: PlaylistKind::Vod,
        ended: true,
        target_duration_secs: target,
        media_sequence: written.segments.first().map_or(0, |s| s.0.sequence),
        segments: written
            .segments
            .iter()
            .map(|(s, p)| PlaylistSegment {
                uri: p.file_name().unwrap().to_string_lossy().into_owned(),
                duration_secs: s.duration_secs,
                discontinuity: s.discontinuity,
                init_uri: format!("init_{}.mp4", s.init_id),
                program_date_time_ms: Some(1_764_072_000_000 + (s.start_secs * 1000.0) as i64),
            })
            .collect(),
    }
    .render()
}

/// ffprobe frame counts (decoded) of the first video and audio streams.
pub fn count_frames(url: &Path) -> (u64, u64) {
    let mut counts = (0, 0);
    for (sel, slot) in [("v:0", 0), ("a:0", 1)] {
        let out = run(Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", sel])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(url));
        // HLS input lists the stream under its program too: take the first value.
        let n = out
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .find(|l| !l.is_empty())
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if slot == 0 {
            counts.0 = n;
        } else {
            counts.1 = n;
        }
    }
    counts
}

/// `ffmpeg -xerror` full decode; returns stderr (must be empty of errors).
pub fn decode_all(url: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(url)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg decode of {} failed: {stderr}",
        url.display()
    );
}

pub fn format_duration(url: &Path) -> f64 {
    run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(url))
    .trim()
    .parse()
    .expect("duration")
}

/// Decodes a top-level box list for structural checks.
pub fn boxes(data: &[u8]) -> Vec<Any> {
    let mut b = data;
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(Any::decode(&mut b).expect("box"));
    }
    out
}

/// Synthetic H.264 (High, 320x240) and AAC-LC 48 kHz stereo tracks.
pub const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40];
pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

pub fn avcc() -> Bytes {
    let mut v = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
    v.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    v.extend_from_slice(SPS);
    v.push(1);
    v.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    v.extend_from_slice(PPS);
    Bytes::from(v)
}

pub fn tracks(audio: bool) -> Vec<Track> {
    let mut t = vec![Track {
        kind: TrackKind::Video,
        codec: Codec::H264 {
            avcc: avcc(),
            width: 320,
            height: 240,
        },
        timescale: 90_000,
    }];
    if audio {
        t.push(Track {
            kind: TrackKind::Audio,
            codec: Codec::Aac {
                asc: Bytes::from_static(&[0x11, 0x90]),
                sample_rate: 48_000,
                channels: 2,
            },
            timescale: 48_000,
        });
    }
    t
}
