//! The media side of one publisher, sans-IO: RTP packets (already decrypted by str0m) in,
//! [`IngestEvent`]s out through an `emit` callback.
//!
//! - Video (H.264) goes through [`H264Depacketizer`]; the SPS/PPS of each IDR picture decide the
//!   tracks, and a change of either re-announces them ([`IngestEvent::Tracks`]), which starts a
//!   new init segment downstream.
//! - Audio (Opus) is one frame per packet (RFC 7587 §4.2); late or duplicate packets are dropped so
//!   timestamps never go back.
//! - Nothing is emitted before the first IDR: there is no init segment to put it in.
//! - `emit` returns false when the stream session's channel is full. A dropped video frame breaks
//!   the reference chain, so video then waits for the next IDR and asks for one.

use super::avc::build_avcc;
use super::clock::{AvClock, Which, AUDIO_RATE, VIDEO_RATE};
use super::h264::{to_length_prefixed, H264Depacketizer, RtpIn};
use super::sdp::OfferSummary;
use crate::h264::parse_sps;
use crate::publish::IngestEvent;
use bytes::Bytes;
use packager::{Codec, MediaFrame, Track, TrackKind};
use std::time::{Instant, SystemTime};

/// Opus pre-skip when the stream does not say: libopus's encoder delay at 48 kHz (3.25 ms +
/// 3 ms lookahead = 312 samples), what Chromium and GStreamer's opusenc produce. WebRTC carries no
/// OpusHead, so this is the best guess (RFC 7845 §4.2).
pub const OPUS_PRE_SKIP: u16 = 312;

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub pt: u8,
    /// Extended sequence number.
    pub seq: u64,
    /// Extended RTP timestamp.
    pub rtp_time: u64,
    pub marker: bool,
    pub payload: Bytes,
    pub arrival: Instant,
    /// The stream's last RTCP sender report: wallclock and 32-bit RTP time.
    pub sender_report: Option<(SystemTime, u32)>,
}

/// Counters for the stats event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub video_bytes: u64,
    pub audio_bytes: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub keyframes: u64,
    pub dropped: u64,
    pub losses: u64,
}

/// See the module docs.
pub struct MediaState {
    offer: OfferSummary,
    video: H264Depacketizer,
    clock: AvClock,
    audio_last_seq: Option<u64>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    tracks: Option<Vec<Track>>,
    tracks_pending: bool,
    video_chain_ok: bool,
    keyframe_wanted: bool,
    pub counters: Counters,
}

impl MediaState {
    pub fn new(offer: OfferSummary) -> Self {
        MediaState {
            offer,
            video: H264Depacketizer::new(),
            clock: AvClock::new(),
            audio_last_seq: None,
            sps: None,
            pps: None,
            tracks: None,
            tracks_pending: false,
            video_chain_ok: true,
            keyframe_wanted: false,
            counters: Counters::default(),
        }
    }

    pub fn is_video(&self, pt: u8) -> bool {
        self.offer.h264.iter().any(|h| h.pt == pt)
    }

    /// The tracks announced last.
    pub fn tracks(&self) -> Option<&[Track]> {
        self.tracks.as_deref()
    }

    /// Whether PLI may be used (else FIR).
    pub fn pli_negotiated(&self) -> bool {
        self.offer.pli_negotiated()
    }

    pub fn has_opus(&self) -> bool {
        self.offer.opus.is_some()
    }

    /// Whether a keyframe should be requested now; clears the wish.
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    /// Whether video waits for an IDR (start, loss, dropped frame).
    pub fn waiting_for_keyframe(&self) -> bool {
        self.video.waiting_for_keyframe() || !self.video_chain_ok || self.tracks.is_none()
    }

    pub fn push(&mut self, p: Packet, emit: &mut dyn FnMut(IngestEvent) -> bool) {
        let video = self.is_video(p.pt);
        if let Some((ntp, rtp)) = p.sender_report {
            let which = if video { Which::Video } else { Which::Audio };
            self.clock.sender_report(which, ntp, rtp);
        }
        if video {
            self.counters.video_bytes += p.payload.len() as u64;
            self.video.push(RtpIn {
                seq: p.seq,
                timestamp: p.rtp_time,
                marker: p.marker,
                payload: p.payload,
                arrival: p.arrival,
            });
            self.drain_video(emit);
        } else if self.offer.opus.is_some_and(|o| o.pt == p.pt) {
            self.counters.audio_bytes += p.payload.len() as u64;
            if self.audio_last_seq.is_some_and(|l| p.seq <= l) || p.payload.is_empty() {
                return;
            }
            self.audio_last_seq = Some(p.seq);
            if self.tracks.is_none() {
                return;
            }
            let dts = self.clock.dts(Which::Audio, p.rtp_time, p.arrival);
            if self.frame(
                MediaFrame {
                    kind: TrackKind::Audio,
                    dts,
                    cts_offset: 0,
                    duration: None,
                    keyframe: true,
                    data: p.payload,
                },
                emit,
            ) {
                self.counters.audio_frames += 1;
            }
        }
    }

    /// Gives up on retransmissions that did not come in time.
    pub fn handle_timeout(&mut self, now: Instant, emit: &mut dyn FnMut(IngestEvent) -> bool) {
        self.video.handle_timeout(now);
        self.drain_video(emit);
    }

    fn drain_video(&mut self, emit: &mut dyn FnMut(IngestEvent) -> bool) {
        while let Some(r) = self.video.pull() {
            let au = match r {
                Err(e) => {
                    tracing::debug!(error = %e, "WHIP video loss");
                    self.counters.losses += 1;
                    self.keyframe_wanted = true;
                    continue;
                }
                Ok(au) => au,
            };
            if au.idr {
                self.parameter_sets(&au.nals);
                self.counters.keyframes += 1;
                self.video_chain_ok = true;
            }
            if self.tracks.is_none() || !self.video_chain_ok {
                self.counters.dropped += 1;
                continue;
            }
            let dts = self.clock.dts(Which::Video, au.timestamp, au.arrival);
            let sent = self.frame(
                MediaFrame {
                    kind: TrackKind::Video,
                    dts,
                    cts_offset: 0,
                    duration: None,
                    keyframe: au.idr,
                    data: to_length_prefixed(&au.nals),
                },
                emit,
            );
            if sent {
                self.counters.video_frames += 1;
            } else {
                self.video_chain_ok = false;
                self.keyframe_wanted = true;
            }
        }
        if self.video.waiting_for_keyframe() {
            self.keyframe_wanted = true;
        }
    }

    /// Takes the SPS/PPS of an IDR access unit; a change re-announces the tracks.
    fn parameter_sets(&mut self, nals: &[Bytes]) {
        let find = |t: u8| {
            nals.iter()
                .rev()
                .find(|n| n.first().map(|h| h & 0x1f) == Some(t))
        };
        let (sps, pps) = match (find(7), find(8), &self.sps, &self.pps) {
            (Some(s), Some(p), _, _) => (s.clone(), p.clone()),
            (_, _, Some(s), Some(p)) => (s.clone(), p.clone()),
            _ => return,
        };
        if self.tracks.is_some()
            && self.sps.as_ref() == Some(&sps)
            && self.pps.as_ref() == Some(&pps)
        {
            return;
        }
        let info = match parse_sps(&sps) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "WHIP: unreadable SPS");
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

    /// Emits a frame, after the tracks when they changed. False when it was dropped.
    fn frame(&mut self, f: MediaFrame, emit: &mut dyn FnMut(IngestEvent) -> bool) -> bool {
        if self.tracks_pending {
            let Some(t) = self.tracks.clone() else {
                return false;
            };
            if !emit(IngestEvent::Tracks(t)) {
                self.counters.dropped += 1;
                return false;
            }
            self.tracks_pending = false;
        }
        if !emit(IngestEvent::Frame(f)) {
            self.counters.dropped += 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
#[path = "media_tests.rs"]
mod tests;
