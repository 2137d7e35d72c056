//! The follow graph: follow, unfollow, and the lists of followers and followees.

mod follow;
mod lists;
