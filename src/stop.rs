//! Stopping a stream: end its publisher, package what is still pending, and turn the stream into
//! a VOD — one progressive MP4 (moov first, so a browser `<video>` starts playing at once) plus a
//! VOD playlist over the same segments.

use crate::app::App;
use crate::ids::{now_ms, object_id};
use crate::metrics::Metrics;
use anyhow::{Context, Result};
use packager::vod::VodBuilder;
use std::io::{Read, Seek, SeekFrom, Write};
use storage::{Commit, StreamStatus, VideoRecord};

/// ISO 8601 UTC with milliseconds, as the old server's JSON dates.
pub fn iso(ms: i64) -> String {
    packager::hls::format_program_date_time(ms)
}

/// Stops stream `id` (which must be live) and creates its VOD.
pub async fn stop_stream(app: &App, id: &str) -> Result<VideoRecord> {
    let sess_arc = app.session(id);
    // A pulled stream: end the pull first, so it does not reconnect once its publisher is gone.
    crate::pull::stop(id);
    // End a live publisher first and wait until its last segment is committed.
    let done = app.with_live(|m| match m.get_mut(id).and_then(|e| e.publisher.as_mut()) {
        Some(p) => {
            p.cancel.cancel();
            p.done.take()
        }
        None => None,
    });
    if let Some(done) = done {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), done).await;
    }
    let mut sess = sess_arc.lock().await;
    // Chunks acknowledged as pending are part of the stream: package them, skipping gaps.
    while crate::upload::has_pending(app, id)? {
        let before = app.stream(id)?.next_chunk;
        crate::upload::skip_gap(app, &mut sess).await?;
        if app.stream(id)?.next_chunk == before {
            break;
        }
    }
    // A MediaRecorder run's open segment is part of the stream too.
    crate::recorder::finish_run(app, &mut sess).await?;
    let mut rec = app.stream(id)?;
    if !rec.is_live() {
        anyhow::bail!("stream {id} is already stopped");
    }
    let video_id = object_id();
    let segments = app.db.segments(id)?;
    let inits = app.db.inits(id)?;
    let mp4_rel = format!("videos/{video_id}.mp4");
    let store = app.store.clone();
    let rel = mp4_rel.clone();
    let (size, duration) = if segments.is_empty() {
        (0, 0.0)
    } else {
        tokio::task::spawn_blocking(move || -> Result<(u64, f64)> {
            let mut b = VodBuilder::new();
            for i in &inits {
                let data = store
                    .read(&i.path)
                    .with_context(|| format!("reading {}", i.path))?;
                b.add_init(i.init_id, &data)
                    .with_context(|| format!("init {}", i.init_id))?;
            }
            for s in &segments {
                let data = store
                    .read(&s.path)
                    .with_context(|| format!("reading {}", s.path))?;
                b.add_segment(s.init_id, &data)
                    .with_context(|| format!("segment {}", s.sequence))?;
            }
            let layout = b.finish().context("building the VOD")?;
            write_vod(&store, &rel, &layout, &segments)?;
            Ok((layout.total_len, layout.duration_secs))
        })
        .await??
    };
    let video = VideoRecord {
        id: video_id.clone(),
        stream_id: id.to_string(),
        user_id: rec.user_id.clone(),
        title: rec.title.clone(),
        mp4_path: (size > 0).then_some(mp4_rel),
        size,
        duration_secs: duration,
        segments: app.db.segments(id)?.len() as u64,
        created_at_ms: now_ms(),
        remote_url: None,
    };
    rec.status = StreamStatus::Stopped;
    rec.stopped_at_ms = Some(now_ms());
    rec.video_id = Some(video_id);
    // Through `App::commit`: the VOD MP4 goes to the pin queue once recorded.
    app.commit(Commit {
        streams: vec![rec],
        videos: vec![video.clone()],
        ..Default::default()
    })
    .await?;
    sess.gap_since = None;
    sess.reset_segmenter();
    app.with_live(|m| m.remove(id));
    Metrics::inc(&app.metrics.streams_stopped_total, 1);
    tracing::info!(stream = %id, video = %video.id, bytes = size, duration, "stream stopped, VOD created");
    Ok(video)
}

/// Writes head + the segments' sample bytes to `rel`, atomically.
fn write_vod(
    store: &storage::LocalStore,
    rel: &str,
    layout: &packager::vod::VodLayout,
    segments: &[storage::SegmentRecord],
) -> Result<()> {
    let dest = store.path(rel)?;
    let dir = dest.parent().context("vod path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", object_id()));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    out.write_all(&layout.head)?;
    let mut open: Option<(usize, std::fs::File)> = None;
    let mut buf = vec![0u8; 1 << 16];
    for &(idx, off, len) in &layout.ranges {
        if open.as_ref().map(|o| o.0) != Some(idx) {
            let s = segments
                .get(idx)
                .context("range names an unknown segment")?;
            open = Some((idx, std::fs::File::open(store.path(&s.path)?)?));
        }
        let Some((_, f)) = open.as_mut() else {
            unreachable!("opened above")
        };
        f.seek(SeekFrom::Start(off))?;
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &dest)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Stops streams whose publisher left longer than the reconnect window ago.
pub async fn reconnect_ticker(app: App) {
    let window = app.cfg.live.reconnect_window;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let expired: Vec<String> = app.with_live(|m| {
            m.iter()
                .filter(|(id, e)| {
                    e.publisher.is_none()
                        && e.left_at.is_some_and(|t| t.elapsed() >= window)
                        // A camera being retried is not a publisher that left.
                        && !crate::pull::is_retrying(id)
                })
                .map(|(id, _)| id.clone())
                .collect()
        });
        for id in expired {
            app.with_live(|m| m.remove(&id));
            match app.db.stream(&id) {
                Ok(Some(r)) if r.is_live() => {
                    tracing::info!(stream = %id, "reconnect window passed: stopping the stream");
                    if let Err(e) = stop_stream(&app, &id).await {
                        tracing::error!(stream = %id, error = %e, "auto-stop failed");
                    }
                }
                _ => {}
            }
        }
    }
}
