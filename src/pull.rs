//! RTSP pull: streams whose publisher is a camera storef pulls from (`"pull": "rtsp://…"` on
//! `POST /api/streams/start`), since an IP camera cannot push.
//!
//! `ingest::rtsp::pull` speaks RTSP and retries; this module runs one such task per stream and
//! gets each camera connection its [`ingest::publish::Publisher`] from the same [`Gate`] an RTMP
//! publisher goes through, by the stream's key. So a camera that drops and comes back is a
//! publisher that reconnected: a new run, `EXT-X-DISCONTINUITY`, nothing special in the live task.
//!
//! What differs from a pushed stream is who waits: while the pull is retrying, the stream is
//! exempt from `live.reconnect_window` ([`is_retrying`]), because storef itself is the one that
//! will reconnect. Only when the pull gives up (`rtsp.max_attempts`, wrong credentials, stream
//! refused) does the window apply, as to a publisher that left.
//!
//! The pull tasks live in a process-wide table keyed by stream id: the server has exactly one
//! [`App`], and the table holds nothing that must survive a restart (the URL is in the stream
//! record; [`resume_after_restart`] starts the tasks again from it).

use crate::app::App;
use crate::live::Gate;
use ingest::publish::{PublishGate, PublisherInfo, Refusal};
use ingest::rtsp::{self, RtspError, RtspSource, RtspState, RtspStatus, RtspTransport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use storage::StreamRecord;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What `StreamRecord::pull` holds. `url` keeps the credentials (the camera needs them after a
/// restart too); the API shows [`RtspSource::redacted_url`] only.
#[derive(Debug, Serialize, Deserialize)]
struct PullRecord {
    url: String,
    #[serde(default)]
    transport: RtspTransport,
}

/// One running (or finished) pull.
struct Handle {
    cancel: CancellationToken,
    status: watch::Receiver<RtspStatus>,
    /// Set once `rtsp::pull` has returned: nobody reconnects any more.
    finished: Arc<AtomicBool>,
}

fn table() -> MutexGuard<'static, HashMap<String, Handle>> {
    static PULLS: OnceLock<Mutex<HashMap<String, Handle>>> = OnceLock::new();
    PULLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Checks the `pull` and `transport` fields of `POST /api/streams/start`. The error message never
/// contains the URL (so never its password).
pub fn parse_request(url: &str, transport: Option<&str>) -> Result<RtspSource, RtspError> {
    let transport = match transport {
        Some(t) => RtspTransport::from_str(t)?,
        None => RtspTransport::default(),
    };
    RtspSource::parse(url, transport)
}

/// The value stored in `StreamRecord::pull`.
pub fn record(source: &RtspSource) -> Value {
    serde_json::to_value(PullRecord {
        url: source.url.clone(),
        transport: source.transport,
    })
    .unwrap_or(Value::Null)
}

/// The pull source of a stream, if it has a (still valid) one.
fn source_of(rec: &StreamRecord) -> Option<RtspSource> {
    let r: PullRecord = serde_json::from_value(rec.pull.clone()?).ok()?;
    RtspSource::parse(&r.url, r.transport).ok()
}

/// The storef settings as the ingest crate takes them; `max_attempts = 0` retries forever.
fn ingest_config(c: &crate::config::RtspConfig) -> rtsp::RtspConfig {
    rtsp::RtspConfig {
        initial_backoff: c.initial_backoff,
        max_backoff: c.max_backoff,
        max_attempts: (c.max_attempts > 0).then_some(c.max_attempts),
        max_auth_attempts: c.max_auth_attempts,
        connect_timeout: c.connect_timeout,
        frame_timeout: c.frame_timeout,
        ..rtsp::RtspConfig::default()
    }
}

/// The camera's address for the publisher status, when the URL names it by IP (a host name is
/// not resolved just for display).
fn camera_addr(source: &RtspSource) -> Option<SocketAddr> {
    let rest = source.url.trim().get("rtsp://".len()..)?;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit('@').next()?;
    SocketAddr::from_str(hostport)
        .ok()
        .or_else(|| SocketAddr::from_str(&format!("{hostport}:554")).ok())
        .or_else(|| {
            // `[v6]` without a port.
            let h = hostport.strip_prefix('[')?.strip_suffix(']')?;
            SocketAddr::from_str(&format!("[{h}]:554")).ok()
        })
}

/// Starts pulling `source` into stream `rec` (replacing a pull it already had).
pub fn spawn(app: &App, rec: &StreamRecord, source: RtspSource) {
    let (status_tx, status_rx) = watch::channel(RtspStatus::new(&source));
    let cancel = CancellationToken::new();
    let finished = Arc::new(AtomicBool::new(false));
    let old = table().insert(
        rec.id.clone(),
        Handle {
            cancel: cancel.clone(),
            status: status_rx,
            finished: finished.clone(),
        },
    );
    if let Some(old) = old {
        old.cancel.cancel();
    }
    let gate = Gate { app: app.clone() };
    let key = rec.stream_key.clone();
    let remote = camera_addr(&source);
    let publisher = move || {
        gate.start_publish(
            &key,
            PublisherInfo {
                protocol: "rtsp",
                remote,
            },
        )
    };
    let config = ingest_config(&app.cfg.rtsp);
    let app = app.clone();
    let id = rec.id.clone();
    tracing::info!(stream = %id, source = %source.redacted_url(), transport = %source.transport, "rtsp pull starting");
    tokio::spawn(async move {
        let result = pull_until_done(source, publisher, status_tx, config, &cancel).await;
        finished.store(true, Ordering::SeqCst);
        if let Err(e) = result {
            tracing::warn!(stream = %id, error = %e, "rtsp pull gave up; the reconnect window applies");
            // Nobody reconnects now: the stream is a stream whose publisher left. One that never
            // connected (wrong password) gets its window from now.
            app.with_live(|m| {
                let e = m.entry(id).or_default();
                if e.publisher.is_none() && e.left_at.is_none() {
                    e.left_at = Some(std::time::Instant::now());
                }
            });
        }
    });
}

/// Runs `rtsp::pull`, starting it again when the gate answered `AlreadyPublishing`.
///
/// That answer is, for a pulled stream, nearly always the camera's previous connection: its
/// publisher task is still committing its last segment when the reconnect (after the backoff,
/// DESCRIBE … first keyframe) asks the gate again. `rtsp::pull` treats any refusal as final,
/// which would end a camera's pull on a race; so the refusal is retried here until the slot is
/// free. (An RTMP publisher on the same key keeps it the same way, until it leaves.)
async fn pull_until_done<F>(
    source: RtspSource,
    mut publisher: F,
    status: watch::Sender<RtspStatus>,
    config: rtsp::RtspConfig,
    cancel: &CancellationToken,
) -> Result<(), RtspError>
where
    F: FnMut() -> Result<ingest::publish::Publisher, Refusal>,
{
    // Connections of earlier `pull` calls, so the status keeps counting across them.
    let mut earlier = 0u32;
    loop {
        let (tx, mut rx) = watch::channel(RtspStatus::new(&source));
        let forward = async {
            while rx.changed().await.is_ok() {
                let mut s = rx.borrow_and_update().clone();
                s.connections += earlier;
                status.send_replace(s);
            }
        };
        let (result, ()) = tokio::join!(
            rtsp::pull(
                source.clone(),
                &mut publisher,
                tx,
                config.clone(),
                cancel.clone()
            ),
            forward
        );
        let mut last = rx.borrow().clone();
        last.connections += earlier;
        earlier = last.connections;
        match result {
            Err(RtspError::Refused(Refusal::AlreadyPublishing)) => {
                tracing::info!(source = %last.source, "rtsp pull: the stream's publisher slot is still taken; retrying");
                last.state = RtspState::Reconnecting;
                status.send_replace(last);
                tokio::select! {
                    _ = cancel.cancelled() => {
                        status.send_modify(|s| s.state = RtspState::Stopped);
                        return Ok(());
                    }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
            other => {
                status.send_replace(last);
                return other;
            }
        }
    }
}

/// Whether stream `id` has a pull that is still trying: `live.reconnect_window` does not apply.
pub fn is_retrying(id: &str) -> bool {
    table()
        .get(id)
        .is_some_and(|h| !h.finished.load(Ordering::SeqCst))
}

/// Ends the pull of stream `id` (the stream is stopping): no reconnect after this.
pub fn stop(id: &str) {
    if let Some(h) = table().remove(id) {
        h.cancel.cancel();
    }
}

/// The `pull` part of the stream status: the state, last error, codecs and rates of the pull, with
/// the source URL's password replaced by `***`. `null` for a stream that is not pulled.
pub fn status_json(rec: &StreamRecord) -> Value {
    let Some(source) = source_of(rec) else {
        return Value::Null;
    };
    let status = match table().get(&rec.id) {
        Some(h) => h.status.borrow().clone(),
        None => {
            let mut s = RtspStatus::new(&source);
            s.state = RtspState::Stopped;
            s
        }
    };
    serde_json::to_value(status).unwrap_or(Value::Null)
}

/// After a restart: every live stream with a pull source pulls again. Returns how many.
pub fn resume_after_restart(app: &App, live: &[StreamRecord]) -> usize {
    let mut n = 0;
    for rec in live.iter().filter(|r| r.is_live()) {
        match source_of(rec) {
            Some(source) => {
                spawn(app, rec, source);
                n += 1;
            }
            None if rec.pull.is_some() => {
                tracing::warn!(stream = %rec.id, "stored pull source is not a valid RTSP URL; not resumed");
            }
            None => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checks_url_and_transport_without_echoing_the_password() {
        let s = parse_request("rtsp://admin:s3cret@192.0.2.10:8554/cam", Some("udp")).unwrap();
        assert_eq!(s.transport, RtspTransport::Udp);
        assert_eq!(camera_addr(&s), Some("192.0.2.10:8554".parse().unwrap()));
        let rec = record(&s);
        assert_eq!(rec["transport"], "udp");
        assert_eq!(rec["url"], "rtsp://admin:s3cret@192.0.2.10:8554/cam");
        let e = parse_request("http://admin:s3cret@host/cam", None).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(parse_request("rtsp://host/cam", Some("sctp")).is_err());
        assert!(parse_request("rtsp:///nohost", None).is_err());
        let d = parse_request("rtsp://cam.example/x", None).unwrap();
        assert_eq!(d.transport, RtspTransport::Tcp);
        assert_eq!(camera_addr(&d), None);
        let p = parse_request("rtsp://u:p@[::1]/x", None).unwrap();
        assert_eq!(camera_addr(&p), Some("[::1]:554".parse().unwrap()));
    }

    #[test]
    fn status_of_a_stored_source_is_redacted() {
        let mut rec = crate::app::new_stream("u", None);
        assert!(status_json(&rec).is_null());
        let s = parse_request("rtsp://admin:s3cret@192.0.2.10/cam", None).unwrap();
        rec.pull = Some(record(&s));
        let v = status_json(&rec);
        assert_eq!(v["source"], "rtsp://admin:***@192.0.2.10/cam");
        assert_eq!(v["state"], "stopped");
        assert!(!v.to_string().contains("s3cret"));
    }

    #[test]
    fn zero_max_attempts_retries_forever() {
        let mut c = crate::config::Config::default().rtsp;
        assert_eq!(ingest_config(&c).max_attempts, None);
        c.max_attempts = 5;
        assert_eq!(ingest_config(&c).max_attempts, Some(5));
    }
}
