//! The one error type of the upload demuxers.
//!
//! Every variant says where it happened (a byte offset into the file or stream, the box or element
//! concerned) so that a rejected upload can be found in the stored chunk with a hex dump.

/// Why an uploaded MP4/MOV/WebM could not be demuxed.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum DemuxError {
    /// The bytes do not start like an ISO BMFF / QuickTime file (or, for the continuation reader,
    /// like fMP4 or WebM).
    #[error("not an MP4/MOV file: {reason}")]
    NotMp4 { reason: String },

    /// The input ends before something it announced: a box, an element or a sample's bytes.
    #[error(
        "truncated at byte {offset}: {what} needs bytes up to {needed}, input has {available}"
    )]
    Truncated {
        offset: u64,
        what: String,
        needed: u64,
        available: u64,
    },

    /// A box (or WebM element) is present but its contents are inconsistent.
    #[error("malformed {box_type} box at byte {offset}: {reason}")]
    Malformed {
        box_type: String,
        offset: u64,
        reason: String,
    },

    /// No H.264, AAC or Opus track, and no unsupported audio/video track either.
    #[error("no audio or video track")]
    NoMediaTracks,

    /// An audio/video track whose codec storef does not ingest (`hvc1`, `vp09`, `av01`, `V_VP8`, ...).
    #[error("unsupported codec {fourcc}")]
    UnsupportedCodec { fourcc: String },

    /// A limit that protects the server (sample count, sample size, header size) was exceeded.
    #[error("limit exceeded at byte {offset}: {what} is {value}, the limit is {limit}")]
    LimitExceeded {
        offset: u64,
        what: &'static str,
        value: u64,
        limit: u64,
    },

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl DemuxError {
    pub(crate) fn malformed(box_type: &str, offset: u64, reason: impl Into<String>) -> Self {
        DemuxError::Malformed {
            box_type: box_type.to_string(),
            offset,
            reason: reason.into(),
        }
    }
}
