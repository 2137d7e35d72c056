//! The follow graph: follow, unfollow, the lists of followers and followees,
//! and blocks and mutes.

mod follow;
mod lists;
mod relations;

pub use relations::HiddenAccounts;
