//! The follow graph: follow, unfollow, the lists of followers and followees,
//! and blocks and mutes.

mod follow;
mod hiding;
mod lists;
mod relations;

pub use hiding::{HiddenAccounts, Hiding};
