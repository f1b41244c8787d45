//! Sans-IO conversions from what retina hands out to storef's media types: codec parameters to
//! [`Track`]s, frame timestamps to a clock that stays monotonic across reconnects.
//!
//! retina already does the RTP work: depacketization (RFC 6184 for H.264, RFC 3640 for AAC),
//! extending 32-bit RTP timestamps to 64 bits, and cameras' `RTP-Info` quirks. With
//! [`retina::codec::FrameFormat::MP4`] its H.264 frames are AVC samples (4-byte big-endian NAL
//! lengths, ISO/IEC 14496-15 §5.3.2, parameter sets out of band) and its `extra_data` is the
//! AVCDecoderConfigurationRecord (§5.3.3.1) with `lengthSizeMinusOne = 3`; AAC frames are raw
//! access units and `extra_data` the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).

use super::status::{AudioStatus, VideoStatus};
use super::RtspError;
use bytes::Bytes;
use packager::{Codec, Track, TrackKind};
use retina::codec::{AudioParameters, VideoParameters};

/// H.264 over RTP always runs a 90 kHz clock (RFC 6184 §8.2.1); it is also storef's video timescale.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// The video [`Track`] for retina's parameters, or why it cannot be carried.
pub fn video_track(p: &VideoParameters) -> Result<(Track, VideoStatus), RtspError> {
    let codec = p.rfc6381_codec();
    if !codec.starts_with("avc1.") {
        return Err(RtspError::Unsupported {
            what: format!("video codec {codec}; storef carries H.264 only"),
        });
    }
    let (w, h) = p.pixel_dimensions();
    let (width, height) = match (u16::try_from(w), u16::try_from(h)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(RtspError::Unsupported {
                what: format!("video dimensions {w}x{h}"),
            })
        }
    };
    let avcc = p.extra_data();
    // configurationVersion 1 and lengthSizeMinusOne 3: what FrameFormat::MP4 promises. Checked
    // because MediaFrame data is only meaningful with a matching avcC.
    if avcc.first() != Some(&1) || avcc.get(4).map(|b| b & 0x03) != Some(3) {
        return Err(RtspError::Unsupported {
            what: "H.264 parameters without a 4-byte-length avcC".into(),
        });
    }
    let declared_fps = p
        .frame_rate()
        .filter(|&(num, den)| num > 0 && den > 0)
        .map(|(num, den)| f64::from(den) / f64::from(num));
    Ok((
        Track {
            kind: TrackKind::Video,
            codec: Codec::H264 {
                avcc: Bytes::copy_from_slice(avcc),
                width,
                height,
            },
            timescale: VIDEO_TIMESCALE,
        },
        VideoStatus {
            codec: codec.to_string(),
            width,
            height,
            declared_fps,
        },
    ))
}

/// The audio [`Track`] for an SDP audio stream, or the note that says why it is left out.
///
/// fMP4 HLS players decode AAC (and Opus, which cameras don't send); G.711 and G.726 have no
/// sample entry any HLS player accepts, so those streams are not even `SETUP`.
pub fn audio_track(
    encoding_name: &str,
    clock_rate: u32,
    params: Option<&AudioParameters>,
) -> Result<(Track, AudioStatus), String> {
    let left_out = |why: &str| {
        format!(
            "audio {} {clock_rate} Hz is not carried: {why}",
            encoding_name.to_ascii_uppercase()
        )
    };
    if encoding_name != "mpeg4-generic" {
        return Err(left_out("fMP4 HLS carries AAC audio only"));
    }
    let Some(p) = params else {
        return Err(left_out("the SDP has no usable AAC config"));
    };
    let Some(codec) = p.rfc6381_codec().filter(|c| c.starts_with("mp4a.")) else {
        return Err(left_out("not an AAC profile storef knows"));
    };
    let asc = p.extra_data();
    let channels = u8::try_from(p.channels().get()).unwrap_or(u8::MAX);
    if asc.is_empty() || p.clock_rate() == 0 {
        return Err(left_out("the SDP has no usable AAC config"));
    }
    Ok((
        Track {
            kind: TrackKind::Audio,
            codec: Codec::Aac {
                asc: Bytes::copy_from_slice(asc),
                sample_rate: p.clock_rate(),
                channels,
            },
            // RFC 3640 §3.2.1: the RTP clock of AAC is its sample rate; the track keeps it.
            timescale: p.clock_rate(),
        },
        AudioStatus {
            codec: codec.to_string(),
            sample_rate: p.clock_rate(),
            channels,
        },
    ))
}

/// Rescales `ticks` from `from` Hz to `to` Hz, rounding down (i128: no overflow for any i64).
pub fn rescale(ticks: i64, from: u32, to: u32) -> i64 {
    if from == to || from == 0 {
        return ticks;
    }
    let v = i128::from(ticks) * i128::from(to);
    let q = v.div_euclid(i128::from(from));
    i64::try_from(q).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Debug, Default, Clone, Copy)]
struct TrackClock {
    last_dts: Option<i64>,
    /// Last gap between two frames, to estimate where the track ends.
    last_delta: i64,
}

/// Maps retina timestamps (per-connection, NPT-aligned between video and audio) onto one clock
/// per pull that never goes back, across reconnects.
///
/// Each connection is a run: the run's origin is its first video keyframe, placed at the end of
/// everything the previous runs sent. Within a run video and audio keep retina's relative timing
/// (retina aligns them through `RTP-Info` `rtptime` when the camera sends it).
#[derive(Debug, Default, Clone)]
pub struct RunClock {
    /// Where the current run starts, in microseconds.
    base_us: i64,
    /// The current run's origin: the first keyframe's elapsed time, in seconds as a rational
    /// (ticks, clock rate).
    origin: Option<(i64, u32)>,
    /// The latest end of anything sent, in microseconds.
    end_us: i64,
    video: TrackClock,
    audio: TrackClock,
}

/// One mapped timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub dts: i64,
    pub cts_offset: i32,
}

impl RunClock {
    /// Starts a new run (a new connection): later frames go after everything sent so far.
    pub fn begin_run(&mut self) {
        self.base_us = self.end_us;
        self.origin = None;
        self.video = TrackClock::default();
        self.audio = TrackClock::default();
    }

    /// Whether the run has its origin (its first keyframe) yet.
    pub fn started(&self) -> bool {
        self.origin.is_some()
    }

    /// Maps one frame. `elapsed` is retina's `Timestamp::elapsed()` at `clock_rate`; the result is
    /// in `timescale`. Before the run's first video frame nothing maps (`None`): the first video
    /// frame of a run sets the origin, and the caller makes sure it is a keyframe.
    ///
    /// Video: RTP carries presentation times; a picture that presents before its predecessor
    /// (B-frames, rare in cameras) keeps decode order with `dts = previous + 1` and a negative
    /// composition offset. Audio: a frame at or before the previous one, or before the run's
    /// origin, is dropped (`None`).
    pub fn map(
        &mut self,
        kind: TrackKind,
        elapsed: i64,
        clock_rate: u32,
        timescale: u32,
        frame_len: Option<u32>,
    ) -> Option<Mapped> {
        if self.origin.is_none() {
            if kind != TrackKind::Video {
                return None;
            }
            self.origin = Some((elapsed, clock_rate));
        }
        let (o_ticks, o_rate) = self.origin?;
        // elapsed - origin, both brought to microseconds' precision via the track's own clock.
        let origin_here = rescale(o_ticks, o_rate, clock_rate);
        let base = rescale(self.base_us, 1_000_000, timescale);
        let pts = base.saturating_add(rescale(
            elapsed.saturating_sub(origin_here),
            clock_rate,
            timescale,
        ));
        let tc = match kind {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        let mapped = match (kind, tc.last_dts) {
            (TrackKind::Audio, _) if pts < base => return None,
            (TrackKind::Audio, Some(last)) if pts <= last => return None,
            (TrackKind::Video, Some(last)) if pts <= last => Mapped {
                dts: last + 1,
                cts_offset: i32::try_from(pts - (last + 1)).unwrap_or(i32::MIN),
            },
            _ => Mapped {
                dts: pts,
                cts_offset: 0,
            },
        };
        if let Some(last) = tc.last_dts {
            tc.last_delta = mapped.dts - last;
        }
        tc.last_dts = Some(mapped.dts);
        let dur = match frame_len {
            Some(n) => i64::from(n),
            None => tc.last_delta.max(1),
        };
        let end_us = rescale(mapped.dts.saturating_add(dur), timescale, 1_000_000) + 1;
        self.end_us = self.end_us.max(end_us);
        Some(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retina::codec::{Depacketizer, ParametersRef};
    use std::num::NonZeroU16;

    /// From `testdata/rtsp/gstreamer122_describe.txt` (320x240 x264 constrained baseline).
    const SPROP: &str = "packetization-mode=1;\
        sprop-parameter-sets=Z0LADdoFB+wFqDAwNSgAAAMACAAAAwHkeKFV,aM48gA==;\
        profile-level-id=42c00d;level-asymmetry-allowed=1";

    fn h264_params() -> VideoParameters {
        let d = Depacketizer::new("video", "h264", 90_000, None, Some(SPROP)).unwrap();
        match d.parameters() {
            Some(ParametersRef::Video(v)) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn h264_track_from_sprop_parameter_sets() {
        let (t, s) = video_track(&h264_params()).unwrap();
        assert_eq!(t.kind, TrackKind::Video);
        assert_eq!(t.timescale, 90_000);
        let Codec::H264 {
            avcc,
            width,
            height,
        } = &t.codec
        else {
            panic!()
        };
        assert_eq!((*width, *height), (320, 240));
        assert_eq!(avcc[0], 1);
        assert_eq!(&avcc[1..4], &[0x42, 0xc0, 0x0d]);
        assert_eq!(avcc[4], 0xff);
        assert_eq!(t.codec.rfc6381(), "avc1.42c00d");
        assert_eq!(s.codec.to_ascii_lowercase(), "avc1.42c00d");
        assert_eq!((s.width, s.height), (320, 240));
    }

    #[test]
    fn aac_track_from_fmtp() {
        // avenc_aac's config, from the same DESCRIBE: AAC LC 48 kHz mono plus the
        // backwards-compatible SBR sync extension (0x2b7), kept as is.
        let fmtp = "streamtype=5;profile-level-id=2;mode=AAC-hbr;config=118856e500;\
            sizelength=13;indexlength=3;indexdeltalength=3";
        let d = Depacketizer::new(
            "audio",
            "mpeg4-generic",
            48_000,
            NonZeroU16::new(1),
            Some(fmtp),
        )
        .unwrap();
        let Some(ParametersRef::Audio(p)) = d.parameters() else {
            panic!()
        };
        let (t, s) = audio_track("mpeg4-generic", 48_000, Some(p)).unwrap();
        assert_eq!(t.timescale, 48_000);
        assert_eq!(
            t.codec,
            Codec::Aac {
                asc: Bytes::from_static(&[0x11, 0x88, 0x56, 0xe5, 0x00]),
                sample_rate: 48_000,
                channels: 1
            }
        );
        assert_eq!(s.codec, "mp4a.40.2");
    }

    #[test]
    fn g711_is_left_out_with_a_note() {
        let note = audio_track("pcmu", 8000, None).unwrap_err();
        assert_eq!(
            note,
            "audio PCMU 8000 Hz is not carried: fMP4 HLS carries AAC audio only"
        );
        let note = audio_track("g726-32", 8000, None).unwrap_err();
        assert!(note.starts_with("audio G726-32 8000 Hz"), "{note}");
    }

    #[test]
    fn rescale_rounds_down_and_never_overflows() {
        assert_eq!(rescale(90_000, 90_000, 48_000), 48_000);
        assert_eq!(rescale(3003, 90_000, 1_000_000), 33_366);
        assert_eq!(rescale(-1, 90_000, 1_000_000), -12);
        assert_eq!(rescale(i64::MAX, 1, 90_000), i64::MAX);
        assert_eq!(rescale(5, 0, 90_000), 5);
    }

    #[test]
    fn audio_before_first_keyframe_is_dropped_and_runs_continue() {
        let mut c = RunClock::default();
        c.begin_run();
        // Audio before the first video frame: nowhere to place it yet.
        assert_eq!(
            c.map(TrackKind::Audio, 1000, 48_000, 48_000, Some(1024)),
            None
        );
        // First keyframe at retina elapsed 3000 (90 kHz) becomes 0.
        let v0 = c.map(TrackKind::Video, 3000, 90_000, 90_000, None).unwrap();
        assert_eq!(
            v0,
            Mapped {
                dts: 0,
                cts_offset: 0
            }
        );
        // Audio slightly before the keyframe: dropped; just after: kept in sync.
        assert_eq!(
            c.map(TrackKind::Audio, 1500, 48_000, 48_000, Some(1024)),
            None
        );
        let a = c
            .map(TrackKind::Audio, 2600, 48_000, 48_000, Some(1024))
            .unwrap();
        assert_eq!(a.dts, 2600 - 1600);
        for i in 1..30 {
            let v = c
                .map(TrackKind::Video, 3000 + i * 3000, 90_000, 90_000, None)
                .unwrap();
            assert_eq!(v.dts, i * 3000);
        }
        // The camera reboots: its clock starts over near zero.
        c.begin_run();
        let v = c.map(TrackKind::Video, 10, 90_000, 90_000, None).unwrap();
        // After the last video frame (29 * 3000) plus one frame's duration.
        assert_eq!(v.dts, 30 * 3000);
        let a = c.map(TrackKind::Audio, 0, 48_000, 48_000, Some(1024));
        assert_eq!(a, None, "audio before the run's origin");
        let a = c
            .map(TrackKind::Audio, 48, 48_000, 48_000, Some(1024))
            .unwrap();
        // One second in, plus 48 - 5 ticks (the origin, 10 at 90 kHz, is 5 at 48 kHz).
        assert_eq!(a.dts, 48_000 + 43);
    }

    proptest::proptest! {
        /// Whatever a camera's clock does (jumps, resets, reordering, duplicate timestamps) and
        /// however often it reconnects, every track's dts only goes up, across runs too, and a
        /// run's first frame is its video frame.
        #[test]
        fn dts_never_goes_back(
            steps in proptest::collection::vec(
                (0u8..8, -5_000_000i64..5_000_000, 0u32..3000),
                1..300,
            )
        ) {
            let mut c = RunClock::default();
            let mut last_v: Option<i64> = None;
            let mut last_a: Option<i64> = None;
            let mut in_run = false;
            for (op, elapsed, len) in steps {
                match op {
                    0 => {
                        c.begin_run();
                        in_run = false;
                    }
                    1..=4 => {
                        if let Some(m) = c.map(TrackKind::Video, elapsed, 90_000, 90_000, None) {
                            proptest::prop_assert!(last_v.is_none_or(|l| m.dts > l));
                            proptest::prop_assert!(m.cts_offset <= 0);
                            last_v = Some(m.dts);
                            in_run = true;
                        }
                    }
                    _ => {
                        let m = c.map(TrackKind::Audio, elapsed / 2, 44_100, 44_100, Some(len.max(1)));
                        if let Some(m) = m {
                            proptest::prop_assert!(in_run, "audio mapped before the run's video");
                            proptest::prop_assert!(last_a.is_none_or(|l| m.dts > l));
                            last_a = Some(m.dts);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn backwards_video_keeps_decode_order() {
        let mut c = RunClock::default();
        c.begin_run();
        c.map(TrackKind::Video, 0, 90_000, 90_000, None).unwrap();
        c.map(TrackKind::Video, 9000, 90_000, 90_000, None).unwrap();
        let b = c.map(TrackKind::Video, 3000, 90_000, 90_000, None).unwrap();
        assert_eq!(
            b,
            Mapped {
                dts: 9001,
                cts_offset: -6001
            }
        );
        // Duplicate audio is dropped.
        c.map(TrackKind::Audio, 100, 48_000, 48_000, Some(1024))
            .unwrap();
        assert_eq!(
            c.map(TrackKind::Audio, 100, 48_000, 48_000, Some(1024)),
            None
        );
    }
}
