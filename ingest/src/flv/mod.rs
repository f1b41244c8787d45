//! FLV tag bodies as RTMP carries them (message types 8 and 9), sans-IO.
//!
//! RTMP audio/video messages are FLV `AUDIODATA`/`VIDEODATA` tag bodies (Adobe FLV spec v10.1,
//! E.4.2 and E.4.3): a one-byte header, for AVC/AAC a packet type, then for AVC a signed 24-bit
//! composition time. Enhanced RTMP (veovera "enhanced-rtmp" v1/v2) sets the top bit of a video
//! tag's first byte (`IsExHeader`) and names the codec with a FourCC; audio uses SoundFormat 9 for
//! the same. storef packages H.264 + AAC only, so everything else is refused with an error that
//! names the codec; `avc1` and `mp4a` FourCCs are accepted because they are the same bitstreams.
//!
//! Offsets in errors are byte offsets within the tag body.

pub mod aac;
pub mod avc;
pub mod file;

use bytes::Bytes;
use packager::Codec;
use std::fmt;

/// Which kind of FLV tag an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagType {
    Audio,
    Video,
}

impl fmt::Display for TagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagType::Audio => "audio",
            TagType::Video => "video",
        })
    }
}

/// Why an FLV tag body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    #[error("{tag} tag truncated: {len} bytes, need at least {needed} (byte offset {offset})")]
    Truncated {
        tag: TagType,
        offset: usize,
        len: usize,
        needed: usize,
    },
    /// A legacy FLV codec storef does not package (Sorenson H.263, VP6, MP3, Speex, PCM …).
    #[error("{tag} tag: unsupported codec {codec} (byte offset {offset})")]
    UnsupportedCodec {
        tag: TagType,
        offset: usize,
        codec: &'static str,
    },
    /// An Enhanced RTMP FourCC other than `avc1`/`mp4a` (`hvc1`, `av01`, `vp09`, `Opus` …).
    #[error("{tag} tag: unsupported Enhanced RTMP codec {} (byte offset {offset}); storef takes H.264 and AAC", fourcc_str(fourcc))]
    UnsupportedEnhancedCodec {
        tag: TagType,
        offset: usize,
        fourcc: [u8; 4],
    },
    #[error("{tag} tag: unsupported packet type {packet_type} (byte offset {offset})")]
    UnsupportedPacketType {
        tag: TagType,
        offset: usize,
        packet_type: u8,
    },
    #[error("video tag: bad AVC sequence header (byte offset {offset}): {source}")]
    AvcConfig {
        offset: usize,
        source: avc::AvcConfigError,
    },
    #[error("audio tag: bad AAC sequence header (byte offset {offset}): {source}")]
    AacConfig {
        offset: usize,
        source: aac::AscError,
    },
}

impl FlvError {
    /// The tag kind the error is about.
    pub fn tag(&self) -> TagType {
        match self {
            FlvError::Truncated { tag, .. }
            | FlvError::UnsupportedCodec { tag, .. }
            | FlvError::UnsupportedEnhancedCodec { tag, .. }
            | FlvError::UnsupportedPacketType { tag, .. } => *tag,
            FlvError::AvcConfig { .. } => TagType::Video,
            FlvError::AacConfig { .. } => TagType::Audio,
        }
    }

    /// Byte offset in the tag body.
    pub fn offset(&self) -> usize {
        match self {
            FlvError::Truncated { offset, .. }
            | FlvError::UnsupportedCodec { offset, .. }
            | FlvError::UnsupportedEnhancedCodec { offset, .. }
            | FlvError::UnsupportedPacketType { offset, .. }
            | FlvError::AvcConfig { offset, .. }
            | FlvError::AacConfig { offset, .. } => *offset,
        }
    }
}

fn fourcc_str(f: &[u8; 4]) -> String {
    if f.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("'{}'", String::from_utf8_lossy(f))
    } else {
        format!("{f:02x?}")
    }
}

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVC sequence header: the avcC, as [`Codec::H264`].
    SequenceHeader(Codec),
    /// One access unit of length-prefixed NAL units (the avcC's length size).
    Frame {
        keyframe: bool,
        /// Presentation minus decode time in milliseconds (FLV `CompositionTime`, SI24).
        composition_time_ms: i32,
        data: Bytes,
    },
    /// AVC end of sequence: the encoder is done with this configuration.
    EndOfSequence,
    /// Video info/command frames (frame type 5) and Enhanced RTMP metadata: nothing to package.
    Ignored,
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AAC sequence header: the AudioSpecificConfig, as [`Codec::Aac`].
    SequenceHeader(Codec),
    /// One raw AAC access unit.
    Frame(Bytes),
}

fn need(tag: TagType, body: &[u8], needed: usize) -> Result<(), FlvError> {
    if body.len() < needed {
        Err(FlvError::Truncated {
            tag,
            offset: body.len(),
            len: body.len(),
            needed,
        })
    } else {
        Ok(())
    }
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extend: shift the 24 bits to the top of an i32 and back.
    (i32::from(b[0]) << 24 | i32::from(b[1]) << 16 | i32::from(b[2]) << 8) >> 8
}

/// The AVC config at `offset` of the body, as a [`Codec::H264`].
fn avc_codec(body: &Bytes, offset: usize) -> Result<Codec, FlvError> {
    let avcc = body.slice(offset..);
    let cfg = avc::parse_avcc(&avcc).map_err(|source| FlvError::AvcConfig { offset, source })?;
    Ok(Codec::H264 {
        avcc,
        width: cfg.width,
        height: cfg.height,
    })
}

/// The AAC config at `offset` of the body, as a [`Codec::Aac`].
fn aac_codec(body: &Bytes, offset: usize) -> Result<Codec, FlvError> {
    let asc = body.slice(offset..);
    let cfg = aac::parse_asc(&asc).map_err(|source| FlvError::AacConfig { offset, source })?;
    Ok(Codec::Aac {
        asc,
        sample_rate: cfg.sample_rate,
        channels: cfg.channels,
    })
}

/// Parses a VIDEODATA body (FLV E.4.3.1, Enhanced RTMP `ExVideoTagHeader`).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    const TAG: TagType = TagType::Video;
    need(TAG, body, 1)?;
    let first = body[0];
    if first & 0x80 != 0 {
        return parse_ex_video_tag(body);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == 5 {
        // Video info/command frame: one byte of command (seek start/end), no picture.
        return Ok(VideoTag::Ignored);
    }
    let codec = match codec_id {
        7 => "",
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        12 => "HEVC (non-standard FLV codec id 12)",
        13 => "AV1 (non-standard FLV codec id 13)",
        _ => "unknown video codec id",
    };
    if codec_id != 7 {
        return Err(FlvError::UnsupportedCodec {
            tag: TAG,
            offset: 0,
            codec,
        });
    }
    need(TAG, body, 5)?;
    match body[1] {
        0 => avc_codec(body, 5).map(VideoTag::SequenceHeader),
        1 => Ok(VideoTag::Frame {
            keyframe: frame_type == 1 || frame_type == 4,
            composition_time_ms: si24(&body[2..5]),
            data: body.slice(5..),
        }),
        2 => Ok(VideoTag::EndOfSequence),
        packet_type => Err(FlvError::UnsupportedPacketType {
            tag: TAG,
            offset: 1,
            packet_type,
        }),
    }
}

/// What both Enhanced RTMP headers must pass: a packet type up to `max_packet_type` (the larger
/// ones add header bytes storef does not parse), then the FourCC of the one codec storef takes
/// for that tag type.
fn check_ex_header(
    tag: TagType,
    body: &Bytes,
    packet_type: u8,
    max_packet_type: u8,
    want: &[u8; 4],
) -> Result<(), FlvError> {
    if packet_type > max_packet_type {
        return Err(FlvError::UnsupportedPacketType {
            tag,
            offset: 0,
            packet_type,
        });
    }
    need(tag, body, 5)?;
    let fourcc = [body[1], body[2], body[3], body[4]];
    if &fourcc != want {
        return Err(FlvError::UnsupportedEnhancedCodec {
            tag,
            offset: 1,
            fourcc,
        });
    }
    Ok(())
}

/// Enhanced RTMP v2 `ExVideoTagHeader`: `IsExHeader(1) FrameType(3) PacketType(4)`, FourCC.
fn parse_ex_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    const TAG: TagType = TagType::Video;
    let frame_type = (body[0] >> 4) & 0x07;
    let packet_type = body[0] & 0x0f;
    // 6 = Multitrack and 7 = ModEx put more header bytes before the FourCC.
    check_ex_header(TAG, body, packet_type, 5, b"avc1")?;
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    let keyframe = frame_type == 1 || frame_type == 4;
    match packet_type {
        // SequenceStart
        0 => avc_codec(body, 5).map(VideoTag::SequenceHeader),
        // CodedFrames: SI24 composition time, then the NAL units.
        1 => {
            need(TAG, body, 8)?;
            Ok(VideoTag::Frame {
                keyframe,
                composition_time_ms: si24(&body[5..8]),
                data: body.slice(8..),
            })
        }
        2 => Ok(VideoTag::EndOfSequence),
        // CodedFramesX: composition time implied zero.
        3 => Ok(VideoTag::Frame {
            keyframe,
            composition_time_ms: 0,
            data: body.slice(5..),
        }),
        // Metadata (HDR colour info, AMF): nothing storef uses.
        4 => Ok(VideoTag::Ignored),
        _ => Err(FlvError::UnsupportedPacketType {
            tag: TAG,
            offset: 0,
            packet_type,
        }),
    }
}

/// Parses an AUDIODATA body (FLV E.4.2.1, Enhanced RTMP `ExAudioTagHeader`).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    const TAG: TagType = TagType::Audio;
    need(TAG, body, 1)?;
    let sound_format = body[0] >> 4;
    let codec = match sound_format {
        10 => "",
        9 => return parse_ex_audio_tag(body),
        0 => "Linear PCM, platform endian",
        1 => "ADPCM",
        2 => "MP3",
        3 => "Linear PCM, little endian",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "device-specific sound",
        _ => "reserved sound format",
    };
    if sound_format != 10 {
        return Err(FlvError::UnsupportedCodec {
            tag: TAG,
            offset: 0,
            codec,
        });
    }
    need(TAG, body, 2)?;
    match body[1] {
        0 => aac_codec(body, 2).map(AudioTag::SequenceHeader),
        1 => Ok(AudioTag::Frame(body.slice(2..))),
        packet_type => Err(FlvError::UnsupportedPacketType {
            tag: TAG,
            offset: 1,
            packet_type,
        }),
    }
}

/// Enhanced RTMP v2 `ExAudioTagHeader`: `SoundFormat(4) = 9, AudioPacketType(4)`, FourCC.
fn parse_ex_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    const TAG: TagType = TagType::Audio;
    let packet_type = body[0] & 0x0f;
    // 4 = MultichannelConfig, 5 = Multitrack, 7 = ModEx: not for a single AAC track.
    check_ex_header(TAG, body, packet_type, 1, b"mp4a")?;
    match packet_type {
        0 => aac_codec(body, 5).map(AudioTag::SequenceHeader),
        _ => Ok(AudioTag::Frame(body.slice(5..))),
    }
}

#[cfg(test)]
mod tests;
