//! FLV tag bodies with RTMP timestamps → [`IngestEvent::Tracks`] and [`IngestEvent::Frame`]s.
//!
//! Timestamps: RTMP carries 32-bit milliseconds that wrap after 49.7 days and jitter by a
//! millisecond or two (FLV timestamps are rounded; librtmp and ffmpeg round audio differently from
//! video). One shared [`RtmpClock`] unwraps them to 64 bits, so audio and video stay on one
//! timeline. Video uses timescale 90 000 (`dts = ms × 90`, the FLV composition time × 90 as the
//! offset). AAC uses its sample rate: each access unit is 1024 samples (ISO/IEC 14496-3 §4.5.1.1,
//! frameLengthFlag 0), so audio `dts` advances by exactly 1024 per frame, anchored to the RTMP
//! clock, and is re-anchored only when it drifts from it by more than one frame (a gap or a jump in
//! the source). The segmenter then sees exact audio durations instead of 21/22/23 ms jitter.
//!
//! Start-up: the tracks of a publish are announced once the codec configurations are known. An
//! encoder sends the AVC and AAC sequence headers before its first frames, but a video-only source
//! sends no AAC header at all, so if none has arrived by the time the first keyframe plus ~1 s of
//! video is buffered (or `onMetaData` said there is no audio) the publish starts video-only; an AAC
//! header arriving later announces the tracks again.

use super::SessionError;
use crate::flv::{self, AudioTag, VideoTag};
use crate::publish::IngestEvent;
use bytes::Bytes;
use packager::{Codec, MediaFrame, Track, TrackKind};

/// Video timescale (DESIGN: live video tracks use 90 kHz).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples per AAC access unit.
const AAC_FRAME_SAMPLES: i64 = 1024;
/// How much video (after the first keyframe) is buffered while waiting for an AAC header.
const AUDIO_WAIT_MS: i64 = 1000;
/// Upper bounds of what is buffered before the start, whatever the timestamps say (a publisher
/// that never advances its clock must not make us hold its stream).
const MAX_BUFFERED_FRAMES: usize = 2000;
const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;

/// Unwraps RTMP's 32-bit millisecond timestamps into a continuous 64-bit timeline.
///
/// The difference to the previous timestamp is taken as a signed 32-bit value, so a wrap-around
/// (0xFFFF_FFF0 → 0x10) is +32 ms and small backwards jitter stays small and negative.
#[derive(Debug, Default, Clone)]
pub struct RtmpClock {
    last: Option<(u32, i64)>,
}

impl RtmpClock {
    pub fn unwrap(&mut self, raw: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(raw),
            Some((last_raw, last_ext)) => last_ext + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.last = Some((raw, ext));
        ext
    }
}

/// What `onMetaData` said about the tracks, when it said anything.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    pub has_video: Option<bool>,
    pub has_audio: Option<bool>,
}

#[derive(Debug)]
struct VideoState {
    codec: Codec,
    length_size: u8,
    last_dts: Option<i64>,
    /// Frames are dropped until a keyframe after a (re)start or configuration change.
    need_keyframe: bool,
}

#[derive(Debug)]
struct AudioState {
    codec: Codec,
    sample_rate: i64,
    last_dts: Option<i64>,
}

/// Turns one publish's FLV tags into ingest events.
#[derive(Debug, Default)]
pub struct MediaAssembler {
    clock: RtmpClock,
    announced: Announced,
    video: Option<VideoState>,
    audio: Option<AudioState>,
    /// `Tracks` has been emitted for the configurations in `video`/`audio`.
    started: bool,
    /// The track list last emitted, to tell a real change from a repeated sequence header.
    emitted: Vec<Track>,
    /// Frames held back until the start, and their payload bytes.
    pending: Vec<MediaFrame>,
    pending_bytes: usize,
    /// dts (90 kHz) of the first buffered video keyframe.
    first_keyframe_dts: Option<i64>,
    /// First buffered audio dts, in ms, for the audio-only start.
    first_audio_ms: Option<i64>,
}

impl MediaAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what `onMetaData` announced.
    pub fn set_announced(&mut self, announced: Announced) {
        self.announced = announced;
    }

    /// The configuration of the tracks now known.
    pub fn tracks(&self) -> Vec<Track> {
        let mut tracks = Vec::with_capacity(2);
        if let Some(v) = &self.video {
            tracks.push(Track {
                kind: TrackKind::Video,
                codec: v.codec.clone(),
                timescale: VIDEO_TIMESCALE,
            });
        }
        if let Some(a) = &self.audio {
            tracks.push(Track {
                kind: TrackKind::Audio,
                codec: a.codec.clone(),
                timescale: a.sample_rate as u32,
            });
        }
        tracks
    }

    /// Whether `Tracks` has been emitted.
    pub fn started(&self) -> bool {
        self.started
    }

    /// One video message.
    pub fn video(
        &mut self,
        timestamp: u32,
        body: &Bytes,
        out: &mut Vec<IngestEvent>,
    ) -> Result<(), SessionError> {
        let ms = self.clock.unwrap(timestamp);
        let tag =
            flv::parse_video_tag(body).map_err(|source| SessionError::Tag { timestamp, source })?;
        match tag {
            VideoTag::SequenceHeader(codec) => {
                let length_size = match &codec {
                    Codec::H264 { avcc, .. } => flv::avc::parse_avcc(avcc)
                        .map(|c| c.length_size)
                        .unwrap_or(4),
                    _ => 4,
                };
                let same = self.video.as_ref().is_some_and(|v| v.codec == codec);
                if !same {
                    let last_dts = self.video.as_ref().and_then(|v| v.last_dts);
                    self.video = Some(VideoState {
                        codec,
                        length_size,
                        last_dts,
                        need_keyframe: true,
                    });
                    self.announce_if_changed(out);
                }
            }
            VideoTag::Frame {
                keyframe,
                composition_time_ms,
                data,
            } => {
                let Some(v) = self.video.as_mut() else {
                    return Ok(()); // no avcC yet: undecodable
                };
                if data.is_empty() {
                    return Ok(());
                }
                check_length_prefixed(&data, v.length_size).map_err(|offset| {
                    SessionError::BadNalUnits {
                        timestamp,
                        offset: offset + 5,
                    }
                })?;
                if v.need_keyframe && !keyframe {
                    return Ok(());
                }
                v.need_keyframe = false;
                let mut dts = ms * i64::from(VIDEO_TIMESCALE) / 1000;
                if let Some(last) = v.last_dts {
                    // Keep decode order strictly increasing whatever the source's jitter.
                    dts = dts.max(last + 1);
                }
                v.last_dts = Some(dts);
                let frame = MediaFrame {
                    kind: TrackKind::Video,
                    dts,
                    cts_offset: composition_time_ms.saturating_mul(90),
                    duration: None,
                    keyframe,
                    data,
                };
                if keyframe && self.first_keyframe_dts.is_none() {
                    self.first_keyframe_dts = Some(dts);
                }
                self.push(frame, out);
            }
            VideoTag::EndOfSequence | VideoTag::Ignored => {}
        }
        Ok(())
    }

    /// One audio message.
    pub fn audio(
        &mut self,
        timestamp: u32,
        body: &Bytes,
        out: &mut Vec<IngestEvent>,
    ) -> Result<(), SessionError> {
        let ms = self.clock.unwrap(timestamp);
        let tag =
            flv::parse_audio_tag(body).map_err(|source| SessionError::Tag { timestamp, source })?;
        match tag {
            AudioTag::SequenceHeader(codec) => {
                let same = self.audio.as_ref().is_some_and(|a| a.codec == codec);
                if !same {
                    let sample_rate = match &codec {
                        Codec::Aac { sample_rate, .. } => i64::from(*sample_rate),
                        _ => 48_000,
                    };
                    // Keep the audio clock only if the rate is unchanged.
                    let last_dts = self
                        .audio
                        .as_ref()
                        .filter(|a| a.sample_rate == sample_rate)
                        .and_then(|a| a.last_dts);
                    self.audio = Some(AudioState {
                        codec,
                        sample_rate,
                        last_dts,
                    });
                    self.announce_if_changed(out);
                }
            }
            AudioTag::Frame(data) => {
                let Some(a) = self.audio.as_mut() else {
                    return Ok(());
                };
                if data.is_empty() {
                    return Ok(());
                }
                let anchored = ms * a.sample_rate / 1000;
                let dts = match a.last_dts {
                    None => anchored,
                    Some(last) => {
                        let next = last + AAC_FRAME_SAMPLES;
                        if (anchored - next).abs() > AAC_FRAME_SAMPLES {
                            anchored.max(last + 1)
                        } else {
                            next
                        }
                    }
                };
                a.last_dts = Some(dts);
                if self.first_audio_ms.is_none() {
                    self.first_audio_ms = Some(ms);
                }
                let frame = MediaFrame {
                    kind: TrackKind::Audio,
                    dts,
                    cts_offset: 0,
                    // Known exactly: the segmenter can close a segment without waiting for the
                    // next audio frame.
                    duration: Some(AAC_FRAME_SAMPLES as u32),
                    keyframe: true,
                    data,
                };
                self.push(frame, out);
            }
        }
        Ok(())
    }

    /// The publish ended: start with whatever is known so buffered frames are not lost.
    pub fn finish(&mut self, out: &mut Vec<IngestEvent>) {
        if !self.started && (self.video.is_some() || self.audio.is_some()) {
            self.start(out);
        }
    }

    /// After a sequence header changed: re-announce if already started, else maybe start.
    fn announce_if_changed(&mut self, out: &mut Vec<IngestEvent>) {
        if self.started {
            let tracks = self.tracks();
            if tracks != self.emitted {
                self.emitted = tracks.clone();
                out.push(IngestEvent::Tracks(tracks));
            }
        } else if self.ready() {
            self.start(out);
        }
    }

    /// Whether the publish can start now.
    fn ready(&self) -> bool {
        let video_expected = self.announced.has_video != Some(false);
        let audio_expected = self.announced.has_audio != Some(false);
        match (&self.video, &self.audio) {
            (Some(_), Some(_)) => true,
            (Some(_), None) => {
                !audio_expected
                    || match (self.first_keyframe_dts, self.pending.last()) {
                        (Some(first), Some(last)) => {
                            last.kind == TrackKind::Video && last.dts - first >= AUDIO_WAIT_MS * 90
                        }
                        _ => false,
                    }
            }
            (None, Some(_)) => {
                !video_expected
                    || match (self.first_audio_ms, self.pending.last()) {
                        (Some(first), Some(last)) => {
                            let sr = self.audio.as_ref().map_or(48_000, |a| a.sample_rate);
                            last.dts * 1000 / sr.max(1) - first >= AUDIO_WAIT_MS
                        }
                        _ => false,
                    }
            }
            (None, None) => false,
        }
    }

    fn push(&mut self, frame: MediaFrame, out: &mut Vec<IngestEvent>) {
        if self.started {
            out.push(IngestEvent::Frame(frame));
            return;
        }
        self.pending_bytes += frame.data.len();
        self.pending.push(frame);
        if self.ready()
            || self.pending.len() >= MAX_BUFFERED_FRAMES
            || self.pending_bytes >= MAX_BUFFERED_BYTES
        {
            self.start(out);
        }
    }

    fn start(&mut self, out: &mut Vec<IngestEvent>) {
        self.started = true;
        let tracks = self.tracks();
        self.emitted = tracks.clone();
        out.push(IngestEvent::Tracks(tracks));
        out.extend(self.pending.drain(..).map(IngestEvent::Frame));
        self.pending_bytes = 0;
    }
}

/// Checks that `data` is a sequence of NAL units, each prefixed by its `length_size`-byte length;
/// returns the offset of the first bad prefix.
fn check_length_prefixed(data: &[u8], length_size: u8) -> Result<(), usize> {
    let n = usize::from(length_size);
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data.get(pos..pos + n).ok_or(pos)?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len == 0 {
            return Err(pos);
        }
        pos = pos
            .checked_add(n + len)
            .filter(|end| *end <= data.len())
            .ok_or(pos)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_unwraps_wrap_around_and_jitter() {
        let mut c = RtmpClock::default();
        assert_eq!(c.unwrap(0xFFFF_FFF0), 0xFFFF_FFF0);
        assert_eq!(c.unwrap(0x10), 0x1_0000_0010);
        assert_eq!(c.unwrap(0x0E), 0x1_0000_000E); // 2 ms of backwards jitter
        assert_eq!(c.unwrap(0x30), 0x1_0000_0030);
    }

    #[test]
    fn length_prefixes() {
        assert_eq!(check_length_prefixed(&[0, 0, 0, 1, 0x65], 4), Ok(()));
        assert_eq!(
            check_length_prefixed(&[0, 0, 0, 1, 0x65, 0, 0, 0, 2, 0x41, 1], 4),
            Ok(())
        );
        assert_eq!(check_length_prefixed(&[0, 0, 0, 2, 0x65], 4), Err(0));
        assert_eq!(check_length_prefixed(&[0, 0, 0, 1, 0x65, 0], 4), Err(5));
        assert_eq!(check_length_prefixed(&[0, 0, 0, 0], 4), Err(0));
        assert_eq!(check_length_prefixed(&[0, 1, 9], 2), Ok(()));
    }

    const SPS_720P: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const SPS_1080P: &[u8] = &[
        0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03,
        0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
    ];

    fn avc_header(sps: &[u8]) -> Bytes {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1, 0];
        b.push(sps.len() as u8);
        b.extend_from_slice(sps);
        b.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Bytes::from(b)
    }

    fn frame(key: bool, cts_ms: u8) -> Bytes {
        Bytes::from(vec![
            if key { 0x17 } else { 0x27 },
            1,
            0,
            0,
            cts_ms,
            0,
            0,
            0,
            1,
            if key { 0x65 } else { 0x41 },
        ])
    }

    const AAC_HEADER: &[u8] = &[0xaf, 0, 0x11, 0x90];
    const AAC_FRAME: &[u8] = &[0xaf, 1, 0x21, 0x10];

    fn kinds(out: &[IngestEvent]) -> String {
        out.iter()
            .map(|e| match e {
                IngestEvent::Tracks(t) => format!("T{}", t.len()),
                IngestEvent::Frame(f) if f.kind == TrackKind::Video => "V".into(),
                IngestEvent::Frame(_) => "A".into(),
                IngestEvent::Stats(_) => "S".into(),
                IngestEvent::Frames(_) => unreachable!("the FLV reader sends frames one by one"),
            })
            .collect()
    }

    #[test]
    fn video_only_starts_after_a_keyframe_and_one_second() {
        let mut m = MediaAssembler::new();
        let mut out = Vec::new();
        m.video(0, &avc_header(SPS_720P), &mut out).unwrap();
        // A non-keyframe before the first keyframe is undecodable: dropped.
        m.video(0, &frame(false, 0), &mut out).unwrap();
        for i in 0..30u32 {
            m.video(100 + i * 33, &frame(i == 0, 0), &mut out).unwrap();
        }
        assert!(out.is_empty(), "still waiting for audio");
        m.video(1100, &frame(false, 0), &mut out).unwrap();
        assert_eq!(kinds(&out), format!("T1{}", "V".repeat(31)));
        match &out[1] {
            IngestEvent::Frame(f) => assert_eq!((f.dts, f.keyframe), (9000, true)),
            e => panic!("{e:?}"),
        }
        // AAC arrives late: the tracks are announced again, with audio.
        out.clear();
        m.audio(1120, &Bytes::from_static(AAC_HEADER), &mut out)
            .unwrap();
        m.audio(1120, &Bytes::from_static(AAC_FRAME), &mut out)
            .unwrap();
        assert_eq!(kinds(&out), "T2A");
    }

    #[test]
    fn metadata_without_audio_starts_at_once() {
        let mut m = MediaAssembler::new();
        m.set_announced(Announced {
            has_video: Some(true),
            has_audio: Some(false),
        });
        let mut out = Vec::new();
        m.video(0, &avc_header(SPS_720P), &mut out).unwrap();
        assert_eq!(kinds(&out), "T1");
        m.video(0, &frame(true, 0), &mut out).unwrap();
        assert_eq!(kinds(&out), "T1V");
    }

    #[test]
    fn both_headers_start_at_once_and_a_changed_avc_config_reannounces() {
        let mut m = MediaAssembler::new();
        let mut out = Vec::new();
        m.video(0, &avc_header(SPS_720P), &mut out).unwrap();
        m.audio(0, &Bytes::from_static(AAC_HEADER), &mut out)
            .unwrap();
        assert_eq!(kinds(&out), "T2");
        m.video(0, &frame(true, 67), &mut out).unwrap();
        // The same header again (encoders repeat it): nothing.
        m.video(33, &avc_header(SPS_720P), &mut out).unwrap();
        assert_eq!(kinds(&out), "T2V");
        // A new resolution mid-stream: new tracks, then frames from the next keyframe on.
        m.video(66, &avc_header(SPS_1080P), &mut out).unwrap();
        m.video(66, &frame(false, 0), &mut out).unwrap();
        m.video(100, &frame(true, 0), &mut out).unwrap();
        assert_eq!(kinds(&out), "T2VT2V");
        match &out[2] {
            IngestEvent::Tracks(t) => assert!(matches!(
                t[0].codec,
                Codec::H264 {
                    width: 1920,
                    height: 1080,
                    ..
                }
            )),
            e => panic!("{e:?}"),
        }
        match &out[1] {
            IngestEvent::Frame(f) => assert_eq!(f.cts_offset, 67 * 90),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn audio_advances_1024_per_frame_and_reanchors_after_a_gap() {
        let mut m = MediaAssembler::new();
        m.set_announced(Announced {
            has_video: Some(false),
            has_audio: Some(true),
        });
        let mut out = Vec::new();
        m.audio(1000, &Bytes::from_static(AAC_HEADER), &mut out)
            .unwrap();
        // 21.33 ms frames with ms rounding jitter: 1000, 1021, 1043, 1064, 1085 …
        for i in 0..10u32 {
            let ms = 1000 + (f64::from(i) * 1024.0 * 1000.0 / 48000.0).round() as u32;
            m.audio(ms, &Bytes::from_static(AAC_FRAME), &mut out)
                .unwrap();
        }
        // A 500 ms gap in the source.
        m.audio(1713, &Bytes::from_static(AAC_FRAME), &mut out)
            .unwrap();
        let dts: Vec<i64> = out
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Frame(f) => Some(f.dts),
                _ => None,
            })
            .collect();
        let expected: Vec<i64> = (0..10).map(|i| 48_000 + i * 1024).collect();
        assert_eq!(&dts[..10], &expected[..]);
        assert_eq!(dts[10], 1713 * 48);
    }

    #[test]
    fn video_timestamps_continue_across_the_32_bit_wrap() {
        let mut m = MediaAssembler::new();
        m.set_announced(Announced {
            has_video: Some(true),
            has_audio: Some(false),
        });
        let mut out = Vec::new();
        let start = u32::MAX - 40;
        m.video(start, &avc_header(SPS_720P), &mut out).unwrap();
        for i in 0..4u32 {
            m.video(start.wrapping_add(i * 33), &frame(i == 0, 0), &mut out)
                .unwrap();
        }
        let dts: Vec<i64> = out
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Frame(f) => Some(f.dts),
                _ => None,
            })
            .collect();
        let base = i64::from(start) * 90;
        assert_eq!(dts, vec![base, base + 2970, base + 5940, base + 8910]);
    }

    #[test]
    fn a_clock_that_never_advances_cannot_grow_the_start_buffer() {
        let mut m = MediaAssembler::new();
        let mut out = Vec::new();
        m.video(0, &avc_header(SPS_720P), &mut out).unwrap();
        for i in 0..MAX_BUFFERED_FRAMES {
            m.video(0, &frame(i == 0, 0), &mut out).unwrap();
        }
        assert_eq!(
            out.len(),
            1 + MAX_BUFFERED_FRAMES,
            "started video-only at the cap"
        );
    }
}
