//! Arbitrary call sequences into the segmenter (timestamps going back, frames of missing
//! tracks, huge gaps, track changes): errors are fine, panics are not, and every segment it
//! emits must start with a keyframe and parse as styp + moof + mdat whose data offsets stay
//! inside the segment.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mp4_atom::{Any, Decode};
use packager::segmenter::{Output, Segmenter, SegmenterConfig};
use packager::{Codec, MediaFrame, Track, TrackKind};

#[derive(Arbitrary, Debug)]
enum Op {
    Begin {
        video: bool,
        audio: bool,
        opus: bool,
        big: bool,
        discontinuity: bool,
    },
    Push {
        video: bool,
        dts_step: i32,
        cts: i16,
        key: bool,
        duration: Option<u16>,
        len: u8,
    },
    Flush,
}

fn tracks(video: bool, audio: bool, opus: bool, big: bool) -> Vec<Track> {
    let mut t = Vec::new();
    if video {
        let avcc = vec![
            1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0x00, 0x1f, 1, 0, 2, 0x68, 0xeb,
        ];
        t.push(Track {
            kind: TrackKind::Video,
            codec: Codec::H264 {
                avcc: avcc.into(),
                width: if big { 1280 } else { 320 },
                height: 240,
            },
            timescale: 90_000,
        });
    }
    if audio {
        t.push(if opus {
            Track {
                kind: TrackKind::Audio,
                codec: Codec::Opus {
                    channels: 2,
                    pre_skip: 312,
                    input_sample_rate: 48_000,
                },
                timescale: 48_000,
            }
        } else {
            Track {
                kind: TrackKind::Audio,
                codec: Codec::Aac {
                    asc: Bytes::from_static(&[0x11, 0x90]),
                    sample_rate: 44_100,
                    channels: 2,
                },
                timescale: 44_100,
            }
        });
    }
    t
}

fn check(seg: &mut Segmenter) {
    while let Some(out) = seg.poll_output() {
        let Output::Segment(s) = out else { continue };
        if s.video_frames > 0 {
            assert!(
                s.keyframe_start,
                "segment {} starts without a keyframe",
                s.sequence
            );
        }
        let mut file = s.header.to_vec();
        for p in &s.payloads {
            file.extend_from_slice(p);
        }
        let mut buf = file.as_slice();
        while !buf.is_empty() {
            let at = file.len() - buf.len();
            match Any::decode(&mut buf).expect("segment boxes parse") {
                Any::Moof(moof) => {
                    for traf in moof.traf {
                        for trun in traf.trun {
                            let start = at + trun.data_offset.unwrap_or(0) as usize;
                            let len: usize = trun
                                .samples
                                .iter()
                                .map(|e| e.size.unwrap_or(0) as usize)
                                .sum();
                            assert!(start + len <= file.len(), "trun data past the segment");
                        }
                    }
                }
                Any::Styp(_) | Any::Mdat(_) => {}
                other => panic!("unexpected {:?}", other.kind()),
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration: Duration::from_millis(500),
    });
    let mut dts = [0i64; 2];
    for op in ops.into_iter().take(2000) {
        match op {
            Op::Begin {
                video,
                audio,
                opus,
                big,
                discontinuity,
            } => {
                let _ = seg.begin_run(tracks(video, audio, opus, big), discontinuity);
            }
            Op::Push {
                video,
                dts_step,
                cts,
                key,
                duration,
                len,
            } => {
                let i = usize::from(!video);
                dts[i] = dts[i].saturating_add(i64::from(dts_step));
                let mut data = vec![0, 0, 0, len.saturating_sub(4)];
                data.resize(usize::from(len.max(4)), if key { 0x65 } else { 0x41 });
                let _ = seg.push(MediaFrame {
                    kind: if video {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    },
                    dts: dts[i],
                    cts_offset: i32::from(cts),
                    duration: duration.map(u32::from),
                    keyframe: key,
                    data: data.into(),
                });
            }
            Op::Flush => seg.flush(),
        }
        check(&mut seg);
        let _ = seg.open_duration();
        let _ = seg.resume_point();
    }
    seg.flush();
    check(&mut seg);
});
