//! One RTMP connection as a sans-IO state machine: bytes in, [`SessionEvent`]s and bytes to send
//! out. Built on rml_rtmp's [`Handshake`] and [`ServerSession`] (the vendored, patched copy).
//!
//! Contract: call [`RtmpSession::feed`] with whatever arrived from the socket, in order, then send
//! [`RtmpSession::take_outbound`]. The session asks the [`PublishGate`] about a `publish` the moment
//! the request is parsed and answers it before it parses the next message, so slicing the input
//! differently never changes the events (rml_rtmp 0.8 dropped what followed a pending request in
//! the same buffer; see `vendor/rml_rtmp/PATCHES.md`, patch 2). When [`RtmpSession::is_closed`]
//! turns true the connection should be closed once the outbound bytes are flushed.

use super::media::{Announced, MediaAssembler};
use super::SessionError;
use crate::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// What happened on the connection, in order.
#[derive(Debug)]
pub enum SessionEvent {
    /// `connect` to the configured app was accepted.
    Connected { app: String },
    /// The gate accepted `publish`: media events for this publisher follow.
    PublishStarted {
        stream_key: String,
        publisher: Publisher,
    },
    /// The gate refused `publish`; the refusal was answered and the session is closed.
    PublishRefused {
        stream_key: String,
        refusal: Refusal,
    },
    /// `connect` named another app; answered with `NetConnection.Connect.Rejected`, closed.
    ConnectRefused { app: String },
    /// Tracks and frames of the current publish, for [`Publisher::events`].
    Media(IngestEvent),
    /// `onMetaData` (encoder, frame rate, bitrates), for the stream status.
    Metadata(StreamMetadata),
    /// `FCUnpublish`, `deleteStream` or `closeStream` ended the publish (ffmpeg does this; OBS just
    /// closes TCP, which the server sees as end of input).
    PublishEnded { stream_key: String },
    /// The input was bad: always the last event of a feed; the session is closed. The events
    /// before it in the same feed are valid and should be delivered.
    Failed(SessionError),
}

/// Settings of the sans-IO session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The only RTMP application publishers may connect to (`live`).
    pub app: String,
    /// The peer, for [`PublisherInfo`].
    pub peer: Option<SocketAddr>,
}

enum Stage {
    Handshake(Box<Handshake>),
    Active(Box<ServerSession>),
    Closed,
}

/// Counters for statistics, updated as bytes and frames go through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounters {
    pub bytes_in: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub video_bytes: u64,
    pub audio_bytes: u64,
}

/// One RTMP connection (see the module docs for the contract).
pub struct RtmpSession {
    gate: Arc<dyn PublishGate>,
    config: SessionConfig,
    stage: Stage,
    outbound: Vec<u8>,
    /// Stream key and media state of the publish in progress.
    publishing: Option<(String, MediaAssembler)>,
    counters: SessionCounters,
}

impl RtmpSession {
    pub fn new(gate: Arc<dyn PublishGate>, config: SessionConfig) -> Self {
        Self {
            gate,
            config,
            stage: Stage::Handshake(Box::new(Handshake::new(PeerType::Server))),
            outbound: Vec::new(),
            publishing: None,
            counters: SessionCounters::default(),
        }
    }

    /// Bytes to send to the peer now.
    pub fn take_outbound(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbound)
    }

    /// The connection is done (refused, or after [`SessionEvent::Failed`]): flush the outbound
    /// bytes and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.stage, Stage::Closed)
    }

    /// Whether the RTMP handshake has completed.
    pub fn handshake_done(&self) -> bool {
        !matches!(self.stage, Stage::Handshake(_))
    }

    /// The stream key being published, if any.
    pub fn publishing(&self) -> Option<&str> {
        self.publishing.as_ref().map(|(k, _)| k.as_str())
    }

    /// The tracks of the current publish, once known.
    pub fn tracks(&self) -> Vec<packager::Track> {
        self.publishing
            .as_ref()
            .map(|(_, m)| m.tracks())
            .unwrap_or_default()
    }

    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Processes bytes from the peer. A [`SessionEvent::Failed`] ends the list when the input
    /// was bad; the session is closed from then on and ignores further input.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        self.counters.bytes_in += bytes.len() as u64;
        if let Err(e) = self.feed_inner(bytes, &mut events) {
            self.stage = Stage::Closed;
            self.publishing = None;
            events.push(SessionEvent::Failed(e));
        }
        events
    }

    /// The peer closed the connection: ends the publish, releasing any frames held back.
    pub fn finish(&mut self) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        if let Some((stream_key, mut media)) = self.publishing.take() {
            let mut out = Vec::new();
            media.finish(&mut out);
            self.count(&out);
            events.extend(out.into_iter().map(SessionEvent::Media));
            events.push(SessionEvent::PublishEnded { stream_key });
        }
        self.stage = Stage::Closed;
        events
    }

    fn feed_inner(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        let rest;
        let input: &[u8] = match &mut self.stage {
            Stage::Closed => return Ok(()),
            Stage::Active(_) => bytes,
            Stage::Handshake(handshake) => match handshake.process_bytes(bytes)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    let mut config = ServerSessionConfig::new();
                    // Large chunks from us are only a few control messages; 4096 like nginx-rtmp.
                    config.chunk_size = 4096;
                    config.window_ack_size = 5_000_000;
                    config.peer_bandwidth = 5_000_000;
                    let (session, results) = ServerSession::new(config)?;
                    self.stage = Stage::Active(Box::new(session));
                    self.handle_results(results, events)?;
                    rest = remaining_bytes;
                    &rest
                }
            },
        };
        let mut results = match &mut self.stage {
            Stage::Active(session) => session.handle_input(input)?,
            _ => return Ok(()),
        };
        // Each round ends early after a request (patch 2); resume with no new bytes until a round
        // raises none.
        loop {
            let had_request = self.handle_results(results, events)?;
            if !had_request {
                return Ok(());
            }
            results = match &mut self.stage {
                Stage::Active(session) => session.handle_input(&[])?,
                _ => return Ok(()),
            };
        }
    }

    /// Applies a batch of session results; returns whether a request was decided.
    fn handle_results(
        &mut self,
        results: Vec<ServerSessionResult>,
        events: &mut Vec<SessionEvent>,
    ) -> Result<bool, SessionError> {
        let mut had_request = false;
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.outbound.extend_from_slice(&packet.bytes);
                }
                ServerSessionResult::RaisedEvent(event) => {
                    had_request |= self.handle_event(event, events)?;
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
            if self.is_closed() {
                break;
            }
        }
        Ok(had_request)
    }

    fn session(&mut self) -> Option<&mut ServerSession> {
        match &mut self.stage {
            Stage::Active(s) => Some(s),
            _ => None,
        }
    }

    fn respond(
        &mut self,
        results: Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>,
    ) -> Result<(), SessionError> {
        for r in results? {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.outbound.extend_from_slice(&packet.bytes);
            }
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        event: ServerSessionEvent,
        events: &mut Vec<SessionEvent>,
    ) -> Result<bool, SessionError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                // tcUrl-style extras ("live?token=…") are not part of the app name.
                let app = app_name.split('?').next().unwrap_or_default();
                if app == self.config.app {
                    let r = self.session().map(|s| s.accept_request(request_id));
                    if let Some(r) = r {
                        self.respond(r)?;
                    }
                    events.push(SessionEvent::Connected { app: app_name });
                } else {
                    tracing::info!(app = %app_name, "RTMP connect to an unknown app refused");
                    let r = self.session().map(|s| {
                        s.reject_request(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        )
                    });
                    if let Some(r) = r {
                        self.respond(r)?;
                    }
                    events.push(SessionEvent::ConnectRefused { app: app_name });
                    self.stage = Stage::Closed;
                }
                Ok(true)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                // OBS and ffmpeg pass URL query parameters along with the key.
                let key = stream_key.split('?').next().unwrap_or_default().to_string();
                let info = PublisherInfo {
                    protocol: "rtmp",
                    remote: self.config.peer,
                };
                match self.gate.start_publish(&key, info) {
                    Ok(publisher) => {
                        let r = self.session().map(|s| s.accept_request(request_id));
                        if let Some(r) = r {
                            self.respond(r)?;
                        }
                        self.publishing = Some((key.clone(), MediaAssembler::new()));
                        events.push(SessionEvent::PublishStarted {
                            stream_key: key,
                            publisher,
                        });
                    }
                    Err(refusal) => {
                        let code = match refusal {
                            Refusal::AlreadyPublishing => "NetStream.Publish.BadConnection",
                            _ => "NetStream.Publish.BadName",
                        };
                        tracing::info!(stream_key = %key, %refusal, code, "RTMP publish refused");
                        let description = refusal.to_string();
                        let r = self
                            .session()
                            .map(|s| s.reject_request(request_id, code, &description));
                        if let Some(r) = r {
                            self.respond(r)?;
                        }
                        events.push(SessionEvent::PublishRefused {
                            stream_key: key,
                            refusal,
                        });
                        self.stage = Stage::Closed;
                    }
                }
                Ok(true)
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                // storef serves HLS, not RTMP playback.
                let r = self.session().map(|s| {
                    s.reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "playback is not offered",
                    )
                });
                if let Some(r) = r {
                    self.respond(r)?;
                }
                self.stage = Stage::Closed;
                Ok(true)
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                if let Some((_, media)) = self.publishing.as_mut() {
                    let mut out = Vec::new();
                    media.video(timestamp.value, &data, &mut out)?;
                    self.count(&out);
                    events.extend(out.into_iter().map(SessionEvent::Media));
                }
                Ok(false)
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                if let Some((_, media)) = self.publishing.as_mut() {
                    let mut out = Vec::new();
                    media.audio(timestamp.value, &data, &mut out)?;
                    self.count(&out);
                    events.extend(out.into_iter().map(SessionEvent::Media));
                }
                Ok(false)
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some((_, media)) = self.publishing.as_mut() {
                    media.set_announced(announced(&metadata));
                }
                events.push(SessionEvent::Metadata(metadata));
                Ok(false)
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.end_publish(events);
                Ok(false)
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. }
                if command_name == "FCUnpublish" =>
            {
                self.end_publish(events);
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn end_publish(&mut self, events: &mut Vec<SessionEvent>) {
        if let Some((stream_key, mut media)) = self.publishing.take() {
            let mut out = Vec::new();
            media.finish(&mut out);
            self.count(&out);
            events.extend(out.into_iter().map(SessionEvent::Media));
            events.push(SessionEvent::PublishEnded { stream_key });
        }
    }

    fn count(&mut self, out: &[IngestEvent]) {
        for e in out {
            if let IngestEvent::Frame(f) = e {
                match f.kind {
                    packager::TrackKind::Video => {
                        self.counters.video_frames += 1;
                        self.counters.video_bytes += f.data.len() as u64;
                    }
                    packager::TrackKind::Audio => {
                        self.counters.audio_frames += 1;
                        self.counters.audio_bytes += f.data.len() as u64;
                    }
                }
            }
        }
    }
}

/// What `onMetaData` says about the tracks: a stream with video fields and no audio field at all
/// has no audio (ffmpeg and OBS list `audiocodecid` whenever there is audio), and vice versa.
fn announced(m: &StreamMetadata) -> Announced {
    let any_video = m.video_codec_id.is_some()
        || m.video_width.is_some()
        || m.video_height.is_some()
        || m.video_frame_rate.is_some()
        || m.video_bitrate_kbps.is_some();
    let any_audio = m.audio_codec_id.is_some()
        || m.audio_sample_rate.is_some()
        || m.audio_channels.is_some()
        || m.audio_is_stereo.is_some()
        || m.audio_bitrate_kbps.is_some();
    Announced {
        has_video: (any_video || any_audio).then_some(any_video),
        has_audio: (any_video || any_audio).then_some(any_audio),
    }
}

#[cfg(test)]
mod tests;
