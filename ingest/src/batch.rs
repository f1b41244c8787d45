//! Frames to the packager in batches, without delaying the ones that close a segment.
//!
//! Every [`IngestEvent`] sent to a stream's session is a channel operation and a poll of its
//! packaging task (about 80 a second for 30 fps video with AAC). Most frames have no hurry:
//! nobody sees them until their segment closes. So the front-end holds them and sends a
//! [`IngestEvent::Frames`] batch per ~100 ms of media, except around a segment boundary:
//!
//! - a video keyframe (which may close the open segment) goes at once, with what was held;
//! - after it, every frame goes at once until an audio frame at or past the keyframe's time has
//!   gone, because the segmenter closes a segment only when it has the audio up to its end;
//! - a change of tracks (a new run) goes at once, after what was held.
//!
//! So a segment is listed as soon as it would be without batching. Sans-IO: the caller flushes
//! on its own clock too ([`Batcher::flush`]), so a publisher that goes quiet does not leave frames
//! held.

use crate::publish::IngestEvent;
use packager::{MediaFrame, Track, TrackKind};

/// Media time a batch may span before it is sent.
pub const MAX_SPAN_MS: i64 = 100;
/// Frames a batch may hold before it is sent, whatever their timestamps say.
pub const MAX_FRAMES: usize = 64;
/// How long after a keyframe the batcher keeps sending every frame at once while no audio at or
/// past it arrives (an audio track that stalled must not keep batching off).
const CLOSING_LIMIT_MS: i64 = 1000;

/// Holds frames for one publisher (see the module doc).
#[derive(Debug, Default)]
pub struct Batcher {
    held: Vec<MediaFrame>,
    video_timescale: u32,
    /// `None` when the run has no audio track.
    audio_timescale: Option<u32>,
    /// The time (ms) of the last keyframe while its audio has not all gone yet.
    closing: Option<i64>,
}

impl Batcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether frames are held (the caller's clock should come back to [`Batcher::flush`]).
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes one event from the front-end; appends to `out` what should be sent now, in order.
    pub fn push(&mut self, event: IngestEvent, out: &mut Vec<IngestEvent>) {
        match event {
            IngestEvent::Tracks(tracks) => {
                self.flush(out);
                self.set_tracks(&tracks);
                out.push(IngestEvent::Tracks(tracks));
            }
            IngestEvent::Frame(f) => self.push_frame(f, out),
            IngestEvent::Frames(frames) => {
                for f in frames {
                    self.push_frame(f, out);
                }
            }
            other => out.push(other),
        }
    }

    /// Appends the held frames to `out` as one batch.
    pub fn flush(&mut self, out: &mut Vec<IngestEvent>) {
        match self.held.len() {
            0 => {}
            1 => out.extend(self.held.pop().map(IngestEvent::Frame)),
            _ => out.push(IngestEvent::Frames(std::mem::take(&mut self.held))),
        }
    }

    fn set_tracks(&mut self, tracks: &[Track]) {
        self.video_timescale = 0;
        self.audio_timescale = None;
        self.closing = None;
        for t in tracks {
            match t.kind {
                TrackKind::Video => self.video_timescale = t.timescale,
                TrackKind::Audio => self.audio_timescale = Some(t.timescale),
            }
        }
    }

    fn ms(&self, f: &MediaFrame) -> i64 {
        let scale = match f.kind {
            TrackKind::Video => self.video_timescale,
            TrackKind::Audio => self.audio_timescale.unwrap_or(0),
        };
        // An unknown timescale (frames before any Tracks) counts as "now": such frames are sent
        // as they come.
        if scale == 0 {
            return i64::MAX;
        }
        f.dts.saturating_mul(1000) / i64::from(scale)
    }

    fn push_frame(&mut self, f: MediaFrame, out: &mut Vec<IngestEvent>) {
        let ms = self.ms(&f);
        let key = f.kind == TrackKind::Video && f.keyframe;
        let audio = f.kind == TrackKind::Audio;
        self.held.push(f);
        if key {
            // Its audio is still to come, unless the run has none.
            self.closing = self.audio_timescale.map(|_| ms);
            self.flush(out);
            return;
        }
        if let Some(k) = self.closing {
            if (audio && ms >= k) || ms.saturating_sub(k) >= CLOSING_LIMIT_MS {
                self.closing = None;
            }
            self.flush(out);
            return;
        }
        let first_ms = self.held.first().map_or(ms, |f| self.ms(f));
        let span = ms.saturating_sub(first_ms);
        if ms == i64::MAX || span >= MAX_SPAN_MS || self.held.len() >= MAX_FRAMES {
            self.flush(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use packager::Codec;

    fn tracks(audio: bool) -> IngestEvent {
        let mut t = vec![Track {
            kind: TrackKind::Video,
            codec: Codec::H264 {
                avcc: Bytes::from_static(&[1, 0x42, 0, 0x1f]),
                width: 16,
                height: 16,
            },
            timescale: 90_000,
        }];
        if audio {
            t.push(Track {
                kind: TrackKind::Audio,
                codec: Codec::Aac {
                    asc: Bytes::from_static(&[0x11, 0x90]),
                    sample_rate: 48_000,
                    channels: 2,
                },
                timescale: 48_000,
            });
        }
        IngestEvent::Tracks(t)
    }

    fn video(ms: i64, keyframe: bool) -> IngestEvent {
        IngestEvent::Frame(MediaFrame {
            kind: TrackKind::Video,
            dts: ms * 90,
            cts_offset: 0,
            duration: None,
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        })
    }

    fn audio(ms: i64) -> IngestEvent {
        IngestEvent::Frame(MediaFrame {
            kind: TrackKind::Audio,
            dts: ms * 48,
            cts_offset: 0,
            duration: None,
            keyframe: true,
            data: Bytes::from_static(&[0x21]),
        })
    }

    /// What each push sent: one string per push, frames as V/K/A, batches in brackets.
    fn run(events: Vec<IngestEvent>) -> (Vec<String>, Batcher) {
        let mut b = Batcher::new();
        let mut log = Vec::new();
        for e in events {
            let mut out = Vec::new();
            b.push(e, &mut out);
            log.push(out.iter().map(describe).collect::<Vec<_>>().join(" "));
        }
        (log, b)
    }

    fn describe(e: &IngestEvent) -> String {
        fn one(f: &MediaFrame) -> &'static str {
            match (f.kind, f.keyframe) {
                (TrackKind::Video, true) => "K",
                (TrackKind::Video, false) => "V",
                (TrackKind::Audio, _) => "A",
            }
        }
        match e {
            IngestEvent::Tracks(_) => "T".into(),
            IngestEvent::Frame(f) => one(f).into(),
            IngestEvent::Frames(fs) => format!("[{}]", fs.iter().map(one).collect::<String>()),
            IngestEvent::Stats(_) => "S".into(),
        }
    }

    /// 30 fps video and 48 kHz AAC (21.33 ms), interleaved by time as FLV muxers do.
    fn interleaved(from_ms: i64, to_ms: i64, gop_ms: i64) -> Vec<IngestEvent> {
        let mut v = Vec::new();
        let (mut vt, mut at) = (from_ms as f64, from_ms as f64);
        while vt < to_ms as f64 || at < to_ms as f64 {
            if vt <= at {
                let ms = vt.round() as i64;
                v.push(video(ms, ms % gop_ms == 0));
                vt += 1000.0 / 30.0;
            } else {
                v.push(audio(at.round() as i64));
                at += 1024.0 / 48.0;
            }
        }
        v
    }

    #[test]
    fn keyframes_and_their_audio_go_at_once_the_rest_in_batches() {
        let mut events = vec![tracks(true)];
        events.extend(interleaved(0, 2100, 1000));
        let (log, mut b) = run(events.clone());
        assert_eq!(log[0], "T");
        // The first keyframe at once; then audio at 0 ms closes the boundary at once.
        assert_eq!(log[1], "K");
        assert_eq!(log[2], "A");
        // Nothing is lost or reordered: the concatenation is the input.
        let mut rest = Vec::new();
        b.flush(&mut rest);
        let sent: String = log
            .iter()
            .skip(1)
            .chain(rest.iter().map(describe).collect::<Vec<_>>().iter())
            .flat_map(|s| s.chars())
            .filter(|c| "KVA".contains(*c))
            .collect();
        let input: String = events[1..]
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(sent, input);
        // Each later keyframe is sent in the push that brought it.
        let key_pushes: Vec<usize> = (1..events.len())
            .filter(|&i| describe(&events[i]) == "K")
            .collect();
        assert_eq!(key_pushes.len(), 3);
        for i in key_pushes {
            assert!(
                log[i].ends_with('K') || log[i].ends_with("K]"),
                "{}",
                log[i]
            );
        }
        // Far fewer sends than frames: ~10 batches a second plus the boundaries.
        let sends = log.iter().filter(|s| !s.is_empty()).count();
        assert!(
            sends < events.len() / 4,
            "{sends} sends for {} events",
            events.len()
        );
    }

    #[test]
    fn after_a_keyframe_frames_go_at_once_until_audio_reaches_it() {
        let (log, _) = run(vec![
            tracks(true),
            audio(900),
            video(933, false),
            audio(921),
            // Keyframe at 1000 ms; audio up to it is late (as encoders' jitter can make it).
            video(1000, true),
            audio(943),
            video(1033, false),
            audio(985),
            audio(1006),
            // Past the boundary: held again.
            video(1066, false),
            audio(1027),
        ]);
        assert_eq!(log, ["T", "", "", "", "[AVAK]", "A", "V", "A", "A", "", ""]);
    }

    #[test]
    fn without_audio_only_the_keyframe_goes_at_once() {
        let mut events = vec![tracks(false)];
        for i in 0..7 {
            events.push(video(i * 33, i == 3));
        }
        let (log, b) = run(events);
        assert_eq!(log[4], "[VVVK]");
        assert!(log[5..].iter().all(String::is_empty), "{log:?}");
        assert!(b.is_holding());
    }

    #[test]
    fn a_stalled_audio_track_does_not_keep_batching_off() {
        let mut events = vec![tracks(true), video(0, true)];
        for i in 1..60 {
            events.push(video(i * 33, false));
        }
        let (log, _) = run(events);
        // Sent one by one for the first second after the keyframe, then held again.
        assert!(log[2..33].iter().all(|s| s == "V"), "{log:?}");
        assert!(log[33..].iter().any(String::is_empty), "{log:?}");
    }

    #[test]
    fn tracks_flush_what_was_held_first_and_frames_before_tracks_go_at_once() {
        let (log, _) = run(vec![
            video(0, false),
            tracks(true),
            video(0, true),
            audio(0),
            video(33, false),
            audio(21),
            tracks(true),
        ]);
        assert_eq!(log, ["V", "T", "K", "A", "", "", "[VA] T"]);
    }

    proptest::proptest! {
        /// Whatever the publisher sends: every frame comes out once, in order; a keyframe
        /// leaves in the push that brought it; what stays held spans less than the limit.
        #[test]
        fn nothing_is_lost_reordered_or_held_past_a_keyframe(
            steps in proptest::collection::vec((0u8..8, 0i64..60), 1..300)
        ) {
            let mut b = Batcher::new();
            let (mut vt, mut at) = (0i64, 0i64);
            let (mut sent, mut input) = (Vec::new(), Vec::new());
            for (kind, step) in steps {
                let e = match kind {
                    0 => tracks(step % 2 == 0),
                    1 => { vt += step; video(vt, true) }
                    2..=4 => { vt += step; video(vt, false) }
                    _ => { at += step; audio(at) }
                };
                let key = matches!(&e, IngestEvent::Frame(f) if f.keyframe && f.kind == TrackKind::Video);
                input.extend(e.frames().iter().map(|f| (f.kind, f.dts)));
                let mut out = Vec::new();
                b.push(e, &mut out);
                if key {
                    let last = out.last().and_then(|e| e.frames().last()).map(|f| f.keyframe);
                    proptest::prop_assert_eq!(last, Some(true));
                    proptest::prop_assert!(!b.is_holding());
                }
                proptest::prop_assert!(b.held.len() < MAX_FRAMES);
                sent.extend(out.iter().flat_map(|e| e.frames().iter().map(|f| (f.kind, f.dts))));
            }
            let mut out = Vec::new();
            b.flush(&mut out);
            proptest::prop_assert!(!b.is_holding());
            sent.extend(out.iter().flat_map(|e| e.frames().iter().map(|f| (f.kind, f.dts))));
            proptest::prop_assert_eq!(sent, input);
        }
    }

    #[test]
    fn batches_span_at_most_the_limit() {
        let mut events = vec![tracks(false), video(0, true)];
        for i in 1..=400 {
            events.push(video(i * 10, false));
        }
        let (log, _) = run(events);
        for s in log.iter().skip(2).filter(|s| !s.is_empty()) {
            // 10 ms apart: a batch closes when it spans 100 ms, so it holds 11 frames.
            assert_eq!(s.len(), 2 + 11, "{s}");
        }
        let mut events = vec![tracks(false), video(0, true)];
        events.extend((0..200).map(|_| video(1, false)));
        let (log, _) = run(events);
        assert!(log.iter().any(|s| s.len() == 2 + MAX_FRAMES), "{log:?}");
    }
}
