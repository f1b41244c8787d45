//! Indexing an uploaded MP4/MOV (progressive or fragmented) without reading `mdat`.
//!
//! Top-level boxes are walked by their headers only; `moov` and each `moof` are read into memory
//! and decoded (mp4-atom for each box, [`super::boxes`] to find them); sample bytes stay in the
//! file and are fetched one at a time with [`Mp4Index::read_frame`].
//!
//! # Timestamps and edit lists (ISO/IEC 14496-12 §8.6.6)
//!
//! Each track keeps its own `mdhd` timescale. Its samples' media-timeline decode times come
//! from `stts` (or `tfdt` + `trun` durations), then every timestamp of the track is shifted by
//!
//! ```text
//! shift = empty − media_time
//! ```
//!
//! where `empty` is the sum of the leading empty edits (`media_time == −1`), converted from the
//! `mvhd` timescale to the track's (rounded to nearest), and `media_time` is that of the first
//! non-empty edit (0 without an edit list). So the sample presented at `media_time` gets
//! `pts == empty` (0 without an empty edit), and samples presented before it (B-frame and AAC
//! priming pre-roll, or frames kept by a `-c copy` cut) get negative timestamps: they are all
//! kept; the segmenter drops what precedes the first keyframe. Later edits (a second non-empty
//! edit, dwell edits) are ignored: uploads are whole recordings, not edited compositions.
//!
//! Negative composition offsets (`ctts`/`trun` version 1) are then made non-negative by moving
//! the track's decode times earlier by the most negative offset (pts unchanged, as ffmpeg's
//! `dts_shift` does). For the usual single-edit files this is exactly what ffprobe reports
//! (`ffprobe -show_packets` `dts`/`pts` are in the track timescale); the tests compare them.

use super::boxes::{children, fourcc_str, read_header_fields, require_child, RawBox};
use super::codec::{first_sample_entry, sample_entry_codec, EntryCodec};
use super::fragment::{expand_moof, FragTrack};
use super::sample_table::expand_stbl;
pub use super::DemuxError;
use bytes::Bytes;
use mp4_atom::{Elst, Hdlr, Mdhd, Mvhd, Tkhd, Trex};
use packager::{MediaFrame, Track, TrackKind};
use std::io::{Read, Seek, SeekFrom};

/// Bounds that keep a hostile upload from costing more than a real one.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Samples over all tracks (4 M ≈ 10 h of 60 fps video plus 48 kHz AAC); each costs 32 bytes.
    /// Never more than the file has bytes.
    pub max_samples: usize,
    /// Largest single sample.
    pub max_sample_size: u32,
    /// Largest `moov`/`moof` read into memory.
    pub max_header_box: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_samples: 4_000_000,
            max_sample_size: 64 << 20,
            max_header_box: 256 << 20,
        }
    }
}

/// Where one sample is and when it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRef {
    pub kind: TrackKind,
    /// Absolute file offset of the sample's first byte.
    pub offset: u64,
    pub size: u32,
    /// Decode time in the track's timescale, after the edit-list shift (may be negative).
    pub dts: i64,
    /// Presentation minus decode time.
    pub cts_offset: i32,
    pub duration: u32,
    pub keyframe: bool,
}

/// The tracks of an uploaded file and where each of their samples is.
#[derive(Clone, Debug)]
pub struct Mp4Index {
    /// Video first (if any), then audio (if any).
    pub tracks: Vec<Track>,
    /// All tracks' samples, interleaved by decode time (ties: video first); each track's own
    /// samples stay in file decode order.
    pub samples: Vec<SampleRef>,
    /// Audio/video tracks left out: codecs storef does not carry (`"hvc1"`, `"ac-3"`, …), or
    /// a second track of a kind already taken.
    pub skipped_tracks: Vec<String>,
    max_sample_size: u32,
}

/// Top-level box types that can start an ISO BMFF or QuickTime file.
const FIRST_BOXES: [&[u8; 4]; 12] = [
    b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pnot",
    b"sidx", b"junk",
];

/// Indexes `r` with [`Limits::default`].
pub fn index_mp4<R: Read + Seek>(r: &mut R) -> Result<Mp4Index, DemuxError> {
    index_mp4_with_limits(r, &Limits::default())
}

/// A selected track while the file is read.
pub(crate) struct TrackBuild {
    pub track: Track,
    pub track_id: u32,
    /// Edit-list shift (see the module docs), in the track timescale.
    pub shift: i64,
    pub samples: Vec<SampleRef>,
    pub next_dts: u64,
}

/// Indexes `r` (positioned anywhere; it is seeked) under explicit limits.
pub fn index_mp4_with_limits<R: Read + Seek>(
    r: &mut R,
    limits: &Limits,
) -> Result<Mp4Index, DemuxError> {
    let file_len = r.seek(SeekFrom::End(0))?;
    if file_len == 0 {
        return Err(DemuxError::NotMp4 {
            reason: "empty input".into(),
        });
    }
    // Every real sample has at least one byte of its own, so a file cannot hold more samples
    // than bytes: that bounds what a tiny hostile file can make us allocate.
    let limits = &Limits {
        max_samples: limits
            .max_samples
            .min(usize::try_from(file_len).unwrap_or(usize::MAX)),
        ..limits.clone()
    };
    let mut budget = limits.max_samples;
    let mut pos = 0u64;
    let mut movie: Option<Movie> = None;
    while pos < file_len {
        let avail = file_len - pos;
        let mut head = [0u8; 16];
        let head_len = avail.min(16) as usize;
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut head[..head_len])?;
        let Some((kind, header_len, size)) = read_header_fields(&head[..head_len]) else {
            if pos == 0 {
                return Err(DemuxError::NotMp4 {
                    reason: format!("only {file_len} bytes"),
                });
            }
            return Err(DemuxError::Truncated {
                offset: pos,
                what: "box header".into(),
                needed: pos + 8,
                available: file_len,
            });
        };
        if pos == 0 && !FIRST_BOXES.contains(&&kind) {
            return Err(DemuxError::NotMp4 {
                reason: format!("first box type is {:?}", fourcc_str(kind)),
            });
        }
        let size = size.unwrap_or(avail);
        if size < header_len as u64 {
            return Err(DemuxError::malformed(
                &fourcc_str(kind),
                pos,
                format!("box size {size} is smaller than its header"),
            ));
        }
        if size > avail {
            return Err(DemuxError::Truncated {
                offset: pos,
                what: format!("{} box", fourcc_str(kind)),
                needed: pos.saturating_add(size),
                available: file_len,
            });
        }
        if &kind == b"moov" || &kind == b"moof" {
            if size > limits.max_header_box {
                return Err(DemuxError::LimitExceeded {
                    offset: pos,
                    what: "moov/moof size",
                    value: size,
                    limit: limits.max_header_box,
                });
            }
            let body_len = (size - header_len as u64) as usize;
            let mut body = vec![0u8; body_len];
            r.seek(SeekFrom::Start(pos + header_len as u64))?;
            r.read_exact(&mut body)?;
            let b = RawBox {
                kind,
                offset: pos,
                header_len,
                body: &body,
            };
            if &kind == b"moov" {
                if movie.is_some() {
                    return Err(DemuxError::malformed("moov", pos, "second moov box"));
                }
                movie = Some(read_moov(&b, file_len, limits, &mut budget)?);
            } else {
                let m = movie.as_mut().ok_or_else(|| {
                    DemuxError::malformed("moof", pos, "movie fragment before the moov box")
                })?;
                let trex = &m.trex;
                let selected: Vec<u32> = m.tracks.iter().map(|t| t.track_id).collect();
                let mut frag: Vec<FragTrack<'_>> = m
                    .tracks
                    .iter_mut()
                    .map(|t| FragTrack {
                        track_id: t.track_id,
                        kind: t.track.kind,
                        trex: trex.iter().find(|x| x.track_id == t.track_id),
                        next_dts: t.next_dts,
                        out: Some(&mut t.samples),
                    })
                    .collect();
                // Tracks we skip are still walked, so that a later traf without its own base
                // offset can follow their data (§8.8.7.1).
                frag.extend(
                    trex.iter()
                        .filter(|x| !selected.contains(&x.track_id))
                        .map(|x| FragTrack {
                            track_id: x.track_id,
                            kind: TrackKind::Audio,
                            trex: Some(x),
                            next_dts: 0,
                            out: None,
                        }),
                );
                expand_moof(&b, &mut frag, file_len, limits, &mut budget)?;
                let next: Vec<u64> = frag.iter().map(|f| f.next_dts).collect();
                drop(frag);
                for (t, n) in m.tracks.iter_mut().zip(next) {
                    t.next_dts = n;
                }
            }
        }
        pos += size;
    }
    let movie = movie.ok_or_else(|| DemuxError::Truncated {
        offset: file_len,
        what: "moov box (none before the end of the file)".into(),
        needed: file_len.saturating_add(8),
        available: file_len,
    })?;
    Ok(finish(movie, limits))
}

/// What `moov` told us.
pub(crate) struct Movie {
    pub tracks: Vec<TrackBuild>,
    pub trex: Vec<Trex>,
    pub skipped: Vec<String>,
    /// Audio/video sample entries whose codec storef does not carry.
    pub unsupported: Vec<String>,
}

pub(crate) fn read_moov(
    moov: &RawBox<'_>,
    file_len: u64,
    limits: &Limits,
    budget: &mut usize,
) -> Result<Movie, DemuxError> {
    let mut movie_timescale = None;
    let mut traks = Vec::new();
    let mut trex = Vec::new();
    for child in children(moov.body, moov.body_offset(), "moov") {
        let c = child?;
        match &c.kind {
            b"mvhd" => movie_timescale = Some(c.decode::<Mvhd>()?.timescale),
            b"trak" => traks.push(c),
            b"mvex" => {
                for x in children(c.body, c.body_offset(), "mvex") {
                    let x = x?;
                    if &x.kind == b"trex" {
                        trex.push(x.decode::<Trex>()?);
                    }
                }
            }
            _ => {}
        }
    }
    let movie_timescale =
        movie_timescale.ok_or_else(|| DemuxError::malformed("moov", moov.offset, "no mvhd box"))?;

    let mut tracks: Vec<TrackBuild> = Vec::new();
    let mut skipped = Vec::new();
    let mut unsupported: Vec<String> = Vec::new();
    for trak in &traks {
        let mdia = require_child(trak, b"mdia", "trak")?;
        let hdlr: Hdlr = require_child(&mdia, b"hdlr", "mdia")?.decode()?;
        let kind = match &hdlr.handler.into() {
            b"vide" => TrackKind::Video,
            b"soun" => TrackKind::Audio,
            _ => continue, // timed metadata, tmcd, subtitles, hint tracks
        };
        let minf = require_child(&mdia, b"minf", "mdia")?;
        let stbl = require_child(&minf, b"stbl", "minf")?;
        let stsd = require_child(&stbl, b"stsd", "stbl")?;
        let entry = first_sample_entry(&stsd)?;
        let codec = match sample_entry_codec(&entry)? {
            EntryCodec::Supported(c) if c.kind() == kind => c,
            EntryCodec::Supported(_) => {
                skipped.push(entry.kind_str());
                continue;
            }
            EntryCodec::Unsupported(name) => {
                unsupported.push(name.clone());
                skipped.push(name);
                continue;
            }
        };
        if tracks.iter().any(|t| t.track.kind == kind) {
            skipped.push(format!("{} (second {kind:?} track)", entry.kind_str()));
            continue;
        }
        let mdhd_box = require_child(&mdia, b"mdhd", "mdia")?;
        let timescale = mdhd_box.decode::<Mdhd>()?.timescale;
        if timescale == 0 {
            return Err(DemuxError::malformed(
                "mdhd",
                mdhd_box.offset,
                "timescale 0",
            ));
        }
        if matches!(codec, packager::Codec::Opus { .. }) && timescale != 48_000 {
            // packager::Codec::Opus promises a 48 kHz clock (the Opus-in-ISOBMFF recommendation).
            return Err(DemuxError::malformed(
                "mdhd",
                mdhd_box.offset,
                format!("Opus track timescale {timescale}, expected 48000"),
            ));
        }
        let track_id = require_child(trak, b"tkhd", "trak")?
            .decode::<Tkhd>()?
            .track_id;
        let shift = edit_shift(trak, movie_timescale, timescale)?;
        let mut samples = Vec::new();
        let next_dts = expand_stbl(&stbl, kind, file_len, limits, budget, &mut samples)?;
        tracks.push(TrackBuild {
            track: Track {
                kind,
                codec,
                timescale,
            },
            track_id,
            shift,
            samples,
            next_dts,
        });
    }
    if tracks.is_empty() {
        return Err(match unsupported.first() {
            Some(fourcc) => DemuxError::UnsupportedCodec {
                fourcc: fourcc.clone(),
            },
            None => DemuxError::NoMediaTracks,
        });
    }
    tracks.sort_by_key(|t| t.track.kind);
    Ok(Movie {
        tracks,
        trex,
        skipped,
        unsupported,
    })
}

/// The edit-list shift of a track (module docs), in its timescale.
fn edit_shift(trak: &RawBox<'_>, movie_timescale: u32, timescale: u32) -> Result<i64, DemuxError> {
    let Some(edts) = super::boxes::find_child(trak, b"edts", "trak")? else {
        return Ok(0);
    };
    let Some(elst_box) = super::boxes::find_child(&edts, b"elst", "edts")? else {
        return Ok(0);
    };
    let elst: Elst = elst_box.decode()?;
    let mut empty: u64 = 0;
    let mut media_time: u64 = 0;
    for e in &elst.entries {
        match e.media_time {
            None => empty = empty.saturating_add(e.segment_duration),
            Some(t) => {
                media_time = t;
                break;
            }
        }
    }
    let bad = |reason: &str| DemuxError::malformed("elst", elst_box.offset, reason);
    let empty_ts: i128 = if empty == 0 {
        0
    } else if movie_timescale == 0 {
        return Err(bad("empty edit with an mvhd timescale of 0"));
    } else {
        let (n, d) = (
            i128::from(empty) * i128::from(timescale),
            i128::from(movie_timescale),
        );
        (n + d / 2) / d
    };
    i64::try_from(empty_ts - i128::from(media_time))
        .map_err(|_| bad("edit list shift does not fit in 64 bits"))
}

fn finish(movie: Movie, limits: &Limits) -> Mp4Index {
    let mut tracks = Vec::new();
    let mut lists = Vec::new();
    for mut t in movie.tracks {
        // Negative composition offsets (`ctts` v1, `trun` v1): move decode times earlier so
        // that no sample is presented before it is decoded, keeping every pts unchanged. This
        // is ffmpeg's `dts_shift`, and it lets the fMP4 writer use plain unsigned offsets.
        let min_cts = t.samples.iter().map(|s| s.cts_offset).min().unwrap_or(0);
        let dts_shift = -min_cts.min(0);
        for s in &mut t.samples {
            s.dts = s
                .dts
                .saturating_add(t.shift)
                .saturating_sub(i64::from(dts_shift));
            s.cts_offset = s.cts_offset.saturating_add(dts_shift);
        }
        lists.push((t.track.timescale, t.samples));
        tracks.push(t.track);
    }
    let samples = match lists.len() {
        2 => {
            let (ts_b, b) = lists.pop().unwrap_or_default();
            let (ts_a, a) = lists.pop().unwrap_or_default();
            merge(a, ts_a, b, ts_b)
        }
        _ => lists.pop().map(|(_, s)| s).unwrap_or_default(),
    };
    Mp4Index {
        tracks,
        samples,
        skipped_tracks: movie.skipped,
        max_sample_size: limits.max_sample_size,
    }
}

/// Interleaves two tracks by decode time without reordering either.
pub(crate) fn merge(a: Vec<SampleRef>, ts_a: u32, b: Vec<SampleRef>, ts_b: u32) -> Vec<SampleRef> {
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
        let next = if take_a { ia.next() } else { ib.next() };
        out.extend(next);
    }
    out
}

impl Mp4Index {
    /// Reads one sample's bytes and returns it as a MediaFrame (H.264 payload stays
    /// length-prefixed as in the file).
    pub fn read_frame<R: Read + Seek>(
        &self,
        r: &mut R,
        s: &SampleRef,
    ) -> Result<MediaFrame, DemuxError> {
        if s.size > self.max_sample_size {
            return Err(DemuxError::LimitExceeded {
                offset: s.offset,
                what: "sample size",
                value: u64::from(s.size),
                limit: u64::from(self.max_sample_size),
            });
        }
        r.seek(SeekFrom::Start(s.offset))?;
        let mut data = vec![0u8; s.size as usize];
        if let Err(e) = r.read_exact(&mut data) {
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => DemuxError::Truncated {
                    offset: s.offset,
                    what: format!("{:?} sample", s.kind),
                    needed: s.offset + u64::from(s.size),
                    available: r.seek(SeekFrom::End(0)).unwrap_or(0),
                },
                _ => DemuxError::Io(e),
            });
        }
        Ok(MediaFrame {
            kind: s.kind,
            dts: s.dts,
            cts_offset: s.cts_offset,
            duration: Some(s.duration),
            keyframe: s.keyframe,
            data: Bytes::from(data),
        })
    }

    /// The presentation length: the latest end (`pts + duration`) over all tracks, in seconds,
    /// counted from presentation time 0.
    pub fn duration_secs(&self) -> f64 {
        self.tracks
            .iter()
            .map(|t| {
                let end = self
                    .samples
                    .iter()
                    .filter(|s| s.kind == t.kind)
                    .map(|s| s.dts + i64::from(s.cts_offset) + i64::from(s.duration))
                    .max()
                    .unwrap_or(0);
                end.max(0) as f64 / f64::from(t.timescale)
            })
            .fold(0.0, f64::max)
    }

    /// The track of `kind`, if the file has one.
    pub fn track(&self, kind: TrackKind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }
}
