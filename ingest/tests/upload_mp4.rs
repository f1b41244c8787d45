//! `index_mp4` against ffprobe, on files ffmpeg writes at test time.
//!
//! For every fixture and every track: same packet count as ffprobe, same keyframe flags, the same
//! `dts`/`pts` for every packet (ffprobe's stream time base is the track timescale for MP4), and
//! the sum of durations of the samples that are (partly) presented equals ffprobe's stream
//! duration within one frame.

mod upload_common;

use ingest::upload::{index_mp4, DemuxError, Mp4Index};
use packager::{Codec, TrackKind};
use std::fs::File;
use std::path::Path;
use upload_common::{derive, probe, ProbeStream};

fn index(path: &Path) -> Mp4Index {
    let mut f = File::open(path).expect("open fixture");
    index_mp4(&mut f).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares every track of `idx` with ffprobe's packets, packet by packet.
fn assert_matches_ffprobe(path: &Path, idx: &Mp4Index) {
    let streams = probe(path);
    let av: Vec<&ProbeStream> = streams
        .iter()
        .filter(|s| s.codec_type == "video" || s.codec_type == "audio")
        .collect();
    assert_eq!(
        idx.tracks.len(),
        av.len(),
        "{}: track count",
        path.display()
    );
    for stream in av {
        let kind = if stream.codec_type == "video" {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let track = idx.track(kind).expect("track of that kind");
        assert_eq!(track.timescale, stream.timebase_den, "{kind:?} timescale");
        let ours: Vec<_> = idx.samples.iter().filter(|s| s.kind == kind).collect();
        assert_eq!(
            ours.len(),
            stream.packets.len(),
            "{}: {kind:?} packet count",
            path.display()
        );
        for (i, (s, p)) in ours.iter().zip(&stream.packets).enumerate() {
            let pts = s.dts + i64::from(s.cts_offset);
            assert_eq!(
                (s.dts, pts, s.keyframe),
                (p.dts, p.pts, p.key),
                "{}: {kind:?} packet {i} (ours vs ffprobe {p:?})",
                path.display()
            );
            // ffmpeg trims the last packet's duration to the end of the edit; we keep `stts`.
            // ffprobe has no duration for a fragment's first packet when the trun's first
            // duration disagrees with the previous fragment's end (ffmpeg's audio priming).
            if i + 1 < ours.len() && p.duration != i64::MIN {
                assert_eq!(
                    i64::from(s.duration),
                    p.duration,
                    "{kind:?} packet {i} duration"
                );
            }
        }
        // Presented length: samples that end after presentation time 0.
        let presented: i64 = ours
            .iter()
            .filter(|s| s.dts + i64::from(s.cts_offset) + i64::from(s.duration) > 0)
            .map(|s| i64::from(s.duration))
            .sum();
        if stream.duration.is_nan() {
            continue; // ffprobe gives no stream duration for fragmented files
        }
        let frame = ours.iter().map(|s| s.duration).max().unwrap_or(0);
        let ts = f64::from(track.timescale);
        assert!(
            (presented as f64 / ts - stream.duration).abs() <= f64::from(frame) / ts + 1e-6,
            "{}: {kind:?} presented {} s vs ffprobe {} s",
            path.display(),
            presented as f64 / ts,
            stream.duration
        );
    }
}

/// Reads every frame and checks H.264 payloads are length-prefixed NAL units that fill the sample.
fn assert_frames_readable(path: &Path, idx: &Mp4Index) {
    let mut f = File::open(path).expect("open");
    let nal_len = idx.track(TrackKind::Video).map(|t| match &t.codec {
        Codec::H264 { avcc, .. } => usize::from(avcc[4] & 3) + 1,
        _ => unreachable!("video is H.264"),
    });
    for s in &idx.samples {
        let frame = idx.read_frame(&mut f, s).expect("read frame");
        assert_eq!(frame.data.len(), s.size as usize);
        assert_eq!(frame.dts, s.dts);
        if let (TrackKind::Video, Some(n)) = (s.kind, nal_len) {
            let mut rest = &frame.data[..];
            while !rest.is_empty() {
                let len = rest[..n]
                    .iter()
                    .fold(0usize, |a, &b| a << 8 | usize::from(b));
                assert!(
                    len > 0 && len + n <= rest.len(),
                    "bad NAL length prefix in {s:?}"
                );
                rest = &rest[n + len..];
            }
        }
    }
}

#[test]
fn cut_with_edit_list_and_preroll_matches_ffprobe() {
    let p = derive("cut.mp4", &["-ss", "1.5", "-t", "3"], &["-c", "copy"]);
    let idx = index(&p);
    assert_eq!(idx.tracks[0].kind, TrackKind::Video);
    match &idx.tracks[0].codec {
        Codec::H264 {
            avcc,
            width,
            height,
        } => {
            assert_eq!((*width, *height), (320, 240));
            assert_eq!(avcc[1], 100, "High profile");
        }
        other => panic!("video codec {other:?}"),
    }
    match &idx.tracks[1].codec {
        Codec::Aac {
            sample_rate,
            channels,
            asc,
        } => {
            assert_eq!((*sample_rate, *channels), (48000, 1));
            assert_eq!(idx.tracks[1].timescale, 48000);
            assert_eq!(asc[0] >> 3, 2, "AAC LC");
        }
        other => panic!("audio codec {other:?}"),
    }
    // The cut starts mid-GOP: decode-only pre-roll frames have negative pts and are kept.
    assert!(idx
        .samples
        .iter()
        .any(|s| s.kind == TrackKind::Video && s.dts + i64::from(s.cts_offset) < 0));
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
    assert!(
        (idx.duration_secs() - 3.07).abs() < 0.05,
        "duration {}",
        idx.duration_secs()
    );
}

#[test]
fn whole_clip_matches_ffprobe() {
    let p = upload_common::source_clip();
    let idx = index(&p);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

#[test]
fn faststart_matches_ffprobe() {
    let p = derive(
        "faststart.mp4",
        &[],
        &["-c", "copy", "-movflags", "+faststart"],
    );
    let idx = index(&p);
    assert_matches_ffprobe(&p, &idx);
}

#[test]
fn video_only_matches_ffprobe() {
    let p = derive("video_only.mp4", &[], &["-c", "copy", "-an"]);
    let idx = index(&p);
    assert_eq!(idx.tracks.len(), 1);
    assert_matches_ffprobe(&p, &idx);
}

#[test]
fn audio_only_matches_ffprobe() {
    let p = derive("audio_only.mp4", &[], &["-c", "copy", "-vn"]);
    let idx = index(&p);
    assert_eq!(idx.tracks.len(), 1);
    assert_eq!(idx.tracks[0].kind, TrackKind::Audio);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

#[test]
fn fragmented_matches_ffprobe() {
    let p = derive(
        "frag.mp4",
        &[],
        &["-c", "copy", "-movflags", "+frag_keyframe+empty_moov"],
    );
    let idx = index(&p);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

#[test]
fn fragmented_default_base_moof_matches_ffprobe() {
    let p = derive(
        "frag_dbm.mp4",
        &[],
        &[
            "-c",
            "copy",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
        ],
    );
    let idx = index(&p);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

/// Without `empty_moov` the first fragment's samples are in the moov's tables and the rest in
/// moof/mdat pairs.
#[test]
fn fragmented_with_samples_in_moov_matches_ffprobe() {
    let p = derive(
        "frag_moov.mp4",
        &[],
        &["-c", "copy", "-movflags", "+frag_keyframe"],
    );
    let idx = index(&p);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

#[test]
fn opus_in_mp4_matches_ffprobe() {
    let p = derive(
        "opus.mp4",
        &[],
        &["-c:v", "copy", "-c:a", "libopus", "-b:a", "48k"],
    );
    let idx = index(&p);
    let audio = idx.track(TrackKind::Audio).expect("audio");
    assert_eq!(audio.timescale, 48000);
    assert!(
        matches!(
            audio.codec,
            Codec::Opus {
                channels: 1,
                pre_skip: 312,
                ..
            }
        ),
        "{:?}",
        audio.codec
    );
    assert_matches_ffprobe(&p, &idx);
}

#[test]
fn negative_cts_ctts_v1_matches_ffprobe() {
    let p = derive(
        "negcts.mp4",
        &[],
        &[
            "-c",
            "copy",
            "-an",
            "-movflags",
            "+negative_cts_offsets",
            "-use_editlist",
            "0",
        ],
    );
    let bytes = std::fs::read(&p).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"ctts")
        .expect("a ctts box");
    assert_eq!(bytes[at + 4], 1, "ffmpeg wrote ctts version 1");
    let idx = index(&p);
    // Negative offsets are folded into an earlier dts, pts unchanged (ffmpeg's dts_shift).
    assert!(idx.samples.iter().all(|s| s.cts_offset >= 0));
    assert!(idx.samples[0].dts < 0);
    assert_matches_ffprobe(&p, &idx);
}

#[test]
fn quicktime_mov_matches_ffprobe() {
    let p = derive("clip.mov", &["-ss", "1.5", "-t", "3"], &["-c", "copy"]);
    let idx = index(&p);
    assert_eq!(idx.tracks.len(), 2);
    assert_matches_ffprobe(&p, &idx);
    assert_frames_readable(&p, &idx);
}

#[test]
fn hevc_only_is_unsupported_codec() {
    let p = derive(
        "hevc.mp4",
        &[],
        &[
            "-t",
            "1",
            "-an",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-tag:v",
            "hvc1",
            "-x265-params",
            "log-level=error",
        ],
    );
    let mut f = File::open(&p).unwrap();
    match index_mp4(&mut f) {
        Err(DemuxError::UnsupportedCodec { fourcc }) => assert_eq!(fourcc, "hvc1"),
        other => panic!("expected UnsupportedCodec, got {other:?}"),
    }
}

#[test]
fn vp9_with_aac_keeps_the_aac_and_reports_the_skipped_track() {
    let p = derive(
        "vp9.mp4",
        &[],
        &[
            "-t",
            "1",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-c:a",
            "copy",
        ],
    );
    let idx = index(&p);
    assert_eq!(idx.tracks.len(), 1);
    assert_eq!(idx.tracks[0].kind, TrackKind::Audio);
    assert_eq!(idx.skipped_tracks, vec!["vp09".to_string()]);
}

/// Every strict prefix of a progressive file is an error (never a panic, never a smaller index).
#[test]
fn truncated_progressive_files_are_errors() {
    for name in ["cut.mp4", "faststart.mp4"] {
        let p = if name == "cut.mp4" {
            derive("cut_t.mp4", &["-ss", "1.5", "-t", "3"], &["-c", "copy"])
        } else {
            derive(
                "faststart_t.mp4",
                &[],
                &["-c", "copy", "-t", "2", "-movflags", "+faststart"],
            )
        };
        let bytes = std::fs::read(&p).unwrap();
        let step = (bytes.len() / 400).max(1);
        let cuts = (0..bytes.len())
            .step_by(step)
            .chain(bytes.len().saturating_sub(64)..bytes.len());
        for cut in cuts {
            let r = index_mp4(&mut std::io::Cursor::new(&bytes[..cut]));
            match r {
                Err(DemuxError::Truncated { .. }) | Err(DemuxError::NotMp4 { .. }) => {}
                other => panic!("{name} cut at {cut}/{}: {other:?}", bytes.len()),
            }
        }
    }
}

/// A fragmented file cut at a fragment boundary is a shorter valid file; cut anywhere else it is
/// an error.
#[test]
fn truncated_fragmented_files() {
    let p = derive(
        "frag_t.mp4",
        &[],
        &[
            "-c",
            "copy",
            "-t",
            "3",
            "-movflags",
            "+frag_keyframe+empty_moov",
        ],
    );
    let bytes = std::fs::read(&p).unwrap();
    let full = index_mp4(&mut std::io::Cursor::new(&bytes)).unwrap();
    let mut boundaries = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        boundaries.push(pos);
        pos += u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    let step = (bytes.len() / 400).max(1);
    for cut in (1..bytes.len())
        .step_by(step)
        .chain(boundaries.iter().copied())
    {
        let r = index_mp4(&mut std::io::Cursor::new(&bytes[..cut]));
        let at_boundary = boundaries.contains(&cut);
        match r {
            Ok(idx) => {
                assert!(at_boundary, "cut at {cut} accepted");
                assert!(idx.samples.len() <= full.samples.len());
                assert_eq!(idx.samples[..], full.samples[..idx.samples.len()]);
            }
            Err(DemuxError::Truncated { .. }) | Err(DemuxError::NotMp4 { .. }) => {}
            Err(e) if at_boundary => {
                // Before the moov ends there is no index at all.
                assert!(cut <= boundaries[2], "cut at boundary {cut}: {e}");
            }
            Err(e) => panic!("cut at {cut}: unexpected {e}"),
        }
    }
}

#[test]
fn garbage_is_not_mp4() {
    for bytes in [
        &b""[..],
        b"abc",
        b"\x1a\x45\xdf\xa3 webm header....",
        b"GIF89a...........",
    ] {
        match index_mp4(&mut std::io::Cursor::new(bytes)) {
            Err(DemuxError::NotMp4 { .. }) => {}
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
}
