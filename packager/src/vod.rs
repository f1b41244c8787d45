//! One progressive MP4 (`ftyp`, `moov` before `mdat`, so a browser `<video>` starts playing
//! before it has the whole file) built from a stream's init and media segments, sans-IO.
//!
//! The builder reads the boxes of each segment (never keeping its payload), records sample tables
//! and where each sample's bytes sit in the segment, and finally lays out `ftyp` + `moov` +
//! `mdat` header plus a list of byte ranges the caller copies from the stored segments in order.
//!
//! Timeline: samples keep their absolute `tfdt`-based decode times; a gap between segments is
//! absorbed into the previous sample's duration, so audio and video stay in sync. Each track gets
//! an edit list (ISO/IEC 14496-12 §8.6.6) so the movie starts at 0 with its first shown frame:
//! an empty edit if the track starts later than the other, then an edit that skips the B-frame
//! composition delay of video.
//!
//! Several inits with the same sample entry share one `stsd` entry; different ones (a
//! resolution change after a reconnect) become further entries selected through `stsc`.
//! A track's timescale is the one of its first init; later inits' times are rescaled.

use mp4_atom::{
    AnySampleGroupEntry, Atom, Co64, Codec as SampleEntry, Ctts, CttsEntry, Decode, Edts, Elst,
    ElstEntry, Encode, FixedPoint, FourCC, Header, Mdat, Moof, Moov, Sbgp, SbgpEntry, Sgpd,
    SgpdEntry, Stbl, Stco, Stsc, StscEntry, Stsd, Stss, Stsz, StszSamples, Stts, SttsEntry,
};

use crate::fmp4::{self, MOVIE_TIMESCALE};
use crate::media::TrackKind;

/// Why a VOD could not be built. Offsets are byte offsets in the segment or init given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VodError {
    #[error("init {init_id}: box at offset {offset}: {source}")]
    InitBox {
        init_id: u32,
        offset: u64,
        source: mp4_atom::Error,
    },
    #[error("init {init_id}: no {fourcc} box")]
    InitMissing { init_id: u32, fourcc: FourCC },
    #[error("init {init_id}: track {track_id} has handler {handler}, neither vide nor soun")]
    UnsupportedHandler {
        init_id: u32,
        track_id: u32,
        handler: FourCC,
    },
    #[error("segment {segment}: unknown init {init_id}")]
    UnknownInit { segment: usize, init_id: u32 },
    #[error("segment {segment}: box at offset {offset}: {source}")]
    SegmentBox {
        segment: usize,
        offset: u64,
        source: mp4_atom::Error,
    },
    #[error("segment {segment}: traf of track {track_id}, which init {init_id} does not have")]
    UnknownTrack {
        segment: usize,
        init_id: u32,
        track_id: u32,
    },
    #[error("segment {segment}: samples at offset {offset}, {len} bytes, run past the segment ({segment_len} bytes)")]
    OutOfBounds {
        segment: usize,
        offset: u64,
        len: u64,
        segment_len: u64,
    },
    #[error("segment {segment}: {what}")]
    Unsupported { segment: usize, what: &'static str },
    #[error("no samples")]
    Empty,
    #[error("encoding {fourcc}: {source}")]
    Encode {
        fourcc: FourCC,
        source: mp4_atom::Error,
    },
}

/// The file: `head` first, then each `(segment_index, offset, len)` range of the added segments.
#[derive(Debug, Clone, PartialEq)]
pub struct VodLayout {
    pub head: Vec<u8>,
    pub ranges: Vec<(usize, u64, u64)>,
    pub total_len: u64,
    pub duration_secs: f64,
}

#[derive(Debug, Clone)]
struct InitTrack {
    track_id: u32,
    kind: TrackKind,
    timescale: u32,
    entry: SampleEntry,
    size: (u16, u16),
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Decode time in the output track's timescale.
    dts: u64,
    /// Own duration in the output timescale (used for the last sample only).
    duration: u32,
    cts: i32,
    size: u32,
    sync: bool,
    /// 1-based stsd entry.
    entry: u32,
    /// Chunk number (0-based) within the track.
    chunk: u32,
}

#[derive(Debug, Default)]
struct OutTrack {
    timescale: u32,
    size: (u16, u16),
    entries: Vec<SampleEntry>,
    samples: Vec<Sample>,
    /// Per chunk: index into `ranges` and offset within that range.
    chunks: Vec<(usize, u64)>,
}

/// Builds a progressive MP4 out of fMP4 segments. See the module docs.
#[derive(Debug, Default)]
pub struct VodBuilder {
    inits: Vec<(u32, Vec<InitTrack>)>,
    video: OutTrack,
    audio: OutTrack,
    /// (segment index, offset, len) of every trun's data, in mdat order.
    ranges: Vec<(usize, u64, u64)>,
    segments: usize,
}

const SYNC_NON_SYNC_BIT: u32 = 0x0001_0000;

fn rescale(t: u64, from: u32, to: u32) -> u64 {
    if from == to || from == 0 {
        return t;
    }
    ((u128::from(t) * u128::from(to) + u128::from(from) / 2) / u128::from(from)) as u64
}

fn rescale_i(t: i64, from: u32, to: u32) -> i64 {
    if from == to || from == 0 {
        return t;
    }
    (i128::from(t) * i128::from(to) / i128::from(from)) as i64
}

impl VodBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the tracks of an init segment (`ftyp` + `moov`).
    pub fn add_init(&mut self, init_id: u32, data: &[u8]) -> Result<(), VodError> {
        let mut buf = data;
        let mut moov = None;
        while !buf.is_empty() {
            let offset = (data.len() - buf.len()) as u64;
            let atom = mp4_atom::Any::decode(&mut buf).map_err(|source| VodError::InitBox {
                init_id,
                offset,
                source,
            })?;
            if let mp4_atom::Any::Moov(m) = atom {
                moov = Some(m);
            }
        }
        let moov = moov.ok_or(VodError::InitMissing {
            init_id,
            fourcc: Moov::KIND,
        })?;
        let trex = moov
            .mvex
            .as_ref()
            .map(|m| m.trex.clone())
            .unwrap_or_default();
        let mut tracks = Vec::new();
        for trak in moov.trak {
            let track_id = trak.tkhd.track_id;
            let handler = trak.mdia.hdlr.handler;
            let kind = match &handler.as_ref()[..] {
                b"vide" => TrackKind::Video,
                b"soun" => TrackKind::Audio,
                _ => {
                    return Err(VodError::UnsupportedHandler {
                        init_id,
                        track_id,
                        handler,
                    })
                }
            };
            let entry = trak.mdia.minf.stbl.stsd.codecs.into_iter().next().ok_or(
                VodError::InitMissing {
                    init_id,
                    fourcc: Stsd::KIND,
                },
            )?;
            let size = entry
                .visual()
                .map(|v| (v.width, v.height))
                .unwrap_or((0, 0));
            let t = trex.iter().find(|t| t.track_id == track_id);
            tracks.push(InitTrack {
                track_id,
                kind,
                timescale: trak.mdia.mdhd.timescale.max(1),
                entry,
                size,
                default_duration: t.map_or(0, |t| t.default_sample_duration),
                default_size: t.map_or(0, |t| t.default_sample_size),
                default_flags: t.map_or(0, |t| t.default_sample_flags),
            });
        }
        self.inits.retain(|(id, _)| *id != init_id);
        self.inits.push((init_id, tracks));
        Ok(())
    }

    /// Records one whole media segment (`styp`? `moof` `mdat`, as stored). The layout's
    /// `segment_index` is the 0-based number of this call (a call that fails still counts, and
    /// contributes no range); a failed call leaves the sample tables unchanged.
    pub fn add_segment(&mut self, init_id: u32, segment: &[u8]) -> Result<(), VodError> {
        let index = self.segments;
        self.segments += 1;
        let tracks = self
            .inits
            .iter()
            .find(|(id, _)| *id == init_id)
            .map(|(_, t)| t.clone())
            .ok_or(VodError::UnknownInit {
                segment: index,
                init_id,
            })?;
        let seg_len = segment.len() as u64;
        let mut pos = 0usize;
        let mut moofs = Vec::new();
        while pos < segment.len() {
            let rest = segment.get(pos..).unwrap_or_default();
            let mut peek = rest;
            let header = Header::decode(&mut peek).map_err(|source| VodError::SegmentBox {
                segment: index,
                offset: pos as u64,
                source,
            })?;
            let header_len = rest.len() - peek.len();
            let body_len = header.size.unwrap_or(peek.len());
            let box_len = header_len
                .checked_add(body_len)
                .filter(|l| *l <= rest.len());
            let Some(box_len) = box_len else {
                return Err(VodError::OutOfBounds {
                    segment: index,
                    offset: pos as u64,
                    len: body_len as u64,
                    segment_len: seg_len,
                });
            };
            if header.kind == Moof::KIND {
                let mut b = rest.get(..box_len).unwrap_or_default();
                let moof = Moof::decode(&mut b).map_err(|source| VodError::SegmentBox {
                    segment: index,
                    offset: pos as u64,
                    source,
                })?;
                moofs.push((pos as u64, moof));
            }
            pos += box_len;
        }

        // Parse everything before touching the builder, so a bad segment leaves it unchanged.
        let mut staged: Vec<(TrackKind, Vec<Sample>, u64, u64)> = Vec::new();
        for (moof_pos, moof) in &moofs {
            for traf in &moof.traf {
                let track_id = traf.tfhd.track_id;
                let it = tracks.iter().find(|t| t.track_id == track_id).ok_or(
                    VodError::UnknownTrack {
                        segment: index,
                        init_id,
                        track_id,
                    },
                )?;
                let out = self.track(it.kind);
                let out_ts = if out.timescale == 0 {
                    it.timescale
                } else {
                    out.timescale
                };
                let entry = 1 + out
                    .entries
                    .iter()
                    .position(|e| *e == it.entry)
                    .unwrap_or(out.entries.len()) as u32;
                let base = match traf.tfhd.base_data_offset {
                    Some(b) => b,
                    None => *moof_pos,
                };
                let mut dts = traf.tfdt.as_ref().map(|t| t.base_media_decode_time).ok_or(
                    VodError::Unsupported {
                        segment: index,
                        what: "traf without tfdt",
                    },
                )?;
                for trun in &traf.trun {
                    let data_offset = i64::from(trun.data_offset.unwrap_or(0));
                    let start = i64::try_from(base)
                        .ok()
                        .and_then(|b| b.checked_add(data_offset))
                        .and_then(|s| u64::try_from(s).ok())
                        .ok_or(VodError::OutOfBounds {
                            segment: index,
                            offset: base,
                            len: 0,
                            segment_len: seg_len,
                        })?;
                    let mut samples = Vec::with_capacity(trun.samples.len().min(65_536));
                    let mut len = 0u64;
                    for e in trun.samples.iter() {
                        let duration = e
                            .duration
                            .or(traf.tfhd.default_sample_duration)
                            .unwrap_or(it.default_duration);
                        let size = e
                            .size
                            .or(traf.tfhd.default_sample_size)
                            .unwrap_or(it.default_size);
                        let flags = e
                            .flags
                            .or(traf.tfhd.default_sample_flags)
                            .unwrap_or(it.default_flags);
                        let cts = e.cts.unwrap_or(0);
                        samples.push(Sample {
                            dts: rescale(dts, it.timescale, out_ts),
                            duration: rescale(u64::from(duration), it.timescale, out_ts) as u32,
                            cts: rescale_i(cts, it.timescale, out_ts) as i32,
                            size,
                            sync: it.kind == TrackKind::Audio || flags & SYNC_NON_SYNC_BIT == 0,
                            entry,
                            chunk: 0,
                        });
                        dts = dts.saturating_add(u64::from(duration));
                        len += u64::from(size);
                    }
                    if start.checked_add(len).is_none_or(|end| end > seg_len) {
                        return Err(VodError::OutOfBounds {
                            segment: index,
                            offset: start,
                            len,
                            segment_len: seg_len,
                        });
                    }
                    if !samples.is_empty() {
                        staged.push((it.kind, samples, start, len));
                    }
                }
            }
        }

        for (kind, samples, start, len) in staged {
            let it =
                tracks
                    .iter()
                    .find(|t| t.kind == kind)
                    .cloned()
                    .ok_or(VodError::Unsupported {
                        segment: index,
                        what: "track vanished",
                    })?;
            // Coalesce with the previous range when the bytes follow on (video then audio of
            // one mdat), so the writer does one copy per segment.
            let (range_idx, within) = match self.ranges.last_mut() {
                Some((seg, off, l)) if *seg == index && *off + *l == start => {
                    let within = *l;
                    *l += len;
                    (self.ranges.len() - 1, within)
                }
                _ => {
                    self.ranges.push((index, start, len));
                    (self.ranges.len() - 1, 0)
                }
            };
            let out = self.track_mut(kind);
            if out.timescale == 0 {
                out.timescale = it.timescale;
                out.size = it.size;
            }
            if !out.entries.contains(&it.entry) {
                out.entries.push(it.entry.clone());
            }
            let chunk = out.chunks.len() as u32;
            out.chunks.push((range_idx, within));
            out.samples
                .extend(samples.into_iter().map(|s| Sample { chunk, ..s }));
        }
        Ok(())
    }

    fn track(&self, kind: TrackKind) -> &OutTrack {
        match kind {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        }
    }

    fn track_mut(&mut self, kind: TrackKind) -> &mut OutTrack {
        match kind {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        }
    }

    /// Lays out the file. `head` = `ftyp` + `moov` + `mdat` header.
    pub fn finish(self) -> Result<VodLayout, VodError> {
        let payload: u64 = self.ranges.iter().map(|r| r.2).sum();
        let tracks: Vec<(TrackKind, &OutTrack)> = [
            (TrackKind::Video, &self.video),
            (TrackKind::Audio, &self.audio),
        ]
        .into_iter()
        .filter(|(_, t)| !t.samples.is_empty())
        .collect();
        if tracks.is_empty() {
            return Err(VodError::Empty);
        }

        // Where each track's presentation starts, in seconds; the movie starts at the earliest.
        let starts: Vec<f64> = tracks
            .iter()
            .map(|(_, t)| {
                let first_pts = t
                    .samples
                    .iter()
                    .take(64)
                    .map(|s| s.dts as i128 + i128::from(s.cts))
                    .min()
                    .unwrap_or(0);
                first_pts as f64 / f64::from(t.timescale)
            })
            .collect();
        let movie_start = starts.iter().copied().fold(f64::INFINITY, f64::min);

        let mut mdat_header = Vec::new();
        Header {
            kind: Mdat::KIND,
            size: Some(usize::try_from(payload).unwrap_or(usize::MAX)),
        }
        .encode(&mut mdat_header)
        .map_err(enc(Mdat::KIND))?;

        // Offsets depend on the head's length, which depends on stco vs co64: build once with
        // stco to measure, switch to co64 if the file passes 4 GiB, then fix the offsets.
        let mut use_co64 = false;
        let mut head_len = 0u64;
        let mut duration_secs = 0.0;
        for _pass in 0..3 {
            let data_start = head_len;
            let mut range_pos = Vec::with_capacity(self.ranges.len());
            let mut at = data_start;
            for r in &self.ranges {
                range_pos.push(at);
                at += r.2;
            }
            let mut traks = Vec::new();
            let mut movie_duration = 0u64;
            for ((kind, t), start) in tracks.iter().zip(&starts) {
                let (stbl, pres_end) = stbl(*kind, t, &range_pos, use_co64);
                let first_dts = t.samples.first().map_or(0, |s| s.dts);
                let first_pts = (start * f64::from(t.timescale)).round() as i64;
                let media_time = (i128::from(first_pts) - i128::from(first_dts))
                    .clamp(0, i128::from(i64::MAX)) as u64;
                let shown = pres_end.saturating_sub(media_time);
                let shown_movie = rescale(shown, t.timescale, MOVIE_TIMESCALE);
                let delay = ((start - movie_start) * f64::from(MOVIE_TIMESCALE)).round() as u64;
                let mut entries = Vec::new();
                if delay > 0 {
                    entries.push(ElstEntry {
                        segment_duration: delay,
                        media_time: None,
                        media_rate: FixedPoint::new(1, 0),
                    });
                }
                entries.push(ElstEntry {
                    segment_duration: shown_movie,
                    media_time: Some(media_time),
                    media_rate: FixedPoint::new(1, 0),
                });
                let track_movie_dur = delay.saturating_add(shown_movie);
                movie_duration = movie_duration.max(track_movie_dur);
                traks.push(fmp4::trak(
                    *kind,
                    t.timescale,
                    t.size,
                    track_movie_dur,
                    stbl,
                    Some(Edts {
                        elst: Some(Elst { entries }),
                    }),
                ));
            }
            duration_secs = movie_duration as f64 / f64::from(MOVIE_TIMESCALE);
            let moov = Moov {
                mvhd: fmp4::mvhd(movie_duration),
                meta: None,
                mvex: None,
                trak: traks,
                udta: None,
                ainf: None,
            };
            let mut head = Vec::new();
            mp4_atom::Ftyp {
                major_brand: FourCC::new(b"isom"),
                minor_version: 512,
                compatible_brands: vec![
                    FourCC::new(b"isom"),
                    FourCC::new(b"iso2"),
                    FourCC::new(b"avc1"),
                    FourCC::new(b"mp41"),
                ],
            }
            .encode(&mut head)
            .map_err(enc(mp4_atom::Ftyp::KIND))?;
            moov.encode(&mut head).map_err(enc(Moov::KIND))?;
            head.extend_from_slice(&mdat_header);
            let len = head.len() as u64;
            let needs_co64 = len + payload > u64::from(u32::MAX);
            if len == head_len && needs_co64 == use_co64 {
                return Ok(VodLayout {
                    head,
                    ranges: self.ranges.clone(),
                    total_len: len + payload,
                    duration_secs,
                });
            }
            head_len = len;
            use_co64 = needs_co64;
        }
        // Three passes always converge (the second fixes the box type, the third the offsets);
        // reaching here means the sizes kept moving, which would be a bug.
        let _ = duration_secs;
        Err(VodError::Encode {
            fourcc: Moov::KIND,
            source: mp4_atom::Error::InvalidSize,
        })
    }
}

fn enc(fourcc: FourCC) -> impl FnOnce(mp4_atom::Error) -> VodError {
    move |source| VodError::Encode { fourcc, source }
}

/// The sample table of one track, and where its presentation ends on the media timeline
/// (B-frames are shown up to their composition offset after the last decode time).
fn stbl(kind: TrackKind, t: &OutTrack, range_pos: &[u64], co64: bool) -> (Stbl, u64) {
    let n = t.samples.len();
    let mut stts: Vec<SttsEntry> = Vec::new();
    let mut total = 0u64;
    let mut pres_end = 0i64;
    for (i, s) in t.samples.iter().enumerate() {
        // Absolute decode times decide durations, so a gap between segments is absorbed.
        let d = match t.samples.get(i + 1) {
            Some(next) => u32::try_from(next.dts.saturating_sub(s.dts)).unwrap_or(u32::MAX),
            None => s.duration,
        };
        pres_end = pres_end.max(
            (i128::from(total) + i128::from(s.cts) + i128::from(d)).min(i128::from(i64::MAX))
                as i64,
        );
        total = total.saturating_add(u64::from(d));
        match stts.last_mut() {
            Some(e) if e.sample_delta == d => e.sample_count += 1,
            _ => stts.push(SttsEntry {
                sample_count: 1,
                sample_delta: d,
            }),
        }
    }
    let ctts = t.samples.iter().any(|s| s.cts != 0).then(|| {
        let mut entries: Vec<CttsEntry> = Vec::new();
        for s in &t.samples {
            match entries.last_mut() {
                Some(e) if e.sample_offset == i64::from(s.cts) => e.sample_count += 1,
                _ => entries.push(CttsEntry {
                    sample_count: 1,
                    sample_offset: i64::from(s.cts),
                }),
            }
        }
        Ctts { entries }
    });
    let stss = (kind == TrackKind::Video && t.samples.iter().any(|s| !s.sync)).then(|| Stss {
        entries: t
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sync)
            .map(|(i, _)| i as u32 + 1)
            .collect(),
    });
    let mut stsc: Vec<StscEntry> = Vec::new();
    let mut i = 0;
    while i < n {
        let Some(first) = t.samples.get(i) else { break };
        let count = t.samples[i..]
            .iter()
            .take_while(|s| s.chunk == first.chunk)
            .count();
        let same = stsc.last().is_some_and(|e| {
            e.samples_per_chunk == count as u32 && e.sample_description_index == first.entry
        });
        if !same {
            stsc.push(StscEntry {
                first_chunk: first.chunk + 1,
                samples_per_chunk: count as u32,
                sample_description_index: first.entry,
            });
        }
        i += count;
    }
    let offsets: Vec<u64> = t
        .chunks
        .iter()
        .map(|(r, within)| range_pos.get(*r).copied().unwrap_or(0) + within)
        .collect();
    let (stco, co64) = if co64 {
        (None, Some(Co64 { entries: offsets }))
    } else {
        (
            Some(Stco {
                entries: offsets.iter().map(|o| *o as u32).collect(),
            }),
            None,
        )
    };
    let (sgpd, sbgp) = opus_roll(t);
    (
        Stbl {
            stsd: Stsd {
                codecs: t.entries.clone(),
            },
            stts: Stts { entries: stts },
            ctts,
            stss,
            stsc: Stsc { entries: stsc },
            stsz: Stsz {
                samples: StszSamples::Different {
                    sizes: t.samples.iter().map(|s| s.size).collect(),
                },
            },
            stco,
            co64,
            sgpd,
            sbgp,
            ..Default::default()
        },
        pres_end.max(0) as u64,
    )
}

/// Opus needs 80 ms of decoded audio before a seek point to converge (RFC 7845 §4.6, the Opus
/// in ISOBMFF spec §4.3.1): a `roll` group whose distance counts *samples* (packets) back, the
/// way ffmpeg's muxer writes it for progressive files. The first packets, with too little
/// before them, map to no group.
fn opus_roll(t: &OutTrack) -> (Vec<Sgpd>, Vec<Sbgp>) {
    let is_opus = t.entries.iter().any(|e| matches!(e, SampleEntry::Opus(_)));
    let Some(first) = t.samples.first() else {
        return (vec![], vec![]);
    };
    if !is_opus {
        return (vec![], vec![]);
    }
    let frame = t
        .samples
        .get(1)
        .map(|s| s.dts.saturating_sub(first.dts))
        .unwrap_or(u64::from(first.duration))
        .max(1);
    let preroll = rescale(3840, 48_000, t.timescale);
    let distance = preroll.div_ceil(frame).clamp(1, 32) as i16;
    let n = t.samples.len() as u32;
    let lead = (distance as u32).min(n);
    let mut entries = Vec::new();
    if lead > 0 {
        entries.push(SbgpEntry {
            sample_count: lead,
            group_description_index: 0,
        });
    }
    if n > lead {
        entries.push(SbgpEntry {
            sample_count: n - lead,
            group_description_index: 1,
        });
    }
    let roll = FourCC::new(b"roll");
    (
        vec![Sgpd {
            grouping_type: roll,
            default_length: Some(2),
            default_group_description_index: None,
            static_group_description: false,
            static_mapping: false,
            essential: false,
            entries: vec![SgpdEntry {
                description_length: Some(2),
                entry: AnySampleGroupEntry::UnknownGroupingType(
                    roll,
                    (-distance).to_be_bytes().to_vec(),
                ),
            }],
        }],
        vec![Sbgp {
            grouping_type: roll,
            grouping_type_parameter: None,
            entries,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Track};
    use mp4_atom::{Any, Decode};

    fn builder(sample_size: u32) -> VodBuilder {
        let track = Track {
            kind: TrackKind::Audio,
            codec: Codec::Opus {
                channels: 2,
                pre_skip: 312,
                input_sample_rate: 48_000,
            },
            timescale: 48_000,
        };
        let mut b = VodBuilder::new();
        b.audio.timescale = 48_000;
        b.audio.entries.push(fmp4::sample_entry(&track).unwrap());
        b.ranges = vec![
            (0, 100, u64::from(sample_size)),
            (1, 100, u64::from(sample_size)),
        ];
        b.audio.chunks = vec![(0, 0), (1, 0)];
        for i in 0..2u32 {
            b.audio.samples.push(Sample {
                dts: u64::from(i) * 960,
                duration: 960,
                cts: 0,
                size: sample_size,
                sync: true,
                entry: 1,
                chunk: i,
            });
        }
        b
    }

    fn moov(head: &[u8]) -> (mp4_atom::Moov, usize) {
        let mut b = head;
        let ftyp = Any::decode(&mut b).unwrap();
        assert_eq!(ftyp.kind(), mp4_atom::Ftyp::KIND);
        let moov = mp4_atom::Moov::decode(&mut b).unwrap();
        (moov, b.len())
    }

    #[test]
    fn chunk_offsets_point_after_the_head() {
        let layout = builder(1000).finish().unwrap();
        let (moov, mdat_header_len) = moov(&layout.head);
        assert_eq!(mdat_header_len, 8);
        let stbl = &moov.trak[0].mdia.minf.stbl;
        let head = layout.head.len() as u32;
        assert_eq!(stbl.stco.as_ref().unwrap().entries, [head, head + 1000]);
        assert!(stbl.co64.is_none());
        assert_eq!(layout.total_len, u64::from(head) + 2000);
        assert_eq!(stbl.stts.entries.len(), 1);
        // Opus roll recovery: 80 ms of 20 ms packets = 4 packets back.
        assert_eq!(stbl.sgpd[0].grouping_type, FourCC::new(b"roll"));
        match &stbl.sgpd[0].entries[0].entry {
            AnySampleGroupEntry::UnknownGroupingType(_, b) => assert_eq!(b, &(-4i16).to_be_bytes()),
            other => panic!("{other:?}"),
        }
        assert!((layout.duration_secs - 0.04).abs() < 1e-9);
    }

    #[test]
    fn past_4_gib_uses_co64_and_a_large_mdat_header() {
        let size = 3u32 << 30;
        let layout = builder(size).finish().unwrap();
        let (moov, mdat_header_len) = moov(&layout.head);
        assert_eq!(mdat_header_len, 16, "largesize mdat header");
        let stbl = &moov.trak[0].mdia.minf.stbl;
        assert!(stbl.stco.is_none());
        let head = layout.head.len() as u64;
        assert_eq!(
            stbl.co64.as_ref().unwrap().entries,
            [head, head + u64::from(size)]
        );
        assert_eq!(layout.total_len, head + 2 * u64::from(size));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut b = VodBuilder::new();
        assert!(b.add_init(0, b"\x00\x00\x00\x10moovxxxxxxxx").is_err());
        assert!(b.add_segment(0, b"").is_err(), "unknown init");
        assert!(matches!(VodBuilder::new().finish(), Err(VodError::Empty)));
    }
}
