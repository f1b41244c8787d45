//! Movie fragments (`moof`, ISO/IEC 14496-12 §8.8): expanding `traf`/`trun` into samples.
//!
//! Per sample, each field comes from the first of: the `trun` entry, the `tfhd` default, the
//! `trex` default (§8.8.3, §8.8.7, §8.8.8). The first sample's flags may come from
//! `first_sample_flags` (mp4-atom already merges it into the first entry). Data offsets follow
//! §8.8.7.1: `base_data_offset` if given, else the `moof` start when `default-base-is-moof` is set
//! or for the first `traf`, else the end of the previous `traf`'s data; a `trun` without
//! `data_offset` continues where the previous run ended.

use super::boxes::{children, RawBox};
use super::mp4::{Limits, SampleRef};
use super::DemuxError;
use mp4_atom::{Tfdt, Tfhd, Trex, Trun};
use packager::TrackKind;

/// `sample_is_non_sync_sample` (§8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// A track as the fragment reader needs it.
pub(crate) struct FragTrack<'a> {
    pub track_id: u32,
    pub kind: TrackKind,
    pub trex: Option<&'a Trex>,
    /// Media time after the last sample seen so far (for a `traf` without `tfdt`).
    pub next_dts: u64,
    /// Where this track's samples go; `None` for tracks we read only to follow data offsets.
    pub out: Option<&'a mut Vec<SampleRef>>,
}

/// Whether a sample with these `sample_flags` starts a decodable picture. Like ffmpeg, a sample
/// that says it depends on others (`sample_depends_on` == 1) is not a keyframe either.
pub(crate) fn flags_are_sync(flags: u32) -> bool {
    flags & NON_SYNC == 0 && (flags >> 24) & 0b11 != 1
}

/// Appends the samples of one `moof` (at absolute `moof.offset`) to the tracks it describes.
pub(crate) fn expand_moof(
    moof: &RawBox<'_>,
    tracks: &mut [FragTrack<'_>],
    file_len: u64,
    limits: &Limits,
    budget: &mut usize,
) -> Result<(), DemuxError> {
    let mut prev_traf_end: Option<u64> = Some(moof.offset);
    for child in children(moof.body, moof.body_offset(), "moof") {
        let traf = child?;
        if &traf.kind != b"traf" {
            continue;
        }
        let mut tfhd = None;
        let mut tfdt = None;
        let mut runs = Vec::new();
        for c in children(traf.body, traf.body_offset(), "traf") {
            let c = c?;
            match &c.kind {
                b"tfhd" => tfhd = Some(c.decode::<Tfhd>()?),
                b"tfdt" => tfdt = Some(c.decode::<Tfdt>()?),
                b"trun" => runs.push((c.offset, c.decode::<Trun>()?)),
                _ => {}
            }
        }
        let tfhd = tfhd.ok_or_else(|| DemuxError::malformed("traf", traf.offset, "no tfhd box"))?;
        let Some(track) = tracks.iter_mut().find(|t| t.track_id == tfhd.track_id) else {
            // A track we neither know nor read; later trafs must carry their own base.
            prev_traf_end = None;
            continue;
        };
        let base = match tfhd.base_data_offset {
            Some(b) => b,
            None if tfhd.default_base_is_moof => moof.offset,
            None => prev_traf_end.ok_or_else(|| {
                DemuxError::malformed(
                    "tfhd",
                    traf.offset,
                    "no base data offset and the previous traf's data end is unknown",
                )
            })?,
        };
        if let Some(tfdt) = tfdt {
            track.next_dts = tfdt.base_media_decode_time;
        }
        let mut cursor = base;
        for (run_offset, run) in &runs {
            if let Some(d) = run.data_offset {
                cursor = base.checked_add_signed(i64::from(d)).ok_or_else(|| {
                    DemuxError::malformed("trun", *run_offset, "data offset before the file start")
                })?;
            }
            let n = run.samples.len();
            if n > *budget {
                return Err(DemuxError::LimitExceeded {
                    offset: *run_offset,
                    what: "sample count",
                    value: n as u64,
                    limit: limits.max_samples as u64,
                });
            }
            *budget -= n;
            for (i, e) in run.samples.iter().enumerate() {
                let duration = e
                    .duration
                    .or(tfhd.default_sample_duration)
                    .or(track.trex.map(|t| t.default_sample_duration))
                    .ok_or_else(|| {
                        DemuxError::malformed(
                            "trun",
                            *run_offset,
                            "no sample duration and no default",
                        )
                    })?;
                let size = e
                    .size
                    .or(tfhd.default_sample_size)
                    .or(track.trex.map(|t| t.default_sample_size))
                    .ok_or_else(|| {
                        DemuxError::malformed("trun", *run_offset, "no sample size and no default")
                    })?;
                let flags = e
                    .flags
                    .or(tfhd.default_sample_flags)
                    .or(track.trex.map(|t| t.default_sample_flags))
                    .unwrap_or(0);
                if size > limits.max_sample_size {
                    return Err(DemuxError::LimitExceeded {
                        offset: cursor,
                        what: "sample size",
                        value: u64::from(size),
                        limit: u64::from(limits.max_sample_size),
                    });
                }
                let end = cursor.saturating_add(u64::from(size));
                if end > file_len {
                    return Err(DemuxError::Truncated {
                        offset: cursor,
                        what: format!("sample {} of the trun at byte {run_offset}", i + 1),
                        needed: end,
                        available: file_len,
                    });
                }
                if let Some(out) = track.out.as_deref_mut() {
                    out.push(SampleRef {
                        kind: track.kind,
                        offset: cursor,
                        size,
                        dts: i64::try_from(track.next_dts).unwrap_or(i64::MAX),
                        // Version 0 offsets are unsigned; read as signed like ffmpeg does.
                        cts_offset: e.cts.map(|c| c as u32 as i32).unwrap_or(0),
                        duration,
                        keyframe: track.kind == TrackKind::Audio || flags_are_sync(flags),
                    });
                }
                track.next_dts = track.next_dts.saturating_add(u64::from(duration));
                cursor = end;
            }
        }
        prev_traf_end = Some(cursor);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_flags() {
        assert!(flags_are_sync(0x0200_0000)); // depends on no other sample
        assert!(flags_are_sync(0));
        assert!(!flags_are_sync(0x0101_0000)); // ffmpeg's non-key default
        assert!(!flags_are_sync(0x0001_0000));
        assert!(!flags_are_sync(0x0100_0000));
    }
}
