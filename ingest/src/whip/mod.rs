//! WHIP ingest (RFC 9725): a browser, OBS 30+ or GStreamer publishes WebRTC; storef turns it into
//! [`IngestEvent`](crate::publish::IngestEvent)s like every other front-end.
//!
//! The HTTP layer (axum in the server) authenticates the stream key, gets a [`Publisher`](crate::publish::Publisher) from the
//! `PublishGate` and calls [`WhipHandle::publish`] with the SDP offer; it answers `201 Created`
//! with [`WhipAnswer::answer_sdp`], `Location: /api/whip/{session_id}` and `ETag`. Media then flows
//! over one UDP socket shared by all publishers ([`WhipConfig::udp_addr`]), or over TCP
//! connections to [`WhipConfig::tcp_addr`] (ICE-TCP, RFC 6544) where UDP is blocked, both owned
//! by the task [`WhipServer::start`] spawns.
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
//!   ([`WhipConfig::public_ips`], or the bound address, or every local address for `0.0.0.0`):
//!   UDP ones, and passive TCP ones when [`WhipConfig::tcp_addr`] is set (ICE-TCP, RFC 6544: why
//!   passive only and why ranked below UDP is in `tcp.rs`; framing in [`rfc4571`]).
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
pub mod rfc4571;
pub mod sdp;
mod server;
mod session;
mod tcp;

pub use server::{WhipHandle, WhipServer};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The ICE-TCP listener (RFC 6544 passive host candidates, RFC 4571 framing) for publishers
    /// on networks that drop UDP; its candidates rank below the UDP ones (see `tcp.rs` for why).
    /// `None` (the library default, so tests and embedders bind nothing unasked): UDP only.
    /// storef's `[webrtc] tcp_addr` defaults to `0.0.0.0:8189`.
    pub tcp_addr: Option<SocketAddr>,
    /// Whether answers carry the UDP host candidates. `false` with a `tcp_addr`: TCP only, for a
    /// server whose UDP port is firewalled (the UDP socket is still bound but never advertised).
    pub advertise_udp: bool,
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
            tcp_addr: None,
            advertise_udp: true,
        }
    }
}

/// Packets and connections the WHIP server task has seen ([`WhipHandle::transport_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams received on the UDP socket (routed or not).
    pub udp_datagrams: u64,
    /// TCP connections accepted (including those refused right away).
    pub tcp_connections: u64,
    /// RFC 4571 frames received over TCP.
    pub tcp_frames: u64,
    /// TCP connections storef closed because of what they sent or did not send (garbage, unknown
    /// ufrag, oversized frame, timeout, over the connection cap, a peer that stopped reading).
    /// A peer that closes or resets its own connection is not counted: ICE agents open TCP
    /// connections for candidate pairs they then abandon when a better pair wins.
    pub tcp_dropped: u64,
    /// Of `tcp_dropped`, those that sent no acceptable STUN Binding request within the ICE
    /// timeout. Kept apart because a browser can open a TCP connection for a pair it never checks
    /// (the UDP pair won first): such a connection is silent by design, not an attack.
    pub tcp_timed_out: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    pub udp_datagrams: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_frames: AtomicU64,
    pub tcp_dropped: AtomicU64,
    pub tcp_timed_out: AtomicU64,
}

impl TransportCounters {
    fn snapshot(&self) -> TransportStats {
        TransportStats {
            udp_datagrams: self.udp_datagrams.load(Ordering::Relaxed),
            tcp_connections: self.tcp_connections.load(Ordering::Relaxed),
            tcp_frames: self.tcp_frames.load(Ordering::Relaxed),
            tcp_dropped: self.tcp_dropped.load(Ordering::Relaxed),
            tcp_timed_out: self.tcp_timed_out.load(Ordering::Relaxed),
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
    #[error("WHIP socket (UDP or ICE-TCP listener): {0}")]
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
