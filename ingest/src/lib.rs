//! storef's protocol front-ends. Each turns one way of publishing (an uploaded MP4 chunk, RTMP,
//! WHIP, RTSP) into [`packager::Track`]s and [`packager::MediaFrame`]s.
//!
//! Parsers are sans-IO (pure functions over bytes); the tokio tasks around them are thin.
//! [`publish`] is the boundary to the server, [`batch`] groups frames on their way across it.

pub mod batch;
pub mod flv;
pub mod h264;
pub mod publish;
pub mod rtmp;
pub mod rtsp;
pub mod shards;
pub mod upload;
pub mod whip;
