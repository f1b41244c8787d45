//! Replays of real publish captures (`testdata/rtmp/*.c2s.bin`, see the README beside the
//! originals in the shared captures folder) through the sans-IO session.

use super::*;
use crate::publish::Refusal;
use packager::{Codec, MediaFrame, Track, TrackKind};
use rand::{Rng, SeedableRng};
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const FFMPEG5: &[u8] = include_bytes!("../../../testdata/rtmp/ffmpeg5_publish.c2s.bin");
const OBS29: &[u8] = include_bytes!("../../../testdata/rtmp/obs29_publish.c2s.bin");

/// Accepts the keys it knows, refuses the rest, and keeps the receivers alive.
struct TestGate {
    keys: Vec<&'static str>,
    receivers: Mutex<Vec<mpsc::Receiver<IngestEvent>>>,
}

impl TestGate {
    fn new(keys: &[&'static str]) -> Arc<Self> {
        Arc::new(Self {
            keys: keys.to_vec(),
            receivers: Mutex::new(Vec::new()),
        })
    }
}

impl PublishGate for TestGate {
    fn start_publish(&self, key: &str, _info: PublisherInfo) -> Result<Publisher, Refusal> {
        if !self.keys.contains(&key) {
            return Err(Refusal::UnknownKey);
        }
        let (tx, rx) = mpsc::channel(16);
        self.receivers.lock().unwrap().push(rx);
        Ok(Publisher {
            stream_id: format!("id-{key}"),
            events: tx,
            cancel: CancellationToken::new(),
        })
    }
}

/// A comparable record of a session event.
#[derive(Debug, PartialEq)]
enum Seen {
    Connected(String),
    Started(String),
    Refused(String, Refusal),
    ConnectRefused(String),
    Tracks(Vec<Track>),
    Frame(MediaFrame),
    Metadata(Option<String>),
    Ended(String),
}

fn record(events: Vec<SessionEvent>, out: &mut Vec<Seen>) {
    for e in events {
        out.push(match e {
            SessionEvent::Connected { app } => Seen::Connected(app),
            SessionEvent::PublishStarted { stream_key, .. } => Seen::Started(stream_key),
            SessionEvent::PublishRefused {
                stream_key,
                refusal,
            } => Seen::Refused(stream_key, refusal),
            SessionEvent::ConnectRefused { app } => Seen::ConnectRefused(app),
            SessionEvent::Media(IngestEvent::Tracks(t)) => Seen::Tracks(t),
            SessionEvent::Media(IngestEvent::Frame(f)) => Seen::Frame(f),
            SessionEvent::Media(IngestEvent::Stats(_)) => unreachable!("sessions send no stats"),
            SessionEvent::Media(IngestEvent::Frames(_)) => {
                unreachable!("sessions send frames one by one (the server batches them)")
            }
            SessionEvent::Metadata(m) => Seen::Metadata(m.encoder),
            SessionEvent::PublishEnded { stream_key } => Seen::Ended(stream_key),
            SessionEvent::Failed(e) => panic!("unexpected error {e}"),
        });
    }
}

fn session(gate: Arc<TestGate>) -> RtmpSession {
    RtmpSession::new(
        gate,
        SessionConfig {
            app: "live".into(),
            peer: None,
        },
    )
}

/// Feeds `capture` in slices from `sizes` (cycled), then ends the connection.
fn replay(capture: &[u8], keys: &[&'static str], mut sizes: impl FnMut() -> usize) -> Vec<Seen> {
    let mut s = session(TestGate::new(keys));
    let mut seen = Vec::new();
    let mut pos = 0;
    while pos < capture.len() {
        let end = (pos + sizes().max(1)).min(capture.len());
        record(s.feed(&capture[pos..end]), &mut seen);
        pos = end;
    }
    record(s.finish(), &mut seen);
    seen
}

/// Counts the raw audio/video messages of a capture with rml_rtmp's chunk deserializer alone.
fn count_messages(capture: &[u8]) -> (usize, usize) {
    let mut d = rml_rtmp::chunk_io::ChunkDeserializer::new();
    let (mut video, mut audio) = (0, 0);
    let mut input = &capture[3073..];
    while let Some(m) = d.get_next_message(input).unwrap() {
        input = &[];
        match m.type_id {
            1 => d
                .set_max_chunk_size(u32::from_be_bytes(m.data[..4].try_into().unwrap()) as usize)
                .unwrap(),
            8 => audio += 1,
            9 => video += 1,
            _ => {}
        }
    }
    (video, audio)
}

struct Expect {
    key: &'static str,
    video_messages: usize,
    audio_messages: usize,
    keyframes_ms: &'static [i64],
    sample_rate: u32,
    channels: u8,
    width: u16,
    height: u16,
    /// Sequence headers + end-of-sequence messages among the video messages.
    video_non_frames: usize,
}

fn check(seen: &[Seen], e: &Expect) {
    assert_eq!(seen[0], Seen::Connected("live".into()));
    assert_eq!(seen[1], Seen::Started(e.key.into()));
    assert_eq!(seen.last(), Some(&Seen::Ended(e.key.into())));
    let tracks: Vec<&Vec<Track>> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Tracks(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 1, "tracks announced once");
    let tracks = tracks[0];
    assert_eq!(tracks.len(), 2);
    match &tracks[0].codec {
        Codec::H264 {
            width,
            height,
            avcc,
        } => {
            assert_eq!((*width, *height), (e.width, e.height));
            assert_eq!(avcc[1], 100, "High profile");
            assert_eq!(tracks[0].timescale, 90_000);
        }
        c => panic!("{c:?}"),
    }
    match &tracks[1].codec {
        Codec::Aac {
            sample_rate,
            channels,
            ..
        } => {
            assert_eq!((*sample_rate, *channels), (e.sample_rate, e.channels));
            assert_eq!(tracks[1].timescale, e.sample_rate);
            assert_eq!(tracks[1].codec.rfc6381(), "mp4a.40.2");
        }
        c => panic!("{c:?}"),
    }
    let frames: Vec<&MediaFrame> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    let video: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == TrackKind::Video)
        .collect();
    let audio: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == TrackKind::Audio)
        .collect();
    assert_eq!(video.len(), e.video_messages - e.video_non_frames);
    assert_eq!(
        audio.len(),
        e.audio_messages - 1,
        "all but the AAC sequence header"
    );
    let keyframes: Vec<i64> = video
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.dts / 90)
        .collect();
    assert_eq!(keyframes, e.keyframes_ms);
    // Decode order strictly increasing, B-frames present, exact 1024-sample audio steps.
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(video.iter().any(|f| f.cts_offset > 0));
    assert!(video.iter().all(|f| f.duration.is_none()));
    let steps: Vec<i64> = audio.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    assert!(steps.iter().all(|s| *s == 1024), "{steps:?}");
    // Audio stays within one frame of the RTMP clock at the end.
    let last_audio_ms = audio.last().unwrap().dts * 1000 / i64::from(e.sample_rate);
    assert!(last_audio_ms > 5000, "{last_audio_ms}");
    assert!(video[0].keyframe);
}

#[test]
fn ffmpeg5_capture_in_any_slicing_gives_the_same_events() {
    let (video_messages, audio_messages) = count_messages(FFMPEG5);
    // 1 sequence header + 176 frames + 1 end of sequence; 1 AAC sequence header + 250 frames.
    assert_eq!((video_messages, audio_messages), (178, 251));
    let whole = replay(FFMPEG5, &["ffmpeg5"], || usize::MAX);
    check(
        &whole,
        &Expect {
            key: "ffmpeg5",
            video_messages,
            audio_messages,
            keyframes_ms: &[0, 2000, 4000],
            sample_rate: 44100,
            channels: 1,
            width: 1280,
            height: 720,
            video_non_frames: 2,
        },
    );
    assert_eq!(replay(FFMPEG5, &["ffmpeg5"], || 1000), whole);
    assert_eq!(replay(FFMPEG5, &["ffmpeg5"], || 1), whole);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    assert_eq!(
        replay(FFMPEG5, &["ffmpeg5"], || rng.gen_range(1..5000)),
        whole
    );
}

#[test]
fn obs29_capture_in_any_slicing_gives_the_same_events() {
    let (video_messages, audio_messages) = count_messages(OBS29);
    // 1 sequence header + 181 frames; 1 AAC sequence header + 280 frames.
    assert_eq!((video_messages, audio_messages), (182, 281));
    let whole = replay(OBS29, &["obs29"], || usize::MAX);
    check(
        &whole,
        &Expect {
            key: "obs29",
            video_messages,
            audio_messages,
            keyframes_ms: &[0, 1999, 3999, 5999],
            sample_rate: 48000,
            channels: 2,
            width: 1280,
            height: 720,
            video_non_frames: 1,
        },
    );
    assert_eq!(replay(OBS29, &["obs29"], || 1000), whole);
    assert_eq!(replay(OBS29, &["obs29"], || 1), whole);
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    assert_eq!(replay(OBS29, &["obs29"], || rng.gen_range(1..5000)), whole);
}

#[test]
fn unknown_key_is_refused_with_bad_name_and_closes() {
    let mut s = session(TestGate::new(&["other"]));
    let mut seen = Vec::new();
    record(s.feed(OBS29), &mut seen);
    assert_eq!(
        seen,
        vec![
            Seen::Connected("live".into()),
            Seen::Refused("obs29".into(), Refusal::UnknownKey)
        ]
    );
    assert!(s.is_closed());
    let out = s.take_outbound();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("NetStream.Publish.BadName"), "{text}");
    assert!(text.contains("onStatus"));
    // Nothing more is parsed after the refusal.
    assert!(s.feed(&OBS29[..10]).is_empty());
}

#[test]
fn wrong_app_is_refused() {
    let mut s = RtmpSession::new(
        TestGate::new(&["obs29"]),
        SessionConfig {
            app: "other".into(),
            peer: None,
        },
    );
    let mut seen = Vec::new();
    record(s.feed(OBS29), &mut seen);
    assert_eq!(seen, vec![Seen::ConnectRefused("live".into())]);
    assert!(s.is_closed());
}

#[test]
fn garbage_instead_of_a_handshake_is_an_error() {
    let mut s = session(TestGate::new(&["obs29"]));
    let events = s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        matches!(
            &events[..],
            [SessionEvent::Failed(SessionError::Handshake(_))]
        ),
        "{events:?}"
    );
    assert!(s.is_closed());
}

#[test]
fn truncated_handshake_just_waits() {
    // rml_rtmp never errors on a short C1: the server's handshake timeout ends such peers.
    let mut s = session(TestGate::new(&["obs29"]));
    assert!(s.feed(&OBS29[..1000]).is_empty());
    assert!(!s.handshake_done());
    assert!(!s.is_closed());
}

/// The byte offset in `capture` just after the n-th video message, found by feeding a chunk
/// deserializer byte by byte.
fn video_message_end(capture: &[u8], n: usize) -> usize {
    let mut d = rml_rtmp::chunk_io::ChunkDeserializer::new();
    let mut seen = 0;
    for (i, b) in capture.iter().enumerate().skip(3073) {
        let mut input: &[u8] = std::slice::from_ref(b);
        while let Some(m) = d.get_next_message(input).unwrap() {
            input = &[];
            match m.type_id {
                1 => {
                    d.set_max_chunk_size(
                        u32::from_be_bytes(m.data[..4].try_into().unwrap()) as usize
                    )
                    .unwrap()
                }
                9 => {
                    seen += 1;
                    if seen == n {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
    }
    panic!("no video message {n}");
}

/// The capture with one extra video message (type 0 chunk header on csid 6, message stream 1)
/// inserted after the 20th video message.
fn with_video_message_after_20th(capture: &[u8], body: &[u8]) -> (Vec<u8>, usize) {
    let at = video_message_end(capture, 20);
    let mut out = capture[..at].to_vec();
    out.extend_from_slice(&[0x06, 0x00, 0x02, 0xbc]); // csid 6, timestamp 700 ms
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[0x09, 1, 0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&capture[at..]);
    (out, at)
}

/// Feeds the capture in 1000-byte slices; returns the frames delivered before the error, the
/// error and the session.
fn feed_until_error(capture: &[u8]) -> (usize, SessionError, RtmpSession) {
    let mut s = session(TestGate::new(&["ffmpeg5"]));
    let mut frames = 0;
    for chunk in capture.chunks(1000) {
        for event in s.feed(chunk) {
            match event {
                SessionEvent::Media(IngestEvent::Frame(_)) => frames += 1,
                SessionEvent::Failed(e) => return (frames, e, s),
                _ => {}
            }
        }
    }
    panic!("no error after {frames} frames");
}

/// Frames of the first `len` bytes of a capture.
fn frames_in_prefix(capture: &[u8], len: usize) -> usize {
    let mut s = session(TestGate::new(&["ffmpeg5"]));
    s.feed(&capture[..len])
        .iter()
        .filter(|e| matches!(e, SessionEvent::Media(IngestEvent::Frame(_))))
        .count()
}

#[test]
fn malformed_flv_tag_mid_stream_is_an_error_with_where() {
    // Sorenson H.263 (codec id 2) in the middle of an H.264 publish.
    let (capture, at) = with_video_message_after_20th(FFMPEG5, &[0x22, 0, 0, 0, 0]);
    let (frames, err, s) = feed_until_error(&capture);
    // Everything before the bad tag was delivered, even from the slice that held it.
    assert_eq!(frames, frames_in_prefix(FFMPEG5, at));
    assert!(frames > 19, "{frames}");
    match &err {
        SessionError::Tag { source, timestamp } => {
            assert_eq!(*timestamp, 700);
            assert_eq!(source.tag(), crate::flv::TagType::Video);
            assert_eq!(source.offset(), 0);
            assert!(err.to_string().contains("Sorenson"), "{err}");
        }
        e => panic!("{e}"),
    }
    assert!(s.is_closed());

    // A truncated AVC NALU header.
    let (capture, _) = with_video_message_after_20th(FFMPEG5, &[0x27, 1, 0]);
    let (_, err, _) = feed_until_error(&capture);
    assert!(
        matches!(
            err,
            SessionError::Tag {
                source: crate::flv::FlvError::Truncated { offset: 3, .. },
                ..
            }
        ),
        "{err}"
    );

    // NAL unit length prefixes that overrun the tag.
    let (capture, _) =
        with_video_message_after_20th(FFMPEG5, &[0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41]);
    let (_, err, _) = feed_until_error(&capture);
    assert!(
        matches!(
            err,
            SessionError::BadNalUnits {
                timestamp: 700,
                offset: 5
            }
        ),
        "{err}"
    );
}

#[test]
fn hevc_enhanced_rtmp_is_refused_with_its_fourcc() {
    let mut body = vec![0x90];
    body.extend_from_slice(b"hvc1");
    body.extend_from_slice(&[1, 2, 3, 4]);
    let (capture, _) = with_video_message_after_20th(FFMPEG5, &body);
    let (_, err, _) = feed_until_error(&capture);
    assert!(err.to_string().contains("'hvc1'"), "{err}");
}

#[test]
fn truncated_capture_never_panics() {
    // Every prefix length class: cut inside the handshake, the commands and the media.
    for cut in [1, 1536, 3073, 3100, 3300, 5000, 100_000, 1_000_000] {
        let mut s = session(TestGate::new(&["obs29"]));
        let _ = s.feed(&OBS29[..cut]);
        let _ = s.finish();
    }
}

#[test]
fn ffmpeg_ends_with_fcunpublish_obs_only_by_closing() {
    let ended = |capture: &[u8], key: &'static str| {
        let mut s = session(TestGate::new(&[key]));
        let events = s.feed(capture);
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::PublishEnded { .. }))
    };
    assert!(ended(FFMPEG5, "ffmpeg5"), "FCUnpublish/deleteStream end it");
    assert!(
        !ended(OBS29, "obs29"),
        "only the TCP close (finish) ends OBS's"
    );
}

/// A message as type 0 + type 3 chunks on chunk stream 3, message stream 0, for OBS's chunk
/// size (4096).
fn chunked(type_id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x03, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[type_id, 0, 0, 0, 0]);
    for (i, chunk) in body.chunks(4096).enumerate() {
        if i > 0 {
            out.push(0xc3);
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// OBS's stream up to its sequence headers, then `extra`.
fn obs_then(extra: &[u8]) -> Vec<SessionEvent> {
    let mut s = session(TestGate::new(&["obs29"]));
    let mut events = s.feed(&OBS29[..3953]);
    events.extend(s.feed(extra));
    events
}

#[test]
fn amf0_command_with_two_values_is_an_error_not_a_panic() {
    // Found by the rtmp_session fuzz target: rml_rtmp drained three values unconditionally.
    let body = [
        2, 0, 4, b'p', b'l', b'a', b'y', 0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
    ];
    let events = obs_then(&chunked(20, &body));
    assert!(
        matches!(
            events.last(),
            Some(SessionEvent::Failed(SessionError::Protocol(_)))
        ),
        "{events:?}"
    );
}

#[test]
fn deeply_nested_amf0_is_an_error_not_a_stack_overflow() {
    let mut body = vec![2, 0, 7];
    body.extend_from_slice(b"connect");
    body.extend_from_slice(&[0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    for _ in 0..100_000 {
        body.extend_from_slice(&[3, 0, 1, b'a']);
    }
    let events = obs_then(&chunked(20, &body));
    assert!(
        matches!(
            events.last(),
            Some(SessionEvent::Failed(SessionError::Protocol(_)))
        ),
        "{events:?}"
    );
}
