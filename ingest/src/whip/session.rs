//! One publisher: its `Rtc`, depacketizers and clock, and the events it owes the stream session.
//!
//! Everything here is driven by the UDP task with explicit `now`s; nothing awaits. Events go to
//! the stream session with `try_send`: a full channel must not stall the other publishers on the
//! shared socket, so a video frame that does not fit is dropped and the picture chain restarts
//! at a requested keyframe.

use super::avc::{build_avcc, parse_sps};
use super::clock::{AvClock, Which, AUDIO_RATE, VIDEO_RATE};
use super::h264::{to_length_prefixed, H264Depacketizer, RtpIn};
use super::sdp::OfferSummary;
use crate::publish::{IngestEvent, Publisher};
use bytes::Bytes;
use packager::{Codec, MediaFrame, Track, TrackKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::media::KeyframeRequestKind;
use str0m::rtp::{RtpPacket, Ssrc};
use str0m::{Event, IceConnectionState, Rtc};
use tokio::sync::mpsc::error::TrySendError;

/// Opus pre-skip when the stream does not say: libopus's encoder delay at 48 kHz (3.25 ms +
/// 3 ms lookahead = 312 samples), what Chromium and GStreamer's opusenc produce. WebRTC carries no
/// OpusHead, so this is the best guess (RFC 7845 §4.2).
const OPUS_PRE_SKIP: u16 = 312;
/// Keyframe requests closer than this are coalesced.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(500);
/// While no IDR has come, ask again this often (a PLI can be lost too).
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Deleted,
    Cancelled,
    Timeout,
    Closed,
    ConsumerGone,
}

pub(crate) struct Session {
    pub id: String,
    pub rtc: Rtc,
    publisher: Publisher,
    offer: OfferSummary,
    video: H264Depacketizer,
    clock: AvClock,
    video_ssrc: Option<Ssrc>,
    audio_last_seq: Option<u64>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    tracks: Option<Vec<Track>>,
    /// Tracks could not be sent (channel full): send before the next frame.
    tracks_pending: bool,
    video_frames_ok: bool,
    last_keyframe_request: Option<Instant>,
    keyframe_wanted: bool,
    pub last_rx: Instant,
    pub remote: Option<SocketAddr>,
    ice_state: IceConnectionState,
    next_stats: Instant,
    stats: Counters,
    rtt: Option<Duration>,
    loss: Option<f32>,
    pub ended: Option<End>,
    pub keyframe_requests: u64,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    video_bytes: u64,
    audio_bytes: u64,
    video_frames: u64,
    audio_frames: u64,
    keyframes: u64,
    dropped: u64,
    losses: u64,
    last_video_bytes: u64,
    last_audio_bytes: u64,
    last_video_frames: u64,
}

impl Session {
    pub fn new(
        id: String,
        rtc: Rtc,
        publisher: Publisher,
        offer: OfferSummary,
        now: Instant,
    ) -> Self {
        Session {
            id,
            rtc,
            publisher,
            offer,
            video: H264Depacketizer::new(),
            clock: AvClock::new(),
            video_ssrc: None,
            audio_last_seq: None,
            sps: None,
            pps: None,
            tracks: None,
            tracks_pending: false,
            video_frames_ok: true,
            last_keyframe_request: None,
            keyframe_wanted: false,
            last_rx: now,
            remote: None,
            ice_state: IceConnectionState::New,
            next_stats: now + Duration::from_secs(1),
            stats: Counters::default(),
            rtt: None,
            loss: None,
            ended: None,
            keyframe_requests: 0,
        }
    }

    pub fn cancelled(&self) -> bool {
        self.publisher.cancel.is_cancelled()
    }

    /// Asks for a keyframe now (rate limited).
    pub fn want_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    pub fn handle_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::IceConnectionStateChange(s) => {
                tracing::debug!(session = %self.id, state = ?s, "WHIP ICE state");
                self.ice_state = s;
            }
            Event::Connected => {
                tracing::info!(session = %self.id, remote = ?self.remote, "WHIP publisher connected");
                self.keyframe_wanted = true;
            }
            Event::RtpPacket(p) => self.rtp(now, p),
            Event::MediaIngressStats(s) => {
                if s.rtt.is_some() {
                    self.rtt = s.rtt;
                }
                if s.loss.is_some() {
                    self.loss = s.loss;
                }
            }
            Event::Closed => self.ended = Some(End::Closed),
            _ => {}
        }
    }

    fn rtp(&mut self, now: Instant, p: RtpPacket) {
        let pt = *p.header.payload_type;
        if let Some(si) = &p.last_sender_info {
            let which = if self.offer.h264.iter().any(|h| h.pt == pt) {
                Which::Video
            } else {
                Which::Audio
            };
            self.clock
                .sender_report(which, si.ntp_time, si.rtp_time.numer() as u32);
        }
        if self.offer.h264.iter().any(|h| h.pt == pt) {
            self.video_ssrc = Some(p.header.ssrc);
            self.stats.video_bytes += p.payload.len() as u64;
            self.video.push(RtpIn {
                seq: *p.seq_no,
                timestamp: p.time.numer(),
                marker: p.header.marker,
                payload: Bytes::from(p.payload.to_vec()),
                arrival: p.timestamp,
            });
            self.drain_video(now);
        } else if self.offer.opus.is_some_and(|o| o.pt == pt) {
            self.stats.audio_bytes += p.payload.len() as u64;
            let seq = *p.seq_no;
            if self.audio_last_seq.is_some_and(|l| seq <= l) || p.payload.is_empty() {
                return; // late or duplicate: timestamps must not go backwards
            }
            self.audio_last_seq = Some(seq);
            // Audio before the first video keyframe has no init segment to go into.
            if self.tracks.is_none() {
                return;
            }
            let dts = self.clock.dts(Which::Audio, p.time.numer(), p.timestamp);
            self.stats.audio_frames += 1;
            self.frame(MediaFrame {
                kind: TrackKind::Audio,
                dts,
                cts_offset: 0,
                duration: None,
                keyframe: true,
                data: Bytes::from(p.payload.to_vec()),
            });
        }
    }

    fn drain_video(&mut self, now: Instant) {
        while let Some(r) = self.video.pull() {
            match r {
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "WHIP video loss");
                    self.stats.losses += 1;
                    self.keyframe_wanted = true;
                }
                Ok(au) => {
                    if au.idr {
                        self.parameter_sets(&au.nals);
                        self.stats.keyframes += 1;
                        self.video_frames_ok = true;
                    }
                    if self.tracks.is_none() || !self.video_frames_ok {
                        self.stats.dropped += 1;
                        continue;
                    }
                    let dts = self.clock.dts(Which::Video, au.timestamp, au.arrival);
                    self.stats.video_frames += 1;
                    let sent = self.frame(MediaFrame {
                        kind: TrackKind::Video,
                        dts,
                        cts_offset: 0,
                        duration: None,
                        keyframe: au.idr,
                        data: to_length_prefixed(&au.nals),
                    });
                    if !sent {
                        self.video_frames_ok = false;
                        self.keyframe_wanted = true;
                    }
                }
            }
        }
        if self.video.waiting_for_keyframe()
            && self
                .last_keyframe_request
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY)
        {
            self.keyframe_wanted = true;
        }
    }

    /// Takes the SPS/PPS of an IDR access unit; a change re-announces the tracks (new init segment).
    fn parameter_sets(&mut self, nals: &[Bytes]) {
        let find = |t: u8| {
            nals.iter()
                .rev()
                .find(|n| n.first().map(|h| h & 0x1f) == Some(t))
        };
        let (sps, pps) = match (find(7), find(8)) {
            (Some(s), Some(p)) => (s.clone(), p.clone()),
            _ => match (&self.sps, &self.pps) {
                (Some(s), Some(p)) => (s.clone(), p.clone()),
                _ => return,
            },
        };
        if self.sps.as_ref() == Some(&sps)
            && self.pps.as_ref() == Some(&pps)
            && self.tracks.is_some()
        {
            return;
        }
        let info = match parse_sps(&sps) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "WHIP: unreadable SPS");
                return;
            }
        };
        let mut tracks = vec![Track {
            kind: TrackKind::Video,
            codec: Codec::H264 {
                avcc: build_avcc(&sps, &pps),
                width: info.width,
                height: info.height,
            },
            timescale: VIDEO_RATE,
        }];
        if let Some(o) = self.offer.opus {
            tracks.push(Track {
                kind: TrackKind::Audio,
                codec: Codec::Opus {
                    channels: o.channels,
                    pre_skip: OPUS_PRE_SKIP,
                    input_sample_rate: AUDIO_RATE,
                },
                timescale: AUDIO_RATE,
            });
        }
        self.sps = Some(sps);
        self.pps = Some(pps);
        self.tracks = Some(tracks);
        self.tracks_pending = true;
    }

    /// Sends a frame (after pending Tracks). False when it had to be dropped.
    fn frame(&mut self, f: MediaFrame) -> bool {
        if self.tracks_pending {
            let Some(t) = self.tracks.clone() else {
                return false;
            };
            if !self.send(IngestEvent::Tracks(t)) {
                return false;
            }
            self.tracks_pending = false;
        }
        if !self.send(IngestEvent::Frame(f)) {
            self.stats.dropped += 1;
            return false;
        }
        true
    }

    fn send(&mut self, ev: IngestEvent) -> bool {
        match self.publisher.events.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Closed(_)) => {
                self.ended.get_or_insert(End::ConsumerGone);
                false
            }
        }
    }

    /// Timers: depacketizer gaps, keyframe requests, stats, the ICE timeout.
    pub fn tick(&mut self, now: Instant, ice_timeout: Duration, stats_interval: Duration) {
        self.video.handle_timeout(now);
        self.drain_video(now);
        if self.keyframe_wanted {
            self.request_keyframe(now);
        }
        if now.saturating_duration_since(self.last_rx) > ice_timeout {
            self.ended.get_or_insert(End::Timeout);
        }
        if self.cancelled() {
            self.ended.get_or_insert(End::Cancelled);
        }
        if now >= self.next_stats {
            self.next_stats = now + stats_interval;
            let stats = self.stats_json(stats_interval);
            self.send(IngestEvent::Stats(stats));
        }
    }

    fn request_keyframe(&mut self, now: Instant) {
        let Some(ssrc) = self.video_ssrc else { return };
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_GAP)
        {
            return;
        }
        let kind = if self.offer.pli_negotiated() {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        if let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc) {
            rx.request_keyframe(kind);
            self.keyframe_requests += 1;
            self.last_keyframe_request = Some(now);
            self.keyframe_wanted = false;
            tracing::debug!(session = %self.id, ?kind, "WHIP keyframe request");
        }
    }

    fn stats_json(&mut self, interval: Duration) -> serde_json::Value {
        let s = &mut self.stats;
        let secs = interval.as_secs_f64().max(0.001);
        let kbps = |now: u64, last: u64| ((now - last) as f64 * 8.0 / secs / 1000.0).round();
        let video_kbps = kbps(s.video_bytes, s.last_video_bytes);
        let audio_kbps = kbps(s.audio_bytes, s.last_audio_bytes);
        let fps = ((s.video_frames - s.last_video_frames) as f64 / secs * 10.0).round() / 10.0;
        s.last_video_bytes = s.video_bytes;
        s.last_audio_bytes = s.audio_bytes;
        s.last_video_frames = s.video_frames;
        let (video_codec, width, height) = match self.tracks.as_ref().and_then(|t| t.first()) {
            Some(Track {
                codec: c @ Codec::H264 { width, height, .. },
                ..
            }) => (Some(c.rfc6381()), Some(*width), Some(*height)),
            _ => (None, None, None),
        };
        serde_json::json!({
            "protocol": "whip",
            "remote": self.remote.map(|r| r.to_string()),
            "ice_state": format!("{:?}", self.ice_state).to_lowercase(),
            "rtt_ms": self.rtt.map(|r| r.as_secs_f64() * 1000.0),
            "packet_loss": self.loss,
            "video_codec": video_codec,
            "audio_codec": self.offer.opus.map(|_| "opus"),
            "width": width,
            "height": height,
            "fps": fps,
            "video_kbps": video_kbps,
            "audio_kbps": audio_kbps,
            "video_frames": s.video_frames,
            "audio_frames": s.audio_frames,
            "keyframes": s.keyframes,
            "dropped_frames": s.dropped,
            "loss_events": s.losses,
            "keyframe_requests": self.keyframe_requests,
        })
    }
}
