//! Chunk uploads from browsers' MediaRecorder: the first blob holds a header (fMP4 `ftyp`+`moov`,
//! or WebM EBML header + Tracks), later blobs only fragments or clusters, cut anywhere.
//!
//! Such a stream is one packaging run across chunks: a segment may span chunks (it closes on the
//! next keyframe), so the open segment lives in memory. To keep "acknowledged means durable"
//! without persisting half-built segments, every chunk of the run is kept on disk, and the
//! stream's record remembers where the run began; after a restart the run is rebuilt by replaying
//! its chunks through the same deterministic demuxer and segmenter (the segments they produce
//! again are already committed and are discarded), which restores the open segment exactly.

use crate::api::ApiError;
use crate::app::{drain_outputs, Packaged};
use crate::upload::demux_error;
use axum::http::StatusCode;
use ingest::upload::{classify_chunk, ChunkKind, ContinuationDemuxer};
use packager::segmenter::{ResumePoint, Segmenter, SegmenterConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;
use storage::LocalStore;

/// Largest chunk read whole to tell a MediaRecorder blob from a self-contained MP4.
const CLASSIFY_WHOLE_LIMIT: u64 = 64 << 20;

/// Where the current MediaRecorder run began (kept in `StreamRecord::ingest_state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub mode: String,
    pub header_seq: u64,
    pub resume_before: ResumePoint,
    pub discontinuity: bool,
}

impl RunState {
    pub fn from_record(v: &Option<serde_json::Value>) -> Option<RunState> {
        v.as_ref()
            .and_then(|v| serde_json::from_value::<RunState>(v.clone()).ok())
            .filter(|s| s.mode == "continuation")
    }
}

/// Path of a kept MediaRecorder chunk.
pub fn chunk_path(stream: &str, seq: u64) -> String {
    format!("streams/{stream}/chunks/{seq}.bin")
}

/// What kind of upload a staged file is, reading it whole only when it is small.
pub fn classify_file(path: &Path) -> std::io::Result<(ChunkKind, Option<Vec<u8>>)> {
    use std::io::Read;
    let len = std::fs::metadata(path)?.len();
    if len <= CLASSIFY_WHOLE_LIMIT {
        let bytes = std::fs::read(path)?;
        return Ok((classify_chunk(&bytes), Some(bytes)));
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    Ok(match classify_chunk(&head[..n]) {
        ChunkKind::Mp4File => (ChunkKind::Mp4File, None),
        // A big blob starting with a header or a fragment is still a MediaRecorder blob.
        k => (k, Some(std::fs::read(path)?)),
    })
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn refuse(e: packager::segmenter::SegmenterError) -> ApiError {
    bad(format!("cannot package chunk: {e}"))
}

/// Packages one chunk (blocking). `cont` is the stream's continuation reader when a
/// MediaRecorder run is open; `run` its record. Self-contained MP4s end such a run.
#[allow(clippy::too_many_arguments)]
pub fn package_file(
    store: &LocalStore,
    stream: &str,
    seq: u64,
    path: &Path,
    seg: &mut Segmenter,
    cont: &mut Option<ContinuationDemuxer>,
    run: &mut Option<RunState>,
    discontinuity: bool,
) -> Result<Packaged, ApiError> {
    let (kind, bytes) = classify_file(path).map_err(ApiError::internal)?;
    let mut out = Packaged::default();
    match (kind, bytes) {
        (ChunkKind::Mp4File, _) => {
            if run.take().is_some() {
                seg.flush();
                *cont = None;
            }
            let mut f =
                std::io::BufReader::new(std::fs::File::open(path).map_err(ApiError::internal)?);
            let index = ingest::upload::index_mp4(&mut f).map_err(demux_error)?;
            seg.begin_run(index.tracks.clone(), discontinuity)
                .map_err(refuse)?;
            for s in &index.samples {
                let frame = index.read_frame(&mut f, s).map_err(demux_error)?;
                seg.push(frame).map_err(refuse)?;
                drain_outputs(store, stream, seg, &mut out).map_err(ApiError::internal)?;
            }
            seg.flush();
        }
        (ChunkKind::Fmp4Init | ChunkKind::WebmHeader, Some(bytes)) => {
            let (d, frames) = ContinuationDemuxer::new_from_header(&bytes).map_err(demux_error)?;
            if run.is_some() {
                seg.flush(); // a new header mid-stream: the old run ends here
            }
            let resume_before = seg.resume_point();
            let disc = discontinuity || resume_before.next_sequence > 0;
            seg.begin_run(d.tracks().to_vec(), disc).map_err(refuse)?;
            for f in frames {
                seg.push(f).map_err(refuse)?;
            }
            store
                .write_atomic(&chunk_path(stream, seq), &[bytes.into()])
                .map_err(ApiError::internal)?;
            *cont = Some(d);
            *run = Some(RunState {
                mode: "continuation".into(),
                header_seq: seq,
                resume_before,
                discontinuity: disc,
            });
        }
        (ChunkKind::Continuation, Some(bytes)) => {
            let Some(d) = cont.as_mut() else {
                if !looks_like_fragments(&bytes) {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "video_chunk is not an MP4/MOV file (nor a MediaRecorder blob)",
                    ));
                }
                return Err(bad(
                    "this chunk holds fragments (moof/mdat or WebM clusters) but the stream has no \
                     header yet: upload the recorder's first blob (with ftyp+moov or the WebM header) first",
                ));
            };
            let frames = d.push_chunk(&bytes).map_err(demux_error)?;
            for f in frames {
                seg.push(f).map_err(refuse)?;
            }
            store
                .write_atomic(&chunk_path(stream, seq), &[bytes.into()])
                .map_err(ApiError::internal)?;
        }
        (_, None) => return Err(bad("chunk is too large to be a MediaRecorder blob")),
    }
    drain_outputs(store, stream, seg, &mut out).map_err(ApiError::internal)?;
    Ok(out)
}

/// Whether a chunk starts like MediaRecorder continuation data: an fMP4 fragment box or a WebM
/// Cluster. (Mid-element WebM bytes look like anything; without a run they are refused as not
/// a media file.)
fn looks_like_fragments(b: &[u8]) -> bool {
    const CLUSTER: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
    b.starts_with(&CLUSTER)
        || matches!(
            b.get(4..8),
            Some(b"moof" | b"styp" | b"sidx" | b"emsg" | b"prft" | b"mdat")
        )
}

/// Rebuilds an open MediaRecorder run after a restart by replaying its kept chunks
/// `header_seq..next_chunk` (blocking). Everything it emits again is already committed.
pub fn rebuild(
    store: &LocalStore,
    stream: &str,
    cfg: SegmenterConfig,
    run: &RunState,
    next_chunk: u64,
) -> anyhow::Result<(Segmenter, ContinuationDemuxer)> {
    let mut seg = Segmenter::resume(cfg, run.resume_before.clone());
    let header = store.read(&chunk_path(stream, run.header_seq))?;
    let (mut d, frames) = ContinuationDemuxer::new_from_header(&header)?;
    seg.begin_run(d.tracks().to_vec(), run.discontinuity)?;
    for f in frames {
        let _ = seg.push(f);
    }
    for s in run.header_seq + 1..next_chunk {
        // A skipped sequence has no file; its neighbours were refused or skipped too.
        let Ok(bytes) = store.read(&chunk_path(stream, s)) else {
            continue;
        };
        if let Ok(frames) = d.push_chunk(&bytes) {
            for f in frames {
                let _ = seg.push(f);
            }
        }
    }
    while seg.poll_output().is_some() {}
    Ok((seg, d))
}

/// Makes sure an open MediaRecorder run of `rec` is in memory, replaying it after a restart.
pub async fn ensure_run(
    app: &crate::app::App,
    sess: &mut crate::app::Session,
    rec: &storage::StreamRecord,
) -> anyhow::Result<()> {
    let Some(run) = RunState::from_record(&rec.ingest_state) else {
        return Ok(());
    };
    if sess.cont.is_some() {
        return Ok(());
    }
    let store = app.store.clone();
    let stream = rec.id.clone();
    let cfg = app.segmenter_config();
    let next = rec.next_chunk;
    let (seg, d) =
        tokio::task::spawn_blocking(move || rebuild(&store, &stream, cfg, &run, next)).await??;
    tracing::info!(stream = %rec.id, from = run_header(rec), to = next, "MediaRecorder run replayed after restart");
    sess.put_segmenter(seg);
    sess.cont = Some(d);
    Ok(())
}

fn run_header(rec: &storage::StreamRecord) -> u64 {
    RunState::from_record(&rec.ingest_state)
        .map(|r| r.header_seq)
        .unwrap_or(0)
}

/// Closes an open MediaRecorder run (on stop): its open segment is written and committed.
pub async fn finish_run(
    app: &crate::app::App,
    sess: &mut crate::app::Session,
) -> anyhow::Result<()> {
    let mut rec = app.stream(&sess.id)?;
    if RunState::from_record(&rec.ingest_state).is_none() {
        return Ok(());
    }
    ensure_run(app, sess, &rec).await?;
    let mut seg = sess.take_segmenter(app, &rec)?;
    let store = app.store.clone();
    let stream = rec.id.clone();
    let (seg, out) = tokio::task::spawn_blocking(move || {
        seg.flush();
        let mut out = Packaged::default();
        let r = drain_outputs(&store, &stream, &mut seg, &mut out);
        (seg, r.map(|_| out))
    })
    .await?;
    let mut out = out?;
    out.stamp_times(crate::ids::now_ms());
    let mut commit = storage::Commit::default();
    rec.ingest_state = None;
    out.into_commit(&mut rec, &seg, &mut commit);
    commit.streams.push(rec);
    app.commit(commit).await?;
    sess.put_segmenter(seg);
    sess.cont = None;
    Ok(())
}
