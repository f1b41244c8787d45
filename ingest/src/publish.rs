//! The boundary between a live protocol front-end (RTMP, WHIP, RTSP) and the server.
//!
//! A front-end asks the [`PublishGate`] for permission when a publisher names a stream key, then
//! sends [`IngestEvent`]s down the channel it is handed until the publisher goes away or the server
//! cancels the publish (`POST /stop`).

use packager::{MediaFrame, Track};
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a front-end tells the stream's session.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// The codec configuration of the frames that follow. The first one of a publish starts a run;
    /// a later one with a different configuration starts a new init segment.
    Tracks(Vec<Track>),
    /// One access unit, timestamps in its track's timescale, monotonic within the publish.
    Frame(MediaFrame),
    /// Several, in order ([`crate::batch`]): one wakeup of the stream's task instead of one per
    /// frame.
    Frames(Vec<MediaFrame>),
    /// Publisher-side statistics for `GET /api/streams/:id` (bitrate, loss, RTT …), as JSON.
    Stats(serde_json::Value),
}

impl IngestEvent {
    /// The frames this event carries (none for tracks and stats).
    pub fn frames(&self) -> &[MediaFrame] {
        match self {
            IngestEvent::Frame(f) => std::slice::from_ref(f),
            IngestEvent::Frames(v) => v,
            IngestEvent::Tracks(_) | IngestEvent::Stats(_) => &[],
        }
    }
}

/// Who is publishing, for logs and the stream status.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// `rtmp`, `whip` or `rtsp`.
    pub protocol: &'static str,
    pub remote: Option<SocketAddr>,
}

/// Permission to publish to one stream.
#[derive(Debug)]
pub struct Publisher {
    pub stream_id: String,
    /// Events for the stream's session. When the front-end drops this sender the publisher is gone
    /// (the reconnect window starts).
    pub events: mpsc::Sender<IngestEvent>,
    /// Cancelled by the server when the stream is stopped; the front-end then closes the connection.
    pub cancel: CancellationToken,
}

/// Why a publish was refused; each maps onto the protocol's own status (RTMP
/// `NetStream.Publish.BadName`, HTTP 401/404/409 for WHIP).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("unknown stream key")]
    UnknownKey,
    #[error("stream is stopped")]
    Stopped,
    #[error("stream already has a publisher")]
    AlreadyPublishing,
}

/// Implemented by the server: looks a stream key up and hands out a [`Publisher`].
pub trait PublishGate: Send + Sync + 'static {
    fn start_publish(&self, stream_key: &str, info: PublisherInfo) -> Result<Publisher, Refusal>;
}
