//! Demuxers for media that arrives over HTTP (`POST /api/streams/:id/upload`): whole MP4/MOV
//! chunks cut by ffmpeg or recorded by phones ([`mp4`]), and MediaRecorder streams of fMP4 or
//! WebM chunks ([`continuation`]). [`classify_chunk`] tells which reader a chunk needs.

mod boxes;
mod codec;
pub mod continuation;
mod ebml;
mod error;
mod fragment;
pub mod mp4;
mod sample_table;
pub mod webm;

pub use continuation::{classify_chunk, ChunkKind, ContainerFormat, ContinuationDemuxer};
pub use error::DemuxError;
pub use mp4::{index_mp4, index_mp4_with_limits, Limits, Mp4Index, SampleRef};
