//! Legacy chunk uploads: `POST /api/streams/:id/upload` with multipart `sequence` + `video_chunk`.
//!
//! A chunk is streamed to disk (never whole in memory), hashed, and validated before anything
//! else happens. The chunk that the playlist waits for is packaged at once; a later one is kept
//! durably as pending until the gap before it fills, or until `upload.gap_timeout` passes and the
//! playlist skips the missing sequences with a discontinuity. The client gets 200 only once its
//! chunk is durable: packaged and committed, or stored as pending and recorded.

use crate::api::ApiError;
use crate::app::{App, Session};
use crate::ids::now_ms;
use crate::metrics::Metrics;
use anyhow::Context;
use axum::extract::multipart::{Field, Multipart};
use axum::http::StatusCode;
use ingest::upload::DemuxError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use storage::{ChunkRecord, ChunkState, Commit, StreamRecord};
use tokio::io::AsyncWriteExt;

/// An uploaded chunk on disk under the staging directory, removed on drop unless adopted.
pub struct Staged {
    pub sequence: u64,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// Reads the multipart body: `sequence` and `video_chunk`, in either order.
pub async fn receive(app: &App, mp: &mut Multipart) -> Result<Staged, ApiError> {
    let mut sequence: Option<u64> = None;
    let mut file: Option<(PathBuf, u64, String)> = None;
    let mut guard = TempGuard(None);
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("malformed multipart body: {e}"))),
        };
        match field.name() {
            Some("sequence") => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| bad(format!("cannot read field `sequence`: {e}")))?;
                let t = text.trim();
                sequence = Some(t.parse::<u64>().map_err(|_| {
                    bad(format!(
                        "field `sequence` must be a non-negative integer, got {t:?}"
                    ))
                })?);
            }
            Some("video_chunk") => {
                if file.is_some() {
                    return Err(bad("field `video_chunk` given twice"));
                }
                let f = stream_to_disk(app, field, &mut guard).await?;
                file = Some(f);
            }
            _ => {
                // Unknown fields are drained and ignored, as the old server did.
            }
        }
    }
    let (path, size, sha256) =
        file.ok_or_else(|| bad("missing field `video_chunk` (the MP4 chunk file)"))?;
    let sequence =
        sequence.ok_or_else(|| bad("missing field `sequence` (an integer, first chunk 0)"))?;
    guard.0 = None;
    if size == 0 {
        let _ = std::fs::remove_file(&path);
        return Err(bad("field `video_chunk` is empty"));
    }
    Ok(Staged {
        sequence,
        path,
        size,
        sha256,
    })
}

/// Removes a partly written staging file when the request fails.
struct TempGuard(Option<PathBuf>);
impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn stream_to_disk(
    app: &App,
    mut field: Field<'_>,
    guard: &mut TempGuard,
) -> Result<(PathBuf, u64, String), ApiError> {
    let dir = app.cfg.storage.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let path = dir.join(format!("upload-{}", crate::ids::object_id()));
    guard.0 = Some(path.clone());
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let limit = app.cfg.upload.max_chunk_bytes;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("upload interrupted: {e}"))),
        };
        size += chunk.len() as u64;
        if size > limit {
            // Read (and discard) a bounded remainder so the client, still sending, gets to read
            // this answer instead of a reset connection.
            let mut extra = 0u64;
            while let Ok(Some(c)) = field.chunk().await {
                extra += c.len() as u64;
                if extra > 16 << 20 {
                    break;
                }
            }
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("video_chunk is larger than the limit of {limit} bytes"),
            ));
        }
        hasher.update(&chunk);
        f.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    f.flush().await.map_err(ApiError::internal)?;
    Ok((path, size, hex::encode(hasher.finalize())))
}

/// The HTTP answer to a demuxer's complaint.
pub fn demux_error(e: DemuxError) -> ApiError {
    match e {
        DemuxError::NotMp4 { reason } => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("video_chunk is not an MP4/MOV file ({reason})"),
        ),
        DemuxError::UnsupportedCodec { fourcc } => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported codec {fourcc}: storef ingests H.264 video with AAC or Opus audio \
                 (MediaRecorder: record 'video/mp4;codecs=avc1,opus' or \
                 'video/webm;codecs=h264,opus')"
            ),
        ),
        DemuxError::NoMediaTracks => bad("video_chunk has no audio or video track"),
        DemuxError::Io(e) => ApiError::internal(e),
        other => bad(format!("video_chunk cannot be read: {other}")),
    }
}

/// Checks that the staged file is something storef can package, without keeping anything: a
/// self-contained MP4/MOV, or a MediaRecorder header blob. Continuation blobs can only be read
/// with their stream's header and are checked when packaged.
pub async fn validate(path: &Path) -> Result<(), ApiError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), DemuxError> {
        use ingest::upload::ChunkKind;
        match crate::recorder::classify_file(&p)? {
            (ChunkKind::Mp4File, _) => {
                let mut f = std::io::BufReader::new(std::fs::File::open(&p)?);
                ingest::upload::index_mp4(&mut f).map(|_| ())
            }
            (ChunkKind::Fmp4Init | ChunkKind::WebmHeader, Some(b)) => {
                ingest::upload::ContinuationDemuxer::new_from_header(&b).map(|_| ())
            }
            _ => Ok(()),
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(demux_error)
}

/// Handles a validated chunk for a live stream whose session lock the caller holds.
pub async fn accept(app: &App, sess: &mut Session, staged: Staged) -> Result<Value, ApiError> {
    let rec = app.stream(&sess.id).map_err(ApiError::internal)?;
    if !rec.is_live() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("stream {} is stopped; start a new stream", rec.id),
        ));
    }
    if let Some(p) = app.publisher_protocol(&rec.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "stream {} has a live {p} publisher; chunk uploads are refused while it publishes",
                rec.id
            ),
        ));
    }
    let seq = staged.sequence;
    let ok_message = format!("Chunk {seq} uploaded successfully.");
    if let Some(prev) = app.db.chunk(&rec.id, seq).map_err(ApiError::internal)? {
        return match prev.state {
            ChunkState::Skipped => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "chunk {seq} arrived after the stream went on without it (gap timeout {}s)",
                    app.cfg.upload.gap_timeout.as_secs_f64()
                ),
            )),
            _ if prev.sha256 != staged.sha256 => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("chunk {seq} was already uploaded with different content"),
            )),
            state => {
                // The first attempt may have been cut short after its commit (a crash) before
                // the chunks waiting behind it were packaged.
                drain_pending(app, sess).await?;
                Ok(answer(&ok_message, seq, &state, true))
            }
        };
    }
    if seq < rec.next_chunk {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "chunk {seq} is before the stream's current position {}",
                rec.next_chunk
            ),
        ));
    }
    let chunk = ChunkRecord {
        stream_id: rec.id.clone(),
        sequence: seq,
        sha256: staged.sha256.clone(),
        size: staged.size,
        received_at_ms: now_ms(),
        state: ChunkState::Skipped, // replaced below
    };
    let size = staged.size;
    let state = if seq == rec.next_chunk {
        let state = package_chunk(app, sess, rec, chunk, &staged.path, false).await?;
        drain_pending(app, sess).await?;
        state
    } else {
        // A later chunk: keep it durably until the gap fills or times out.
        let rel = format!("streams/{}/chunks/{seq}.mp4", rec.id);
        let store = app.store.clone();
        let from = staged.path.clone();
        let rel2 = rel.clone();
        tokio::task::spawn_blocking(move || store.adopt(&from, &rel2))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        let state = ChunkState::Pending { path: rel };
        app.db
            .commit(Commit {
                chunks: vec![ChunkRecord {
                    state: state.clone(),
                    ..chunk
                }],
                ..Default::default()
            })
            .await
            .map_err(ApiError::internal)?;
        if sess.gap_since.is_none() {
            sess.gap_since = Some(std::time::Instant::now());
        }
        tracing::info!(stream = %rec.id, seq, waiting_for = rec.next_chunk, "chunk stored as pending");
        state
    };
    Metrics::inc(&app.metrics.chunks_accepted_total, 1);
    Metrics::inc(&app.metrics.chunk_bytes_total, size);
    Ok(answer(&ok_message, seq, &state, false))
}

fn answer(message: &str, seq: u64, state: &ChunkState, repeated: bool) -> Value {
    let mut v = json!({"success": true, "message": message, "sequence": seq});
    match state {
        ChunkState::Committed {
            dropped_frames,
            segments,
            ..
        } => {
            v["status"] = json!("packaged");
            v["segments"] = json!(segments);
            v["droppedFrames"] = json!(dropped_frames);
        }
        ChunkState::Pending { .. } => {
            v["status"] = json!("pending");
        }
        ChunkState::Skipped => {}
    }
    if repeated {
        v["duplicate"] = json!(true);
    }
    v
}

/// Packages one chunk file into segments, writes them and commits everything in one batch.
async fn package_chunk(
    app: &App,
    sess: &mut Session,
    mut rec: StreamRecord,
    chunk: ChunkRecord,
    path: &Path,
    discontinuity: bool,
) -> Result<ChunkState, ApiError> {
    crate::recorder::ensure_run(app, sess, &rec)
        .await
        .map_err(ApiError::internal)?;
    let mut seg = sess.take_segmenter(app, &rec).map_err(ApiError::internal)?;
    let mut cont = sess.cont.take();
    let mut run = crate::recorder::RunState::from_record(&rec.ingest_state);
    let store = app.store.clone();
    let stream = rec.id.clone();
    let path = path.to_path_buf();
    let seq = chunk.sequence;
    let dropped_before = seg.dropped_frames();
    let res = tokio::task::spawn_blocking(move || {
        let r = crate::recorder::package_file(
            &store,
            &stream,
            seq,
            &path,
            &mut seg,
            &mut cont,
            &mut run,
            discontinuity,
        );
        (seg, cont, run, r)
    })
    .await
    .map_err(ApiError::internal)?;
    let (seg, cont, run, packaged) = res;
    rec.ingest_state = run.and_then(|r| serde_json::to_value(r).ok());
    sess.cont = cont;
    let mut packaged = match packaged {
        Ok(p) => p,
        Err(e) => {
            // The segmenter saw part of a chunk that will not be committed: start over from the
            // last committed point.
            sess.reset_segmenter();
            return Err(e);
        }
    };
    let dropped = seg.dropped_frames().saturating_sub(dropped_before);
    packaged.stamp_times(now_ms());
    let first_segment = packaged
        .segments
        .first()
        .map(|s| s.sequence)
        .unwrap_or_else(|| seg.resume_point().next_sequence);
    let state = ChunkState::Committed {
        dropped_frames: dropped,
        first_segment,
        segments: packaged.segments.len() as u64,
    };
    let n_segments = packaged.segments.len() as u64;
    let seg_bytes: u64 = packaged.segments.iter().map(|s| s.size).sum();
    let mut commit = Commit::default();
    rec.next_chunk = chunk.sequence + 1;
    packaged.into_commit(&mut rec, &seg, &mut commit);
    commit.streams.push(rec.clone());
    commit.chunks.push(ChunkRecord {
        state: state.clone(),
        ..chunk
    });
    if let Err(e) = app.commit(commit).await {
        sess.reset_segmenter();
        return Err(ApiError::internal(e));
    }
    sess.put_segmenter(seg);
    Metrics::inc(&app.metrics.segments_written_total, n_segments);
    Metrics::inc(&app.metrics.segment_bytes_total, seg_bytes);
    Metrics::inc(&app.metrics.frames_dropped_total, dropped);
    tracing::info!(stream = %rec.id, seq = rec.next_chunk - 1, segments = n_segments, dropped, "chunk packaged");
    Ok(state)
}

/// Packages every pending chunk that is now next in sequence.
pub async fn drain_pending(app: &App, sess: &mut Session) -> Result<(), ApiError> {
    drain_pending_inner(app, sess, false).await
}

async fn drain_pending_inner(
    app: &App,
    sess: &mut Session,
    mut discontinuity: bool,
) -> Result<(), ApiError> {
    loop {
        let rec = app.stream(&sess.id).map_err(ApiError::internal)?;
        let Some(ch) = app
            .db
            .chunk(&rec.id, rec.next_chunk)
            .map_err(ApiError::internal)?
        else {
            break;
        };
        let ChunkState::Pending { path } = ch.state.clone() else {
            break;
        };
        let abs = app.store.path(&path).map_err(ApiError::internal)?;
        match package_chunk(app, sess, rec.clone(), ch, &abs, discontinuity).await {
            Ok(_) => {
                let _ = std::fs::remove_file(&abs);
            }
            Err(e) => {
                // It validated when it arrived, so this is a server-side failure (disk): keep the
                // pending file for the next attempt.
                tracing::error!(stream = %rec.id, seq = rec.next_chunk, error = %e.message, "pending chunk failed to package");
                return Err(e);
            }
        }
        discontinuity = false;
    }
    // Any chunk still pending means another gap.
    let pending = has_pending(app, &sess.id).map_err(ApiError::internal)?;
    sess.gap_since = if pending {
        Some(sess.gap_since.unwrap_or_else(std::time::Instant::now))
    } else {
        None
    };
    Ok(())
}

/// Gives up on the missing sequences before the first pending chunk: they are recorded as
/// skipped (a late upload of one gets 409) and the playlist continues with a discontinuity.
pub async fn skip_gap(app: &App, sess: &mut Session) -> anyhow::Result<()> {
    // A pending chunk may already be next in line (a crash between committing its predecessor
    // and packaging it): that is no gap.
    drain_pending(app, sess)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let rec = app.stream(&sess.id)?;
    let chunks = app.db.chunks(&rec.id)?;
    let Some(first_pending) = chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Pending { .. }) && c.sequence > rec.next_chunk)
        .map(|c| c.sequence)
        .min()
    else {
        sess.gap_since = None;
        return Ok(());
    };
    let mut commit = Commit::default();
    for seq in rec.next_chunk..first_pending {
        commit.chunks.push(ChunkRecord {
            stream_id: rec.id.clone(),
            sequence: seq,
            sha256: String::new(),
            size: 0,
            received_at_ms: now_ms(),
            state: ChunkState::Skipped,
        });
    }
    let skipped = first_pending - rec.next_chunk;
    let mut rec2 = rec.clone();
    rec2.next_chunk = first_pending;
    commit.streams.push(rec2);
    app.db
        .commit(commit)
        .await
        .context("recording skipped chunks")?;
    Metrics::inc(&app.metrics.chunks_skipped_total, skipped);
    tracing::warn!(stream = %rec.id, from = rec.next_chunk, to = first_pending - 1, "gap timeout: skipping missing chunks");
    sess.gap_since = None;
    drain_pending_inner(app, sess, true)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
}

/// Whether stream `id` holds a chunk stored as pending (acknowledged, waiting for a gap).
pub fn has_pending(app: &App, id: &str) -> Result<bool, storage::DbError> {
    Ok(app
        .db
        .chunks(id)?
        .iter()
        .any(|c| matches!(c.state, ChunkState::Pending { .. })))
}

/// Runs forever: skips gaps that outlived `upload.gap_timeout`.
pub async fn gap_ticker(app: App) {
    let timeout = app.cfg.upload.gap_timeout;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        for s in app.sessions() {
            let Ok(mut sess) = s.try_lock() else { continue };
            if sess.gap_since.is_some_and(|t| t.elapsed() >= timeout) {
                if let Err(e) = skip_gap(&app, &mut sess).await {
                    tracing::error!(stream = %sess.id, error = %e, "skipping a chunk gap failed");
                }
            }
        }
    }
}
