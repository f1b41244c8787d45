//! The WHIP H.264 depacketizer on arbitrary packet sequences (sequence numbers, timestamps,
//! markers and payloads from the input): never panics, emits only non-empty access units of
//! non-empty NAL units, and parses every SPS it emits without panicking.
#![no_main]

use bytes::Bytes;
use ingest::h264::parse_sps;
use ingest::whip::h264::{H264Depacketizer, RtpIn};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut d = H264Depacketizer::new();
    let mut rest = data;
    let mut i = 0u64;
    // Each packet: 1 byte seq delta (signed), 1 byte ts delta, 1 byte flags|len, payload.
    let mut seq = 1000i64;
    let mut ts = 0u64;
    while rest.len() >= 3 {
        seq += (rest[0] as i8) as i64 % 8;
        ts += (rest[1] % 4) as u64 * 3000;
        let marker = rest[2] & 0x80 != 0;
        let len = (rest[2] & 0x7f) as usize;
        let end = (3 + len).min(rest.len());
        let payload = Bytes::copy_from_slice(&rest[3..end]);
        rest = &rest[end..];
        i += 1;
        d.push(RtpIn {
            seq: seq.max(0) as u64,
            timestamp: ts,
            marker,
            payload,
            arrival: t0 + Duration::from_millis(i * 7),
        });
        while let Some(r) = d.pull() {
            if let Ok(au) = r {
                assert!(!au.nals.is_empty());
                assert!(au.nals.iter().all(|n| !n.is_empty()));
                for n in au.nals.iter().filter(|n| n[0] & 0x1f == 7) {
                    let _ = parse_sps(n);
                }
            }
        }
    }
    d.handle_timeout(t0 + Duration::from_secs(60));
    while d.pull().is_some() {}
});
