//! storef's sans-IO packaging core: the media types every ingest produces, the segmenter that cuts
//! them into keyframe-aligned fMP4 segments, the fMP4 writer, HLS playlists and the VOD builder.
//!
//! Nothing in this crate does I/O: frames go in, bytes and records come out.

pub mod fmp4;
pub mod hls;
pub mod media;
pub mod segmenter;
pub mod vod;

pub use hls::{Playlist, PlaylistKind, PlaylistSegment};
pub use media::{Codec, MediaFrame, Track, TrackKind};
pub use segmenter::{
    InitSegment, MediaSegment, Output, ResumePoint, Segmenter, SegmenterConfig, SegmenterError,
};
pub use vod::{VodBuilder, VodError, VodLayout};
