//! FilCDN (FilBeam) pinning: segments stored with a Filecoin PDP storage provider.
//!
//! - [`commp`] / [`piece_cid`]: the piece commitment and its CIDs, computed locally, streaming.

pub mod commp;
pub mod eip712;
pub mod piece_cid;
