//! What `GET /api/streams/:id` shows about a pull: state, last error, codecs, measured rate.
//!
//! Everything here is plain data plus a sans-IO meter ([`RateMeter`]) fed with media timestamps,
//! so fps and bitrate are the camera's, not a function of how fast this machine reads them.

use serde::Serialize;

/// Where a pull is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RtspState {
    /// First connection attempt (DESCRIBE/SETUP/PLAY) under way.
    Connecting,
    /// Frames are flowing to the stream.
    Streaming,
    /// The last attempt or connection failed; waiting out the backoff or trying again.
    Reconnecting,
    /// Gave up: `max_attempts` consecutive failures, `max_auth_attempts` wrong-credential answers
    /// in a row, an invalid URL, or the stream refused the pull.
    Failed,
    /// Cancelled by the server (`POST /stop`, shutdown).
    Stopped,
}

/// Why a connection attempt or a connection failed, for a UI to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RtspErrorKind {
    /// The URL or transport was rejected before connecting.
    InvalidUrl,
    /// `401`/`403`: wrong or missing username/password.
    Auth,
    /// `404`: no stream at that path.
    NotFound,
    /// TCP connect failed (refused, no route, DNS) or timed out.
    Unreachable,
    /// Something answered on the port, but not RTSP (an HTTP server, an SSH banner …).
    NotRtsp,
    /// Another RTSP error response (`454 Session Not Found`, `461 Unsupported Transport`, 5xx).
    Protocol,
    /// The camera offers no stream storef can carry (no H.264 video).
    Unsupported,
    /// DESCRIBE/SETUP/PLAY or the first keyframe took longer than the connect timeout.
    Timeout,
    /// A playing connection ended: closed by the camera, a read error, or no frames for the
    /// frame timeout (a rebooting camera, a pulled cable).
    Dropped,
    /// The stream's session refused the frames (stream stopped or gone).
    Refused,
}

/// The last error, as shown in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RtspFailure {
    pub kind: RtspErrorKind,
    /// One-line, human readable; never contains the password.
    pub message: String,
}

/// The video track as last negotiated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoStatus {
    /// RFC 6381, e.g. `avc1.42c01e`.
    pub codec: String,
    pub width: u16,
    pub height: u16,
    /// Frame rate the SPS declares (VUI timing), if it does.
    pub declared_fps: Option<f64>,
}

/// The audio track, when one is carried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AudioStatus {
    /// RFC 6381, e.g. `mp4a.40.2`.
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u8,
}

/// The full status of one pull. Published on a `tokio::sync::watch` channel; every field is
/// meaningful at any time (zeros and `None` before the first connection).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RtspStatus {
    pub state: RtspState,
    /// The source URL with its password replaced by `***`.
    pub source: String,
    pub transport: super::RtspTransport,
    pub last_error: Option<RtspFailure>,
    /// Failed attempts since frames last flowed (what bounds `RtspConfig::max_attempts`).
    pub failed_attempts: u32,
    /// Connections that reached the first keyframe; each one after the first is a new run
    /// (`EXT-X-DISCONTINUITY`).
    pub connections: u32,
    /// Milliseconds until the next attempt, while `reconnecting`.
    pub retry_in_ms: Option<u64>,
    /// The camera's software, from the SDP `a=tool:` line.
    pub server_tool: Option<String>,
    pub video: Option<VideoStatus>,
    pub audio: Option<AudioStatus>,
    /// Measured over the last second or more of media time.
    pub fps: Option<f64>,
    pub bitrate_bps: Option<u64>,
    /// Frames sent to the stream over all connections.
    pub video_frames: u64,
    pub audio_frames: u64,
    /// RTP packets lost (sequence-number gaps retina saw), over all connections.
    pub packets_lost: u64,
    /// Things left out on purpose, e.g. "audio PCMU 8000 Hz is not carried (fMP4 HLS has no G.711)".
    pub notes: Vec<String>,
}

impl RtspStatus {
    /// The status before anything happened.
    pub fn new(source: &super::RtspSource) -> RtspStatus {
        RtspStatus {
            state: RtspState::Connecting,
            source: source.redacted_url(),
            transport: source.transport,
            last_error: None,
            failed_attempts: 0,
            connections: 0,
            retry_in_ms: None,
            server_tool: None,
            video: None,
            audio: None,
            fps: None,
            bitrate_bps: None,
            video_frames: 0,
            audio_frames: 0,
            packets_lost: 0,
            notes: Vec::new(),
        }
    }
}

/// Frame rate and bitrate over windows of at least one second of *media* time.
///
/// Fed every frame's timestamp (seconds since any origin) and size; publishes a figure each time a
/// window closes, so a stalled camera keeps its last figures until the connection times out.
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    window_start: Option<f64>,
    video_frames: u32,
    bytes: u64,
}

/// One closed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub fps: f64,
    pub bitrate_bps: u64,
}

impl RateMeter {
    /// Accounts one frame; `video` frames count towards fps, all bytes towards the bitrate.
    /// Returns the rates when at least one second has passed since the window opened.
    pub fn push(&mut self, t_secs: f64, bytes: usize, video: bool) -> Option<Rates> {
        let start = match self.window_start {
            // A timestamp going backwards (new connection, camera clock reset) restarts the window.
            Some(s) if t_secs >= s => s,
            _ => {
                self.window_start = Some(t_secs);
                self.video_frames = 0;
                self.bytes = 0;
                t_secs
            }
        };
        let span = t_secs - start;
        if video && span >= 1.0 && self.video_frames > 0 {
            // The frames counted so far cover exactly [start, t): this one opens the next window.
            let rates = Rates {
                fps: f64::from(self.video_frames) / span,
                bitrate_bps: ((self.bytes as f64) * 8.0 / span).round() as u64,
            };
            self.window_start = Some(t_secs);
            self.video_frames = 1;
            self.bytes = bytes as u64;
            return Some(rates);
        }
        if video {
            self.video_frames += 1;
        }
        self.bytes += bytes as u64;
        None
    }

    /// Forgets the window (a new connection's clock has another origin).
    pub fn reset(&mut self) {
        *self = RateMeter::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_counts_thirty_fps_and_bitrate() {
        let mut m = RateMeter::default();
        let mut got = Vec::new();
        for i in 0..91u32 {
            let t = f64::from(i) / 30.0;
            if let Some(r) = m.push(t, 1000, true) {
                got.push(r);
            }
            // Audio in between adds bytes, not frames.
            if let Some(r) = m.push(t + 0.01, 250, false) {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 3, "{got:?}");
        for r in got {
            assert!((r.fps - 30.0).abs() < 1e-9, "{r:?}");
            assert_eq!(r.bitrate_bps, 30 * 1250 * 8);
        }
    }

    #[test]
    fn meter_restarts_when_time_goes_back() {
        let mut m = RateMeter::default();
        for i in 0..20 {
            assert!(m.push(100.0 + f64::from(i) / 10.0, 10, true).is_none() || i >= 10);
        }
        // Clock reset: no absurd rate, the window restarts.
        assert_eq!(m.push(0.0, 10, true), None);
        assert_eq!(m.push(0.5, 10, true), None);
        let r = m.push(1.0, 10, true).unwrap();
        assert!((r.fps - 2.0).abs() < 1e-9);
    }

    #[test]
    fn status_serializes_with_snake_case_kinds() {
        let src =
            super::super::RtspSource::parse("rtsp://u:pw@h/p", super::super::RtspTransport::Tcp)
                .unwrap();
        let mut s = RtspStatus::new(&src);
        s.last_error = Some(RtspFailure {
            kind: RtspErrorKind::NotRtsp,
            message: "x".into(),
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "connecting");
        assert_eq!(v["last_error"]["kind"], "not_rtsp");
        assert_eq!(v["source"], "rtsp://u:***@h/p");
        assert_eq!(v["transport"], "tcp");
    }
}
