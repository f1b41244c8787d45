//! RTSP pull: an IP camera that cannot push becomes a storef stream.
//!
//! storef is the RTSP client (RFC 2326): [`pull`] connects with retina (DESCRIBE, SETUP of the
//! H.264 video and, when the camera sends AAC, the audio, PLAY), turns what retina depacketizes
//! into [`crate::publish::IngestEvent`]s, and reconnects with backoff when the camera drops or
//! reboots. Each connection is a new run: it begins with `IngestEvent::Tracks`, which the
//! stream's session turns into a new init segment and `EXT-X-DISCONTINUITY`.
//!
//! - [`source`]: the URL (credentials kept out of everything that is logged or shown).
//! - [`convert`]: sans-IO codec-parameter and timestamp mapping.
//! - [`status`]: what the API shows, and the fps/bitrate meter.
//! - [`pull`](mod@pull): the tokio task around retina.
//!
//! Wiring it into a stream (what the server does for `"pull": "rtsp://…"`):
//!
//! ```no_run
//! use ingest::publish::{IngestEvent, Publisher};
//! use ingest::rtsp::{pull, RtspConfig, RtspSource, RtspStatus, RtspTransport};
//! use tokio::sync::{mpsc, watch};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() {
//! let source = RtspSource::parse("rtsp://admin:pw@192.0.2.10/stream1", RtspTransport::Tcp)
//!     .expect("checked when the stream was started");
//! let (status_tx, status_rx) = watch::channel(RtspStatus::new(&source));
//! let (events_tx, mut events_rx) = mpsc::channel::<IngestEvent>(1024);
//! let stop = CancellationToken::new();
//! // Called once per connection; the Publisher is dropped when that connection ends.
//! let publisher = move || {
//!     Ok(Publisher {
//!         stream_id: "stream-id".into(),
//!         events: events_tx.clone(),
//!         cancel: CancellationToken::new(),
//!     })
//! };
//! tokio::spawn(pull(source, publisher, status_tx, RtspConfig::default(), stop.clone()));
//! while let Some(ev) = events_rx.recv().await {
//!     // Tracks -> new run (init segment + EXT-X-DISCONTINUITY), Frame -> segmenter, Stats -> status
//! #   let _ = ev;
//! }
//! // GET /api/streams/:id: serde_json::to_value(&*status_rx.borrow())
//! # let _ = status_rx;
//! # }
//! ```

pub mod convert;
pub mod pull;
pub mod source;
pub mod status;

pub use pull::{pull, RtspConfig};
pub use source::{RtspSource, RtspTransport};
pub use status::{RtspErrorKind, RtspFailure, RtspState, RtspStatus};

use crate::publish::Refusal;

/// Why a URL was rejected or a connection failed. Messages never contain the password: retina is
/// handed the URL without its userinfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspError {
    #[error("invalid RTSP URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("invalid RTSP transport {transport:?}: expected tcp or udp")]
    BadTransport { transport: String },
    /// `401 Unauthorized` / `403 Forbidden` to `method`.
    #[error("camera refused the credentials ({status} to {method}): {detail}")]
    Auth {
        status: u16,
        method: &'static str,
        detail: String,
    },
    #[error("no stream at this path (404 to {method}): {detail}")]
    NotFound {
        method: &'static str,
        detail: String,
    },
    #[error("cannot reach the camera: {detail}")]
    Unreachable { detail: String },
    #[error("the server does not speak RTSP: {detail}")]
    NotRtsp { detail: String },
    /// Any other error status, or a malformed exchange after a valid RTSP response.
    #[error("RTSP error during {stage}: {detail}")]
    Protocol { stage: &'static str, detail: String },
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    #[error("timed out after {secs} s waiting for {stage}")]
    Timeout { stage: &'static str, secs: u64 },
    /// A playing connection ended (EOF, read error, no frames for the frame timeout).
    #[error("connection dropped: {detail}")]
    Dropped { detail: String },
    #[error("the stream refused the pull: {0}")]
    Refused(Refusal),
    #[error("the stream's session is gone (events channel closed)")]
    SessionGone,
}

impl RtspError {
    /// The status category a UI switches on.
    pub fn kind(&self) -> RtspErrorKind {
        match self {
            RtspError::InvalidUrl { .. } | RtspError::BadTransport { .. } => {
                RtspErrorKind::InvalidUrl
            }
            RtspError::Auth { .. } => RtspErrorKind::Auth,
            RtspError::NotFound { .. } => RtspErrorKind::NotFound,
            RtspError::Unreachable { .. } => RtspErrorKind::Unreachable,
            RtspError::NotRtsp { .. } => RtspErrorKind::NotRtsp,
            RtspError::Protocol { .. } => RtspErrorKind::Protocol,
            RtspError::Unsupported { .. } => RtspErrorKind::Unsupported,
            RtspError::Timeout { .. } => RtspErrorKind::Timeout,
            RtspError::Dropped { .. } => RtspErrorKind::Dropped,
            RtspError::Refused(_) | RtspError::SessionGone => RtspErrorKind::Refused,
        }
    }

    /// Whether trying again cannot help (the URL itself is bad, or the stream is gone).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind(),
            RtspErrorKind::InvalidUrl | RtspErrorKind::Refused
        )
    }

    /// For the status: kind plus a one-line message.
    pub fn to_failure(&self) -> RtspFailure {
        RtspFailure {
            kind: self.kind(),
            message: self.to_string(),
        }
    }
}

/// Which request a retina error happened in; decides how a bare I/O or framing error reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Describe,
    Setup,
    Play,
    Streaming,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Describe => "DESCRIBE",
            Stage::Setup => "SETUP",
            Stage::Play => "PLAY",
            Stage::Streaming => "streaming",
        }
    }
}

/// Sorts a retina error into [`RtspError`]. retina exposes the response status; the rest is
/// told apart by the first line of its message, which is stable across 0.4 releases
/// ("Unable to connect to RTSP server: …", "RTSP framing error: …"). Pure, so it is unit-tested
/// on the exact strings.
pub(crate) fn classify(status: Option<u16>, message: &str, stage: Stage) -> RtspError {
    // retina's messages are multi-line (the connection and packet context follow a blank line);
    // keep them, on one line, for finding the exchange in a capture.
    let detail = one_line(message);
    match (status, stage) {
        (Some(401 | 403), _) => RtspError::Auth {
            status: status.unwrap_or(401),
            method: stage.name(),
            detail,
        },
        (Some(404), _) => RtspError::NotFound {
            method: stage.name(),
            detail,
        },
        (Some(_), _) => RtspError::Protocol {
            stage: stage.name(),
            detail,
        },
        (None, _) if message.starts_with("Unable to connect to RTSP server") => {
            RtspError::Unreachable { detail }
        }
        (None, Stage::Describe) if message.starts_with("RTSP framing error") => {
            RtspError::NotRtsp { detail }
        }
        (None, Stage::Streaming) => RtspError::Dropped { detail },
        (None, _) => RtspError::Protocol {
            stage: stage.name(),
            detail,
        },
    }
}

fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for part in message.split('\n').map(str::trim).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    // Status JSON, not a log dump.
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_retina_errors() {
        let e = classify(
            Some(401),
            "401 Unauthorized response to DESCRIBE CSeq=2: Unauthorized\n\nconn: 127.0.0.1:1->127.0.0.1:2@t\nmsg: 0",
            Stage::Describe,
        );
        assert_eq!(e.kind(), RtspErrorKind::Auth);
        assert!(e.to_string().contains("401 to DESCRIBE"), "{e}");
        assert!(e.to_string().contains("; conn: 127.0.0.1"), "{e}");
        assert_eq!(
            classify(Some(404), "404 Not Found", Stage::Describe).kind(),
            RtspErrorKind::NotFound
        );
        assert_eq!(
            classify(Some(461), "461 Unsupported transport", Stage::Setup).kind(),
            RtspErrorKind::Protocol
        );
        assert_eq!(
            classify(
                None,
                "Unable to connect to RTSP server: Connection refused (os error 111)",
                Stage::Describe
            )
            .kind(),
            RtspErrorKind::Unreachable
        );
        assert_eq!(
            classify(
                None,
                "RTSP framing error: Invalid RTSP message; buffered:\n...",
                Stage::Describe
            )
            .kind(),
            RtspErrorKind::NotRtsp
        );
        assert_eq!(
            classify(None, "Error reading from RTSP peer: EOF", Stage::Streaming).kind(),
            RtspErrorKind::Dropped
        );
        assert_eq!(
            classify(None, "Error reading from RTSP peer: EOF", Stage::Play).kind(),
            RtspErrorKind::Protocol
        );
    }

    #[test]
    fn one_line_is_bounded() {
        let long = "x\n\n".repeat(1000);
        let l = one_line(&long);
        assert!(l.len() <= 600 + '…'.len_utf8());
        assert!(!l.contains('\n'));
    }
}
