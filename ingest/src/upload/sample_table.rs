//! Expanding a progressive track's sample table (`stbl`, ISO/IEC 14496-12 §8.5-§8.7) into one
//! [`SampleRef`] per sample, in decode order, with media-timeline (un-edited) timestamps.
//!
//! Tables are read exactly as written: `stts` deltas, `ctts` offsets (version 0 offsets are read
//! as signed 32-bit, as ffmpeg does, because encoders write negative offsets into version 0
//! boxes too), `stss` (absent = every sample is a sync sample), `stsc` runs over `stco`/`co64`
//! chunk offsets, `stsz` sizes. Nothing is sized from a count in the file before the bytes
//! backing it were seen, so a lying `stsz` costs nothing.

use super::boxes::{children, RawBox};
use super::mp4::{Limits, SampleRef};
use super::DemuxError;
use mp4_atom::{Co64, Ctts, Stco, Stsc, Stss, Stsz, StszSamples, Stts};
use packager::TrackKind;

/// The tables of one `stbl`, decoded by mp4-atom.
#[derive(Default)]
struct Tables {
    stts: Option<Stts>,
    ctts: Option<Ctts>,
    stss: Option<Stss>,
    stsc: Option<Stsc>,
    stsz: Option<Stsz>,
    chunk_offsets: Option<Vec<u64>>,
}

fn set_once<T>(slot: &mut Option<T>, value: T, b: &RawBox<'_>) -> Result<(), DemuxError> {
    if slot.is_some() {
        return Err(DemuxError::malformed(
            &b.kind_str(),
            b.offset,
            "duplicate box in stbl",
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Appends the samples of `stbl` to `out`; returns the media time just after the last sample
/// (where a following movie fragment continues when it has no `tfdt`).
pub(crate) fn expand_stbl(
    stbl: &RawBox<'_>,
    kind: TrackKind,
    file_len: u64,
    limits: &Limits,
    budget: &mut usize,
    out: &mut Vec<SampleRef>,
) -> Result<u64, DemuxError> {
    let mut t = Tables::default();
    for child in children(stbl.body, stbl.body_offset(), "stbl") {
        let b = child?;
        match &b.kind {
            b"stts" => set_once(&mut t.stts, b.decode::<Stts>()?, &b)?,
            b"ctts" => set_once(&mut t.ctts, b.decode::<Ctts>()?, &b)?,
            b"stss" => set_once(&mut t.stss, b.decode::<Stss>()?, &b)?,
            b"stsc" => set_once(&mut t.stsc, b.decode::<Stsc>()?, &b)?,
            b"stsz" => set_once(&mut t.stsz, b.decode::<Stsz>()?, &b)?,
            b"stco" => {
                let v = b
                    .decode::<Stco>()?
                    .entries
                    .into_iter()
                    .map(u64::from)
                    .collect();
                set_once(&mut t.chunk_offsets, v, &b)?
            }
            b"co64" => set_once(&mut t.chunk_offsets, b.decode::<Co64>()?.entries, &b)?,
            b"stz2" => {
                return Err(DemuxError::malformed(
                    "stz2",
                    b.offset,
                    "compact sample sizes are not supported",
                ))
            }
            _ => {}
        }
    }
    let missing = |what: &str| DemuxError::malformed("stbl", stbl.offset, format!("no {what} box"));
    let stsz = t.stsz.ok_or_else(|| missing("stsz"))?;
    let (count, fixed_size, sizes) = match stsz.samples {
        StszSamples::Identical { count, size } => (count as usize, Some(size), Vec::new()),
        StszSamples::Different { sizes } => (sizes.len(), None, sizes),
    };
    if count == 0 {
        return Ok(0);
    }
    if count > *budget {
        return Err(DemuxError::LimitExceeded {
            offset: stbl.offset,
            what: "sample count",
            value: count as u64,
            limit: limits.max_samples as u64,
        });
    }
    *budget -= count;
    let stts = t.stts.ok_or_else(|| missing("stts"))?;
    let stsc = t.stsc.ok_or_else(|| missing("stsc"))?;
    let chunks = t.chunk_offsets.ok_or_else(|| missing("stco or co64"))?;

    // Sync samples: sorted 1-based numbers; `None` = all sync (§8.6.2.1).
    let sync = match (kind, t.stss) {
        (TrackKind::Video, Some(stss)) => {
            let mut v = stss.entries;
            v.sort_unstable();
            Some(v)
        }
        _ => None,
    };
    let mut sync_pos = 0usize;

    let start = out.len();
    let mut stts_iter = stts.entries.iter();
    let mut stts_left = 0u32;
    let mut delta = 0u32;
    let mut ctts_iter = t.ctts.as_ref().map(|c| c.entries.iter());
    let mut ctts_left = 0u32;
    let mut cts = 0i32;
    let mut dts: u64 = 0;

    let mut sample = 0usize;
    let mut stsc_idx = 0usize;
    for (chunk_idx, &chunk_offset) in chunks.iter().enumerate() {
        if sample == count {
            break;
        }
        let chunk_no = chunk_idx as u64 + 1;
        // Advance to the stsc entry that covers this chunk (§8.7.4: first_chunk is 1-based and
        // each entry runs until the next entry's first_chunk).
        while stsc
            .entries
            .get(stsc_idx + 1)
            .is_some_and(|next| u64::from(next.first_chunk) <= chunk_no)
        {
            stsc_idx += 1;
        }
        let entry = match stsc.entries.get(stsc_idx) {
            Some(e) if u64::from(e.first_chunk) <= chunk_no => e,
            _ => {
                return Err(DemuxError::malformed(
                    "stsc",
                    stbl.offset,
                    format!("no entry covers chunk {chunk_no}"),
                ))
            }
        };
        let mut pos = chunk_offset;
        for _ in 0..entry.samples_per_chunk {
            if sample == count {
                break;
            }
            let size = fixed_size.unwrap_or_else(|| sizes.get(sample).copied().unwrap_or(0));
            if size > limits.max_sample_size {
                return Err(DemuxError::LimitExceeded {
                    offset: pos,
                    what: "sample size",
                    value: u64::from(size),
                    limit: u64::from(limits.max_sample_size),
                });
            }
            let end = pos.saturating_add(u64::from(size));
            if end > file_len {
                return Err(DemuxError::Truncated {
                    offset: pos,
                    what: format!("{kind:?} sample {} of {count}", sample + 1),
                    needed: end,
                    available: file_len,
                });
            }
            while stts_left == 0 {
                let e = stts_iter.next().ok_or_else(|| {
                    DemuxError::malformed(
                        "stts",
                        stbl.offset,
                        format!("covers only {sample} of {count} samples"),
                    )
                })?;
                stts_left = e.sample_count;
                delta = e.sample_delta;
            }
            stts_left -= 1;
            if let Some(it) = ctts_iter.as_mut() {
                while ctts_left == 0 {
                    let e = it.next().ok_or_else(|| {
                        DemuxError::malformed(
                            "ctts",
                            stbl.offset,
                            format!("covers only {sample} of {count} samples"),
                        )
                    })?;
                    ctts_left = e.sample_count;
                    // Version 0 offsets arrive as u32 in an i64; reinterpret as two's complement.
                    cts = e.sample_offset as u32 as i32;
                }
                ctts_left -= 1;
            }
            let number = sample as u32 + 1;
            let keyframe = match &sync {
                None => true,
                Some(v) => {
                    while v.get(sync_pos).is_some_and(|&n| n < number) {
                        sync_pos += 1;
                    }
                    v.get(sync_pos) == Some(&number)
                }
            };
            out.push(SampleRef {
                kind,
                offset: pos,
                size,
                dts: i64::try_from(dts).unwrap_or(i64::MAX),
                cts_offset: cts,
                duration: delta,
                keyframe,
            });
            dts = dts.saturating_add(u64::from(delta));
            pos = end;
            sample += 1;
        }
    }
    if sample < count {
        return Err(DemuxError::malformed(
            "stsc",
            stbl.offset,
            format!(
                "stsc/stco place only {sample} of the {count} samples stsz lists ({} chunks)",
                chunks.len()
            ),
        ));
    }
    debug_assert_eq!(out.len() - start, count);
    Ok(dts)
}
