//! storef's state and segment stores. Only this crate touches sled.

pub mod db;
pub mod filcdn;
pub mod local;
pub mod records;

pub use db::{Commit, Db, DbError};
pub use local::LocalStore;
pub use records::*;
