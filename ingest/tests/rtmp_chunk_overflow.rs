//! rml_rtmp 0.8 defect 1 (vendor/rml_rtmp/PATCHES.md, patch 1): random bytes after ~1 MB of a
//! valid OBS stream made `ChunkDeserializer::get_next_message` panic with "capacity overflow".
//! `testdata/rtmp/obs29_random_tail_capacity_overflow.bin` is the shortest failing tail found by
//! a seeded random search against upstream 0.8.0; it follows the first 1,021,117 bytes after the
//! handshake (capture offset 3073). Upstream panicked on it; the patched copy must not.

use bytes::Bytes;
use ingest::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use ingest::rtmp::{RtmpSession, SessionConfig, SessionEvent};
use rml_rtmp::chunk_io::ChunkDeserializer;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CAPTURE: &[u8] = include_bytes!("../testdata/rtmp/obs29_publish.c2s.bin");
const TAIL: &[u8] = include_bytes!("../testdata/rtmp/obs29_random_tail_capacity_overflow.bin");
const PREFIX: usize = 3073 + 1_021_117;

/// Feeds `bytes` to a deserializer, applying Set Chunk Size; stops at the first error.
fn feed(d: &mut ChunkDeserializer, bytes: &[u8]) -> Result<usize, String> {
    let mut input = bytes;
    let mut messages = 0;
    loop {
        match d.get_next_message(input) {
            Ok(Some(m)) => {
                messages += 1;
                if m.type_id == 1 {
                    let size = u32::from_be_bytes(m.data[..4].try_into().unwrap());
                    d.set_max_chunk_size(size as usize)
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(None) => return Ok(messages),
            Err(e) => return Err(e.to_string()),
        }
        input = &[];
    }
}

#[test]
fn random_tail_after_a_megabyte_no_longer_panics() {
    let mut d = ChunkDeserializer::new();
    let messages = feed(&mut d, &CAPTURE[3073..PREFIX]).expect("the capture itself is valid");
    assert_eq!(messages, 229);
    // Upstream 0.8.0 panicked here ("capacity overflow"); the patched copy returns an error.
    // The patched copy keeps partial messages per chunk stream, so these bytes read as the start
    // of a message on another chunk stream that has not fully arrived: no message, no error yet.
    assert_eq!(feed(&mut d, TAIL), Ok(0));
}

#[test]
fn seeded_random_tails_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..40 {
        let cut = 3073 + rng.gen_range(1_000_000..1_050_000);
        let tail: Vec<u8> = (0..4096).map(|_| rng.gen()).collect();
        let mut d = ChunkDeserializer::new();
        feed(&mut d, &CAPTURE[3073..cut]).expect("the capture itself is valid");
        let _ = feed(&mut d, &tail);
    }
}

struct Gate(Mutex<Vec<mpsc::Receiver<IngestEvent>>>);

impl PublishGate for Gate {
    fn start_publish(&self, _key: &str, _info: PublisherInfo) -> Result<Publisher, Refusal> {
        let (tx, rx) = mpsc::channel(4096);
        self.0.lock().unwrap().push(rx);
        Ok(Publisher {
            stream_id: "s".into(),
            events: tx,
            cancel: CancellationToken::new(),
        })
    }
}

#[test]
fn the_session_survives_the_bad_tail_and_ends_the_publish_on_close() {
    let mut s = RtmpSession::new(
        Arc::new(Gate(Mutex::new(Vec::new()))),
        SessionConfig {
            app: "live".into(),
            peer: None,
        },
    );
    let events = s.feed(&CAPTURE[..PREFIX]);
    assert!(!events.iter().any(|e| matches!(e, SessionEvent::Failed(_))));
    assert!(matches!(events[1], SessionEvent::PublishStarted { .. }));
    let events = s.feed(TAIL);
    assert!(events.is_empty(), "{events:?}");
    // The server's idle timeout ends such a connection; ending it flushes and ends the publish.
    let events = s.finish();
    assert!(
        matches!(events.last(), Some(SessionEvent::PublishEnded { stream_key }) if stream_key == "obs29"),
        "{events:?}"
    );
    assert!(s.is_closed());
    assert!(s.feed(&Bytes::from_static(b"more")).is_empty());
}
