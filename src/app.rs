//! The server's shared state and the per-stream sessions that turn frames into durable segments.
//!
//! Every path into a stream (an uploaded chunk, a live publisher) goes through a [`Session`]: it
//! owns the stream's segmenter, writes each init and media segment atomically to the local store
//! and records it in sled before anything is acknowledged.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{auth::Auth, ids};
use anyhow::{Context, Result};
use bytes::Bytes;
use packager::segmenter::{Output, ResumePoint, Segmenter, SegmenterConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Commit, Db, InitRecord, LocalStore, SegmentRecord, StreamRecord};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Everything a request handler or ingest task needs. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub store: LocalStore,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    sessions: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<Session>>>>>,
    /// Live publishers by stream id. A plain mutex, never held across an await, so that a
    /// protocol front-end can claim a stream synchronously.
    pub live: Arc<std::sync::Mutex<HashMap<String, LiveEntry>>>,
    pub whip: crate::whip_api::Whip,
    /// The FilCDN pin queue, set once at start-up when `[filcdn] enabled`.
    pub pins: Arc<std::sync::OnceLock<crate::pin::Pins>>,
    /// Rendered live playlists by stream id, with the stream's database generation they were
    /// rendered at: every viewer polls live.m3u8 every target duration, and rendering reads and
    /// decodes every segment record of the stream.
    playlists: Arc<std::sync::Mutex<HashMap<String, CachedPlaylist>>>,
}

/// A rendered playlist ([`App::cached_playlist`]).
#[derive(Clone)]
pub struct CachedPlaylist {
    pub generation: u64,
    pub body: bytes::Bytes,
    /// Players must revalidate it (the stream is live, or its URIs may still change).
    pub revalidate: bool,
}

/// Streams whose playlists are kept at most; past it the cache starts over (a stream's entry
/// costs one playlist, and only streams somebody watches have one).
const MAX_CACHED_PLAYLISTS: usize = 10_000;

/// A stream's publisher, and when the last one left (for the reconnect window).
#[derive(Default)]
pub struct LiveEntry {
    pub publisher: Option<PublisherState>,
    pub left_at: Option<Instant>,
}

/// Asks a live publisher for a keyframe (a WebRTC PLI): browsers send one only when asked.
pub type KeyframeRequester = Arc<dyn Fn() + Send + Sync>;

/// The live publisher of a stream, if any.
pub struct PublisherState {
    pub protocol: &'static str,
    pub remote: Option<String>,
    pub since_ms: i64,
    pub cancel: CancellationToken,
    /// Resolves when the publisher's task has flushed and committed its last segment.
    pub done: Option<tokio::sync::oneshot::Receiver<()>>,
    pub stats: serde_json::Value,
    pub keyframe: Option<KeyframeRequester>,
}

/// The in-memory side of one stream. Guarded by its own mutex so streams never wait on each other.
pub struct Session {
    pub id: String,
    /// Built lazily from the stream's resume point, and rebuilt from it after any failure so a
    /// half-processed chunk never leaks into the next one.
    segmenter: Option<Segmenter>,
    /// When the oldest unfilled gap in the chunk sequence was first seen.
    pub gap_since: Option<Instant>,
    /// The open MediaRecorder run's reader (see `recorder`).
    pub cont: Option<ingest::upload::ContinuationDemuxer>,
}

/// Segments and inits written by one packaging step, ready to be committed.
#[derive(Default, Debug)]
pub struct Packaged {
    pub inits: Vec<InitRecord>,
    pub segments: Vec<SegmentRecord>,
}

impl App {
    pub fn new(cfg: Config, db: Db, auth: Auth, whip: crate::whip_api::Whip) -> Self {
        let store = LocalStore::new(cfg.storage.data_dir.clone());
        App {
            cfg: Arc::new(cfg),
            db,
            store,
            auth,
            metrics: Arc::new(Metrics::default()),
            sessions: Default::default(),
            live: Default::default(),
            whip,
            pins: Default::default(),
            playlists: Default::default(),
        }
    }

    /// The stream's playlist as rendered at database generation `generation`, if it was.
    pub fn cached_playlist(&self, stream: &str, generation: u64) -> Option<CachedPlaylist> {
        let m = self.playlists.lock().unwrap_or_else(|e| e.into_inner());
        m.get(stream)
            .filter(|c| c.generation == generation)
            .cloned()
    }

    /// Keeps a rendered playlist; `generation` must have been read before the records it shows.
    pub fn cache_playlist(&self, stream: &str, playlist: CachedPlaylist) {
        let mut m = self.playlists.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_CACHED_PLAYLISTS && !m.contains_key(stream) {
            m.clear();
        }
        m.insert(stream.to_string(), playlist);
    }

    /// Commits `c` durably, then offers the segments, inits and VOD it records to the FilCDN
    /// pin queue (when pinning is on): a file is pinned only once it is durable locally.
    pub async fn commit(&self, c: Commit) -> Result<()> {
        let items = crate::pin::items_of(self, &c);
        self.db.commit(c).await?;
        crate::pin::enqueue(self, items).await;
        Ok(())
    }

    /// The pin-queue half of [`App::commit`], for a commit made durable elsewhere (a live
    /// segment, committed on a blocking thread together with its files).
    pub async fn offer_pins(&self, c: &Commit) {
        crate::pin::enqueue(self, crate::pin::items_of(self, c)).await;
    }

    pub fn segmenter_config(&self) -> SegmenterConfig {
        SegmenterConfig {
            target_duration: Duration::from_secs_f64(self.cfg.hls.target_duration.max(0.1)),
        }
    }

    /// The session of stream `id` (created on first use).
    pub fn session(&self, id: &str) -> Arc<Mutex<Session>> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Session {
                    id: id.to_string(),
                    segmenter: None,
                    gap_since: None,
                    cont: None,
                }))
            })
            .clone()
    }

    /// Every session currently in memory.
    pub fn sessions(&self) -> Vec<Arc<Mutex<Session>>> {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Runs `f` on the live-publisher table.
    pub fn with_live<T>(&self, f: impl FnOnce(&mut HashMap<String, LiveEntry>) -> T) -> T {
        let mut m = self.live.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    /// Installs how the stream's packaging task asks its publisher for a keyframe.
    pub fn set_keyframe_requester(&self, id: &str, f: KeyframeRequester) {
        self.with_live(|m| {
            if let Some(p) = m.get_mut(id).and_then(|e| e.publisher.as_mut()) {
                p.keyframe = Some(f);
            }
        })
    }

    /// Asks the stream's publisher for a keyframe, if it can be asked.
    pub fn request_keyframe(&self, id: &str) -> bool {
        let f = self.with_live(|m| {
            m.get(id)
                .and_then(|e| e.publisher.as_ref())
                .and_then(|p| p.keyframe.clone())
        });
        match f {
            Some(f) => {
                f();
                true
            }
            None => false,
        }
    }

    /// The protocol of the stream's connected publisher.
    pub fn publisher_protocol(&self, id: &str) -> Option<&'static str> {
        self.with_live(|m| {
            m.get(id)
                .and_then(|e| e.publisher.as_ref())
                .map(|p| p.protocol)
        })
    }

    /// The publisher part of the stream status.
    pub fn publisher_json(&self, id: &str) -> serde_json::Value {
        self.with_live(|m| match m.get(id).and_then(|e| e.publisher.as_ref()) {
            Some(p) => serde_json::json!({
                "connected": true,
                "protocol": p.protocol,
                "address": p.remote,
                "since": crate::stop::iso(p.since_ms),
                "stats": p.stats,
            }),
            None => serde_json::Value::Null,
        })
    }

    pub async fn publisher_count(&self) -> u64 {
        self.with_live(|m| m.values().filter(|e| e.publisher.is_some()).count() as u64)
    }

    /// Loads a stream record that must exist.
    pub fn stream(&self, id: &str) -> Result<StreamRecord> {
        self.db
            .stream(id)?
            .with_context(|| format!("stream {id} vanished"))
    }
}

impl Session {
    /// Takes the segmenter out (building it from the stream's resume point if needed) so it can
    /// move into a blocking task; give it back with [`Session::put_segmenter`].
    pub fn take_segmenter(&mut self, app: &App, rec: &StreamRecord) -> Result<Segmenter> {
        if let Some(s) = self.segmenter.take() {
            return Ok(s);
        }
        Ok(match &rec.resume {
            Some(v) => {
                let point: ResumePoint =
                    serde_json::from_value(v.clone()).context("stored resume point")?;
                Segmenter::resume(app.segmenter_config(), point)
            }
            None => Segmenter::new(app.segmenter_config()),
        })
    }

    pub fn put_segmenter(&mut self, s: Segmenter) {
        self.segmenter = Some(s);
    }

    /// Forgets the in-memory segmenter: the next use rebuilds it from the last committed point.
    pub fn reset_segmenter(&mut self) {
        self.segmenter = None;
        self.cont = None;
    }
}

/// Relative path of an init segment file.
pub fn init_path(stream: &str, id: u32) -> String {
    format!("streams/{stream}/init/{id}.mp4")
}

/// Relative path of a media segment file.
pub fn segment_path(stream: &str, seq: u64) -> String {
    format!("streams/{stream}/segments/{seq}.m4s")
}

/// Writes every output the segmenter has ready to the store (blocking) and appends their records
/// to `out`.
pub fn drain_outputs(
    store: &LocalStore,
    stream: &str,
    seg: &mut Segmenter,
    out: &mut Packaged,
) -> Result<()> {
    let outs: Vec<Output> = std::iter::from_fn(|| seg.poll_output()).collect();
    write_outputs(store, stream, outs, out)
}

/// Writes segmenter outputs to the store (blocking) and appends their records to `out`.
pub fn write_outputs(
    store: &LocalStore,
    stream: &str,
    outs: Vec<Output>,
    out: &mut Packaged,
) -> Result<()> {
    for o in outs {
        match o {
            Output::Init(init) => {
                let path = init_path(stream, init.id);
                store
                    .write_atomic(&path, std::slice::from_ref(&init.data))
                    .with_context(|| format!("writing {path}"))?;
                let (mut width, mut height) = (0, 0);
                for t in &init.tracks {
                    if let packager::Codec::H264 {
                        width: w,
                        height: h,
                        ..
                    } = &t.codec
                    {
                        width = u32::from(*w);
                        height = u32::from(*h);
                    }
                }
                out.inits.push(InitRecord {
                    stream_id: stream.to_string(),
                    init_id: init.id,
                    path,
                    codecs: init
                        .tracks
                        .iter()
                        .map(|t| t.codec.rfc6381())
                        .collect::<Vec<_>>()
                        .join(","),
                    width,
                    height,
                    remote_url: None,
                });
            }
            Output::Segment(s) => {
                let path = segment_path(stream, s.sequence);
                let mut parts: Vec<Bytes> = Vec::with_capacity(s.payloads.len() + 1);
                parts.push(s.header.clone());
                parts.extend(s.payloads.iter().cloned());
                // Nothing refers to the file until the commit that follows records it.
                let size = store
                    .write_unreferenced(&path, &parts)
                    .with_context(|| format!("writing {path}"))?;
                out.segments.push(SegmentRecord {
                    stream_id: stream.to_string(),
                    sequence: s.sequence,
                    init_id: s.init_id,
                    discontinuity: s.discontinuity,
                    start_secs: s.start_secs,
                    duration_secs: s.duration_secs,
                    size,
                    path,
                    program_date_time_ms: 0,
                    video_frames: s.video_frames,
                    audio_frames: s.audio_frames,
                    remote_url: None,
                });
            }
        }
    }
    Ok(())
}

impl Packaged {
    /// Gives the segments program-date-times, the last one ending at `wall_end_ms`.
    pub fn stamp_times(&mut self, wall_end_ms: i64) {
        if let Some(last) = self.segments.last() {
            let end_secs = last.start_secs + last.duration_secs;
            for s in &mut self.segments {
                s.program_date_time_ms = wall_end_ms - ((end_secs - s.start_secs) * 1000.0) as i64;
            }
        }
    }

    /// Adds these records and the stream's new resume point to `commit`.
    pub fn into_commit(self, rec: &mut StreamRecord, seg: &Segmenter, commit: &mut Commit) {
        rec.resume = serde_json::to_value(seg.resume_point()).ok();
        commit.inits.extend(self.inits);
        commit.segments.extend(self.segments);
    }
}

/// A fresh stream record for `user`.
pub fn new_stream(user: &str, title: Option<String>) -> StreamRecord {
    StreamRecord {
        id: ids::object_id(),
        user_id: user.to_string(),
        title,
        stream_key: ids::stream_key(),
        status: storage::StreamStatus::Live,
        created_at_ms: ids::now_ms(),
        stopped_at_ms: None,
        video_id: None,
        resume: None,
        next_chunk: 0,
        pull: None,
        ingest_state: None,
        live_protocol: None,
    }
}
