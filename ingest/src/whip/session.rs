//! One publisher: its `Rtc`, its [`MediaState`], timers, keyframe requests and stats.
//!
//! Everything here is driven by the UDP task with explicit `now`s; nothing awaits. Events go to
//! the stream session with `try_send`: a full channel must not stall the other publishers on the
//! shared socket, so a video frame that does not fit is dropped and the picture chain restarts
//! at a requested keyframe (see [`MediaState`]).

use super::media::{Counters, MediaState, Packet};
use super::sdp::OfferSummary;
use crate::publish::{IngestEvent, Publisher};
use bytes::Bytes;
use packager::{Codec, Track};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::media::KeyframeRequestKind;
use str0m::net::Protocol;
use str0m::rtp::{RtpPacket, Ssrc};
use str0m::{Event, IceConnectionState, Rtc};
use tokio::sync::mpsc::error::TrySendError;

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
    media: MediaState,
    video_ssrc: Option<Ssrc>,
    last_keyframe_request: Option<Instant>,
    keyframe_asked: bool,
    pub last_rx: Instant,
    pub remote: Option<SocketAddr>,
    /// How `remote`'s last packet came: UDP, or ICE-TCP.
    pub transport: Protocol,
    ice_state: IceConnectionState,
    next_stats: Instant,
    last_counters: Counters,
    rtt: Option<Duration>,
    loss: Option<f32>,
    pub ended: Option<End>,
    pub keyframe_requests: u64,
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
            media: MediaState::new(offer),
            video_ssrc: None,
            last_keyframe_request: None,
            keyframe_asked: false,
            last_rx: now,
            remote: None,
            transport: Protocol::Udp,
            ice_state: IceConnectionState::New,
            next_stats: now + Duration::from_secs(1),
            last_counters: Counters::default(),
            rtt: None,
            loss: None,
            ended: None,
            keyframe_requests: 0,
        }
    }

    pub fn cancelled(&self) -> bool {
        self.publisher.cancel.is_cancelled()
    }

    /// Asks for a keyframe at the next tick (rate limited).
    pub fn want_keyframe(&mut self) {
        self.keyframe_asked = true;
    }

    pub fn handle_event(&mut self, _now: Instant, ev: Event) {
        match ev {
            Event::IceConnectionStateChange(s) => {
                tracing::debug!(session = %self.id, state = ?s, "WHIP ICE state");
                self.ice_state = s;
            }
            Event::Connected => {
                tracing::info!(session = %self.id, remote = ?self.remote, transport = %self.transport, "WHIP publisher connected");
                self.keyframe_asked = true;
            }
            Event::RtpPacket(p) => self.rtp(p),
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

    fn rtp(&mut self, p: RtpPacket) {
        let pt = *p.header.payload_type;
        if self.media.is_video(pt) {
            self.video_ssrc = Some(p.header.ssrc);
        }
        let packet = Packet {
            pt,
            seq: *p.seq_no,
            rtp_time: p.time.numer(),
            marker: p.header.marker,
            payload: Bytes::from(p.payload.to_vec()),
            arrival: p.timestamp,
            sender_report: p
                .last_sender_info
                .map(|si| (si.ntp_time, si.rtp_time.numer() as u32)),
        };
        let (events, ended) = (&self.publisher.events, &mut self.ended);
        self.media.push(packet, &mut |ev| send(events, ended, ev));
    }

    /// Timers: depacketizer gaps, keyframe requests, stats, the ICE timeout, cancellation.
    pub fn tick(&mut self, now: Instant, ice_timeout: Duration, stats_interval: Duration) {
        {
            let (events, ended) = (&self.publisher.events, &mut self.ended);
            self.media
                .handle_timeout(now, &mut |ev| send(events, ended, ev));
        }
        let retry = self.media.waiting_for_keyframe()
            && self
                .last_keyframe_request
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY);
        if self.media.take_keyframe_wanted() || retry {
            self.keyframe_asked = true;
        }
        if self.keyframe_asked {
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
            send(
                &self.publisher.events,
                &mut self.ended,
                IngestEvent::Stats(stats),
            );
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
        let kind = if self.media.pli_negotiated() {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        if let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc) {
            rx.request_keyframe(kind);
            self.keyframe_requests += 1;
            self.last_keyframe_request = Some(now);
            self.keyframe_asked = false;
            tracing::debug!(session = %self.id, ?kind, "WHIP keyframe request");
        }
    }

    fn stats_json(&mut self, interval: Duration) -> serde_json::Value {
        let (s, last) = (self.media.counters, self.last_counters);
        self.last_counters = s;
        let secs = interval.as_secs_f64().max(0.001);
        let kbps = |now: u64, before: u64| {
            (now.saturating_sub(before) as f64 * 8.0 / secs / 1000.0).round()
        };
        let fps =
            (s.video_frames.saturating_sub(last.video_frames) as f64 / secs * 10.0).round() / 10.0;
        let (video_codec, width, height) = match self.media.tracks().and_then(|t| t.first()) {
            Some(Track {
                codec: c @ Codec::H264 { width, height, .. },
                ..
            }) => (Some(c.rfc6381()), Some(*width), Some(*height)),
            _ => (None, None, None),
        };
        serde_json::json!({
            "protocol": "whip",
            "remote": self.remote.map(|r| r.to_string()),
            "transport": self.transport.to_string(),
            "ice_state": format!("{:?}", self.ice_state).to_lowercase(),
            "rtt_ms": self.rtt.map(|r| r.as_secs_f64() * 1000.0),
            "packet_loss": self.loss,
            "video_codec": video_codec,
            "audio_codec": self.media.has_opus().then_some("opus"),
            "width": width,
            "height": height,
            "fps": fps,
            "video_kbps": kbps(s.video_bytes, last.video_bytes),
            "audio_kbps": kbps(s.audio_bytes, last.audio_bytes),
            "video_frames": s.video_frames,
            "audio_frames": s.audio_frames,
            "keyframes": s.keyframes,
            "dropped_frames": s.dropped,
            "loss_events": s.losses,
            "keyframe_requests": self.keyframe_requests,
        })
    }
}

/// `try_send` to the stream session; a closed channel means the session is gone.
fn send(
    events: &tokio::sync::mpsc::Sender<IngestEvent>,
    ended: &mut Option<End>,
    ev: IngestEvent,
) -> bool {
    match events.try_send(ev) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => false,
        Err(TrySendError::Closed(_)) => {
            ended.get_or_insert(End::ConsumerGone);
            false
        }
    }
}
