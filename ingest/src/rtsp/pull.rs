//! The pull task: one retina session per connection, reconnecting with backoff, until cancelled.
//!
//! Everything that decides something (URL rules, error sorting, codec mapping, the clock, rates)
//! lives in sans-IO modules beside this one; this file only sequences retina calls, timeouts and
//! channel sends.

use super::convert::{audio_track, video_track, RunClock, VIDEO_TIMESCALE};
use super::status::{AudioStatus, RateMeter, RtspState, RtspStatus};
use super::{classify, RtspError, RtspErrorKind, RtspSource, RtspTransport, Stage};
use crate::publish::{IngestEvent, Publisher, Refusal};
use bytes::Bytes;
use futures::StreamExt;
use packager::{MediaFrame, Track, TrackKind};
use retina::client::{
    Credentials, Demuxed, InitialTimestampPolicy, PlayOptions, Session, SessionOptions,
    SetupOptions, TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use url::Url;

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspConfig {
    /// Wait after the first failure; doubles with each further one.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up (state `failed`) after this many consecutive failed attempts; `None` retries
    /// forever, which is what a camera that reboots at night needs.
    pub max_attempts: Option<u32>,
    /// Give up after this many consecutive `401`/`403` answers, whatever `max_attempts` says:
    /// cameras lock an account (Hikvision: 5 failed logins; Dahua likewise) and a pull that
    /// keeps knocking with a stale password would lock out the camera's owner too.
    pub max_auth_attempts: u32,
    /// DESCRIBE + SETUP + PLAY + the first keyframe must fit in this (a camera's GOP can be
    /// several seconds long).
    pub connect_timeout: Duration,
    /// A playing connection with no video frame for this long is dropped and retried. Over UDP
    /// this is the only way to notice a camera that went away.
    pub frame_timeout: Duration,
    /// `User-Agent` header; some cameras log it.
    pub user_agent: String,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_attempts: None,
            max_auth_attempts: 3,
            connect_timeout: Duration::from_secs(20),
            frame_timeout: Duration::from_secs(10),
            user_agent: concat!("storef/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl RtspConfig {
    /// The wait before attempt `failed + 1`: `initial · 2^(failed-1)`, at most `max_backoff`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

/// How one connection ended.
enum End {
    /// The server cancelled this publish (`Publisher::cancel`).
    Cancelled,
    Failed {
        error: RtspError,
        /// Frames flowed before the failure: the failure count starts over.
        streamed: bool,
    },
}

/// Pulls `source` until `cancel` fires, the [`Publisher`] handed out is cancelled, or (with
/// [`RtspConfig::max_attempts`]) the camera keeps failing.
///
/// `publisher` is called once per connection that reached its first keyframe; the [`Publisher`]
/// it returns receives `IngestEvent::Tracks` first, then `Frame`s (and `Stats` about once a
/// second), and is dropped when the connection ends. So every reconnect is a new run that begins
/// with `Tracks`; the stream's session marks it with `EXT-X-DISCONTINUITY`. Frame timestamps stay
/// monotonic across runs anyway (see [`RunClock`]). A `Refusal` from `publisher` ends the pull.
///
/// `status` is kept current throughout (see [`RtspStatus`]); its final state is `stopped` or
/// `failed`. Returns `Ok(())` when cancelled, else the error that ended the pull.
pub async fn pull<F>(
    source: RtspSource,
    mut publisher: F,
    status: watch::Sender<RtspStatus>,
    config: RtspConfig,
    cancel: CancellationToken,
) -> Result<(), RtspError>
where
    F: FnMut() -> Result<Publisher, Refusal>,
{
    status.send_replace(RtspStatus::new(&source));
    let shown = source.redacted_url();
    let (url, creds) = match source.split() {
        Ok(v) => v,
        Err(e) => {
            finish(&status, RtspState::Failed, Some(&e));
            return Err(e);
        }
    };
    let creds = creds.map(|c| Credentials {
        username: c.username,
        password: c.password,
    });
    let mut clock = RunClock::default();
    let mut failed: u32 = 0;
    let mut auth_failed: u32 = 0;
    loop {
        let end = tokio::select! {
            biased;
            _ = cancel.cancelled() => End::Cancelled,
            end = connection(
                &url,
                creds.as_ref(),
                source.transport,
                &config,
                &status,
                &mut clock,
                &mut publisher,
            ) => end,
        };
        let (error, streamed) = match end {
            End::Cancelled => {
                tracing::info!(source = %shown, "rtsp pull stopped");
                finish(&status, RtspState::Stopped, None);
                return Ok(());
            }
            End::Failed { error, streamed } => (error, streamed),
        };
        if streamed {
            failed = 0;
            auth_failed = 0;
        }
        failed = failed.saturating_add(1);
        if error.kind() == RtspErrorKind::Auth {
            auth_failed = auth_failed.saturating_add(1);
        } else {
            auth_failed = 0;
        }
        if error.is_permanent()
            || config.max_attempts.is_some_and(|max| failed >= max)
            || auth_failed >= config.max_auth_attempts.max(1)
        {
            tracing::warn!(source = %shown, attempts = failed, error = %error, "rtsp pull failed");
            status.send_modify(|s| s.failed_attempts = failed);
            finish(&status, RtspState::Failed, Some(&error));
            return Err(error);
        }
        let wait = config.backoff(failed);
        tracing::warn!(
            source = %shown, attempts = failed, retry_in = ?wait, error = %error,
            "rtsp pull: connection failed, retrying"
        );
        status.send_modify(|s| {
            s.state = RtspState::Reconnecting;
            s.last_error = Some(error.to_failure());
            s.failed_attempts = failed;
            s.retry_in_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            s.fps = None;
            s.bitrate_bps = None;
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                finish(&status, RtspState::Stopped, None);
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {}
        }
        status.send_modify(|s| s.retry_in_ms = None);
    }
}

fn finish(status: &watch::Sender<RtspStatus>, state: RtspState, error: Option<&RtspError>) {
    status.send_modify(|s| {
        s.state = state;
        if let Some(e) = error {
            s.last_error = Some(e.to_failure());
        }
        s.retry_in_ms = None;
        s.fps = None;
        s.bitrate_bps = None;
    });
}

fn retina_err(e: retina::Error, stage: Stage) -> RtspError {
    classify(e.status_code(), &e.to_string(), stage)
}

fn timed_out(stage: &'static str, after: Duration) -> RtspError {
    RtspError::Timeout {
        stage,
        secs: after.as_secs(),
    }
}

/// What SETUP chose, for the frame loop.
struct Playing {
    demuxed: Demuxed,
    video_i: usize,
    audio: Option<(usize, Track, AudioStatus)>,
}

/// DESCRIBE, SETUP (video, AAC audio), PLAY; notes about what was left out go to the status.
async fn open(
    url: &Url,
    creds: Option<&Credentials>,
    transport: RtspTransport,
    config: &RtspConfig,
    status: &watch::Sender<RtspStatus>,
    deadline: Instant,
) -> Result<Playing, RtspError> {
    let to = config.connect_timeout;
    let options = SessionOptions::default()
        .creds(creds.cloned())
        .user_agent(config.user_agent.clone());
    let mut session = timeout_at(deadline, Session::describe(url.clone(), options))
        .await
        .map_err(|_| timed_out("the DESCRIBE response", to))?
        .map_err(|e| retina_err(e, Stage::Describe))?;

    let streams = session.streams();
    let Some(video_i) = streams
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
    else {
        let offered: Vec<String> = streams
            .iter()
            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
            .collect();
        return Err(RtspError::Unsupported {
            what: format!(
                "no H.264 video stream (the camera offers {})",
                if offered.is_empty() {
                    "nothing".to_string()
                } else {
                    offered.join(", ")
                }
            ),
        });
    };
    let mut notes = Vec::new();
    let mut audio = None;
    for (i, s) in streams.iter().enumerate() {
        if s.media() != "audio" {
            continue;
        }
        let params = match s.parameters() {
            Some(ParametersRef::Audio(a)) => Some(a),
            _ => None,
        };
        match audio_track(s.encoding_name(), s.clock_rate_hz(), params) {
            Ok(_) if audio.is_some() => notes.push(format!(
                "a second audio stream ({}) is not carried",
                s.encoding_name()
            )),
            Ok((track, st)) => audio = Some((i, track, st)),
            Err(note) => notes.push(note),
        }
    }
    let tool = session.tool().map(|t| t.to_string());
    status.send_modify(|s| {
        s.notes = notes;
        s.server_tool = tool;
    });

    let setup = || {
        let t = match transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        SetupOptions::default()
            .transport(t)
            .frame_format(FrameFormat::MP4)
    };
    timeout_at(deadline, session.setup(video_i, setup()))
        .await
        .map_err(|_| timed_out("the SETUP response", to))?
        .map_err(|e| retina_err(e, Stage::Setup))?;
    if let Some((audio_i, ..)) = &audio {
        timeout_at(deadline, session.setup(*audio_i, setup()))
            .await
            .map_err(|_| timed_out("the SETUP response", to))?
            .map_err(|e| retina_err(e, Stage::Setup))?;
    }
    // Permissive: use RTP-Info rtptime to align audio with video when the camera sends it for
    // every stream, else take each stream's first packet as time zero (cameras that send a
    // wrong or partial RTP-Info would otherwise fail PLAY).
    let play = PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive);
    let playing = timeout_at(deadline, session.play(play))
        .await
        .map_err(|_| timed_out("the PLAY response", to))?
        .map_err(|e| retina_err(e, Stage::Play))?;
    let demuxed = playing.demuxed().map_err(|e| retina_err(e, Stage::Play))?;
    Ok(Playing {
        demuxed,
        video_i,
        audio,
    })
}

fn tracks(video: &Track, audio: &Option<(usize, Track, AudioStatus)>) -> IngestEvent {
    let mut t = vec![video.clone()];
    if let Some((_, a, _)) = audio {
        t.push(a.clone());
    }
    IngestEvent::Tracks(t)
}

/// One connection, from DESCRIBE to its end.
async fn connection<F>(
    url: &Url,
    creds: Option<&Credentials>,
    transport: RtspTransport,
    config: &RtspConfig,
    status: &watch::Sender<RtspStatus>,
    clock: &mut RunClock,
    publisher: &mut F,
) -> End
where
    F: FnMut() -> Result<Publisher, Refusal>,
{
    let failed = |error| End::Failed {
        error,
        streamed: false,
    };
    let deadline = Instant::now() + config.connect_timeout;
    let Playing {
        mut demuxed,
        video_i,
        audio,
    } = match open(url, creds, transport, config, status, deadline).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };

    // Wait for a keyframe with known parameters (from sprop-parameter-sets or in-band SPS/PPS):
    // a run must start decodable.
    let mut lost: u64 = 0;
    let first = loop {
        let item = match timeout_at(deadline, demuxed.next()).await {
            Err(_) => return failed(timed_out("the first keyframe", config.connect_timeout)),
            Ok(None) => {
                return failed(RtspError::Dropped {
                    detail: "the camera ended the session before the first keyframe".into(),
                })
            }
            Ok(Some(Err(e))) => return failed(retina_err(e, Stage::Streaming)),
            Ok(Some(Ok(item))) => item,
        };
        if let CodecItem::VideoFrame(v) = item {
            lost += u64::from(v.loss());
            let has_params = matches!(
                demuxed.streams().get(video_i).and_then(|s| s.parameters()),
                Some(ParametersRef::Video(_))
            );
            if v.stream_id() == video_i && v.is_random_access_point() && has_params {
                break v;
            }
        }
    };
    let video_params = match demuxed.streams().get(video_i).and_then(|s| s.parameters()) {
        Some(ParametersRef::Video(p)) => video_track(p),
        _ => Err(RtspError::Unsupported {
            what: "H.264 stream without parameters".into(),
        }),
    };
    let (mut video, video_status) = match video_params {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let publisher = match publisher() {
        Ok(p) => p,
        Err(r) => return failed(RtspError::Refused(r)),
    };
    clock.begin_run();
    let mut meter = RateMeter::default();
    status.send_modify(|s| {
        s.state = RtspState::Streaming;
        s.connections += 1;
        s.failed_attempts = 0;
        s.retry_in_ms = None;
        s.video = Some(video_status);
        s.audio = audio.as_ref().map(|(_, _, a)| a.clone());
        s.packets_lost += lost;
    });
    let mut run = Run {
        publisher: &publisher,
        status,
        clock,
        meter: &mut meter,
    };
    if let Err(error) = run.send(tracks(&video, &audio)).await {
        return End::Failed {
            error,
            streamed: true,
        };
    }
    let streamed = |error| End::Failed {
        error,
        streamed: true,
    };
    if let Err(e) = run.video(first).await {
        return streamed(e);
    }

    let mut need_keyframe = false;
    let mut video_deadline = Instant::now() + config.frame_timeout;
    loop {
        let next = tokio::select! {
            biased;
            _ = publisher.cancel.cancelled() => return End::Cancelled,
            next = timeout_at(video_deadline, demuxed.next()) => next,
        };
        let item = match next {
            Err(_) => {
                return streamed(RtspError::Dropped {
                    detail: format!("no video for {} s", config.frame_timeout.as_secs_f64()),
                })
            }
            Ok(None) => {
                return streamed(RtspError::Dropped {
                    detail: "the camera ended the session".into(),
                })
            }
            Ok(Some(Err(e))) => return streamed(retina_err(e, Stage::Streaming)),
            Ok(Some(Ok(item))) => item,
        };
        let result = match item {
            CodecItem::VideoFrame(v) if v.stream_id() == video_i => {
                video_deadline = Instant::now() + config.frame_timeout;
                if v.has_new_parameters() {
                    // In-band SPS/PPS that differ from what the run started with: a new init
                    // segment, so a new `Tracks`, and nothing until the next keyframe.
                    if let Some(ParametersRef::Video(p)) =
                        demuxed.streams().get(video_i).and_then(|s| s.parameters())
                    {
                        match video_track(p) {
                            Ok((t, st)) if t != video => {
                                tracing::info!(codec = %st.codec, width = st.width,
                                    height = st.height, "rtsp: video parameters changed");
                                video = t;
                                status.send_modify(|s| s.video = Some(st));
                                if let Err(e) = run.send(tracks(&video, &audio)).await {
                                    return streamed(e);
                                }
                                need_keyframe = true;
                            }
                            Ok(_) => {}
                            Err(e) => return streamed(e),
                        }
                    }
                }
                if need_keyframe && !v.is_random_access_point() {
                    run.lost(v.loss());
                    continue;
                }
                need_keyframe = false;
                run.video(v).await
            }
            CodecItem::AudioFrame(a) => match &audio {
                Some((audio_i, track, _)) if a.stream_id() == *audio_i => {
                    run.audio(a, track.timescale).await
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            return streamed(e);
        }
    }
}

/// The sending half of one connection.
struct Run<'a> {
    publisher: &'a Publisher,
    status: &'a watch::Sender<RtspStatus>,
    clock: &'a mut RunClock,
    meter: &'a mut RateMeter,
}

impl Run<'_> {
    async fn send(&mut self, event: IngestEvent) -> Result<(), RtspError> {
        self.publisher
            .events
            .send(event)
            .await
            .map_err(|_| RtspError::SessionGone)
    }

    fn lost(&mut self, n: u16) {
        if n > 0 {
            self.status.send_if_modified(|s| {
                s.packets_lost += u64::from(n);
                false
            });
        }
    }

    /// Accounts a frame in the status; returns a `Stats` event when a rate window closed.
    fn account(
        &mut self,
        t_secs: f64,
        bytes: usize,
        video: bool,
        lost: u16,
    ) -> Option<IngestEvent> {
        let rates = self.meter.push(t_secs, bytes, video);
        let mut stats = None;
        self.status.send_if_modified(|s| {
            s.packets_lost += u64::from(lost);
            if video {
                s.video_frames += 1;
            } else {
                s.audio_frames += 1;
            }
            match rates {
                Some(r) => {
                    s.fps = Some((r.fps * 100.0).round() / 100.0);
                    s.bitrate_bps = Some(r.bitrate_bps);
                    stats = serde_json::to_value(&*s).ok();
                    true
                }
                // Counters change every frame; readers see them on their next borrow without
                // being woken 80 times a second.
                None => false,
            }
        });
        stats.map(IngestEvent::Stats)
    }

    async fn video(&mut self, v: retina::codec::VideoFrame) -> Result<(), RtspError> {
        let ts = v.timestamp();
        let Some(m) = self.clock.map(
            TrackKind::Video,
            ts.elapsed(),
            ts.clock_rate().get(),
            VIDEO_TIMESCALE,
            None,
        ) else {
            return Ok(());
        };
        let keyframe = v.is_random_access_point();
        let lost = v.loss();
        // Already AVC samples (FrameFormat::MP4): no copy, no rewrite.
        let data = Bytes::from(v.into_data());
        if data.is_empty() {
            return Ok(());
        }
        let stats = self.account(ts.elapsed_secs(), data.len(), true, lost);
        self.send(IngestEvent::Frame(MediaFrame {
            kind: TrackKind::Video,
            dts: m.dts,
            cts_offset: m.cts_offset,
            duration: None,
            keyframe,
            data,
        }))
        .await?;
        if let Some(stats) = stats {
            self.send(stats).await?;
        }
        Ok(())
    }

    async fn audio(
        &mut self,
        a: retina::codec::AudioFrame,
        timescale: u32,
    ) -> Result<(), RtspError> {
        let ts = a.timestamp();
        let frame_len = a.frame_length().get();
        let Some(m) = self.clock.map(
            TrackKind::Audio,
            ts.elapsed(),
            ts.clock_rate().get(),
            timescale,
            Some(frame_len),
        ) else {
            return Ok(());
        };
        if a.data().is_empty() {
            return Ok(());
        }
        let data = Bytes::copy_from_slice(a.data());
        let stats = self.account(ts.elapsed_secs(), data.len(), false, a.loss());
        self.send(IngestEvent::Frame(MediaFrame {
            kind: TrackKind::Audio,
            dts: m.dts,
            cts_offset: 0,
            duration: u32::try_from(rescale_len(frame_len, ts.clock_rate().get(), timescale)).ok(),
            keyframe: true,
            data,
        }))
        .await?;
        if let Some(stats) = stats {
            self.send(stats).await?;
        }
        Ok(())
    }
}

fn rescale_len(len: u32, from: u32, to: u32) -> i64 {
    super::convert::rescale(i64::from(len), from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let c = RtspConfig::default();
        let got: Vec<u64> = (1..=8).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(30));
        assert_eq!(c.max_attempts, None);
        assert_eq!(c.max_auth_attempts, 3);
    }
}
