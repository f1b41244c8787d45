//! Chunked uploads from browsers' MediaRecorder (`recorder.start(timeslice)`): the first chunk
//! holds the header (fMP4 `ftyp`+`moov`, or WebM EBML header + Tracks) and usually some media;
//! every later chunk holds only fragments (`moof`+`mdat`) or Cluster data, and may start or end
//! anywhere inside a box or element (Chromium 156's WebM blobs start inside a SimpleBlock
//! header; its fMP4 blobs happen to end on fragment boundaries).
//!
//! [`ContinuationDemuxer`] is sans-IO: chunks go in, frames come out. What a chunk leaves
//! unfinished is kept and joined to the next chunk. Between requests the server persists two
//! byte strings, [`ContinuationDemuxer::header_bytes`] (once) and
//! [`ContinuationDemuxer::carry`] (after every chunk), and rebuilds the reader with
//! [`ContinuationDemuxer::resume`]; resuming and feeding the next chunk gives exactly the frames
//! an uninterrupted reader would have given.
//!
//! A chunk that fails leaves the reader unchanged, so a corrected retry can follow.
//!
//! Timestamps: fMP4 tracks keep their `mdhd` timescale and the `moov` edit-list shift of
//! [`super::mp4`]; negative composition offsets are passed on as they are (a live reader cannot
//! know the stream's most negative offset in advance). WebM: see [`super::webm`].

use super::boxes::{fourcc_str, read_header_fields, RawBox};
use super::fragment::{expand_moof, FragTrack};
use super::mp4::{read_moov, Limits, SampleRef};
use super::webm::{self, WebmStream, ID_EBML};
use super::DemuxError;
use bytes::Bytes;
use packager::{MediaFrame, Track, TrackKind};

/// Which container a stream's chunks are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerFormat {
    Fmp4,
    WebM,
}

/// What an uploaded chunk looks like on its own, to pick a reader for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// An MP4/MOV with a `moov` that has no `mvex` (or whose `moov` is not in this chunk):
    /// index it whole with [`super::index_mp4`].
    Mp4File,
    /// An fMP4 init segment (`moov` with `mvex`), maybe followed by fragments: the first chunk
    /// of a [`ContinuationDemuxer`] stream (a new one mid-stream means a new header).
    Fmp4Init,
    /// An EBML header: the first chunk of a WebM stream (a new one mid-stream: a new header).
    WebmHeader,
    /// Anything else: fragments, clusters, or bytes from the middle of either; only meaningful
    /// after a header.
    Continuation,
}

/// Classifies a chunk by its first bytes (and, for MP4, its top-level boxes).
pub fn classify_chunk(bytes: &[u8]) -> ChunkKind {
    if bytes.starts_with(&ID_EBML.to_be_bytes()) {
        return ChunkKind::WebmHeader;
    }
    let mut pos = 0usize;
    let mut first = true;
    while let Some((kind, header_len, size)) = bytes.get(pos..).and_then(read_header_fields) {
        if first
            && !matches!(
                &kind,
                b"ftyp" | b"moov" | b"free" | b"skip" | b"wide" | b"mdat"
            )
        {
            return ChunkKind::Continuation;
        }
        first = false;
        let size = size.unwrap_or((bytes.len() - pos) as u64);
        if &kind == b"moov" {
            let body = bytes.get(pos + header_len..).unwrap_or_default();
            let body = body
                .get(..(size as usize).saturating_sub(header_len))
                .unwrap_or(body);
            let has_mvex = super::boxes::children(body, 0, "moov")
                .map_while(Result::ok)
                .any(|c| &c.kind == b"mvex");
            return if has_mvex {
                ChunkKind::Fmp4Init
            } else {
                ChunkKind::Mp4File
            };
        }
        if size < header_len as u64 {
            break;
        }
        pos = match usize::try_from(size).ok().and_then(|s| pos.checked_add(s)) {
            Some(p) => p,
            None => break,
        };
    }
    if first {
        ChunkKind::Continuation
    } else {
        ChunkKind::Mp4File
    }
}

/// One fMP4 track's reading state.
#[derive(Clone, Debug)]
struct FragState {
    track_id: u32,
    kind: TrackKind,
    timescale: u32,
    shift: i64,
    next_dts: u64,
}

#[derive(Clone, Debug)]
struct Fmp4Stream {
    tracks: Vec<FragState>,
    trex: Vec<mp4_atom::Trex>,
}

#[derive(Clone, Debug)]
enum Reader {
    Fmp4(Fmp4Stream),
    WebM(WebmStream),
}

/// Reads one stream's chunks in sequence order. See the module docs.
#[derive(Clone, Debug)]
pub struct ContinuationDemuxer {
    tracks: Vec<Track>,
    header: Vec<u8>,
    reader: Reader,
    /// Unfinished bytes, the first of which is at stream offset `pos`.
    pending: Vec<u8>,
    pos: u64,
    /// Bytes still to drop from the input (the end of a skipped box/element).
    skip: u64,
    carry: Vec<u8>,
    limits: Limits,
}

/// Largest unfinished box/element kept between chunks (a moof with its samples, a block).
pub const MAX_PENDING: usize = 64 << 20;

/// Most samples one `moof` may describe (a MediaRecorder fragment holds about a second).
pub const MAX_FRAGMENT_SAMPLES: usize = 100_000;

const CARRY_MAGIC: &[u8; 8] = b"STFCARY2";

impl ContinuationDemuxer {
    /// Starts a stream from its first chunk, which must hold the whole header; returns the
    /// frames of whatever media follows the header in that chunk.
    ///
    /// WebM from Chromium has no H.264 CodecPrivate: its first chunk must then also hold the
    /// first video keyframe (it always does: MediaRecorder starts with one), whose SPS/PPS
    /// become the avcC, and [`Self::header_bytes`] is the header rewritten to carry it.
    pub fn new_from_header(first_chunk: &[u8]) -> Result<(Self, Vec<MediaFrame>), DemuxError> {
        let mut d = Self::from_header_only(first_chunk)?;
        let rest = &first_chunk[d.header.len()..];
        let frames = d.push_chunk(rest)?;
        if let Reader::WebM(w) = &d.reader {
            if w.header.video_pending {
                return Err(DemuxError::Truncated {
                    offset: first_chunk.len() as u64,
                    what: "first H.264 keyframe with SPS/PPS (the WebM track has no CodecPrivate)"
                        .into(),
                    needed: first_chunk.len() as u64 + 1,
                    available: first_chunk.len() as u64,
                });
            }
            if w.header.video_annexb {
                let avcc = match w.header.tracks.iter().find(|t| t.kind == TrackKind::Video) {
                    Some(Track {
                        codec: packager::Codec::H264 { avcc, .. },
                        ..
                    }) => avcc.clone(),
                    _ => Bytes::new(),
                };
                d.header = webm::header_with_avcc(&d.header, &w.header, &avcc)?;
                d.tracks = w.header.tracks.clone();
            }
        }
        Ok((d, frames))
    }

    /// Builds the reader from the header at the start of `bytes`; nothing after it is read.
    fn from_header_only(bytes: &[u8]) -> Result<Self, DemuxError> {
        let (tracks, header_len, reader) = if bytes.starts_with(&ID_EBML.to_be_bytes()) {
            let h = webm::parse_header(bytes)?;
            let len = h.len;
            (
                h.tracks.clone(),
                len,
                Reader::WebM(WebmStream {
                    header: h,
                    cluster_ts: None,
                    last_video_dts: None,
                }),
            )
        } else {
            fmp4_header(bytes)?
        };
        let header = bytes[..header_len].to_vec();
        let mut d = ContinuationDemuxer {
            tracks,
            header,
            reader,
            pending: Vec::new(),
            pos: header_len as u64,
            skip: 0,
            carry: Vec::new(),
            limits: Limits::default(),
        };
        d.carry = d.encode_carry();
        Ok(d)
    }

    /// Rebuilds a reader from what [`Self::header_bytes`] and [`Self::carry`] returned.
    pub fn resume(header: &[u8], carry: &[u8]) -> Result<Self, DemuxError> {
        let mut d = Self::from_header_only(header)?;
        if d.header.len() != header.len() {
            return Err(DemuxError::malformed(
                "carry",
                0,
                "stored header has bytes after the header",
            ));
        }
        d.decode_carry(carry).ok_or_else(|| {
            DemuxError::malformed("carry", 0, "stored carry does not fit this header")
        })?;
        d.carry = carry.to_vec();
        Ok(d)
    }

    /// The stream's tracks (video first).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub fn format(&self) -> ContainerFormat {
        match self.reader {
            Reader::Fmp4(_) => ContainerFormat::Fmp4,
            Reader::WebM(_) => ContainerFormat::WebM,
        }
    }

    /// The header bytes (fMP4: everything up to the end of `moov`; WebM: up to the end of
    /// Tracks), to persist once per stream.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// What to persist after every chunk: the unfinished bytes plus the few counters the next
    /// chunk needs (stream offset, bytes left to skip, WebM cluster timestamp, fMP4 next decode
    /// times). Opaque and versioned; only [`Self::resume`] reads it.
    pub fn carry(&self) -> &[u8] {
        &self.carry
    }

    /// The raw unfinished bytes alone (diagnostics).
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    /// Feeds the next chunk; returns the frames it completed, in decode order.
    /// On error the reader is unchanged.
    pub fn push_chunk(&mut self, chunk: &[u8]) -> Result<Vec<MediaFrame>, DemuxError> {
        let mut next = self.clone();
        let frames = next.push_inner(chunk)?;
        next.carry = next.encode_carry();
        *self = next;
        Ok(frames)
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<Vec<MediaFrame>, DemuxError> {
        let mut chunk = chunk;
        if self.skip > 0 {
            let n = chunk
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            chunk = &chunk[n..];
            self.skip -= n as u64;
            self.pos += n as u64;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let base = self.pos;
        let (frames, consumed, skip) = match &mut self.reader {
            Reader::WebM(w) => {
                let fed = w.feed(&buf, base, MAX_PENDING as u64)?;
                (fed.frames, fed.consumed, fed.skip)
            }
            Reader::Fmp4(f) => f.feed(&buf, base, &self.limits)?,
        };
        let left = buf.len() - consumed;
        if left > MAX_PENDING {
            return Err(DemuxError::LimitExceeded {
                offset: base + consumed as u64,
                what: "unfinished bytes carried between chunks",
                value: left as u64,
                limit: MAX_PENDING as u64,
            });
        }
        buf.drain(..consumed);
        self.pending = buf;
        self.pos = base + consumed as u64;
        self.skip = skip;
        if skip > 0 {
            debug_assert!(self.pending.is_empty());
        }
        Ok(frames)
    }

    fn encode_carry(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(64 + self.pending.len());
        c.extend_from_slice(CARRY_MAGIC);
        c.extend_from_slice(&self.pos.to_be_bytes());
        c.extend_from_slice(&self.skip.to_be_bytes());
        match &self.reader {
            Reader::WebM(w) => {
                c.push(b'W');
                c.extend_from_slice(&w.cluster_ts.map_or(u64::MAX, |t| t).to_be_bytes());
                c.push(u8::from(w.cluster_ts.is_some()));
                c.extend_from_slice(&w.last_video_dts.map_or(i64::MIN, |t| t).to_be_bytes());
                c.push(u8::from(w.last_video_dts.is_some()));
            }
            Reader::Fmp4(f) => {
                c.push(b'M');
                c.push(f.tracks.len() as u8);
                for t in &f.tracks {
                    c.extend_from_slice(&t.next_dts.to_be_bytes());
                }
            }
        }
        c.extend_from_slice(&self.pending);
        c
    }

    fn decode_carry(&mut self, c: &[u8]) -> Option<()> {
        let u64_at = |i: usize| {
            c.get(i..i + 8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
        };
        if c.get(..8)? != CARRY_MAGIC {
            return None;
        }
        self.pos = u64_at(8)?;
        self.skip = u64_at(16)?;
        let rest = match &mut self.reader {
            Reader::WebM(w) => {
                if *c.get(24)? != b'W' {
                    return None;
                }
                let ts = u64_at(25)?;
                w.cluster_ts = (*c.get(33)? == 1).then_some(ts);
                let last = u64_at(34)? as i64;
                w.last_video_dts = (*c.get(42)? == 1).then_some(last);
                43
            }
            Reader::Fmp4(f) => {
                if *c.get(24)? != b'M' || usize::from(*c.get(25)?) != f.tracks.len() {
                    return None;
                }
                for (i, t) in f.tracks.iter_mut().enumerate() {
                    t.next_dts = u64_at(26 + 8 * i)?;
                }
                26 + 8 * f.tracks.len()
            }
        };
        self.pending = c.get(rest..)?.to_vec();
        Some(())
    }
}

/// Parses an fMP4 header (boxes up to and including `moov`) at the start of `bytes`.
fn fmp4_header(bytes: &[u8]) -> Result<(Vec<Track>, usize, Reader), DemuxError> {
    let mut pos = 0usize;
    loop {
        let Some((kind, header_len, size)) = bytes.get(pos..).and_then(read_header_fields) else {
            return Err(if pos == 0 {
                DemuxError::NotMp4 {
                    reason: "neither an MP4 box nor an EBML header".into(),
                }
            } else {
                DemuxError::Truncated {
                    offset: pos as u64,
                    what: "fMP4 header (no moov box yet)".into(),
                    needed: pos as u64 + 8,
                    available: bytes.len() as u64,
                }
            });
        };
        if pos == 0 && !matches!(&kind, b"ftyp" | b"moov" | b"free" | b"skip" | b"styp") {
            return Err(DemuxError::NotMp4 {
                reason: format!("first box type is {:?}", fourcc_str(kind)),
            });
        }
        let size = size.ok_or_else(|| {
            DemuxError::malformed(
                &fourcc_str(kind),
                pos as u64,
                "box of unknown size in a header",
            )
        })?;
        if size < header_len as u64 {
            return Err(DemuxError::malformed(
                &fourcc_str(kind),
                pos as u64,
                "box smaller than its header",
            ));
        }
        let end = (pos as u64).saturating_add(size);
        if end > bytes.len() as u64 {
            return Err(DemuxError::Truncated {
                offset: pos as u64,
                what: format!("{} box of the header", fourcc_str(kind)),
                needed: end,
                available: bytes.len() as u64,
            });
        }
        let end = end as usize;
        if &kind == b"moov" {
            let moov = RawBox {
                kind,
                offset: pos as u64,
                header_len,
                body: &bytes[pos + header_len..end],
            };
            let mut budget = Limits::default().max_samples;
            let movie = read_moov(&moov, bytes.len() as u64, &Limits::default(), &mut budget)?;
            if let Some(fourcc) = movie.unsupported.first() {
                return Err(DemuxError::UnsupportedCodec {
                    fourcc: fourcc.clone(),
                });
            }
            if movie.trex.is_empty() {
                return Err(DemuxError::malformed(
                    "moov",
                    pos as u64,
                    "no mvex/trex: not a fragmented MP4 init segment (index it as a whole file)",
                ));
            }
            if movie.tracks.iter().any(|t| !t.samples.is_empty()) {
                return Err(DemuxError::malformed(
                    "moov",
                    pos as u64,
                    "samples in moov: only empty-moov fragmented MP4 can be read in chunks",
                ));
            }
            let tracks = movie.tracks.iter().map(|t| t.track.clone()).collect();
            let states = movie
                .tracks
                .iter()
                .map(|t| FragState {
                    track_id: t.track_id,
                    kind: t.track.kind,
                    timescale: t.track.timescale,
                    shift: t.shift,
                    next_dts: 0,
                })
                .collect();
            return Ok((
                tracks,
                end,
                Reader::Fmp4(Fmp4Stream {
                    tracks: states,
                    trex: movie.trex,
                }),
            ));
        }
        pos = end;
    }
}

impl Fmp4Stream {
    /// Handles every complete top-level box of `buf` (first byte at stream offset `base`):
    /// returns the frames, the bytes consumed and the bytes still to skip past the buffer.
    fn feed(
        &mut self,
        buf: &[u8],
        base: u64,
        limits: &Limits,
    ) -> Result<(Vec<MediaFrame>, usize, u64), DemuxError> {
        let mut frames = Vec::new();
        let mut pos = 0usize;
        while let Some((kind, header_len, size)) = buf.get(pos..).and_then(read_header_fields) {
            let at = base + pos as u64;
            let name = fourcc_str(kind);
            let size = size.ok_or_else(|| {
                DemuxError::malformed(&name, at, "box of unknown size (size 0) in a live stream")
            })?;
            if size < header_len as u64 {
                return Err(DemuxError::malformed(
                    &name,
                    at,
                    "box smaller than its header",
                ));
            }
            let avail = (buf.len() - pos) as u64;
            match &kind {
                b"moov" | b"ftyp" => {
                    return Err(DemuxError::malformed(
                        &name,
                        at,
                        "a new init segment inside a continuation (start a new stream header)",
                    ))
                }
                b"moof" => {
                    if size > avail {
                        if size > MAX_PENDING as u64 {
                            return Err(DemuxError::LimitExceeded {
                                offset: at,
                                what: "moof size",
                                value: size,
                                limit: MAX_PENDING as u64,
                            });
                        }
                        break;
                    }
                    let moof = RawBox {
                        kind,
                        offset: at,
                        header_len,
                        body: &buf[pos + header_len..pos + size as usize],
                    };
                    match self.moof(&moof, buf, base, limits)? {
                        Some(mut f) => frames.append(&mut f),
                        None => break, // its samples are not all here yet
                    }
                    pos += size as usize;
                }
                b"mdat" | b"styp" | b"sidx" | b"ssix" | b"prft" | b"emsg" | b"free" | b"skip"
                | b"mfra" | b"uuid" | b"meta" => {
                    // mdat (its samples were taken with the moof) and boxes we do not need.
                    if size > avail {
                        return Ok((frames, buf.len(), size - avail));
                    }
                    pos += size as usize;
                }
                _ => {
                    return Err(DemuxError::malformed(
                        &name,
                        at,
                        "not a box of a fragmented MP4 stream (a chunk out of sequence?)",
                    ))
                }
            }
        }
        Ok((frames, pos, 0))
    }

    /// Reads one complete moof whose samples are in `buf`; `None` if some are not there yet.
    fn moof(
        &mut self,
        moof: &RawBox<'_>,
        buf: &[u8],
        base: u64,
        limits: &Limits,
    ) -> Result<Option<Vec<MediaFrame>>, DemuxError> {
        let end = base + buf.len() as u64;
        let mut outs: Vec<Vec<SampleRef>> = vec![Vec::new(); self.tracks.len()];
        let selected: Vec<u32> = self.tracks.iter().map(|t| t.track_id).collect();
        let mut frag: Vec<FragTrack<'_>> = self
            .tracks
            .iter()
            .zip(outs.iter_mut())
            .map(|(t, out)| FragTrack {
                track_id: t.track_id,
                kind: t.kind,
                trex: self.trex.iter().find(|x| x.track_id == t.track_id),
                next_dts: t.next_dts,
                out: Some(out),
            })
            .collect();
        frag.extend(
            self.trex
                .iter()
                .filter(|x| !selected.contains(&x.track_id))
                .map(|x| FragTrack {
                    track_id: x.track_id,
                    kind: TrackKind::Audio,
                    trex: Some(x),
                    next_dts: 0,
                    out: None,
                }),
        );
        // One fragment holds a few seconds; and no more samples than there are bytes.
        let limits = Limits {
            max_samples: MAX_FRAGMENT_SAMPLES.min(buf.len()),
            ..limits.clone()
        };
        let mut budget = limits.max_samples;
        match expand_moof(moof, &mut frag, end, &limits, &mut budget) {
            Ok(()) => {}
            Err(DemuxError::Truncated { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let next: Vec<u64> = frag.iter().map(|f| f.next_dts).collect();
        drop(frag);
        let mut per_track = Vec::new();
        for ((t, n), samples) in self.tracks.iter_mut().zip(next).zip(outs) {
            t.next_dts = n;
            let mut frames = Vec::with_capacity(samples.len());
            for s in samples {
                let start = s.offset.checked_sub(base).ok_or_else(|| {
                    DemuxError::malformed(
                        "trun",
                        moof.offset,
                        "sample data before the moof's chunk",
                    )
                })?;
                let range = start as usize..start as usize + s.size as usize;
                frames.push(MediaFrame {
                    kind: s.kind,
                    dts: s.dts.saturating_add(t.shift),
                    cts_offset: s.cts_offset,
                    duration: Some(s.duration),
                    keyframe: s.keyframe,
                    data: Bytes::copy_from_slice(&buf[range]),
                });
            }
            per_track.push((t.timescale, frames));
        }
        Ok(Some(merge_frames(per_track)))
    }
}

/// Interleaves per-track frame lists by decode time, keeping each track's order.
fn merge_frames(mut lists: Vec<(u32, Vec<MediaFrame>)>) -> Vec<MediaFrame> {
    if lists.len() < 2 {
        return lists.pop().map(|(_, f)| f).unwrap_or_default();
    }
    let (ts_b, b) = lists.pop().unwrap_or_default();
    let (ts_a, a) = lists.pop().unwrap_or_default();
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut ia, mut ib) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (ia.peek(), ib.peek()) {
            (Some(x), Some(y)) => {
                i128::from(x.dts) * i128::from(ts_b) <= i128::from(y.dts) * i128::from(ts_a)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { ia.next() } else { ib.next() });
    }
    out
}
