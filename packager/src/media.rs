//! The media types every ingest converts to.
//!
//! RTMP, WHIP, RTSP and uploaded chunks all end up as a list of [`Track`]s and a sequence of
//! [`MediaFrame`]s; nothing downstream of this module knows which protocol the media came from.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which of the (at most two) tracks of a stream a frame belongs to.
///
/// storef carries one video and one audio track per stream, like every HLS player expects of a
/// muxed rendition. In fMP4 output video is track id 1 and audio is track id 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TrackKind {
    Video,
    Audio,
}

impl TrackKind {
    /// The fMP4 `track_ID` this kind is written with.
    pub fn track_id(self) -> u32 {
        match self {
            TrackKind::Video => 1,
            TrackKind::Audio => 2,
        }
    }
}

/// A codec and its decoder configuration, as it goes into the sample entry of the init segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// H.264. `avcc` is the body of an `avcC` box, the AVCDecoderConfigurationRecord of
    /// ISO/IEC 14496-15 §5.3.3.1 (its `lengthSizeMinusOne` says how frames are length-prefixed).
    H264 {
        avcc: Bytes,
        width: u16,
        height: u16,
    },
    /// AAC. `asc` is the AudioSpecificConfig of ISO/IEC 14496-3 §1.6.2.1.
    Aac {
        asc: Bytes,
        sample_rate: u32,
        channels: u8,
    },
    /// Opus, kept as Opus ("Encapsulation of Opus in ISO Base Media File Format", `Opus` + `dOps`).
    /// Its track timescale is always 48 000.
    Opus {
        channels: u8,
        pre_skip: u16,
        input_sample_rate: u32,
    },
}

impl Codec {
    /// The RFC 6381 codec string HLS players use to pick a decoder (`avc1.64001f`, `mp4a.40.2`, `opus`).
    pub fn rfc6381(&self) -> String {
        match self {
            Codec::H264 { avcc, .. } => match avcc.get(1..4) {
                Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                None => "avc1".to_string(),
            },
            Codec::Aac { asc, .. } => {
                // audioObjectType is the first five bits; 31 escapes to 32 + the next six.
                let aot = match asc.first() {
                    Some(b) if b >> 3 == 31 => {
                        let next = asc.get(1).copied().unwrap_or(0);
                        32 + (((b & 0x07) << 3) | (next >> 5))
                    }
                    Some(b) => b >> 3,
                    None => 2,
                };
                format!("mp4a.40.{aot}")
            }
            Codec::Opus { .. } => "opus".to_string(),
        }
    }

    /// The track kind this codec is carried on.
    pub fn kind(&self) -> TrackKind {
        match self {
            Codec::H264 { .. } => TrackKind::Video,
            Codec::Aac { .. } | Codec::Opus { .. } => TrackKind::Audio,
        }
    }
}

/// One elementary stream: its codec configuration and the clock its timestamps are counted in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub kind: TrackKind,
    pub codec: Codec,
    /// Ticks per second of every timestamp and duration of this track's frames.
    pub timescale: u32,
}

/// One access unit: a video picture or an audio frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaFrame {
    pub kind: TrackKind,
    /// Decode timestamp in the track's timescale. Monotonic within a run (see `Segmenter::begin_run`),
    /// not necessarily starting at zero.
    pub dts: i64,
    /// Presentation minus decode time, in the track's timescale (B-frames; negative with `ctts` v1).
    pub cts_offset: i32,
    /// The frame's duration when the source knows it (MP4 sample tables). Live ingests leave it
    /// `None`; the segmenter then takes it from the next frame's `dts`.
    pub duration: Option<u32>,
    /// A sync sample: an IDR picture for H.264; every audio frame is one.
    pub keyframe: bool,
    /// H.264: NAL units, each prefixed by its length in the size the track's avcC says (4 bytes in
    /// practice). Audio: one raw access unit (no ADTS header, no Ogg framing).
    pub data: Bytes,
}
