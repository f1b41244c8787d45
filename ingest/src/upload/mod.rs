//! Demuxers for media that arrives over HTTP (`POST /api/streams/:id/upload`): whole MP4/MOV
//! chunks cut by ffmpeg or recorded by phones ([`mp4`]).

mod boxes;
mod codec;
mod error;
mod fragment;
mod h264;
pub mod mp4;
mod sample_table;

pub use error::DemuxError;
pub use mp4::{index_mp4, index_mp4_with_limits, Limits, Mp4Index, SampleRef};
