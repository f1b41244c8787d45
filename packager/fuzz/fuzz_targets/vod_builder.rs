//! The VOD builder reads stored segments back (local disk or a CDN): any bytes must give an
//! error or a layout whose ranges stay inside the segments, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use packager::vod::VodBuilder;
use packager::{Codec, Track, TrackKind};

fn init() -> Bytes {
    let mut avcc = vec![
        1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0x00, 0x1f, 1, 0, 2, 0x68, 0xeb,
    ];
    avcc.truncate(17);
    packager::fmp4::write_init(&[
        Track {
            kind: TrackKind::Video,
            codec: Codec::H264 {
                avcc: avcc.into(),
                width: 320,
                height: 240,
            },
            timescale: 90_000,
        },
        Track {
            kind: TrackKind::Audio,
            codec: Codec::Aac {
                asc: Bytes::from_static(&[0x11, 0x90]),
                sample_rate: 48_000,
                channels: 2,
            },
            timescale: 48_000,
        },
    ])
    .expect("init")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut vod = VodBuilder::new();
    let mut segments: Vec<&[u8]> = Vec::new();
    if mode & 1 == 0 {
        // Untrusted init, then the rest as one segment.
        let split = usize::from(mode >> 1).min(rest.len()) * rest.len() / 128;
        let (a, b) = rest.split_at(split.min(rest.len()));
        if vod.add_init(7, a).is_err() {
            return;
        }
        let _ = vod.add_segment(7, b);
        segments.push(b);
    } else {
        vod.add_init(0, &init()).expect("own init");
        // Up to four segments, cut at 0xff 0xff marks.
        for part in rest.split(|b| *b == 0xfe).take(4) {
            let _ = vod.add_segment(0, part);
            segments.push(part);
        }
    }
    if let Ok(layout) = vod.finish() {
        let mut total = layout.head.len() as u64;
        for (i, off, len) in &layout.ranges {
            let seg = segments[*i];
            assert!(off + len <= seg.len() as u64, "range past its segment");
            total += len;
        }
        assert_eq!(total, layout.total_len);
    }
});
