//! The records storef keeps about streams, segments and videos. Stored as JSON so an operator can
//! read them with any sled dump tool, and so that adding a field (with `#[serde(default)]`) never
//! breaks an existing database.

use serde::{Deserialize, Serialize};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    Live,
    Stopped,
}

/// One stream, from `POST /api/streams/start` to its VOD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// 24 lowercase hex characters, like the MongoDB ids of the server storef replaces.
    pub id: String,
    /// The `id` claim of the token that started the stream.
    pub user_id: String,
    #[serde(default)]
    pub title: Option<String>,
    /// The publisher secret (RTMP stream name, WHIP bearer token).
    pub stream_key: String,
    pub status: StreamStatus,
    pub created_at_ms: i64,
    #[serde(default)]
    pub stopped_at_ms: Option<i64>,
    #[serde(default)]
    pub video_id: Option<String>,
    /// Where the packager picks up after a restart (a `packager::ResumePoint`, as JSON).
    #[serde(default)]
    pub resume: Option<serde_json::Value>,
    /// The next chunk sequence the playlist waits for: every sequence below it is committed or skipped.
    #[serde(default)]
    pub next_chunk: u64,
    /// A pull source (RTSP), as given to `POST /api/streams/start`, credentials included: never
    /// returned by the API.
    #[serde(default)]
    pub pull: Option<serde_json::Value>,
    /// Protocol-specific state that must survive a restart (an open MediaRecorder run).
    #[serde(default)]
    pub ingest_state: Option<serde_json::Value>,
    /// The protocol of the last live publisher (`rtmp`, `whip`, `rtsp`): after a restart such a
    /// stream waits one reconnect window for its publisher to come back.
    #[serde(default)]
    pub live_protocol: Option<String>,
}

impl StreamRecord {
    pub fn is_live(&self) -> bool {
        self.status == StreamStatus::Live
    }
}

/// One media segment, durable on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub stream_id: String,
    pub sequence: u64,
    pub init_id: u32,
    pub discontinuity: bool,
    pub start_secs: f64,
    pub duration_secs: f64,
    pub size: u64,
    /// Path relative to the data directory.
    pub path: String,
    /// Wall-clock time of the segment's first frame (unix ms), for `EXT-X-PROGRAM-DATE-TIME`.
    pub program_date_time_ms: i64,
    #[serde(default)]
    pub video_frames: u32,
    #[serde(default)]
    pub audio_frames: u32,
    /// The CDN URL once the segment is pinned; the playlist lists it instead of the local one.
    #[serde(default)]
    pub remote_url: Option<String>,
}

/// One init segment (`ftyp` + `moov`) of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRecord {
    pub stream_id: String,
    pub init_id: u32,
    pub path: String,
    /// RFC 6381 codec strings, comma separated (`avc1.64001f,mp4a.40.2`).
    pub codecs: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    #[serde(default)]
    pub remote_url: Option<String>,
}

/// What happened to one uploaded chunk sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ChunkState {
    /// Stored durably, waiting for an earlier sequence.
    Pending { path: String },
    /// Packaged into segments `first_segment..first_segment+segments`.
    Committed {
        dropped_frames: u64,
        first_segment: u64,
        segments: u64,
    },
    /// Never arrived within the gap timeout; the playlist went on without it.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub stream_id: String,
    pub sequence: u64,
    /// SHA-256 of the uploaded bytes (hex): a retry with the same bytes is answered as before.
    pub sha256: String,
    pub size: u64,
    pub received_at_ms: i64,
    pub state: ChunkState,
}

/// The VOD a stopped stream became.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRecord {
    pub id: String,
    pub stream_id: String,
    pub user_id: String,
    #[serde(default)]
    pub title: Option<String>,
    /// Path of the progressive MP4 relative to the data directory (None for a stream with no media).
    pub mp4_path: Option<String>,
    pub size: u64,
    pub duration_secs: f64,
    pub segments: u64,
    pub created_at_ms: i64,
    #[serde(default)]
    pub remote_url: Option<String>,
}
