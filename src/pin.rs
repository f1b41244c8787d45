//! FilCDN (FilBeam) pinning glue: what the server hands to `storage::filcdn`'s durable pin
//! queue, and what it does when a piece is on chain.
//!
//! A segment, init segment or VOD is offered to the queue only after [`App::commit`] made its
//! record durable (the file itself was written atomically before that), so playback never waits
//! for Filecoin: the playlist lists the local URL at once and switches to the FilBeam URL when
//! `on_pinned` stores it as the record's `remote_url`. A crash between the commit and the
//! enqueue is covered by [`reconcile`] at start-up, which re-offers every unpinned file
//! (enqueueing a known key is a no-op).

use crate::app::App;
use crate::metrics::Metrics;
use anyhow::{Context, Result};
use std::sync::atomic::Ordering::Relaxed;
use storage::filcdn::{
    run_pinner, startup_check, PdpClient, PinCounts, PinItem, PinKind, PinQueue, PinnedItem,
    PinnerError,
};
use storage::{Commit, InitRecord, SegmentRecord, VideoRecord};

/// The sled tree the pin queue lives in.
const TREE: &str = "filcdn_pins";

/// The pin queue, when `[filcdn] enabled`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pins {
    pub queue: PinQueue,
}

fn segment_key(stream: &str, seq: u64) -> String {
    format!("seg/{stream}/{seq}")
}
fn init_key(stream: &str, id: u32) -> String {
    format!("init/{stream}/{id}")
}
fn vod_key(video: &str) -> String {
    format!("vod/{video}")
}

/// The queue items for the files a commit records (empty when pinning is off).
pub fn items_of(app: &App, c: &Commit) -> Vec<PinItem> {
    if app.pins.get().is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in &c.inits {
        out.extend(init_item(app, i));
    }
    for s in &c.segments {
        out.extend(segment_item(app, s));
    }
    for v in &c.videos {
        out.extend(video_item(app, v));
    }
    out
}

fn item(
    app: &App,
    key: String,
    rel: &str,
    size: u64,
    kind: PinKind,
    stream: &str,
    seq: Option<u64>,
) -> Option<PinItem> {
    let local_path = match app.store.path(rel) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(path = rel, error = %e, "filcdn: cannot pin a file outside the store");
            return None;
        }
    };
    Some(PinItem {
        key,
        local_path,
        size,
        kind,
        stream_id: stream.to_string(),
        seq,
    })
}

fn segment_item(app: &App, s: &SegmentRecord) -> Option<PinItem> {
    if s.remote_url.is_some() {
        return None;
    }
    let key = segment_key(&s.stream_id, s.sequence);
    item(
        app,
        key,
        &s.path,
        s.size,
        PinKind::Segment,
        &s.stream_id,
        Some(s.sequence),
    )
}

fn init_item(app: &App, i: &InitRecord) -> Option<PinItem> {
    if i.remote_url.is_some() {
        return None;
    }
    // The size is not in the record; the file was written before the commit.
    let path = app.store.path(&i.path).ok()?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let key = init_key(&i.stream_id, i.init_id);
    item(app, key, &i.path, size, PinKind::Init, &i.stream_id, None)
}

fn video_item(app: &App, v: &VideoRecord) -> Option<PinItem> {
    if v.remote_url.is_some() {
        return None;
    }
    // A VOD over the provider's piece limit stays playable as its (pinned) segments.
    let mp4 = v
        .mp4_path
        .as_deref()
        .filter(|_| v.size > 0 && v.size <= MAX_PIECE)?;
    item(
        app,
        vod_key(&v.id),
        mp4,
        v.size,
        PinKind::Vod,
        &v.stream_id,
        None,
    )
}

/// Largest payload a PDP piece can hold (Curio: 1,065,353,216 B = 1 GiB unpadded).
const MAX_PIECE: u64 = 1_065_353_216;

/// Offers `items` to the queue. Failures are logged and counted, not returned: the files are
/// durable and recorded, so [`reconcile`] offers them again at the next start.
pub async fn enqueue(app: &App, items: Vec<PinItem>) {
    let Some(pins) = app.pins.get() else { return };
    for it in items {
        let key = it.key.clone();
        match pins.queue.enqueue(it).await {
            Ok(true) => Metrics::inc(&app.metrics.pins_enqueued_total, 1),
            Ok(false) => {}
            Err(e) => {
                Metrics::inc(&app.metrics.pin_errors_total, 1);
                tracing::error!(key, error = %e, "filcdn: enqueueing failed (retried at next start)");
            }
        }
    }
}

/// Pin progress of one stream, for its status JSON (None when pinning is off).
pub fn counts(app: &App, stream: &str) -> Option<PinCounts> {
    let pins = app.pins.get()?;
    match pins.queue.counts(Some(stream)) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(stream, error = %e, "filcdn: reading pin counts");
            None
        }
    }
}

/// Re-offers every recorded file that has no CDN URL yet (after a crash between a commit and
/// its enqueue). Known keys cost one lookup each and are not flushed again.
pub async fn reconcile(app: &App) -> Result<usize> {
    let Some(pins) = app.pins.get() else {
        return Ok(0);
    };
    let mut items = Vec::new();
    for s in app.db.streams()? {
        let mut c = Commit {
            segments: app.db.segments(&s.id)?,
            inits: app.db.inits(&s.id)?,
            ..Default::default()
        };
        if let Some(v) = s.video_id.as_deref().map(|v| app.db.video(v)).transpose()? {
            c.videos.extend(v);
        }
        for it in items_of(app, &c) {
            if pins.queue.get(&it.key)?.is_none() {
                items.push(it);
            }
        }
    }
    let n = items.len();
    enqueue(app, items).await;
    Ok(n)
}

/// The pin worker's callback: stores the FilBeam URL on the record so the playlists (and
/// `videoUrl`) switch to it. Idempotent (re-sent after a crash): it only sets the same URL.
/// Synchronous by contract, so the durable write runs on this worker thread via
/// `block_in_place` and is done before the queue marks the item reported.
fn on_pinned(app: &App, p: &PinnedItem) {
    let res = tokio::task::block_in_place(|| -> Result<bool> {
        Ok(match (p.kind, p.seq) {
            (PinKind::Segment, Some(seq)) => {
                app.db.set_segment_remote_url(&p.stream_id, seq, &p.url)?
            }
            (PinKind::Init, _) => {
                let id = p
                    .key
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u32>().ok())
                    .context("init key without an id")?;
                app.db.set_init_remote_url(&p.stream_id, id, &p.url)?
            }
            (PinKind::Vod, _) => {
                let id = p.key.strip_prefix("vod/").context("vod key")?;
                app.db.set_video_remote_url(id, &p.url)?
            }
            (PinKind::Segment, None) => anyhow::bail!("segment item without a sequence"),
        })
    });
    match res {
        Ok(found) => {
            let latency = p.pinned_ms.saturating_sub(p.enqueued_ms);
            Metrics::inc(&app.metrics.pins_total, 1);
            Metrics::inc(&app.metrics.pin_latency_ms_sum, latency);
            app.metrics.pin_latency_ms_last.store(latency, Relaxed);
            tracing::info!(key = %p.key, cid = %p.piece_cid, url = %p.url, latency_ms = latency, "filcdn: pinned");
            if !found {
                tracing::warn!(key = %p.key, "filcdn: pinned a file whose record is gone");
            }
            if !app.cfg.filcdn.keep_local_after_pin {
                prune(app, p);
            }
        }
        Err(e) => {
            Metrics::inc(&app.metrics.pin_errors_total, 1);
            tracing::error!(key = %p.key, error = %e, "filcdn: storing the pinned URL failed");
        }
    }
}

/// `keep_local_after_pin = false`: local copies go once pinned — but segments and inits only
/// after the stream stopped, since building the VOD reads them.
fn prune(app: &App, p: &PinnedItem) {
    let stopped = matches!(app.db.stream(&p.stream_id), Ok(Some(s)) if !s.is_live());
    let mut paths = Vec::new();
    match p.kind {
        PinKind::Vod => {
            paths.push(p.local_path.clone());
            // The stream is over: every segment and init already pinned can go too.
            let pinned = |rel: &str, url: &Option<String>| {
                url.as_ref().and_then(|_| app.store.path(rel).ok())
            };
            for s in app.db.segments(&p.stream_id).unwrap_or_default() {
                paths.extend(pinned(&s.path, &s.remote_url));
            }
            for i in app.db.inits(&p.stream_id).unwrap_or_default() {
                paths.extend(pinned(&i.path, &i.remote_url));
            }
        }
        _ if stopped => paths.push(p.local_path.clone()),
        _ => {}
    }
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "filcdn: local copy pruned"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "filcdn: pruning failed"),
        }
    }
}

/// When `[filcdn] enabled`: opens the queue, runs the start-up check (a bad config stops the
/// server; an unreachable provider only delays pinning), re-offers unpinned files and starts
/// the worker and the queue-depth gauge.
pub async fn start(app: &App) -> Result<()> {
    let cfg = app.cfg.filcdn.clone();
    if !cfg.enabled {
        tracing::info!("filcdn pinning off ([filcdn] enabled = false): files stay local");
        return Ok(());
    }
    let queue = PinQueue::open(app.db.tree(TREE)?).context("opening the pin queue")?;
    let client = PdpClient::new(&cfg.provider_url, cfg.timeouts.connect())
        .with_context(|| format!("[filcdn] provider_url {:?}", cfg.provider_url))?;
    match startup_check(&client, &cfg, &queue).await {
        Ok(r) => tracing::info!(
            payer = %r.payer,
            provider = %cfg.provider_url,
            network = ?cfg.network,
            data_set = ?r.data_set_id,
            "filcdn pinning on: the payer wallet must hold USDFC in Filecoin Pay with the \
             warm-storage service approved as operator{}",
            if r.data_set_id.is_none() { "; a data set (withCDN) will be created on first pin" } else { "" }
        ),
        Err(PinnerError::Config(e)) => anyhow::bail!("[filcdn] {e}"),
        Err(e) => tracing::warn!(
            error = %e,
            "filcdn start-up check failed: files are queued and pinned once the provider answers"
        ),
    }
    let pins = Pins {
        queue: queue.clone(),
    };
    if app.pins.set(pins).is_err() {
        anyhow::bail!("pinning started twice");
    }
    let n = reconcile(app).await.context("re-offering unpinned files")?;
    if n > 0 {
        tracing::info!(
            files = n,
            "filcdn: queued files recorded before the last shutdown"
        );
    }
    // The worker would delete every file once pinned; the server prunes itself (see
    // [`prune`]) because a live stream's segments are still needed to build its VOD.
    let mut cfg = cfg;
    cfg.keep_local_after_pin = true;
    let a = app.clone();
    tokio::spawn(async move {
        let app2 = a.clone();
        if let Err(e) = run_pinner(queue, client, cfg, move |p| on_pinned(&app2, &p)).await {
            tracing::error!(error = %e, "filcdn pin worker stopped");
        }
    });
    tokio::spawn(depth_gauge(app.clone()));
    Ok(())
}

/// Keeps the queue-depth and failing gauges current (the active index only, not the history).
async fn depth_gauge(app: App) {
    let Some(pins) = app.pins.get().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        if let Ok(active) = pins.queue.active() {
            let failing = active.iter().filter(|r| r.last_error.is_some()).count();
            app.metrics
                .pin_queue_depth
                .store(active.len() as u64, Relaxed);
            app.metrics.pins_failing.store(failing as u64, Relaxed);
        }
    }
}

/// `storef piece-cid FILE [--v1]`.
pub fn piece_cid_command(file: &std::path::Path, v1: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cid = rt
        .block_on(storage::filcdn::piece_cid_of_file(file))
        .with_context(|| format!("reading {}", file.display()))?;
    println!(
        "{}",
        if v1 {
            cid.to_v1_string()
        } else {
            cid.to_string()
        }
    );
    Ok(())
}
