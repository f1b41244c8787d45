//! WHIP ingest (RFC 9725): a browser, OBS 30+ or GStreamer publishes WebRTC; storef turns it into
//! [`IngestEvent`](crate::publish::IngestEvent)s like every other front-end.
//!
//! The HTTP layer (axum in the server) authenticates the stream key, gets a [`Publisher`](crate::publish::Publisher) from the
//! `PublishGate` and calls [`WhipHandle::publish`] with the SDP offer; it answers `201 Created`
//! with [`WhipAnswer::answer_sdp`], `Location: /api/whip/{session_id}` and `ETag`. Media then flows
//! over one UDP socket shared by all publishers ([`WhipConfig::udp_addr`]), owned by the task
//! [`WhipServer::start`] spawns.
//!
//! # Why str0m 0.23.1 with the `openssl` feature
//! str0m is sans-IO and lets one socket serve every peer (webrtc-rs cannot). Its DTLS backend
//! decides which client certificates a publisher may present: the DTLS stack of str0m ≥ 0.24
//! (`dimpl`) sends a CertificateRequest for ECDSA only, so GStreamer's `webrtcbin` (RSA-2048
//! certificate) fails the handshake with "no client certificate received". 0.23.1's `openssl`
//! backend (OpenSSL's DTLS 1.2) requests RSA and ECDSA and accepts both, which covers Chromium,
//! Firefox, Safari (ECDSA) and GStreamer-based encoders (RSA). str0m 0.25's `openssl` feature would
//! do too but needs a `str0m-openssl` release that is not published. `default-features = false`
//! keeps str0m's example web server out. OpenSSL comes from the system (Debian `libssl-dev`).
//!
//! # How a session runs
//! - ICE-lite (RFC 8445 §2.5): storef only answers connectivity checks on its host candidates
//!   ([`WhipConfig::public_ips`], or the bound address, or every local address for `0.0.0.0`).
//! - str0m runs in RTP mode: it does SRTP, RTCP (receiver reports, NACK with RTX unwrapping) and
//!   hands over RTP packets; [`h264::H264Depacketizer`] reorders and reassembles them, and
//!   [`clock::AvClock`] places them on the publish's timeline.
//! - Keyframes: browsers send one only when asked, so storef sends PLI (FIR when PLI was not
//!   negotiated, RFC 5104 §4.3.1) when video starts, after unrepairable loss and on
//!   [`WhipHandle::request_keyframe`] (the segmenter's call when a segment runs past its target).
//! - The publisher is gone when ICE sees nothing for [`WhipConfig::ice_timeout`], on DELETE, or
//!   when the server cancels the publish; the events sender is then dropped.

pub mod avc;
pub mod clock;
pub mod h264;
pub mod media;
pub mod sdp;
mod server;
mod session;

pub use server::{WhipHandle, WhipServer};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Settings of the WHIP front-end (`[webrtc]` in config.toml).
#[derive(Debug, Clone)]
pub struct WhipConfig {
    /// The one UDP socket for all publishers. Default `0.0.0.0:8189`.
    pub udp_addr: SocketAddr,
    /// Addresses publishers reach the UDP socket on, for a server behind NAT (1:1 NAT or port
    /// forwarding of `udp_addr`'s port). Empty: the bound address, or the machine's addresses.
    pub public_ips: Vec<IpAddr>,
    /// STUN/TURN server URLs advertised in `Link` headers (RFC 9725 §4.6), e.g.
    /// `stun:stun.example.net:3478`.
    pub ice_servers: Vec<IceServer>,
    /// How long a session may go without any packet from its publisher (and how long ICE may
    /// take to connect) before the publisher counts as gone.
    pub ice_timeout: Duration,
    /// How often [`IngestEvent::Stats`](crate::publish::IngestEvent::Stats) is sent.
    pub stats_interval: Duration,
    /// SO_RCVBUF of the shared socket, bytes (capped by the kernel's `net.core.rmem_max`).
    pub udp_recv_buffer: usize,
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            udp_addr: SocketAddr::from(([0, 0, 0, 0], 8189)),
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            ice_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(2),
            udp_recv_buffer: 8 << 20,
        }
    }
}

/// A STUN or TURN server for the `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:…`.
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    /// The value of one `Link` header (RFC 9725 §4.6, RFC 8288).
    pub fn link_header(&self) -> String {
        let mut v = format!("<{}>; rel=\"ice-server\"", self.url);
        if let (Some(u), Some(c)) = (&self.username, &self.credential) {
            v.push_str(&format!(
                "; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\""
            ));
        }
        v
    }
}

/// What `POST /api/whip` answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipAnswer {
    /// The resource id: `Location: /api/whip/{session_id}`. 32 hex digits, unguessable.
    pub session_id: String,
    /// `Content-Type: application/sdp` body.
    pub answer_sdp: String,
    /// `ETag` header value (quoted), RFC 9725 §4.3.
    pub etag: String,
    /// `Link` header values for the configured ICE servers.
    pub links: Vec<String>,
}

/// Why a WHIP request failed; [`WhipError::status`] is the HTTP status to answer with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WhipError {
    #[error("bad SDP offer: {0}")]
    BadSdp(#[source] sdp::SdpError),
    /// The offer has no H.264; the message names what it offered.
    #[error("{0}")]
    NoH264(#[source] sdp::SdpError),
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
    #[error("unknown WHIP session {0}")]
    NotFound(String),
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("the WHIP UDP task has stopped")]
    Stopped,
    #[error("WHIP UDP socket: {0}")]
    Io(#[from] std::io::Error),
}

impl WhipError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            WhipError::BadSdp(_) | WhipError::Negotiation(_) => 400,
            // 415 Unsupported Media Type: the body is SDP but its media cannot be taken.
            WhipError::NoH264(_) => 415,
            WhipError::NotFound(_) => 404,
            WhipError::NotSupported(_) => 405,
            WhipError::Stopped | WhipError::Io(_) => 503,
        }
    }
}

impl From<sdp::SdpError> for WhipError {
    fn from(e: sdp::SdpError) -> Self {
        match e {
            sdp::SdpError::NoH264 { .. } => WhipError::NoH264(e),
            e => WhipError::BadSdp(e),
        }
    }
}
