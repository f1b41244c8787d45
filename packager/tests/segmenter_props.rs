//! Segmenter properties over random GOP patterns, checked on the boxes it writes: every video
//! segment starts with a keyframe, no frame is lost except leading non-keyframes (and audio that
//! ends before the first picture), durations add up to the input span, `tfdt` is continuous,
//! `trun.data_offset` points at the frame's own bytes, and sample flags match keyframes.

use std::time::Duration;

use bytes::Bytes;
use mp4_atom::{Any, Decode, Moof};
use packager::segmenter::{MediaSegment, Output, Segmenter, SegmenterConfig};
use packager::{MediaFrame, TrackKind};
use proptest::prelude::*;

mod common;
use common::{tracks, SPS};

/// A video access unit: one length-prefixed NAL whose body is the frame index.
fn video_frame(i: u32, dts: i64, key: bool, dur: Option<u32>) -> MediaFrame {
    let mut d = vec![0, 0, 0, 5, if key { 0x65 } else { 0x41 }];
    d.extend_from_slice(&i.to_be_bytes());
    MediaFrame {
        kind: TrackKind::Video,
        dts,
        cts_offset: if key { 0 } else { 3000 },
        duration: dur,
        keyframe: key,
        data: Bytes::from(d),
    }
}

fn audio_frame(i: u32, dts: i64) -> MediaFrame {
    MediaFrame {
        kind: TrackKind::Audio,
        dts,
        cts_offset: 0,
        duration: None,
        keyframe: true,
        data: Bytes::from(
            [0xa0, 0, 0, 0]
                .iter()
                .copied()
                .chain(i.to_be_bytes())
                .collect::<Vec<_>>(),
        ),
    }
}

struct Traf {
    track_id: u32,
    tfdt: u64,
    /// (duration, flags, bytes)
    samples: Vec<(u32, u32, Vec<u8>)>,
}

/// Walks a segment's boxes and resolves every sample's bytes through `data_offset`.
fn walk(seg: &MediaSegment) -> Vec<Traf> {
    let mut file = seg.header.to_vec();
    for p in &seg.payloads {
        file.extend_from_slice(p);
    }
    assert_eq!(file.len() as u64, seg.len());
    let mut buf = file.as_slice();
    let mut out = Vec::new();
    let mut saw_mdat = false;
    while !buf.is_empty() {
        let at = file.len() - buf.len();
        match Any::decode(&mut buf).expect("box") {
            Any::Moof(Moof { mfhd, traf }) => {
                assert_eq!(u64::from(mfhd.sequence_number), seg.sequence + 1);
                for t in traf {
                    assert!(t.tfhd.default_base_is_moof);
                    let trun = &t.trun[0];
                    let mut pos = at + trun.data_offset.expect("data_offset") as usize;
                    let mut samples = Vec::new();
                    for s in trun.samples.iter() {
                        let size = s.size.unwrap() as usize;
                        samples.push((
                            s.duration.unwrap(),
                            s.flags.unwrap(),
                            file[pos..pos + size].to_vec(),
                        ));
                        pos += size;
                    }
                    out.push(Traf {
                        track_id: t.tfhd.track_id,
                        tfdt: t.tfdt.expect("tfdt").base_media_decode_time,
                        samples,
                    });
                }
            }
            Any::Mdat(_) => saw_mdat = true,
            Any::Styp(_) => {}
            other => panic!("unexpected box {:?}", other.kind()),
        }
    }
    assert!(saw_mdat);
    out
}

fn drain(seg: &mut Segmenter) -> Vec<MediaSegment> {
    let mut out = Vec::new();
    while let Some(o) = seg.poll_output() {
        if let Output::Segment(s) = o {
            out.push(s);
        }
    }
    out
}

/// Index carried in a synthetic frame's last four bytes (after any in-band SPS/PPS).
fn index_of(bytes: &[u8]) -> u32 {
    let n = bytes.len();
    u32::from_be_bytes(bytes[n - 4..].try_into().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn segments_are_keyframe_aligned_lossless_and_continuous(
        gop in prop::collection::vec((any::<bool>(), 1500u32..6000, any::<bool>()), 1..160),
        with_audio in any::<bool>(),
        target_ms in 500u64..4000,
        runs in 1usize..3,
    ) {
        let mut seg = Segmenter::new(SegmenterConfig { target_duration: Duration::from_millis(target_ms) });
        let mut all = Vec::new();
        let mut expected_video = Vec::new();
        let mut expected_video_span = 0u64;
        let mut video_in = 0u64;
        let mut audio_in = 0u64;
        for r in 0..runs {
            seg.begin_run(tracks(with_audio), r > 0).unwrap();
            // Input clocks start anywhere, even negative.
            let mut dts = (r as i64) * 1_000_000 - 50_000;
            let mut frames = Vec::new();
            let mut seen_key = false;
            let mut last_dur = None;
            let mut span = 0u64;
            for (i, (key, dur, known)) in gop.iter().enumerate() {
                let key = *key || i == gop.len() / 2;
                let idx = (r * 10_000 + i) as u32;
                frames.push(video_frame(idx, dts, key, known.then_some(*dur)));
                seen_key |= key;
                if seen_key {
                    expected_video.push(idx);
                    span += u64::from(if i + 1 < gop.len() || *known { *dur } else { last_dur.unwrap_or(3000) });
                }
                if seen_key { last_dur = Some(*dur); }
                dts += i64::from(*dur);
            }
            expected_video_span += span;
            video_in += frames.len() as u64;
            if with_audio {
                let start = (r as i64) * 1_000_000 - 50_000;
                let end = dts;
                let mut a = start * 48_000 / 90_000;
                let mut n = 0u32;
                while a * 90_000 / 48_000 < end {
                    frames.push(audio_frame(n, a));
                    a += 1024;
                    n += 1;
                }
                audio_in += u64::from(n);
                frames.sort_by_key(|f| if f.kind == TrackKind::Video { f.dts * 48_000 } else { f.dts * 90_000 });
            }
            for f in frames { seg.push(f).unwrap(); }
            seg.flush();
            all.extend(drain(&mut seg));
        }
        // No frame lost except leading non-keyframes of each run.
        let got_video: Vec<u32> = all.iter().flat_map(|s| walk(s).into_iter().filter(|t| t.track_id == 1).flat_map(|t| t.samples.into_iter().map(|x| index_of(&x.2)))).collect();
        prop_assert_eq!(&got_video, &expected_video);
        prop_assert_eq!(seg.dropped_frames(), video_in - expected_video.len() as u64);
        let audio_out: u64 = all.iter().map(|s| u64::from(s.audio_frames)).sum();
        prop_assert_eq!(audio_out + seg.dropped_audio_frames(), audio_in);

        let mut video_end: Option<u64> = None;
        let mut audio_end: Option<u64> = None;
        let mut video_total = 0u64;
        for (i, s) in all.iter().enumerate() {
            prop_assert_eq!(s.sequence, i as u64);
            let trafs = walk(s);
            if i == 0 {
                // The stream starts at 0 with whichever track decodes first.
                prop_assert_eq!(trafs.iter().map(|t| t.tfdt).min(), Some(0));
            }
            for t in &trafs {
                let d: u64 = t.samples.iter().map(|x| u64::from(x.0)).sum();
                let end = if t.track_id == 1 { &mut video_end } else { &mut audio_end };
                match *end {
                    // The very first tfdt of a stream is 0; later ones never go back and are
                    // exactly continuous inside a run.
                    None => {}
                    Some(e) if s.discontinuity => prop_assert!(t.tfdt >= e, "tfdt {} < previous end {}", t.tfdt, e),
                    Some(e) => prop_assert_eq!(t.tfdt, e),
                }
                if t.track_id == 1 {
                    video_total += d;
                    // Sync flags exactly on keyframes, and the segment starts with one.
                    prop_assert_eq!(t.samples[0].1, 0x0200_0000);
                    for x in &t.samples {
                        let key = x.2[x.2.len() - 5] == 0x65;
                        prop_assert_eq!(x.1, if key { 0x0200_0000 } else { 0x0101_0000 });
                    }
                }
                *end = Some(t.tfdt + d);
            }
            if s.video_frames > 0 {
                prop_assert!(s.keyframe_start);
                prop_assert!(s.discontinuity || i == 0 || (s.start_secs - all[i-1].start_secs - all[i-1].duration_secs).abs() < 0.05);
            }
        }
        prop_assert_eq!(video_total, expected_video_span);
        let sum_secs: f64 = all.iter().filter(|s| s.video_frames > 0).map(|s| s.duration_secs).sum();
        prop_assert!((sum_secs - expected_video_span as f64 / 90_000.0).abs() < 1e-6);
    }

    #[test]
    fn audio_only_cuts_on_time(n in 1u32..600, target_ms in 300u64..3000) {
        let mut seg = Segmenter::new(SegmenterConfig { target_duration: Duration::from_millis(target_ms) });
        seg.begin_run(vec![tracks(true).remove(1)], false).unwrap();
        for i in 0..n { seg.push(audio_frame(i, 5_000 + i64::from(i) * 1024)).unwrap(); }
        seg.flush();
        let all = drain(&mut seg);
        let frames: u32 = all.iter().map(|s| s.audio_frames).sum();
        prop_assert_eq!(frames, n);
        let mut end = 0u64;
        for (i, s) in all.iter().enumerate() {
            let t = walk(s);
            prop_assert_eq!(t[0].tfdt, end);
            end += t[0].samples.iter().map(|x| u64::from(x.0)).sum::<u64>();
            if i + 1 < all.len() {
                // Within one frame of the target.
                prop_assert!(s.duration_secs >= target_ms as f64 / 1000.0 - 1e-9);
                prop_assert!(s.duration_secs < target_ms as f64 / 1000.0 + 1024.0 / 48_000.0 + 1e-9);
            }
        }
    }
}

#[test]
fn frame_of_unknown_track_is_an_error_not_a_panic() {
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(2),
    });
    assert!(seg.push(audio_frame(0, 0)).is_err(), "no run yet");
    seg.begin_run(tracks(false), false).unwrap();
    assert!(seg.push(audio_frame(0, 0)).is_err());
    seg.push(video_frame(0, 0, true, None)).unwrap();
    assert!(
        seg.push(video_frame(1, -10, false, None)).is_err(),
        "dts going back"
    );
    seg.push(video_frame(2, 3000, false, None)).unwrap();
    seg.flush();
    let segs = drain(&mut seg);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].video_frames, 2);
}

#[test]
fn open_duration_tracks_the_open_segment() {
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(2),
    });
    seg.begin_run(tracks(false), false).unwrap();
    assert_eq!(seg.open_duration(), 0.0);
    seg.push(video_frame(0, 0, true, None)).unwrap();
    for i in 1..=90 {
        seg.push(video_frame(i, i64::from(i) * 3000, false, None))
            .unwrap();
    }
    // 3 s without a keyframe: nothing emitted, and the ingest can see it is overdue.
    assert!(seg.poll_output().is_some(), "init");
    assert!(seg.poll_output().is_none());
    assert!((seg.open_duration() - 3.0).abs() < 1e-9);
    seg.push(video_frame(91, 91 * 3000, true, None)).unwrap();
    let segs = drain(&mut seg);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].video_frames, 91);
    assert!((segs[0].duration_secs - 91.0 * 3000.0 / 90_000.0).abs() < 1e-9);
    // The in-band SPS/PPS sits in front of the first keyframe's own bytes.
    let first = walk(&segs[0]).remove(0).samples.remove(0).2;
    assert_eq!(&first[4..4 + SPS.len()], SPS);
    assert_eq!(index_of(&first), 0);
}

fn two_second_segmenter() -> Segmenter {
    Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_secs(2),
    })
}

#[test]
fn closed_segment_waits_for_its_audio() {
    let mut seg = two_second_segmenter();
    seg.begin_run(tracks(true), false).unwrap();
    seg.push(audio_frame(0, 0)).unwrap();
    // 2 s of video, then the keyframe that closes the segment; audio lags behind.
    for i in 0..=60u32 {
        seg.push(video_frame(i, i64::from(i) * 3000, i % 30 == 0, None))
            .unwrap();
    }
    assert!(drain(&mut seg).is_empty(), "waiting for audio up to 2 s");
    let mut n = 1u32;
    while i64::from(n) * 1024 < 2 * 48_000 {
        seg.push(audio_frame(n, i64::from(n) * 1024)).unwrap();
        n += 1;
    }
    assert!(
        drain(&mut seg).is_empty(),
        "audio has not reached the cut yet"
    );
    seg.push(audio_frame(n, i64::from(n) * 1024)).unwrap();
    let segs = drain(&mut seg);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].video_frames, 60);
    // Every audio frame starting before 2.000 s, none after.
    assert_eq!(segs[0].audio_frames, 94);
    let trafs = walk(&segs[0]);
    assert_eq!(trafs[1].tfdt, 0);
}

#[test]
fn audio_of_known_duration_lets_the_keyframe_close_the_segment_at_once() {
    // RTMP's AAC frames carry their exact duration (1024 samples): the frame that starts
    // before the cut and ends after it is finished at once, so the closing keyframe lists the
    // segment without waiting an audio frame (up to 21 ms) for its successor.
    let timed = |n: u32| MediaFrame {
        duration: Some(1024),
        ..audio_frame(n, i64::from(n) * 1024)
    };
    let mut seg = two_second_segmenter();
    seg.begin_run(tracks(true), false).unwrap();
    let mut n = 0u32;
    for i in 0..60u32 {
        // Interleaved by decode time, as FLV muxers send it.
        while i64::from(n) * 1024 * 90_000 < i64::from(i) * 3000 * 48_000 {
            seg.push(timed(n)).unwrap();
            n += 1;
        }
        seg.push(video_frame(i, i64::from(i) * 3000, i % 30 == 0, None))
            .unwrap();
    }
    while i64::from(n) * 1024 < 2 * 48_000 {
        seg.push(timed(n)).unwrap();
        n += 1;
    }
    assert_eq!(n, 94);
    assert!(drain(&mut seg).is_empty(), "the cut has not come yet");
    seg.push(video_frame(60, 180_000, true, None)).unwrap();
    let segs = drain(&mut seg);
    assert_eq!(segs.len(), 1, "listed on the keyframe");
    assert_eq!(segs[0].video_frames, 60);
    assert_eq!(segs[0].audio_frames, 94);
    // The finished frame is the newest: an earlier one is refused, not slipped in behind it.
    assert!(seg.push(timed(92)).is_err());
    // The next frame continues exactly where the finished one ended.
    seg.push(timed(94)).unwrap();
    seg.push(video_frame(61, 183_000, false, None)).unwrap();
    seg.flush();
    let segs = drain(&mut seg);
    assert_eq!(segs.len(), 1);
    assert_eq!(walk(&segs[0])[1].tfdt, 94 * 1024);
}

#[test]
fn stalled_video_goes_audio_only_and_loses_nothing() {
    let mut seg = two_second_segmenter();
    seg.begin_run(tracks(true), false).unwrap();
    let mut a = 0u32;
    let push_audio_until = |seg: &mut Segmenter, a: &mut u32, secs: f64| {
        while f64::from(*a) * 1024.0 / 48_000.0 < secs {
            seg.push(audio_frame(*a, i64::from(*a) * 1024)).unwrap();
            *a += 1;
        }
    };
    for i in 0..30u32 {
        push_audio_until(&mut seg, &mut a, f64::from(i) / 30.0);
        seg.push(video_frame(i, i64::from(i) * 3000, i == 0, None))
            .unwrap();
    }
    // The camera stops; the microphone goes on for 20 s.
    push_audio_until(&mut seg, &mut a, 21.0);
    let during = drain(&mut seg);
    assert!(
        during.len() >= 5,
        "audio-only segments while video is stalled"
    );
    assert!(during.iter().skip(1).all(|s| s.video_frames == 0));
    // Video comes back with a keyframe (non-keyframes before it are dropped).
    seg.push(video_frame(100, 21 * 90_000 - 3000, false, None))
        .unwrap();
    for i in 0..30u32 {
        push_audio_until(&mut seg, &mut a, 21.0 + f64::from(i) / 30.0);
        seg.push(video_frame(
            101 + i,
            21 * 90_000 + i64::from(i) * 3000,
            i == 0,
            None,
        ))
        .unwrap();
    }
    seg.flush();
    let mut all = during;
    all.extend(drain(&mut seg));
    let audio: u32 = all.iter().map(|s| s.audio_frames).sum();
    assert_eq!(u64::from(audio) + seg.dropped_audio_frames(), u64::from(a));
    let video: u32 = all.iter().map(|s| s.video_frames).sum();
    assert_eq!(video, 60);
    assert_eq!(seg.dropped_frames(), 1);
    assert!(all.iter().all(|s| s.video_frames == 0 || s.keyframe_start));
    // Audio tfdt stays continuous through all of it.
    let mut end = None;
    for s in &all {
        for t in walk(s).into_iter().filter(|t| t.track_id == 2) {
            if let Some(e) = end {
                assert_eq!(t.tfdt, e);
            }
            end = Some(t.tfdt + t.samples.iter().map(|x| u64::from(x.0)).sum::<u64>());
        }
    }
}

#[test]
fn resume_point_round_trips_and_continues_the_timeline() {
    let mut seg = two_second_segmenter();
    seg.begin_run(tracks(true), false).unwrap();
    for i in 0..90u32 {
        seg.push(video_frame(i, i64::from(i) * 3000, i % 30 == 0, None))
            .unwrap();
    }
    seg.flush();
    let before = drain(&mut seg);
    let point = seg.resume_point();
    let json = serde_json::to_string(&point).unwrap();
    let back: packager::segmenter::ResumePoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, point);
    assert!((point.timeline_end_secs - 3.0).abs() < 1e-9);

    let mut seg = Segmenter::resume(
        SegmenterConfig {
            target_duration: Duration::from_secs(2),
        },
        back,
    );
    seg.begin_run(tracks(true), true).unwrap();
    // A new connection whose clock starts somewhere else entirely.
    for i in 0..30u32 {
        seg.push(video_frame(
            500 + i,
            7_000_000 + i64::from(i) * 3000,
            i == 0,
            None,
        ))
        .unwrap();
    }
    seg.flush();
    let mut outs = Vec::new();
    while let Some(o) = seg.poll_output() {
        outs.push(o);
    }
    assert!(
        matches!(outs.as_slice(), [Output::Segment(_)]),
        "same tracks: no new init"
    );
    let Output::Segment(s) = &outs[0] else {
        unreachable!()
    };
    assert_eq!(s.sequence, before.last().unwrap().sequence + 1);
    assert!(s.discontinuity);
    assert_eq!(walk(s)[0].tfdt, 3 * 90_000);
}
