//! Real-decoder checks: clips made by ffmpeg go through the segmenter, the fMP4 writer, the
//! playlist renderer and the VOD builder, and ffmpeg/ffprobe must read every frame back.
//! Needs the Debian `ffmpeg` package (ffmpeg + ffprobe with libx264 and libopus).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use mp4_atom::{Any, Moof};
use packager::segmenter::{Segmenter, SegmenterConfig};
use packager::vod::VodBuilder;
use packager::{MediaFrame, TrackKind};

fn segmenter() -> Segmenter {
    Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(2),
    })
}

/// Builds the VOD from what was written and writes it next to the segments.
fn write_vod(written: &Written, dir: &Path) -> (std::path::PathBuf, f64) {
    let mut vod = VodBuilder::new();
    for (id, p) in &written.inits {
        vod.add_init(*id, &std::fs::read(p).unwrap())
            .expect("add_init");
    }
    let mut datas = Vec::new();
    for (s, p) in &written.segments {
        let data = std::fs::read(p).unwrap();
        vod.add_segment(s.init_id, &data).expect("add_segment");
        datas.push(data);
    }
    let layout = vod.finish().expect("finish");
    let path = dir.join("vod.mp4");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&layout.head).unwrap();
    for (i, off, len) in &layout.ranges {
        f.write_all(&datas[*i][*off as usize..(*off + *len) as usize])
            .unwrap();
    }
    drop(f);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.total_len);
    (path, layout.duration_secs)
}

fn counts_in(frames: &[MediaFrame]) -> (u64, u64) {
    let v = frames.iter().filter(|f| f.kind == TrackKind::Video).count() as u64;
    (v, frames.len() as u64 - v)
}

/// tfdt of every traf, per track, with the end of its samples.
fn tfdts(written: &Written) -> Vec<(u32, u64, u64)> {
    let mut out = Vec::new();
    for (_, p) in &written.segments {
        let data = std::fs::read(p).unwrap();
        for b in boxes(&data) {
            if let Any::Moof(Moof { traf, .. }) = b {
                for t in traf {
                    let base = t.tfdt.unwrap().base_media_decode_time;
                    let dur: u64 = t.trun[0]
                        .samples
                        .iter()
                        .map(|s| u64::from(s.duration.unwrap()))
                        .sum();
                    out.push((t.tfhd.track_id, base, base + dur));
                }
            }
        }
    }
    out
}

#[test]
fn h264_aac_clip_plays_as_hls_and_as_vod() {
    let dir = test_dir();
    let clip_path = dir.path().join("clip.mp4");
    make_clip(&clip_path, 6, "320x240", "aac", &[]);
    let clip = read_mp4(&clip_path);
    let (v_in, a_in) = counts_in(&clip.frames);
    assert_eq!(v_in, 180);

    let mut seg = segmenter();
    seg.begin_run(clip.tracks.clone(), false).unwrap();
    for f in clip.frames.iter().cloned() {
        seg.push(f).unwrap();
    }
    seg.flush();
    let mut written = Written::default();
    drain_to_dir(&mut seg, dir.path(), &mut written);

    assert_eq!(seg.dropped_frames(), 0);
    // Only AAC priming (ends before the first picture) may be dropped.
    assert!(
        seg.dropped_audio_frames() <= 1,
        "{}",
        seg.dropped_audio_frames()
    );
    let a_out = a_in - seg.dropped_audio_frames();
    assert_eq!(written.inits.len(), 1);
    assert_eq!(written.segments.len(), 3, "1 s GOPs, 2 s target, 6 s clip");
    let v_sum: u64 = written
        .segments
        .iter()
        .map(|s| u64::from(s.0.video_frames))
        .sum();
    let a_sum: u64 = written
        .segments
        .iter()
        .map(|s| u64::from(s.0.audio_frames))
        .sum();
    assert_eq!((v_sum, a_sum), (v_in, a_out));
    for (s, _) in &written.segments {
        assert!(s.keyframe_start);
        assert!((s.duration_secs - 2.0).abs() < 0.001, "{}", s.duration_secs);
    }
    let total: f64 = written.segments.iter().map(|s| s.0.duration_secs).sum();
    assert!((total - 6.0).abs() < 1e-6);

    // tfdt continuous per track.
    let t = tfdts(&written);
    for id in [1, 2] {
        let runs: Vec<_> = t.iter().filter(|r| r.0 == id).collect();
        assert_eq!(runs[0].1, if id == 1 { 0 } else { runs[0].1 });
        for w in runs.windows(2) {
            assert_eq!(w[1].1, w[0].2, "track {id} tfdt continuous");
        }
    }

    let m3u8 = dir.path().join("index.m3u8");
    std::fs::write(&m3u8, playlist(&written, 2.0)).unwrap();
    assert_eq!(count_frames(&m3u8), (v_in, a_out));
    decode_all(&m3u8);

    let (vod, dur) = write_vod(&written, dir.path());
    assert!((dur - 6.0).abs() < 0.05, "layout duration {dur}");
    assert_eq!(count_frames(&vod), (v_in, a_out));
    decode_all(&vod);
    let probed = format_duration(&vod);
    assert!((probed - 6.0).abs() < 0.05, "ffprobe duration {probed}");
}

/// Two upload chunks and then a reconnect with a new resolution: tfdt keeps growing, the new
/// tracks get a second init and a discontinuity, ffmpeg decodes all of it, the VOD too.
#[test]
fn chunks_reconnect_and_codec_change() {
    let dir = test_dir();
    let a = dir.path().join("a.mp4");
    let b = dir.path().join("b.mp4");
    make_clip(&a, 4, "320x240", "aac", &[]);
    make_clip(&b, 3, "256x144", "aac", &[]);
    let clip_a = read_mp4(&a);
    let clip_b = read_mp4(&b);

    // Chunk boundary at the video keyframe at 2 s.
    let split = clip_a
        .frames
        .iter()
        .position(|f| {
            f.kind == TrackKind::Video && f.keyframe && f.dts > 0 && {
                let ts = clip_a.tracks[0].timescale as i64;
                f.dts + i64::from(f.cts_offset) >= 2 * ts
            }
        })
        .unwrap();
    let mut seg = segmenter();
    let mut written = Written::default();
    seg.begin_run(clip_a.tracks.clone(), false).unwrap();
    for f in clip_a.frames[..split].iter().cloned() {
        seg.push(f).unwrap();
    }
    seg.flush();
    let after_first = seg.resume_point();
    seg.begin_run(clip_a.tracks.clone(), false).unwrap();
    for f in clip_a.frames[split..].iter().cloned() {
        seg.push(f).unwrap();
    }
    seg.flush();
    drain_to_dir(&mut seg, dir.path(), &mut written);
    assert!(after_first.timeline_end_secs > 1.9);

    // Restart from the persisted point, then a new publisher with other tracks.
    let point = seg.resume_point();
    let json = serde_json::to_string(&point).unwrap();
    let point: packager::segmenter::ResumePoint = serde_json::from_str(&json).unwrap();
    assert_eq!(point, seg.resume_point());
    let mut seg = Segmenter::resume(
        SegmenterConfig {
            target_duration: Duration::from_secs(2),
        },
        point.clone(),
    );
    seg.begin_run(clip_b.tracks.clone(), true).unwrap();
    for f in clip_b.frames.iter().cloned() {
        seg.push(f).unwrap();
    }
    seg.flush();
    drain_to_dir(&mut seg, dir.path(), &mut written);

    assert_eq!(written.inits.len(), 2);
    let first_b = written
        .segments
        .iter()
        .find(|s| s.0.init_id == written.inits[1].0)
        .unwrap();
    assert!(first_b.0.discontinuity);
    assert!(first_b.0.start_secs >= point.timeline_end_secs - 1e-9);
    assert_eq!(
        written
            .segments
            .iter()
            .filter(|s| s.0.discontinuity)
            .count(),
        1
    );
    // Sequences are consecutive across the restart.
    for (i, s) in written.segments.iter().enumerate() {
        assert_eq!(s.0.sequence, i as u64);
    }
    // tfdt never goes back; within the first init it is continuous to within one audio frame.
    let t = tfdts(&written);
    for id in [1, 2] {
        let runs: Vec<_> = t.iter().filter(|r| r.0 == id).collect();
        for w in runs.windows(2) {
            assert!(w[1].1 >= w[0].2, "track {id}: {:?} then {:?}", w[0], w[1]);
        }
        assert!(runs.iter().skip(1).all(|r| r.1 > 0), "tfdt zero only first");
    }

    let (v_a, _) = counts_in(&clip_a.frames);
    let (v_b, _) = counts_in(&clip_b.frames);
    let v_sum: u64 = written
        .segments
        .iter()
        .map(|s| u64::from(s.0.video_frames))
        .sum();
    assert_eq!(v_sum, v_a + v_b);

    let m3u8 = dir.path().join("index.m3u8");
    std::fs::write(&m3u8, playlist(&written, 2.0)).unwrap();
    let a_sum: u64 = written
        .segments
        .iter()
        .map(|s| u64::from(s.0.audio_frames))
        .sum();
    assert_eq!(count_frames(&m3u8), (v_a + v_b, a_sum));
    decode_all(&m3u8);

    let (vod, dur) = write_vod(&written, dir.path());
    assert!((dur - 7.0).abs() < 0.1, "{dur}");
    assert_eq!(count_frames(&vod), (v_a + v_b, a_sum));
    decode_all(&vod);
}

#[test]
fn opus_clip_decodes_from_fmp4_and_vod() {
    let dir = test_dir();
    let clip_path = dir.path().join("opus.mp4");
    make_clip(&clip_path, 4, "320x240", "libopus", &["-b:a", "64k"]);
    let clip = read_mp4(&clip_path);
    let audio = clip
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .unwrap();
    assert_eq!(audio.timescale, 48_000);
    assert!(matches!(audio.codec, packager::Codec::Opus { .. }));
    let (v_in, a_in) = counts_in(&clip.frames);

    let mut seg = segmenter();
    seg.begin_run(clip.tracks.clone(), false).unwrap();
    for f in clip.frames.iter().cloned() {
        seg.push(f).unwrap();
    }
    seg.flush();
    let mut written = Written::default();
    drain_to_dir(&mut seg, dir.path(), &mut written);
    let a_out = a_in - seg.dropped_audio_frames();
    assert!(seg.dropped_audio_frames() <= 1);

    let init = std::fs::read(&written.inits[0].1).unwrap();
    let moov = boxes(&init)
        .into_iter()
        .find_map(|b| match b {
            Any::Moov(m) => Some(m),
            _ => None,
        })
        .unwrap();
    let trak = moov.trak.iter().find(|t| t.tkhd.track_id == 2).unwrap();
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    match &trak.mdia.minf.stbl.stsd.codecs[0] {
        mp4_atom::Codec::Opus(o) => assert_eq!(o.dops.pre_skip, 312),
        other => panic!("{other:?}"),
    }

    let m3u8 = dir.path().join("index.m3u8");
    std::fs::write(&m3u8, playlist(&written, 2.0)).unwrap();
    assert_eq!(count_frames(&m3u8).0, v_in);
    decode_all(&m3u8);

    let (vod, _) = write_vod(&written, dir.path());
    assert_eq!(count_frames(&vod).0, v_in);
    decode_all(&vod);
    // ffmpeg reads every Opus packet of the VOD.
    let packets = run(std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", "a:0"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(&vod));
    assert_eq!(packets.trim().parse::<u64>().unwrap(), a_out);
}
