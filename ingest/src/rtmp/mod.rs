//! RTMP publish ingest (Adobe RTMP 1.0 spec, FLV tag bodies per Adobe FLV v10.1, Enhanced RTMP
//! refused except for `avc1`/`mp4a`): OBS and ffmpeg push `rtmp://HOST/live/<streamKey>`.
//!
//! - [`session`]: one connection as a sans-IO state machine on rml_rtmp's handshake and server
//!   session (vendored and patched, `vendor/rml_rtmp/PATCHES.md`).
//! - [`media`]: FLV tags → tracks and frames with continuous timestamps.
//! - [`server`]: the thin tokio accept loop and per-connection task.
//! - [`socket`]: a publishing connection's socket, read on a shared tick rather than per packet.
//! - [`client`]: a small publishing client on rml_rtmp's `ClientSession`, for tests and the
//!   `rtmp_load` generator.

pub mod client;
pub mod media;
pub mod server;
pub mod session;
mod socket;

pub use server::{serve, RtmpConfig};
pub use session::{RtmpSession, SessionConfig, SessionEvent};

use crate::flv::FlvError;

/// Why an RTMP connection was ended by storef.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("RTMP handshake: {0}")]
    Handshake(#[from] rml_rtmp::handshake::HandshakeError),
    /// Chunk stream or command errors from rml_rtmp (malformed chunk headers, bad AMF0 …).
    #[error("RTMP session: {0}")]
    Protocol(#[from] rml_rtmp::sessions::ServerSessionError),
    /// An audio/video message whose FLV tag body was malformed or of a refused codec.
    #[error("FLV tag at RTMP timestamp {timestamp} ms: {source}")]
    Tag { timestamp: u32, source: FlvError },
    /// An AVC frame whose NAL unit length prefixes do not add up.
    #[error("video tag at RTMP timestamp {timestamp} ms: bad NAL unit length prefix at byte offset {offset}")]
    BadNalUnits { timestamp: u32, offset: usize },
}
