//! The sans-IO RTMP session (`ingest::rtmp::RtmpSession`, rml_rtmp's handshake and chunk/message
//! parsing underneath) after a real publish start: the first input byte picks the capture whose
//! handshake, commands and sequence headers come first (bit 0: ffmpeg5 / obs29) and the slice
//! size the rest is fed in (bits 1..). Seeds: the captures' continuations at that point.
//! Seed (the corpus directory is not committed), e.g.
//! `(printf '\x00'; tail -c +3892 ../testdata/rtmp/ffmpeg5_publish.c2s.bin | head -c 30000) > corpus/rtmp_session/ffmpeg5`
//! and `(printf '\x01'; tail -c +3954 ../testdata/rtmp/obs29_publish.c2s.bin | head -c 30000) > corpus/rtmp_session/obs29`;
//! run with `-max_len=2048` (fast) and `-max_len=65536` (whole frames).
//! Invariants checked after every feed: video decode times strictly increase, audio decode times
//! increase (within one track configuration), nothing is emitted after the session closed.
#![no_main]

use ingest::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use ingest::rtmp::{RtmpSession, SessionConfig, SessionEvent};
use libfuzzer_sys::fuzz_target;
use packager::TrackKind;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const FFMPEG5: &[u8] = include_bytes!("../../testdata/rtmp/ffmpeg5_publish.c2s.bin");
const OBS29: &[u8] = include_bytes!("../../testdata/rtmp/obs29_publish.c2s.bin");
/// End of the AVC and AAC sequence headers in each capture.
const FFMPEG5_PREFIX: usize = 3891;
const OBS29_PREFIX: usize = 3953;

struct Gate(Mutex<Vec<mpsc::Receiver<IngestEvent>>>);

impl PublishGate for Gate {
    fn start_publish(&self, _key: &str, _info: PublisherInfo) -> Result<Publisher, Refusal> {
        let (tx, rx) = mpsc::channel(1);
        self.0.lock().unwrap().push(rx);
        Ok(Publisher {
            stream_id: "fuzz".into(),
            events: tx,
            cancel: CancellationToken::new(),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let prefix = if mode & 1 == 0 {
        &FFMPEG5[..FFMPEG5_PREFIX]
    } else {
        &OBS29[..OBS29_PREFIX]
    };
    let slice = usize::from(mode >> 1) * 37 + 1;
    let mut s = RtmpSession::new(
        Arc::new(Gate(Mutex::new(Vec::new()))),
        SessionConfig {
            app: "live".into(),
            peer: None,
        },
    );
    let mut last = [None::<i64>; 2];
    let mut check = |events: Vec<SessionEvent>, was_closed: bool| {
        assert!(!was_closed || events.is_empty());
        for e in events {
            if let SessionEvent::Media(IngestEvent::Tracks(_))
            | SessionEvent::PublishStarted { .. } = e
            {
                // A new configuration or publish may bring a new timescale.
                last = [None; 2];
            }
            if let SessionEvent::Media(IngestEvent::Frame(f)) = e {
                let i = usize::from(f.kind == TrackKind::Audio);
                if let Some(prev) = last[i] {
                    assert!(f.dts > prev, "{:?} dts {} after {}", f.kind, f.dts, prev);
                }
                last[i] = Some(f.dts);
            }
        }
    };
    check(s.feed(prefix), false);
    for chunk in rest.chunks(slice) {
        let was_closed = s.is_closed();
        check(s.feed(chunk), was_closed);
        let _ = s.take_outbound();
    }
    check(s.finish(), false);
});
