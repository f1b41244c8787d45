//! storef's state and segment stores. Only this crate touches sled.

pub mod filcdn;
