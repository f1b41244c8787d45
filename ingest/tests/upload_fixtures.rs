//! Fast checks on the committed fixtures in `testdata/upload/` (no ffmpeg needed): the index
//! equals the ffprobe dump committed beside each file, and no truncation or bit flip of them
//! panics (proptest).

use ingest::upload::{index_mp4, index_mp4_with_limits, DemuxError, Limits, Mp4Index};
use packager::TrackKind;
use proptest::prelude::*;
use std::io::Cursor;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/upload")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (stream_index, pts, dts, size, keyframe) of every packet line of a committed ffprobe dump.
fn dump(name: &str) -> Vec<(usize, i64, i64, u32, bool)> {
    let text = String::from_utf8(fixture(name)).unwrap();
    text.lines()
        .filter(|l| l.starts_with("stream_index="))
        .map(|l| {
            let f = |k: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("{k} in {l}"))
            };
            (
                f("stream_index").parse().unwrap(),
                f("pts").parse().unwrap(),
                f("dts").parse().unwrap(),
                f("size").parse().unwrap(),
                f("flags").starts_with('K'),
            )
        })
        .collect()
}

fn check_against_dump(mp4: &str, txt: &str) -> Mp4Index {
    let bytes = fixture(mp4);
    let idx = index_mp4(&mut Cursor::new(&bytes)).unwrap();
    let packets = dump(txt);
    // ffmpeg writes video as stream 0 and audio as stream 1 in these fixtures.
    for (stream, kind) in [(0, TrackKind::Video), (1, TrackKind::Audio)] {
        let want: Vec<_> = packets
            .iter()
            .filter(|p| p.0 == stream)
            .map(|p| (p.1, p.2, p.3, p.4))
            .collect();
        let got: Vec<_> = idx
            .samples
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| (s.dts + i64::from(s.cts_offset), s.dts, s.size, s.keyframe))
            .collect();
        assert_eq!(got, want, "{mp4} {kind:?}");
    }
    idx
}

#[test]
fn cut_fixture_matches_its_ffprobe_dump() {
    let idx = check_against_dump("ffmpeg5_cut_bframes_aac.mp4", "ffmpeg5_cut_bframes_aac.txt");
    assert_eq!(idx.tracks.len(), 2);
}

#[test]
fn fragmented_fixture_matches_its_ffprobe_dump() {
    check_against_dump(
        "ffmpeg5_frag_bframes_aac.mp4",
        "ffmpeg5_frag_bframes_aac.txt",
    );
}

/// Indexes and reads every frame; on success every sample must lie inside the input.
fn exercise(bytes: &[u8]) -> Result<(), DemuxError> {
    let limits = Limits {
        max_samples: 50_000,
        ..Limits::default()
    };
    let mut cur = Cursor::new(bytes);
    let idx = index_mp4_with_limits(&mut cur, &limits)?;
    for s in &idx.samples {
        assert!(s.offset + u64::from(s.size) <= bytes.len() as u64);
        let f = idx.read_frame(&mut cur, s)?;
        assert_eq!(f.data.len(), s.size as usize);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn truncation_and_bit_flips_never_panic(
        which in 0usize..2,
        cut in 0.0f64..=1.0,
        flips in prop::collection::vec((0.0f64..1.0, 0u8..8), 0..8),
    ) {
        let name = ["ffmpeg5_cut_bframes_aac.mp4", "ffmpeg5_frag_bframes_aac.mp4"][which];
        let mut bytes = fixture(name);
        // Flips land mostly in the first 2 KB, where ftyp/moov/moof live.
        for (pos, bit) in flips {
            let span = bytes.len().min(2048);
            let i = (pos * span as f64) as usize % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        bytes.truncate((cut * bytes.len() as f64) as usize);
        let _ = exercise(&bytes);
    }
}

/// A file that shrank after indexing: reading a sample past its new end is `Truncated`.
#[test]
fn read_frame_past_the_end_is_truncated() {
    let bytes = fixture("ffmpeg5_cut_bframes_aac.mp4");
    let idx = index_mp4(&mut Cursor::new(&bytes)).unwrap();
    let last = idx.samples.iter().max_by_key(|s| s.offset).unwrap();
    let cut = &bytes[..last.offset as usize + 1];
    match idx.read_frame(&mut Cursor::new(cut), last) {
        Err(DemuxError::Truncated {
            offset, available, ..
        }) => {
            assert_eq!(offset, last.offset);
            assert_eq!(available, cut.len() as u64);
        }
        other => panic!("{other:?}"),
    }
}
