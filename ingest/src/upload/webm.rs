//! WebM / Matroska as browsers' MediaRecorder writes it: an EBML header, a Segment of unknown
//! size, Info, Tracks, then Clusters of unknown size holding SimpleBlocks
//! (<https://www.matroska.org/technical/elements.html>, RFC 8794 for EBML).
//!
//! The reader is flat: Segment and Cluster headers are stepped into, every other element is
//! handled once it is complete (a SimpleBlock, a Cluster Timestamp) or skipped. So a Cluster of
//! unknown size simply lasts until the next Cluster, and a chunk may start anywhere inside one as
//! long as the caller kept the cluster timestamp (see `ContinuationDemuxer::carry`).
//!
//! H.264 in WebM, Chromium style: Chromium 156 writes no CodecPrivate for `V_MPEG4/ISO/AVC` and
//! stores frames as Annex B byte streams with SPS/PPS in-band (not the avcC + length-prefixed
//! NAL units the Matroska codec mapping asks for). Such frames are rewritten to 4-byte length
//! prefixes and the avcC is built from the first keyframe's SPS and PPS; the stream header the
//! server persists is then rewritten to carry that avcC as CodecPrivate, marked with CodecName
//! [`ANNEXB_MARKER`] so that a resumed reader keeps converting.
//!
//! Timestamps: a block's time is (Cluster Timestamp + the block's signed 16-bit offset) ×
//! TimestampScale ns (1 ms by default), minus the track's CodecDelay (ffmpeg writes Opus
//! pre-skip there; Chromium writes none). Video frames get a 90 kHz clock and Opus 48 kHz, so with
//! the default scale every millisecond maps to a whole number of ticks. WebM stores presentation
//! times only; `dts` is set to that time with `cts_offset` 0. MediaRecorder's H.264 encoders
//! produce no B-frames; a video track whose block times go backwards (B-frames, e.g. an
//! ffmpeg-made .mkv) is refused rather than given made-up decode times.

use super::codec::avc_codec_from_record;
use super::ebml::{self, read_header, read_track_number, uint};
use super::DemuxError;
use bytes::Bytes;
use packager::{Codec, MediaFrame, Track, TrackKind};

pub(crate) const ID_EBML: u32 = 0x1A45_DFA3;
const ID_DOCTYPE: u32 = 0x4282;
const ID_SEGMENT: u32 = 0x1853_8067;
const ID_INFO: u32 = 0x1549_A966;
const ID_TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const ID_TRACKS: u32 = 0x1654_AE6B;
const ID_TRACK_ENTRY: u32 = 0xAE;
const ID_TRACK_NUMBER: u32 = 0xD7;
const ID_TRACK_TYPE: u32 = 0x83;
const ID_CODEC_ID: u32 = 0x86;
const ID_CODEC_PRIVATE: u32 = 0x63A2;
const ID_VIDEO: u32 = 0xE0;
const ID_PIXEL_WIDTH: u32 = 0xB0;
const ID_PIXEL_HEIGHT: u32 = 0xBA;
const ID_CONTENT_ENCODINGS: u32 = 0x6D80;
const ID_CODEC_NAME: u32 = 0x25_8688;
const ID_CODEC_DELAY: u32 = 0x56AA;
const ID_CLUSTER: u32 = 0x1F43_B675;
const ID_TIMESTAMP: u32 = 0xE7;
const ID_SIMPLE_BLOCK: u32 = 0xA3;
const ID_BLOCK_GROUP: u32 = 0xA0;
const ID_BLOCK: u32 = 0xA1;
const ID_REFERENCE_BLOCK: u32 = 0xFB;

/// Children of Segment and of Cluster that the flat reader accepts (Matroska element table):
/// SeekHead, Info, Tracks, Cues, Tags, Chapters, Attachments, Void, CRC-32, Timestamp,
/// SilentTracks, Position, PrevSize, SimpleBlock, BlockGroup, EncryptedBlock.
const SEGMENT_LEVEL_IDS: [u32; 16] = [
    0x114D_9B74,
    ID_INFO,
    ID_TRACKS,
    0x1C53_BB6B,
    0x1254_C367,
    0x1043_A770,
    0x1941_A469,
    0xEC,
    0xBF,
    ID_TIMESTAMP,
    0x5854,
    0xA7,
    0xAB,
    ID_SIMPLE_BLOCK,
    ID_BLOCK_GROUP,
    0xAF,
];

/// Video clock for WebM input (ms timestamps map exactly).
pub const WEBM_VIDEO_TIMESCALE: u32 = 90_000;

/// CodecName storef writes beside a CodecPrivate it built for an Annex B H.264 track.
pub const ANNEXB_MARKER: &[u8] = b"storef:annexb";

fn malformed(offset: u64, reason: impl Into<String>) -> DemuxError {
    DemuxError::malformed("EBML", offset, reason)
}

/// What the header (EBML header, Segment start, Info, Tracks) says.
#[derive(Clone, Debug)]
pub(crate) struct WebmHeader {
    pub tracks: Vec<Track>,
    /// Matroska track number of each entry of `tracks`.
    pub numbers: Vec<u64>,
    /// CodecDelay (ns) of each entry of `tracks`, subtracted from its block times.
    pub delays: Vec<u64>,
    /// Nanoseconds per timestamp unit.
    pub timestamp_scale: u64,
    /// Length of the header: up to the end of the Tracks element.
    pub len: usize,
    /// Where the Tracks element starts.
    pub tracks_offset: usize,
    /// The video track's frames are Annex B (see the module docs).
    pub video_annexb: bool,
    /// The video track's avcC is not known yet (no CodecPrivate, no keyframe seen).
    pub video_pending: bool,
}

/// Parses the header at the start of `buf` (the whole of it must be there).
pub(crate) fn parse_header(buf: &[u8]) -> Result<WebmHeader, DemuxError> {
    let need = |what: &str, needed: u64| DemuxError::Truncated {
        offset: 0,
        what: format!("WebM header ({what})"),
        needed,
        available: buf.len() as u64,
    };
    let h = read_header(buf)
        .map_err(|e| malformed(0, e))?
        .ok_or_else(|| need("EBML header", 8))?;
    if h.id != ID_EBML {
        return Err(DemuxError::NotMp4 {
            reason: "not an EBML header".into(),
        });
    }
    let size = h
        .size
        .ok_or_else(|| malformed(0, "EBML header of unknown size"))?;
    let end = h.len as u64 + size;
    let body = buf
        .get(h.len..end as usize)
        .ok_or_else(|| need("EBML header", end))?;
    for c in ebml::children(body, h.len as u64) {
        let c = c.map_err(|e| malformed(0, e))?;
        if c.id == ID_DOCTYPE && c.body != b"webm" && c.body != b"matroska" {
            return Err(DemuxError::NotMp4 {
                reason: format!("EBML DocType {:?}", String::from_utf8_lossy(c.body)),
            });
        }
    }
    let mut pos = end as usize;
    let mut timestamp_scale = 1_000_000u64;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let h = read_header(rest)
            .map_err(|e| malformed(pos as u64, e))?
            .ok_or_else(|| need("Tracks", pos as u64 + 8))?;
        match h.id {
            ID_SEGMENT => {
                pos += h.len;
                continue;
            }
            ID_CLUSTER => return Err(malformed(pos as u64, "Cluster before Tracks")),
            _ => {}
        }
        let size = h
            .size
            .ok_or_else(|| malformed(pos as u64, format!("element {:#x} of unknown size", h.id)))?;
        let end = (pos as u64)
            .saturating_add(h.len as u64)
            .saturating_add(size);
        let body = buf
            .get(pos + h.len..)
            .and_then(|b| b.get(..size as usize))
            .ok_or_else(|| need("Tracks", end))?;
        match h.id {
            ID_INFO => {
                for c in ebml::children(body, (pos + h.len) as u64) {
                    let c = c.map_err(|e| malformed(pos as u64, e))?;
                    if c.id == ID_TIMESTAMP_SCALE {
                        timestamp_scale = uint(c.body)
                            .filter(|&s| s > 0)
                            .ok_or_else(|| malformed(c.offset, "bad TimestampScale"))?;
                    }
                }
            }
            ID_TRACKS => {
                let p = parse_tracks(body, (pos + h.len) as u64)?;
                return Ok(WebmHeader {
                    tracks: p.tracks,
                    numbers: p.numbers,
                    delays: p.delays,
                    timestamp_scale,
                    len: end as usize,
                    tracks_offset: pos,
                    video_annexb: p.video_annexb,
                    video_pending: p.video_pending,
                });
            }
            _ => {}
        }
        pos = end as usize;
    }
}

struct ParsedTracks {
    tracks: Vec<Track>,
    numbers: Vec<u64>,
    delays: Vec<u64>,
    video_annexb: bool,
    video_pending: bool,
}

/// Tracks → our tracks (video first). Any audio/video track with a codec storef does not carry
/// fails the whole stream: MediaRecorder was asked for the wrong codec.
fn parse_tracks(body: &[u8], base: u64) -> Result<ParsedTracks, DemuxError> {
    let mut found: Vec<(Track, u64, u64)> = Vec::new();
    let (mut video_annexb, mut video_pending) = (false, false);
    for entry in ebml::children(body, base) {
        let entry = entry.map_err(|e| malformed(base, e))?;
        if entry.id != ID_TRACK_ENTRY {
            continue;
        }
        let (mut number, mut kind, mut codec_id, mut private) = (0u64, 0u64, "", &[][..]);
        let (mut width, mut height) = (0u64, 0u64);
        let mut encoded = false;
        let mut marked_annexb = false;
        let mut delay = 0u64;
        for c in ebml::children(entry.body, entry.offset) {
            let c = c.map_err(|e| malformed(entry.offset, e))?;
            match c.id {
                ID_TRACK_NUMBER => number = uint(c.body).unwrap_or(0),
                ID_TRACK_TYPE => kind = uint(c.body).unwrap_or(0),
                ID_CODEC_ID => codec_id = std::str::from_utf8(c.body).unwrap_or("?"),
                ID_CODEC_PRIVATE => private = c.body,
                ID_CONTENT_ENCODINGS => encoded = true,
                ID_CODEC_NAME => marked_annexb = c.body == ANNEXB_MARKER,
                ID_CODEC_DELAY => delay = uint(c.body).unwrap_or(0),
                ID_VIDEO => {
                    for v in ebml::children(c.body, c.offset) {
                        let v = v.map_err(|e| malformed(c.offset, e))?;
                        match v.id {
                            ID_PIXEL_WIDTH => width = uint(v.body).unwrap_or(0),
                            ID_PIXEL_HEIGHT => height = uint(v.body).unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let codec_id = codec_id.trim_end_matches('\0');
        let track_kind = match kind {
            1 => TrackKind::Video,
            2 => TrackKind::Audio,
            _ => continue, // subtitles, metadata
        };
        if encoded {
            return Err(DemuxError::UnsupportedCodec {
                fourcc: format!("{codec_id} (encrypted or compressed)"),
            });
        }
        let first_of_kind = !found.iter().any(|(t, _, _)| t.kind == track_kind);
        let (codec, timescale) = match (track_kind, codec_id) {
            (TrackKind::Video, "V_MPEG4/ISO/AVC") => {
                let w = u16::try_from(width).unwrap_or(0);
                let h = u16::try_from(height).unwrap_or(0);
                let codec = if private.is_empty() {
                    // Chromium: Annex B frames, parameter sets in-band; avcC comes later.
                    if first_of_kind {
                        video_annexb = true;
                        video_pending = true;
                    }
                    Codec::H264 {
                        avcc: Bytes::new(),
                        width: w,
                        height: h,
                    }
                } else {
                    if first_of_kind {
                        video_annexb = marked_annexb;
                    }
                    avc_codec_from_record(private, w, h)
                        .map_err(|r| malformed(entry.offset, format!("CodecPrivate: {r}")))?
                };
                (codec, WEBM_VIDEO_TIMESCALE)
            }
            (TrackKind::Audio, "A_OPUS") => (opus_head(private, entry.offset)?, 48_000),
            (_, other) => {
                return Err(DemuxError::UnsupportedCodec {
                    fourcc: other.to_string(),
                })
            }
        };
        if number == 0 {
            return Err(malformed(entry.offset, "TrackEntry without a TrackNumber"));
        }
        if !first_of_kind {
            continue; // at most one track of each kind: the first
        }
        found.push((
            Track {
                kind: track_kind,
                codec,
                timescale,
            },
            number,
            delay,
        ));
    }
    if found.is_empty() {
        return Err(DemuxError::NoMediaTracks);
    }
    found.sort_by_key(|(t, _, _)| t.kind);
    let mut tracks = Vec::new();
    let mut numbers = Vec::new();
    let mut delays = Vec::new();
    for (t, n, d) in found {
        tracks.push(t);
        numbers.push(n);
        delays.push(d);
    }
    Ok(ParsedTracks {
        tracks,
        numbers,
        delays,
        video_annexb,
        video_pending,
    })
}

/// Writes an element with an 8-byte size field.
fn put_element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    let id_bytes = id.to_be_bytes();
    let skip = id_bytes.iter().take_while(|&&b| b == 0).count();
    out.extend_from_slice(&id_bytes[skip..]);
    out.push(0x01);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    out.extend_from_slice(body);
}

/// The header `orig` with the video TrackEntry carrying `avcc` as CodecPrivate and the
/// [`ANNEXB_MARKER`] CodecName, so that a resumed reader needs nothing else.
pub(crate) fn header_with_avcc(
    orig: &[u8],
    h: &WebmHeader,
    avcc: &[u8],
) -> Result<Vec<u8>, DemuxError> {
    let video_number = h
        .tracks
        .iter()
        .zip(&h.numbers)
        .find(|(t, _)| t.kind == TrackKind::Video)
        .map(|(_, &n)| n);
    let at = h.tracks_offset;
    let th = read_header(&orig[at..])
        .map_err(|e| malformed(at as u64, e))?
        .ok_or_else(|| malformed(at as u64, "Tracks header"))?;
    let body = &orig[at + th.len..h.len];
    let mut tracks = Vec::new();
    for entry in ebml::children(body, (at + th.len) as u64) {
        let entry = entry.map_err(|e| malformed(at as u64, e))?;
        let is_video = entry.id == ID_TRACK_ENTRY
            && ebml::children(entry.body, entry.offset)
                .filter_map(Result::ok)
                .any(|c| c.id == ID_TRACK_NUMBER && uint(c.body) == video_number);
        if !is_video {
            put_element(&mut tracks, entry.id, entry.body);
            continue;
        }
        let mut e = Vec::new();
        for c in ebml::children(entry.body, entry.offset) {
            let c = c.map_err(|e| malformed(entry.offset, e))?;
            if c.id != ID_CODEC_PRIVATE && c.id != ID_CODEC_NAME {
                put_element(&mut e, c.id, c.body);
            }
        }
        put_element(&mut e, ID_CODEC_PRIVATE, avcc);
        put_element(&mut e, ID_CODEC_NAME, ANNEXB_MARKER);
        put_element(&mut tracks, ID_TRACK_ENTRY, &e);
    }
    let mut out = orig[..at].to_vec();
    put_element(&mut out, ID_TRACKS, &tracks);
    Ok(out)
}

/// Splits an Annex B byte stream (ITU-T H.264 Annex B) into NAL units.
fn annexb_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| s - 3)
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter_map(move |(s, e)| {
        // Trailing zeros belong to the next start code (00 00 00 01) or are trailing_zero_8bits.
        let mut e = e;
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        (e > s).then(|| &data[s..e])
    })
}

/// Annex B → 4-byte length-prefixed NAL units (ISO/IEC 14496-15 §5.3.2 sample format).
fn annexb_to_length_prefixed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    for nal in annexb_nals(data) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) from the SPS and PPS of an
/// Annex B keyframe, with 4-byte NAL lengths; `None` without both.
fn avcc_from_annexb(data: &[u8]) -> Option<Vec<u8>> {
    let sps = annexb_nals(data).find(|n| n[0] & 0x1f == 7)?;
    let pps = annexb_nals(data).find(|n| n[0] & 0x1f == 8)?;
    if sps.len() < 4 {
        return None;
    }
    let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    r.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    r.extend_from_slice(pps);
    Some(r)
}

/// OpusHead (RFC 7845 §5.1), Matroska's A_OPUS CodecPrivate.
fn opus_head(p: &[u8], offset: u64) -> Result<Codec, DemuxError> {
    if p.len() < 19 || &p[..8] != b"OpusHead" {
        return Err(malformed(offset, "A_OPUS CodecPrivate is not an OpusHead"));
    }
    if p[18] != 0 {
        return Err(DemuxError::UnsupportedCodec {
            fourcc: format!("A_OPUS (channel mapping family {})", p[18]),
        });
    }
    Ok(Codec::Opus {
        channels: p[9],
        pre_skip: u16::from_le_bytes([p[10], p[11]]),
        input_sample_rate: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
    })
}

/// The state a WebM continuation needs between chunks.
#[derive(Clone, Debug)]
pub(crate) struct WebmStream {
    pub header: WebmHeader,
    /// Timestamp of the Cluster being read (`None` before the first Cluster Timestamp).
    pub cluster_ts: Option<u64>,
    /// Time of the last video frame, to refuse B-frames (see the module docs).
    pub last_video_dts: Option<i64>,
}

/// What one pass over the buffered bytes produced.
pub(crate) struct Fed {
    pub frames: Vec<MediaFrame>,
    /// Bytes fully handled (the rest waits for more input).
    pub consumed: usize,
    /// Bytes of an element being skipped that lie beyond the buffer.
    pub skip: u64,
}

impl WebmStream {
    /// Handles every complete element of `buf` (whose first byte is at stream offset `base`).
    pub fn feed(&mut self, buf: &[u8], base: u64, max_element: u64) -> Result<Fed, DemuxError> {
        let mut frames = Vec::new();
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = base + pos as u64;
            let Some(h) = read_header(&buf[pos..]).map_err(|e| malformed(at, e))? else {
                break;
            };
            match h.id {
                ID_CLUSTER => {
                    self.cluster_ts = None;
                    pos += h.len;
                    continue;
                }
                ID_EBML | ID_SEGMENT => {
                    return Err(malformed(
                        at,
                        "a new WebM header inside a continuation (start a new stream header)",
                    ))
                }
                _ => {}
            }
            if !SEGMENT_LEVEL_IDS.contains(&h.id) {
                return Err(malformed(
                    at,
                    format!(
                        "element {:#x} cannot appear in a Segment or Cluster (a chunk out of sequence?)",
                        h.id
                    ),
                ));
            }
            let size = h
                .size
                .ok_or_else(|| malformed(at, format!("element {:#x} of unknown size", h.id)))?;
            let whole = (h.len as u64).saturating_add(size);
            let is_media = matches!(h.id, ID_TIMESTAMP | ID_SIMPLE_BLOCK | ID_BLOCK_GROUP);
            if whole > (buf.len() - pos) as u64 {
                if !is_media {
                    // Skip what is there and the rest as it arrives (Cues, Tags, Void).
                    return Ok(Fed {
                        frames,
                        consumed: buf.len(),
                        skip: whole - (buf.len() - pos) as u64,
                    });
                }
                if size > max_element {
                    return Err(DemuxError::LimitExceeded {
                        offset: at,
                        what: "WebM block size",
                        value: size,
                        limit: max_element,
                    });
                }
                break;
            }
            let body = &buf[pos + h.len..pos + whole as usize];
            match h.id {
                ID_TIMESTAMP => {
                    self.cluster_ts =
                        Some(uint(body).ok_or_else(|| malformed(at, "bad Cluster Timestamp"))?);
                }
                ID_SIMPLE_BLOCK => {
                    frames.extend(self.block(body, at, None)?);
                }
                ID_BLOCK_GROUP => {
                    let mut block = None;
                    let mut referenced = false;
                    for c in ebml::children(body, at + h.len as u64) {
                        let c = c.map_err(|e| malformed(at, e))?;
                        match c.id {
                            ID_BLOCK => block = Some(c.body),
                            ID_REFERENCE_BLOCK => referenced = true,
                            _ => {}
                        }
                    }
                    let block = block.ok_or_else(|| malformed(at, "BlockGroup without a Block"))?;
                    frames.extend(self.block(block, at, Some(!referenced))?);
                }
                _ => {}
            }
            pos += whole as usize;
        }
        Ok(Fed {
            frames,
            consumed: pos,
            skip: 0,
        })
    }

    /// A (Simple)Block body → a frame of one of our tracks (`None` for other tracks).
    /// `keyframe` is given for a Block in a BlockGroup (no ReferenceBlock = key); a SimpleBlock
    /// says it in its flags.
    fn block(
        &mut self,
        b: &[u8],
        at: u64,
        keyframe: Option<bool>,
    ) -> Result<Option<MediaFrame>, DemuxError> {
        let (number, n) =
            read_track_number(b).ok_or_else(|| malformed(at, "bad block track number"))?;
        let Some(idx) = self.header.numbers.iter().position(|&x| x == number) else {
            return Ok(None);
        };
        let head = b
            .get(n..n + 3)
            .ok_or_else(|| malformed(at, "block shorter than its header"))?;
        let rel = i16::from_be_bytes([head[0], head[1]]);
        let flags = head[2];
        if flags & 0x06 != 0 {
            return Err(malformed(at, "laced blocks are not supported"));
        }
        let cluster = self
            .cluster_ts
            .ok_or_else(|| malformed(at, "block before its Cluster Timestamp"))?;
        let kind = self.header.tracks[idx].kind;
        let key = match kind {
            TrackKind::Audio => true,
            TrackKind::Video => keyframe.unwrap_or(flags & 0x80 != 0),
        };
        let payload = &b[n + 3..];
        let data = if kind == TrackKind::Video && self.header.video_annexb {
            if self.header.video_pending {
                let avcc = if key { avcc_from_annexb(payload) } else { None };
                let Some(avcc) = avcc else {
                    // Nothing decodable before the first keyframe with SPS and PPS.
                    return Ok(None);
                };
                if let Codec::H264 { width, height, .. } = self.header.tracks[idx].codec {
                    self.header.tracks[idx].codec = avc_codec_from_record(&avcc, width, height)
                        .map_err(|r| malformed(at, format!("in-band SPS/PPS: {r}")))?;
                }
                self.header.video_pending = false;
            }
            Bytes::from(annexb_to_length_prefixed(payload))
        } else {
            Bytes::copy_from_slice(payload)
        };
        let track = &self.header.tracks[idx];
        let units = i128::from(cluster) + i128::from(rel);
        // CodecDelay (Opus pre-skip) is subtracted from every block time (Matroska §CodecDelay).
        let delay = self.header.delays.get(idx).copied().unwrap_or(0);
        let ns = units * i128::from(self.header.timestamp_scale) - i128::from(delay);
        let den = 1_000_000_000i128;
        let num = ns * i128::from(track.timescale);
        let ticks = (num + den / 2).div_euclid(den);
        let dts = i64::try_from(ticks).map_err(|_| malformed(at, "block time out of range"))?;
        if kind == TrackKind::Video {
            if self.last_video_dts.is_some_and(|last| dts < last) {
                return Err(malformed(
                    at,
                    "video block times go backwards: H.264 with B-frames in WebM/Matroska \
                     (no decode times) is not supported",
                ));
            }
            self.last_video_dts = Some(dts);
        }
        Ok(Some(MediaFrame {
            kind,
            dts,
            cts_offset: 0,
            duration: None,
            keyframe: key,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_conversion() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        assert_eq!(
            annexb_to_length_prefixed(&data),
            vec![0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 4, 5]
        );
        let sps = [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x15, 0x8c];
        let pps = [0, 0, 1, 0x68, 0xce];
        let r = avcc_from_annexb(&[&sps[..], &pps[..]].concat()).unwrap();
        assert_eq!(
            r,
            vec![
                1, 0x42, 0xc0, 0x15, 0xff, 0xe1, 0, 5, 0x67, 0x42, 0xc0, 0x15, 0x8c, 1, 0, 2, 0x68,
                0xce
            ]
        );
        assert_eq!(avcc_from_annexb(&sps), None);
        assert_eq!(annexb_to_length_prefixed(&[0, 0, 0]), Vec::<u8>::new());
    }
}
