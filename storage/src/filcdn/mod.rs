//! FilCDN (FilBeam) pinning: segments stored with a Filecoin PDP storage provider.
//!
//! - [`commp`] / [`piece_cid`]: the piece commitment and its CIDs, computed locally, streaming.
//! - [`eip712`]: the payer's signed authorizations (`extraData`) for the provider's calls.
//! - [`pdp`]: the provider's HTTP API.
//! - [`queue`]: the durable pin queue in sled; [`pinner`]: the worker that drives it.
//! - [`config`]: the `[filcdn]` settings.

pub mod commp;
pub mod config;
pub mod eip712;
pub mod pdp;
pub mod piece_cid;
pub mod pinner;
pub mod queue;

pub use config::{FilcdnConfig, FilcdnTimeouts, Secret};
pub use eip712::{Network, PayerKey};
pub use pdp::{PdpClient, PdpError};
pub use piece_cid::PieceCid;
pub use pinner::{
    check_config, piece_cid_of_file, run_pinner, startup_check, PinnedItem, PinnerError,
    StartupReport,
};
pub use queue::{PinCounts, PinItem, PinKind, PinQueue, PinRecord, PinState, QueueError};
