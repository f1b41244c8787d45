//! The WHIP media path (`ingest::whip::media::MediaState`) on arbitrary RTP packets of the
//! GStreamer offer's payload types (H.264 96, Opus 111) with a stream session that sometimes
//! refuses events: never panics, the first frame of a run follows a Tracks event, video timestamps
//! never go back and every video frame is a well-formed length-prefixed sample.
#![no_main]

use bytes::Bytes;
use ingest::publish::IngestEvent;
use ingest::whip::media::{MediaState, Packet};
use ingest::whip::sdp::inspect_offer;
use libfuzzer_sys::fuzz_target;
use packager::TrackKind;
use std::time::{Duration, Instant};

const OFFER: &str = include_str!("../../testdata/whip/gstreamer122_whipsink_offer.sdp");

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = inspect_offer(OFFER) else { return };
    let mut m = MediaState::new(offer);
    let t0 = Instant::now();
    let (mut vseq, mut aseq, mut ts) = (0u64, 0u64, 0u64);
    let mut tracks = false;
    let mut last_video: Option<i64> = None;
    let mut rest = data;
    let mut i = 0u64;
    while rest.len() >= 3 {
        let (flags, step, len) = (rest[0], rest[1], (rest[2] & 0x7f) as usize);
        let end = (3 + len).min(rest.len());
        let payload = Bytes::copy_from_slice(&rest[3..end]);
        rest = &rest[end..];
        i += 1;
        ts += (step % 4) as u64 * 1500;
        let audio = flags & 1 != 0;
        let seq = if audio { &mut aseq } else { &mut vseq };
        *seq = seq.wrapping_add(((flags >> 1) & 3) as u64); // 0 = duplicate, 2-3 = gaps
        let accept = flags & 0x40 == 0;
        let p = Packet {
            pt: if audio { 111 } else { 96 },
            seq: *seq,
            rtp_time: ts,
            marker: flags & 0x80 != 0,
            payload,
            arrival: t0 + Duration::from_millis(i * 5),
            sender_report: None,
        };
        m.push(p, &mut |ev| {
            if !accept {
                return false;
            }
            match &ev {
                IngestEvent::Tracks(_) => tracks = true,
                IngestEvent::Frame(f) => {
                    assert!(tracks, "frame before Tracks");
                    if f.kind == TrackKind::Video {
                        if let Some(l) = last_video {
                            assert!(f.dts > l);
                        }
                        last_video = Some(f.dts);
                        let mut at = 0usize;
                        while at < f.data.len() {
                            let n = u32::from_be_bytes(f.data[at..at + 4].try_into().unwrap());
                            at += 4 + n as usize;
                        }
                        assert_eq!(at, f.data.len());
                    }
                }
                IngestEvent::Stats(_) => {}
                IngestEvent::Frames(_) => panic!("WHIP sends frames one by one"),
            }
            true
        });
    }
    m.handle_timeout(t0 + Duration::from_secs(30), &mut |_| true);
});
