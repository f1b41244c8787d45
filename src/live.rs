//! Live publishers (RTMP, WHIP, RTSP): the [`PublishGate`] that lets a stream key publish, and the
//! task that packages one publisher's frames as they arrive.
//!
//! While a publisher is connected its task owns the stream's segmenter; every segment it closes
//! is written and committed at once, so a player sees it within milliseconds of the keyframe that
//! closed it. When the publisher goes away the stream stays live for `live.reconnect_window`; a
//! reconnect continues the same playlist after an `EXT-X-DISCONTINUITY`.

use crate::app::{write_outputs, App, LiveEntry, Packaged, PublisherState};
use crate::ids::now_ms;
use crate::metrics::Metrics;
use anyhow::Result;
use ingest::publish::{IngestEvent, PublishGate, Publisher, PublisherInfo, Refusal};
use packager::segmenter::{Output, Segmenter};
use storage::Commit;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The server side of [`PublishGate`].
#[derive(Clone)]
pub struct Gate {
    pub app: App,
}

impl PublishGate for Gate {
    fn start_publish(&self, stream_key: &str, info: PublisherInfo) -> Result<Publisher, Refusal> {
        let app = &self.app;
        let rec = match app.db.stream_by_key(stream_key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                Metrics::inc(&app.metrics.publishes_refused_total, 1);
                return Err(Refusal::UnknownKey);
            }
            Err(e) => {
                tracing::error!(error = %e, "stream key lookup failed");
                return Err(Refusal::UnknownKey);
            }
        };
        if !rec.is_live() {
            Metrics::inc(&app.metrics.publishes_refused_total, 1);
            return Err(Refusal::Stopped);
        }
        let (tx, rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let claimed = app.with_live(|m| {
            let e = m.entry(rec.id.clone()).or_insert_with(LiveEntry::default);
            if e.publisher.is_some() {
                return false;
            }
            e.left_at = None;
            e.publisher = Some(PublisherState {
                protocol: info.protocol,
                remote: info.remote.map(|a| a.to_string()),
                since_ms: now_ms(),
                cancel: cancel.clone(),
                done: Some(done_rx),
                stats: serde_json::Value::Null,
                keyframe: None,
            });
            true
        });
        if !claimed {
            Metrics::inc(&app.metrics.publishes_refused_total, 1);
            return Err(Refusal::AlreadyPublishing);
        }
        Metrics::inc(&app.metrics.publishes_total, 1);
        tracing::info!(stream = %rec.id, protocol = info.protocol, remote = ?info.remote, "publisher connected");
        let app2 = app.clone();
        let id = rec.id.clone();
        let cancel2 = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = run_publish(&app2, &id, rx, cancel2).await {
                tracing::error!(stream = %id, error = %e, "publish task failed");
            }
            app2.with_live(|m| {
                if let Some(e) = m.get_mut(&id) {
                    e.publisher = None;
                    e.left_at = Some(std::time::Instant::now());
                }
            });
            tracing::info!(stream = %id, "publisher gone; reconnect window open");
            let _ = done_tx.send(());
        });
        Ok(Publisher {
            stream_id: rec.id,
            events: tx,
            cancel,
        })
    }
}

/// Consumes one publisher's events until it leaves or the stream is stopped.
async fn run_publish(
    app: &App,
    id: &str,
    mut rx: mpsc::Receiver<IngestEvent>,
    cancel: CancellationToken,
) -> Result<()> {
    let sess = app.session(id);
    let listing;
    let mut seg = {
        let mut s = sess.lock().await;
        let mut rec = app.stream(id)?;
        let protocol = app.publisher_protocol(id).map(str::to_string);
        listing = protocol
            .as_deref()
            .and_then(|p| app.metrics.segment_listing.of(p));
        if rec.live_protocol != protocol {
            rec.live_protocol = protocol;
            app.db
                .commit(Commit {
                    streams: vec![rec.clone()],
                    ..Default::default()
                })
                .await?;
        }
        s.take_segmenter(app, &rec)?
    };
    let mut first_run = true;
    let mut last_ask: Option<std::time::Instant> = None;
    // One wait for the whole publish: a fresh `cancelled()` per frame takes the token's lock
    // and registers a waiter every time.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let result: Result<()> = async {
        loop {
            let ev = tokio::select! {
                _ = &mut cancelled => break,
                ev = rx.recv() => ev,
            };
            match ev {
                None => break,
                Some(IngestEvent::Tracks(tracks)) => {
                    // A new connection continues the playlist after a discontinuity; a codec
                    // change inside one connection gets a new init (the segmenter sees to that).
                    let disc = first_run && seg.resume_point().next_sequence > 0;
                    first_run = false;
                    if let Err(e) = seg.begin_run(tracks, disc) {
                        tracing::warn!(stream = %id, error = %e, "publisher's tracks refused");
                    }
                }
                Some(IngestEvent::Frame(f)) => {
                    push_frame(app, id, &mut seg, f, listing, &mut last_ask).await?
                }
                Some(IngestEvent::Frames(frames)) => {
                    for f in frames {
                        push_frame(app, id, &mut seg, f, listing, &mut last_ask).await?;
                    }
                }
                Some(IngestEvent::Stats(v)) => app.with_live(|m| {
                    if let Some(p) = m.get_mut(id).and_then(|e| e.publisher.as_mut()) {
                        p.stats = v;
                    }
                }),
            }
        }
        seg.flush();
        commit_ready(app, id, &mut seg).await.map(drop)
    }
    .await;
    let mut s = sess.lock().await;
    if result.is_ok() {
        s.put_segmenter(seg);
    } else {
        s.reset_segmenter();
    }
    result
}

/// Packages one frame, and lists the segments it closed.
async fn push_frame(
    app: &App,
    id: &str,
    seg: &mut Segmenter,
    f: packager::MediaFrame,
    listing: Option<&crate::metrics::Histogram>,
    last_ask: &mut Option<std::time::Instant>,
) -> Result<()> {
    let arrived = std::time::Instant::now();
    if let Err(e) = seg.push(f) {
        tracing::debug!(stream = %id, error = %e, "frame refused");
    }
    // A segment running well past its target without a keyframe: ask the publisher for one
    // (browsers over WHIP send keyframes only on request), at most once a second.
    let overdue = app.cfg.hls.target_duration * 1.25;
    if seg.open_duration() > overdue
        && last_ask.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1))
        && app.request_keyframe(id)
    {
        *last_ask = Some(std::time::Instant::now());
        tracing::debug!(stream = %id, open = seg.open_duration(), "asked the publisher for a keyframe");
    }
    if let Some(seqs) = commit_ready(app, id, seg).await? {
        // This frame closed them (a keyframe, or the first frame of a new run).
        let took = arrived.elapsed();
        if let Some(h) = listing {
            h.observe(took);
        }
        tracing::debug!(stream = %id, segments = ?seqs, listing_ms = took.as_secs_f64() * 1000.0, "segment listed");
    }
    Ok(())
}

/// Writes and commits whatever the segmenter has finished; the sequence numbers of the media
/// segments it listed, if any.
///
/// Files and the sled record are written in one blocking step: a live stream closes a segment
/// every couple of seconds, and each thread hop per segment costs more than the work itself.
async fn commit_ready(app: &App, id: &str, seg: &mut Segmenter) -> Result<Option<Vec<u64>>> {
    let outs: Vec<Output> = std::iter::from_fn(|| seg.poll_output()).collect();
    if outs.is_empty() {
        return Ok(None);
    }
    let sess = app.session(id);
    // Held until the record is committed: a stop or status read sees this commit whole or not.
    let _guard = sess.lock().await;
    let mut rec = app.stream(id)?;
    rec.resume = serde_json::to_value(seg.resume_point()).ok();
    let (store, db, sid) = (app.store.clone(), app.db.clone(), id.to_string());
    let commit = tokio::task::spawn_blocking(move || -> Result<Commit> {
        let mut p = Packaged::default();
        write_outputs(&store, &sid, outs, &mut p)?;
        p.stamp_times(now_ms());
        let commit = Commit {
            streams: vec![rec],
            segments: p.segments,
            inits: p.inits,
            ..Default::default()
        };
        db.commit_blocking(&commit)?;
        Ok(commit)
    })
    .await??;
    let seqs: Vec<u64> = commit.segments.iter().map(|s| s.sequence).collect();
    let bytes: u64 = commit.segments.iter().map(|s| s.size).sum();
    Metrics::inc(&app.metrics.segments_written_total, seqs.len() as u64);
    Metrics::inc(&app.metrics.segment_bytes_total, bytes);
    // Durable now; the FilCDN pinner may take the files.
    app.offer_pins(&commit).await;
    Ok((!seqs.is_empty()).then_some(seqs))
}

/// After a restart: streams that had a live publisher wait for it for one reconnect window.
pub fn arm_after_restart(app: &App, ids: &[String]) {
    app.with_live(|m| {
        for id in ids {
            m.insert(
                id.clone(),
                LiveEntry {
                    publisher: None,
                    left_at: Some(std::time::Instant::now()),
                },
            );
        }
    });
}
