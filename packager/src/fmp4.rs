//! Fragmented MP4 (ISO/IEC 14496-12 §8.8) as HLS wants it (RFC 8216 §3.3): an init segment
//! (`ftyp` + `moov` with `mvex`) and media segments (`styp` + `moof` + `mdat`).
//!
//! Every box is built with `mp4-atom`; this module only decides the field values. Payloads are
//! never copied here: [`media_segment_header`] returns the bytes up to and including the `mdat`
//! header, and the caller writes the frames' own buffers after it.

use bytes::Bytes;
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec as SampleEntry, Dinf, Dops, Dref, DrefEntry, Encode, Esds,
    FixedPoint, FourCC, Ftyp, Hdlr, Header, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex,
    Mvhd, Opus, Smhd, Stbl, Stco, Stsd, Styp, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry,
    Url, Visual, Vmhd,
};

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};

use crate::media::{Codec, Track, TrackKind};

/// `sample_flags` of a sync sample: `sample_depends_on = 2` (depends on no other sample),
/// `sample_is_non_sync_sample = 0` (ISO/IEC 14496-12 §8.8.3.1). hls.js and Chrome's MSE
/// parser find random-access points from these bits, not from the NAL types.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// The movie timescale of `mvhd`: only durations of the (empty) movie are counted in it.
pub const MOVIE_TIMESCALE: u32 = 1000;

/// What can go wrong turning tracks and frames into boxes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    #[error("{kind:?} track: the avcC record does not parse: {source}")]
    InvalidAvcc {
        kind: TrackKind,
        source: mp4_atom::Error,
    },
    #[error("Opus with {channels} channels needs a channel mapping table; only mono and stereo are supported")]
    OpusChannels { channels: u8 },
    #[error("a track of kind {kind:?} carries a codec of another kind")]
    KindMismatch { kind: TrackKind },
    #[error("track {track_id}: {count} samples do not fit one trun")]
    TooManySamples { track_id: u32, count: usize },
    #[error("encoding box {fourcc}: {source}")]
    Encode {
        fourcc: FourCC,
        source: mp4_atom::Error,
    },
}

fn encode_err(fourcc: FourCC) -> impl FnOnce(mp4_atom::Error) -> Fmp4Error {
    move |source| Fmp4Error::Encode { fourcc, source }
}

/// The `ftyp` of init segments: CMAF-compatible brands (ISO/IEC 23000-19 §7.2), which Safari
/// and hls.js accept; `iso6` because `tfdt` v1 and `trun` v1 are used.
pub fn init_ftyp() -> Ftyp {
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    }
}

/// The sample entry (`avc1`, `mp4a`, `Opus`) of a track, as both the init segment and the VOD
/// `moov` write it.
pub fn sample_entry(track: &Track) -> Result<SampleEntry, Fmp4Error> {
    if track.codec.kind() != track.kind {
        return Err(Fmp4Error::KindMismatch { kind: track.kind });
    }
    Ok(match &track.codec {
        Codec::H264 {
            avcc,
            width,
            height,
        } => {
            let avcc =
                Avcc::decode_body(&mut avcc.as_ref()).map_err(|source| Fmp4Error::InvalidAvcc {
                    kind: track.kind,
                    source,
                })?;
            Avc1 {
                visual: Visual {
                    data_reference_index: 1,
                    width: *width,
                    height: *height,
                    ..Default::default()
                },
                avcc,
                btrt: None,
                colr: None,
                pasp: None,
                taic: None,
                fiel: None,
                spatial: None,
            }
            .into()
        }
        Codec::Aac {
            asc,
            sample_rate,
            channels,
        } => {
            let (profile, freq_index, chan_conf) = asc_fields(asc);
            Mp4a {
                audio: audio_fields(*channels, *sample_rate),
                esds: Esds {
                    es_desc: EsDescriptor {
                        es_id: TrackKind::Audio.track_id() as u16,
                        depends_on_es_id: None,
                        url: None,
                        ocr_es_id: None,
                        stream_priority: 0,
                        dec_config: DecoderConfig {
                            // 0x40: Audio ISO/IEC 14496-3; stream type 5: audio stream
                            // (ISO/IEC 14496-1 §7.2.6.6.2, tables 5 and 6).
                            object_type_indication: 0x40,
                            stream_type: 5,
                            up_stream: 0,
                            buffer_size_db: Default::default(),
                            max_bitrate: 0,
                            avg_bitrate: 0,
                            dec_specific: Some(DecoderSpecific {
                                profile,
                                freq_index,
                                chan_conf,
                                raw: asc.to_vec(),
                            }),
                        },
                        sl_config: SLConfig::default(),
                    },
                },
                btrt: None,
                taic: None,
            }
            .into()
        }
        Codec::Opus {
            channels,
            pre_skip,
            input_sample_rate,
        } => {
            // Family 0 (no mapping table) only covers mono and stereo (RFC 7845 §5.1.1.1).
            if !(1..=2).contains(channels) {
                return Err(Fmp4Error::OpusChannels {
                    channels: *channels,
                });
            }
            Opus {
                audio: audio_fields(*channels, 48_000),
                dops: Dops {
                    output_channel_count: *channels,
                    pre_skip: *pre_skip,
                    input_sample_rate: *input_sample_rate,
                    output_gain: 0,
                    channel_mapping: None,
                },
                btrt: None,
            }
            .into()
        }
    })
}

/// The AudioSampleEntry fields; the rate field is 16.16 fixed point, so rates above 65535 Hz
/// are written as 0 (decoders take the rate from the AudioSpecificConfig anyway).
fn audio_fields(channels: u8, sample_rate: u32) -> Audio {
    Audio {
        data_reference_index: 1,
        channel_count: u16::from(channels.max(1)),
        sample_size: 16,
        sample_rate: FixedPoint::new(u16::try_from(sample_rate).unwrap_or(0), 0),
    }
}

/// audioObjectType, samplingFrequencyIndex, channelConfiguration of an AudioSpecificConfig
/// (ISO/IEC 14496-3 §1.6.2.1). mp4-atom writes `raw` verbatim; these are only its parsed view.
fn asc_fields(asc: &[u8]) -> (u8, u8, u8) {
    match asc {
        [a, b, ..] => {
            let profile = a >> 3;
            let freq = ((a & 0x07) << 1) | (b >> 7);
            let chan = (b >> 3) & 0x0f;
            (profile, freq, chan)
        }
        _ => (2, 3, 2),
    }
}

/// The `trak` of one track with an empty sample table, for an init segment.
fn init_trak(track: &Track) -> Result<Trak, Fmp4Error> {
    let entry = sample_entry(track)?;
    let size = match &track.codec {
        Codec::H264 { width, height, .. } => (*width, *height),
        _ => (0, 0),
    };
    Ok(trak(
        track.kind,
        track.timescale,
        size,
        0,
        Stbl {
            stsd: Stsd {
                codecs: vec![entry],
            },
            stco: Some(Stco::default()),
            ..Default::default()
        },
        None,
    ))
}

/// A `trak` around a finished sample table; shared with the VOD `moov`.
pub(crate) fn trak(
    kind: TrackKind,
    timescale: u32,
    (width, height): (u16, u16),
    movie_duration: u64,
    stbl: Stbl,
    edts: Option<mp4_atom::Edts>,
) -> Trak {
    let track_id = kind.track_id();
    let media_duration = stbl
        .stts
        .entries
        .iter()
        .map(|e| u64::from(e.sample_count) * u64::from(e.sample_delta))
        .sum();
    let (handler, name, vmhd, smhd, volume) = match kind {
        TrackKind::Video => (
            FourCC::new(b"vide"),
            "VideoHandler",
            Some(Vmhd::default()),
            None,
            FixedPoint::new(0, 0),
        ),
        TrackKind::Audio => (
            FourCC::new(b"soun"),
            "SoundHandler",
            None,
            Some(Smhd::default()),
            FixedPoint::new(1, 0),
        ),
    };
    Trak {
        tkhd: Tkhd {
            track_id,
            duration: movie_duration,
            enabled: true,
            in_movie: true,
            volume,
            width: FixedPoint::new(width, 0),
            height: FixedPoint::new(height, 0),
            ..Default::default()
        },
        edts,
        meta: None,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                duration: media_duration,
                language: "und".to_string(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler,
                name: name.to_string(),
            },
            minf: Minf {
                vmhd,
                smhd,
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl,
                ..Default::default()
            },
        },
        senc: None,
        tref: None,
        udta: None,
    }
}

/// `mvhd` with the movie timescale; `next_track_id` after video (1) and audio (2).
pub(crate) fn mvhd(duration: u64) -> Mvhd {
    Mvhd {
        timescale: MOVIE_TIMESCALE,
        duration,
        rate: FixedPoint::new(1, 0),
        volume: FixedPoint::new(1, 0),
        next_track_id: 3,
        ..Default::default()
    }
}

/// The init segment for these tracks: `ftyp` + `moov` (`mvhd`, one `trak` per track, `mvex`
/// with a `trex` per track).
///
/// No edit list and no `roll` sample group are written, like ffmpeg's own fragmented output:
/// Opus pre-skip travels in `dOps` (ffmpeg and Chrome both trim it from there; an `elst`
/// as well would trim it twice in some players), and a live decoder never seeks into a
/// fragment without decoding the frames before it.
pub fn write_init(tracks: &[Track]) -> Result<Bytes, Fmp4Error> {
    let mut traks = Vec::with_capacity(tracks.len());
    let mut trex = Vec::with_capacity(tracks.len());
    for track in tracks {
        traks.push(init_trak(track)?);
        trex.push(Trex {
            track_id: track.kind.track_id(),
            default_sample_description_index: 1,
            default_sample_duration: 0,
            default_sample_size: 0,
            default_sample_flags: 0,
        });
    }
    let moov = Moov {
        mvhd: mvhd(0),
        meta: None,
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        udta: None,
        ainf: None,
    };
    let mut out = Vec::with_capacity(1024);
    init_ftyp()
        .encode(&mut out)
        .map_err(encode_err(Ftyp::KIND))?;
    moov.encode(&mut out).map_err(encode_err(Moov::KIND))?;
    Ok(Bytes::from(out))
}

/// One sample of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragSample {
    pub duration: u32,
    pub size: u32,
    pub keyframe: bool,
    pub cts_offset: i32,
}

/// The samples of one track in one media segment; their payloads are contiguous in `mdat`,
/// in the order the runs are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackRun {
    pub track_id: u32,
    pub base_media_decode_time: u64,
    pub samples: Vec<FragSample>,
}

impl TrackRun {
    /// Bytes of payload this run puts in `mdat`.
    pub fn data_len(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }
}

/// The `styp` of media segments (ISO/IEC 23009-1 §6.3.4.2 `msdh`/`msix`).
fn styp() -> Styp {
    Styp {
        major_brand: FourCC::new(b"msdh"),
        minor_version: 0,
        compatible_brands: vec![FourCC::new(b"msdh"), FourCC::new(b"msix")],
    }
}

fn traf(run: &TrackRun, data_offset: i32) -> Traf {
    let has_cts = run.samples.iter().any(|s| s.cts_offset != 0);
    let entries = run
        .samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.size),
            flags: Some(if s.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            }),
            // mp4-atom writes trun version 1 (signed offsets) whenever they fit in an i32.
            cts: has_cts.then_some(i64::from(s.cts_offset)),
        })
        .collect::<Vec<_>>();
    Traf {
        tfhd: Tfhd {
            track_id: run.track_id,
            // Offsets count from the moof (ISO/IEC 14496-12 §8.8.7.1), so a segment stays
            // valid wherever it is stored or concatenated.
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: run.base_media_decode_time,
        }),
        trun: vec![Trun {
            data_offset: Some(data_offset),
            samples: entries.into(),
        }],
        ..Default::default()
    }
}

/// `styp` + `moof` + the `mdat` header for these runs. The `mdat` body is the runs' payloads,
/// in run order, each run's samples in order; `trun.data_offset` points at each run's first byte.
pub fn media_segment_header(sequence_number: u32, runs: &[TrackRun]) -> Result<Vec<u8>, Fmp4Error> {
    for run in runs {
        if u32::try_from(run.samples.len()).is_err() {
            return Err(Fmp4Error::TooManySamples {
                track_id: run.track_id,
                count: run.samples.len(),
            });
        }
    }
    let payload_len: u64 = runs.iter().map(TrackRun::data_len).sum();
    let mdat_header = Header {
        kind: Mdat::KIND,
        size: Some(usize::try_from(payload_len).unwrap_or(usize::MAX)),
    };
    let mut mdat_header_bytes = Vec::with_capacity(16);
    mdat_header
        .encode(&mut mdat_header_bytes)
        .map_err(encode_err(Mdat::KIND))?;

    let moof_with = |offsets: &[i32]| Moof {
        mfhd: Mfhd { sequence_number },
        traf: runs
            .iter()
            .zip(offsets)
            .map(|(run, &off)| traf(run, off))
            .collect(),
    };
    // data_offset is a fixed-width field, so the moof size does not depend on its value:
    // measure once with zeros, then write the real offsets.
    let zeros = vec![0i32; runs.len()];
    let mut probe = Vec::new();
    moof_with(&zeros)
        .encode(&mut probe)
        .map_err(encode_err(Moof::KIND))?;
    let mut offsets = Vec::with_capacity(runs.len());
    let mut at = probe.len() as u64 + mdat_header_bytes.len() as u64;
    for run in runs {
        offsets.push(i32::try_from(at).map_err(|_| Fmp4Error::Encode {
            fourcc: Trun::KIND,
            source: mp4_atom::Error::TooLarge(Trun::KIND),
        })?);
        at += run.data_len();
    }

    let mut out = Vec::with_capacity(probe.len() + 64);
    styp().encode(&mut out).map_err(encode_err(Styp::KIND))?;
    moof_with(&offsets)
        .encode(&mut out)
        .map_err(encode_err(Moof::KIND))?;
    out.extend_from_slice(&mdat_header_bytes);
    Ok(out)
}
