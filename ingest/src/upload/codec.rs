//! Sample entries (`stsd`, ISO/IEC 14496-12 §8.5.2) to [`packager::Codec`].
//!
//! The fixed-size parts of Visual/AudioSampleEntry are skipped by hand, so that the decoder
//! configuration box (`avcC`, `esds`, `dOps`) can be handed on byte-for-byte as the file wrote it;
//! mp4-atom decodes those boxes to check them and to read the fields we need.

use super::boxes::{children, find_child, RawBox};
use super::DemuxError;
use crate::h264::parse_sps;
use bytes::Bytes;
use packager::Codec;

/// What the first sample entry of a track turned out to be.
#[derive(Debug)]
pub(crate) enum EntryCodec {
    Supported(Codec),
    /// An audio/video codec storef does not carry; the fourcc (or a more precise name) for the
    /// error message.
    Unsupported(String),
}

/// VisualSampleEntry: 8 bytes of SampleEntry + 70 bytes of fixed fields (§12.1.3.2).
const VISUAL_ENTRY_LEN: usize = 78;

/// Reads the first entry of an `stsd` box (a FullBox: version/flags, entry_count, entries).
pub(crate) fn first_sample_entry<'a>(stsd: &RawBox<'a>) -> Result<RawBox<'a>, DemuxError> {
    let entries = stsd.body.get(8..).ok_or_else(|| {
        DemuxError::malformed("stsd", stsd.offset, "shorter than its 8-byte header")
    })?;
    let count = stsd
        .body
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if count == Some(0) {
        return Err(DemuxError::malformed(
            "stsd",
            stsd.offset,
            "no sample entry",
        ));
    }
    match children(entries, stsd.body_offset() + 8, "stsd").next() {
        Some(entry) => entry,
        None => Err(DemuxError::malformed(
            "stsd",
            stsd.offset,
            "no sample entry",
        )),
    }
}

/// Converts a sample entry into a codec.
pub(crate) fn sample_entry_codec(entry: &RawBox<'_>) -> Result<EntryCodec, DemuxError> {
    match &entry.kind {
        b"avc1" | b"avc3" => avc_entry(entry).map(EntryCodec::Supported),
        b"mp4a" => mp4a_entry(entry),
        b"Opus" => opus_entry(entry),
        _ => Ok(EntryCodec::Unsupported(entry.kind_str())),
    }
}

fn avc_entry(entry: &RawBox<'_>) -> Result<Codec, DemuxError> {
    let fixed = entry.body.get(..VISUAL_ENTRY_LEN).ok_or_else(|| {
        DemuxError::malformed(
            &entry.kind_str(),
            entry.offset,
            "shorter than a VisualSampleEntry",
        )
    })?;
    let width = u16::from_be_bytes([fixed[24], fixed[25]]);
    let height = u16::from_be_bytes([fixed[26], fixed[27]]);
    let mut avcc_box = None;
    for child in children(
        entry.body.get(VISUAL_ENTRY_LEN..).unwrap_or_default(),
        entry.body_offset() + VISUAL_ENTRY_LEN as u64,
        "avc1",
    ) {
        let child = child?;
        if &child.kind == b"avcC" {
            avcc_box = Some(child);
            break;
        }
    }
    let avcc_box = avcc_box.ok_or_else(|| {
        DemuxError::malformed(
            &entry.kind_str(),
            entry.offset,
            "no avcC box in the sample entry",
        )
    })?;
    avc_codec_from_record(avcc_box.body, width, height)
        .map_err(|reason| DemuxError::malformed("avcC", avcc_box.offset, reason))
}

/// Builds [`Codec::H264`] from an AVCDecoderConfigurationRecord (the body of `avcC`, or a
/// Matroska `CodecPrivate`), taking the size from the container when it gave one and from the
/// first SPS otherwise.
pub(crate) fn avc_codec_from_record(
    record: &[u8],
    width: u16,
    height: u16,
) -> Result<Codec, String> {
    let mut body = record;
    let avcc = <mp4_atom::Avcc as mp4_atom::Atom>::decode_body(&mut body)
        .map_err(|e| format!("bad AVCDecoderConfigurationRecord: {e}"))?;
    let sps = avcc
        .sequence_parameter_sets
        .first()
        .ok_or_else(|| "AVCDecoderConfigurationRecord without an SPS".to_string())?;
    if avcc.picture_parameter_sets.is_empty() {
        return Err("AVCDecoderConfigurationRecord without a PPS".to_string());
    }
    let (width, height) = if width == 0 || height == 0 {
        let sps =
            parse_sps(sps).map_err(|e| format!("no picture size and an unreadable SPS: {e}"))?;
        (sps.width, sps.height)
    } else {
        (width, height)
    };
    Ok(Codec::H264 {
        avcc: Bytes::copy_from_slice(record),
        width,
        height,
    })
}

/// The offset of the child boxes in an AudioSampleEntry, which depends on the QuickTime sound
/// description version (QTFF "Sound Sample Description", versions 1 and 2 add 16 and 36 bytes).
fn audio_children<'a>(entry: &RawBox<'a>) -> Result<(u16, RawBox<'a>), DemuxError> {
    let body = entry.body;
    let short = || {
        DemuxError::malformed(
            &entry.kind_str(),
            entry.offset,
            "shorter than an AudioSampleEntry",
        )
    };
    let fixed = body.get(..28).ok_or_else(short)?;
    let version = u16::from_be_bytes([fixed[8], fixed[9]]);
    let channels = u16::from_be_bytes([fixed[16], fixed[17]]);
    let start = match version {
        0 => 28,
        1 => 44,
        2 => 64,
        v => {
            return Err(DemuxError::malformed(
                &entry.kind_str(),
                entry.offset,
                format!("unknown sound sample description version {v}"),
            ))
        }
    };
    let rest = body.get(start..).ok_or_else(short)?;
    Ok((
        channels,
        RawBox {
            kind: entry.kind,
            offset: entry.offset,
            header_len: entry.header_len + start,
            body: rest,
        },
    ))
}

fn mp4a_entry(entry: &RawBox<'_>) -> Result<EntryCodec, DemuxError> {
    let (entry_channels, inner) = audio_children(entry)?;
    let mut esds = find_child(&inner, b"esds", "mp4a")?;
    if esds.is_none() {
        // QuickTime (.mov) puts esds inside a `wave` box.
        if let Some(wave) = find_child(&inner, b"wave", "mp4a")? {
            esds = find_child(&wave, b"esds", "wave")?;
        }
    }
    let esds = esds.ok_or_else(|| {
        DemuxError::malformed("mp4a", entry.offset, "no esds box in the sample entry")
    })?;
    let decoded: mp4_atom::Esds = esds.decode()?;
    let dc = decoded.es_desc.dec_config;
    // ISO/IEC 14496-1 Table 5: 0x40 MPEG-4 audio, 0x66..0x68 MPEG-2 AAC profiles.
    if !matches!(dc.object_type_indication, 0x40 | 0x66..=0x68) {
        return Ok(EntryCodec::Unsupported(format!(
            "mp4a.{:02X}",
            dc.object_type_indication
        )));
    }
    let asc = dc.dec_specific.map(|d| d.raw).unwrap_or_default();
    let info = parse_asc(&asc).ok_or_else(|| {
        DemuxError::malformed(
            "esds",
            esds.offset,
            format!("unreadable AudioSpecificConfig {asc:02x?}"),
        )
    })?;
    let channels = match info.channels {
        0 => u8::try_from(entry_channels).unwrap_or(0),
        n => n,
    };
    if channels == 0 {
        return Err(DemuxError::malformed(
            "esds",
            esds.offset,
            "no channel count in the AudioSpecificConfig or the sample entry",
        ));
    }
    Ok(EntryCodec::Supported(Codec::Aac {
        asc: Bytes::from(asc),
        sample_rate: info.sample_rate,
        channels,
    }))
}

fn opus_entry(entry: &RawBox<'_>) -> Result<EntryCodec, DemuxError> {
    let (_, inner) = audio_children(entry)?;
    let dops = find_child(&inner, b"dOps", "Opus")?.ok_or_else(|| {
        DemuxError::malformed("Opus", entry.offset, "no dOps box in the sample entry")
    })?;
    let decoded: mp4_atom::Dops = dops.decode()?;
    if let Some(map) = decoded.channel_mapping {
        // packager::Codec::Opus has no channel mapping table, so only family 0 (mono/stereo)
        // can be carried without changing the audio.
        return Ok(EntryCodec::Unsupported(format!(
            "Opus (channel mapping family {})",
            map.family
        )));
    }
    Ok(EntryCodec::Supported(Codec::Opus {
        channels: decoded.output_channel_count,
        pre_skip: decoded.pre_skip,
        input_sample_rate: decoded.input_sample_rate,
    }))
}

/// The fields of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) a track needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AscInfo {
    pub object_type: u8,
    pub sample_rate: u32,
    /// 0 when the channel layout is in a program_config_element.
    pub channels: u8,
}

/// Table 1.18, samplingFrequencyIndex.
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

pub(crate) fn parse_asc(asc: &[u8]) -> Option<AscInfo> {
    let mut bits = 0u64;
    for (i, &b) in asc.iter().take(8).enumerate() {
        bits |= u64::from(b) << (56 - 8 * i);
    }
    if asc.len() < 2 {
        return None;
    }
    let mut pos = 0u32;
    let mut take = |n: u32| {
        let v = (bits << pos) >> (64 - n);
        pos += n;
        v as u32
    };
    let mut object_type = take(5);
    if object_type == 31 {
        object_type = 32 + take(6);
    }
    let index = take(4) as usize;
    let sample_rate = if index == 15 {
        take(24)
    } else {
        *AAC_RATES.get(index)?
    };
    let channel_config = take(4);
    if sample_rate == 0 || pos > (asc.len() as u32) * 8 {
        return None;
    }
    // channelConfiguration 7 is 7.1 (8 channels); 1..=6 are the channel count.
    let channels = match channel_config {
        0 => 0,
        1..=6 => channel_config as u8,
        7 => 8,
        _ => return None,
    };
    Some(AscInfo {
        object_type: u8::try_from(object_type).ok()?,
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc_lc_48k_stereo() {
        assert_eq!(
            parse_asc(&[0x11, 0x90]),
            Some(AscInfo {
                object_type: 2,
                sample_rate: 48000,
                channels: 2
            })
        );
    }

    #[test]
    fn asc_lc_44k1_mono_and_explicit_rate() {
        assert_eq!(
            parse_asc(&[0x12, 0x08]).map(|a| (a.sample_rate, a.channels)),
            Some((44100, 1))
        );
        // AOT 2, index 15, 24-bit rate 12345, channels 2.
        let v: u64 = (2 << 35) | (15 << 31) | (12345 << 7) | (2 << 3);
        let b = v.to_be_bytes();
        assert_eq!(
            parse_asc(&b[3..8]).map(|a| (a.sample_rate, a.channels)),
            Some((12345, 2))
        );
    }

    #[test]
    fn asc_garbage() {
        assert_eq!(parse_asc(&[]), None);
        assert_eq!(parse_asc(&[0x17, 0x80]), None); // index 14 is reserved
    }
}
