//! The tokio side of RTMP ingest: accept loop, one task per connection, timeouts, and forwarding
//! of the sans-IO session's events to the stream's [`Publisher`].
//!
//! Each connection has its own task and forwards with `events.send().await`: a stream whose
//! session is slow stalls only its own publisher (TCP backpressure up to the encoder), never
//! another connection. Frames go in batches ([`crate::batch`]), a keyframe and its audio at once.

use super::session::{RtmpSession, SessionConfig, SessionEvent};
use super::socket::Socket;
use crate::batch::Batcher;
use crate::publish::{IngestEvent, PublishGate, Publisher};
use packager::Codec;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Instrument;

/// RTMP listener settings.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// The RTMP application publishers connect to (`rtmp://HOST/live`).
    pub app: String,
    /// Time allowed from accept to a completed handshake. rml_rtmp's handshake never fails on
    /// a truncated C0/C1/C2, it just waits, so this is what ends such a connection.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed (a stalled encoder, a dead NAT).
    pub idle_timeout: Duration,
    /// How often [`IngestEvent::Stats`] is sent for a publishing connection.
    pub stats_interval: Duration,
    /// How long to wait for the peer to close after a refusal was sent, so it can read the status
    /// before the socket goes away.
    pub close_linger: Duration,
    /// Connections run on this many single-threaded runtimes ([`crate::shards`]); 0 runs them
    /// on the caller's runtime.
    pub workers: usize,
    /// Once publishing, a connection's socket is read every `read_tick` instead of whenever
    /// bytes arrive ([`super::socket`]): fewer thread wakeups for up to this much added latency,
    /// which pays off only with many publishers per worker. Zero (the default) reads on
    /// readiness throughout.
    pub read_tick: Duration,
    /// Once publishing (and read on readiness), the kernel wakes a connection only when about
    /// this much of the publisher's media, at its measured bitrate, has queued, up to
    /// [`MAX_WAKE_THRESHOLD`] bytes ([`Socket::set_wake_threshold`]): fewer wakeups for about
    /// this much added latency per message. Zero wakes on every packet.
    pub read_coalesce: Duration,
}

/// The most a publishing socket's wake threshold is raised to, whatever the bitrate.
pub const MAX_WAKE_THRESHOLD: usize = 16 * 1024;

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            app: "live".to_string(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
            workers: 0,
            read_tick: Duration::ZERO,
            read_coalesce: Duration::from_millis(10),
        }
    }
}

/// Accepts RTMP connections on `listener` until the task is dropped; each connection runs in its
/// own task. Returns only if accepting fails persistently.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<dyn PublishGate>,
    config: RtmpConfig,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let shards = match config.workers {
        0 => None,
        n => Some(crate::shards::Shards::start(n, "rtmp")?),
    };
    let mut consecutive_errors = 0u32;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                consecutive_errors = 0;
                x
            }
            Err(e) => {
                // EMFILE/ENFILE and aborted handshakes are transient: back off, keep serving.
                consecutive_errors += 1;
                tracing::warn!(error = %e, "RTMP accept failed");
                if consecutive_errors > 1000 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "rtmp",
            peer = %peer,
            stream_key = tracing::field::Empty,
            stream_id = tracing::field::Empty
        );
        let gate = gate.clone();
        let config = config.clone();
        match &shards {
            None => {
                tokio::spawn(run_connection(stream, peer, gate, config).instrument(span));
            }
            Some(shards) => {
                // The accepted socket is registered with this runtime's reactor; on a shard it
                // must be registered with the shard's own, or every readiness event would cross
                // threads again. So it moves as a std socket and is re-registered there.
                let std_stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(parent: &span, error = %e, "RTMP socket hand-off failed");
                        continue;
                    }
                };
                shards.spawn(
                    async move {
                        match TcpStream::from_std(std_stream) {
                            Ok(stream) => run_connection(stream, peer, gate, config).await,
                            Err(e) => tracing::warn!(error = %e, "RTMP socket hand-off failed"),
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gate: Arc<dyn PublishGate>,
    config: Arc<RtmpConfig>,
) {
    tracing::debug!("connection accepted");
    match connection(stream, peer, gate, &config).await {
        Ok(()) => tracing::info!("connection closed"),
        Err(e) => tracing::warn!(error = %e, "connection closed with an error"),
    }
}

/// Why a connection task ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Session(#[from] super::SessionError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// How long frames may wait in a [`Batcher`] when the publisher's bytes stop coming (a batch
/// normally leaves when it spans [`crate::batch::MAX_SPAN_MS`] of media).
const BATCH_WAIT: Duration = Duration::from_millis(250);

/// How long bytes below a socket's wake threshold may wait unread when the publisher's bytes
/// stop coming.
const QUEUED_WAIT: Duration = BATCH_WAIT;

/// The shortest stats window whose byte rate sets a socket's wake threshold.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

/// The publish in progress on a connection.
struct Active {
    publisher: Publisher,
    /// Frames on their way to the publisher's channel.
    batch: Batcher,
    /// When held frames go even if no more media comes.
    flush_by: Option<tokio::time::Instant>,
    stream_key: String,
    encoder: Option<String>,
    last_stats: Instant,
    last_counters: super::session::SessionCounters,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    gate: Arc<dyn PublishGate>,
    config: &RtmpConfig,
) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let mut stream = Socket::Ready(stream);
    let mut session = RtmpSession::new(
        gate,
        SessionConfig {
            app: config.app.clone(),
            peer: Some(peer),
        },
    );
    let accepted_at = tokio::time::Instant::now();
    let mut active: Option<Active> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut stats = tokio::time::interval(config.stats_interval);
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut last_input = accepted_at;
    // One timer for both deadlines, re-armed lazily: when it fires early (input arrived since
    // it was set) it moves to the new deadline. Arming a fresh timeout around every read cost a
    // timer-wheel insert and removal per RTMP message.
    let deadline = tokio::time::sleep_until(accepted_at + config.handshake_timeout);
    tokio::pin!(deadline);
    let mut armed_for_idle = false;
    // The socket's wake threshold in bytes (1: any byte wakes it).
    let mut wake_threshold = 1usize;
    // The publisher's cancellation, waited on across reads (a fresh wait per read registers and
    // deregisters a waiter every time).
    let mut cancelled: Option<(String, Pin<Box<WaitForCancellationFutureOwned>>)> = None;
    let result = loop {
        // Follows `active`: a connection may end one publish and start another.
        match &active {
            None => cancelled = None,
            Some(a) if cancelled.as_ref().map(|c| &c.0) != Some(&a.publisher.stream_id) => {
                cancelled = Some((
                    a.publisher.stream_id.clone(),
                    Box::pin(a.publisher.cancel.clone().cancelled_owned()),
                ));
            }
            Some(_) => {}
        }
        let n = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Err(e) => break Err(e.into()),
                Ok(n) => n,
            },
            () = &mut deadline => {
                let now = tokio::time::Instant::now();
                if let Err(e) = flush_held(&mut active, now).await {
                    break Err(e);
                }
                // From the last bytes received: stats ticks must not extend it.
                let due = if session.handshake_done() {
                    last_input + config.idle_timeout
                } else {
                    accepted_at + config.handshake_timeout
                };
                if now >= due {
                    break Err(if session.handshake_done() {
                        ConnectionError::Idle(config.idle_timeout)
                    } else {
                        ConnectionError::HandshakeTimeout(config.handshake_timeout)
                    });
                }
                let mut next = active.as_ref().and_then(|a| a.flush_by).map_or(due, |f| f.min(due));
                if wake_threshold > 1 {
                    next = next.min(now + QUEUED_WAIT);
                }
                deadline.as_mut().reset(next);
                if wake_threshold == 1 {
                    continue;
                }
                // Bytes below the wake threshold are read now.
                match stream.read_queued(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e.into()),
                }
            }
            () = async {
                match cancelled.as_mut() {
                    Some((_, c)) => c.as_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("publish stopped by the server");
                break Ok(());
            }
            _ = stats.tick() => {
                if let Some(a) = active.as_mut() {
                    let (bytes_per_sec, over) = send_stats(a, &session, peer);
                    // A window much shorter than a second (a tick just after the publish began)
                    // measures the publisher's opening burst, not its bitrate.
                    if !config.read_coalesce.is_zero()
                        && !stream.is_ticked()
                        && over >= MIN_RATE_WINDOW
                    {
                        let want = ((bytes_per_sec * config.read_coalesce.as_secs_f64()) as usize)
                            .clamp(1, MAX_WAKE_THRESHOLD);
                        // Only a real change is worth the system call.
                        if want.abs_diff(wake_threshold) * 4 > wake_threshold {
                            if let Err(e) = stream.set_wake_threshold(want) {
                                break Err(e.into());
                            }
                            wake_threshold = want;
                            tracing::debug!(bytes = want, "socket wake threshold");
                        }
                    }
                }
                continue;
            }
        };
        last_input = tokio::time::Instant::now();
        if n == 0 {
            let events = session.finish();
            if let Err(e) = forward(events, &mut active).await {
                break Err(e);
            }
            break Ok(());
        }
        let events = session.feed(&buf[..n]);
        if !armed_for_idle && session.handshake_done() {
            armed_for_idle = true;
            deadline.as_mut().reset(last_input + config.idle_timeout);
        }
        let out = session.take_outbound();
        if !out.is_empty() {
            if let Err(e) = write_all(&mut stream, &out, config.idle_timeout).await {
                break Err(e);
            }
        }
        if let Err(e) = forward(events, &mut active).await {
            break Err(e);
        }
        // Bytes below the wake threshold: make sure the timer comes back for them; once the
        // publish is over, every byte wakes the connection again (the next command needs an
        // answer).
        if wake_threshold > 1 {
            if active.is_none() {
                if let Err(e) = stream.set_wake_threshold(1) {
                    break Err(e.into());
                }
                wake_threshold = 1;
            } else if deadline.deadline() > last_input + QUEUED_WAIT {
                deadline.as_mut().reset(last_input + QUEUED_WAIT);
            }
        }
        // Frames held for a batch: make sure the timer comes back for them.
        if let Some(a) = active.as_mut() {
            match (a.batch.is_holding(), a.flush_by) {
                (true, None) => {
                    let by = last_input + BATCH_WAIT;
                    a.flush_by = Some(by);
                    if by < deadline.deadline() {
                        deadline.as_mut().reset(by);
                    }
                }
                (false, Some(_)) => a.flush_by = None,
                _ => {}
            }
        }
        if active.is_some() && !config.read_tick.is_zero() && !stream.is_ticked() {
            stream = match stream.read_on_ticks(config.read_tick) {
                Ok(s) => s,
                Err(e) => break Err(e.into()),
            };
        }
        if session.is_closed() {
            linger(&mut stream, config.close_linger).await;
            break Ok(());
        }
    };
    // Dropping the publisher (its events sender) tells the stream's session the publisher is gone.
    if let Some(mut a) = active.take() {
        // Whatever was accepted reaches the packager, however the connection ended; unless the
        // server stopped the stream, and then nobody reads it.
        if !a.publisher.cancel.is_cancelled() {
            let _ = send_held(&mut a).await;
        }
        tracing::info!(stream_key = %a.stream_key, "publisher left");
    }
    result
}

async fn write_all(
    stream: &mut Socket,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), ConnectionError> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnectionError::Idle(timeout)),
    }
}

/// After a refusal: half-close and wait briefly for the peer to close, so the status message is
/// read rather than lost to a reset.
async fn linger(stream: &mut Socket, wait: Duration) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Hands session events to the publisher. Returns an error only when the stream's session has
/// gone away (receiver dropped), which ends the connection.
async fn forward(
    events: Vec<SessionEvent>,
    active: &mut Option<Active>,
) -> Result<(), ConnectionError> {
    for event in events {
        match event {
            SessionEvent::PublishStarted {
                stream_key,
                publisher,
            } => {
                let span = tracing::Span::current();
                span.record("stream_key", stream_key.as_str());
                span.record("stream_id", publisher.stream_id.as_str());
                tracing::info!("publish started");
                if let Some(a) = active.as_mut() {
                    send_held(a).await?;
                }
                *active = Some(Active {
                    publisher,
                    batch: Batcher::new(),
                    flush_by: None,
                    stream_key,
                    encoder: None,
                    last_stats: Instant::now(),
                    last_counters: Default::default(),
                });
            }
            SessionEvent::Media(e) => {
                if let Some(a) = active.as_mut() {
                    let mut out = Vec::new();
                    a.batch.push(e, &mut out);
                    if let Err(e) = send(a, out).await {
                        *active = None;
                        return Err(e);
                    }
                }
            }
            SessionEvent::Metadata(m) => {
                if let Some(a) = active.as_mut() {
                    a.encoder = m.encoder;
                }
            }
            SessionEvent::PublishEnded { stream_key } => {
                tracing::info!(%stream_key, "publish ended by the publisher");
                if let Some(mut a) = active.take() {
                    send_held(&mut a).await?;
                }
            }
            SessionEvent::PublishRefused {
                stream_key,
                refusal,
            } => {
                tracing::info!(%stream_key, %refusal, "publish refused");
            }
            SessionEvent::ConnectRefused { app } => {
                tracing::info!(%app, "connect refused");
            }
            SessionEvent::Connected { .. } => {}
            SessionEvent::Failed(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends events to the stream's session; an error when the session has gone away.
async fn send(a: &mut Active, events: Vec<IngestEvent>) -> Result<(), ConnectionError> {
    for e in events {
        if a.publisher.events.send(e).await.is_err() {
            tracing::info!("stream session gone; closing");
            return Err(ConnectionError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "stream session closed",
            )));
        }
    }
    Ok(())
}

/// Sends the frames the batcher holds.
async fn send_held(a: &mut Active) -> Result<(), ConnectionError> {
    a.flush_by = None;
    let mut out = Vec::new();
    a.batch.flush(&mut out);
    send(a, out).await
}

/// Sends held frames whose wait is over.
async fn flush_held(
    active: &mut Option<Active>,
    now: tokio::time::Instant,
) -> Result<(), ConnectionError> {
    if let Some(a) = active.as_mut() {
        if a.flush_by.is_some_and(|by| by <= now) {
            if let Err(e) = send_held(a).await {
                *active = None;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sends a Stats event (dropped if the channel is full: statistics are not worth backpressure);
/// the bytes per second received since the last one, and over how long.
fn send_stats(a: &mut Active, session: &RtmpSession, peer: SocketAddr) -> (f64, Duration) {
    let now = Instant::now();
    let window = now.duration_since(a.last_stats);
    let secs = window.as_secs_f64().max(0.001);
    let c = session.counters();
    let prev = a.last_counters;
    let bytes_per_sec = c.bytes_in.saturating_sub(prev.bytes_in) as f64 / secs;
    let bitrate_kbps = bytes_per_sec * 8.0 / 1000.0;
    let fps = (c.video_frames - prev.video_frames) as f64 / secs;
    a.last_stats = now;
    a.last_counters = c;
    let mut stats = serde_json::json!({
        "protocol": "rtmp",
        "remote": peer.to_string(),
        "bitrateKbps": (bitrate_kbps * 10.0).round() / 10.0,
        "fps": (fps * 100.0).round() / 100.0,
        "videoFrames": c.video_frames,
        "audioFrames": c.audio_frames,
        "bytesReceived": c.bytes_in,
    });
    if let Some(encoder) = &a.encoder {
        stats["encoder"] = encoder.clone().into();
    }
    for track in session.tracks() {
        match &track.codec {
            Codec::H264 { width, height, .. } => {
                stats["videoCodec"] = track.codec.rfc6381().into();
                stats["width"] = (*width).into();
                stats["height"] = (*height).into();
            }
            Codec::Aac {
                sample_rate,
                channels,
                ..
            } => {
                stats["audioCodec"] = track.codec.rfc6381().into();
                stats["audioSampleRate"] = (*sample_rate).into();
                stats["audioChannels"] = (*channels).into();
            }
            _ => {
                stats["audioCodec"] = track.codec.rfc6381().into();
            }
        }
    }
    let _ = a.publisher.events.try_send(IngestEvent::Stats(stats));
    (bytes_per_sec, window)
}
