//! The home timeline: read path (stored timeline + read-time merge of
//! high-fan-out authors + SQL below the floor), hydration (with single-flight
//! loading), and the timeline
//! maintenance shared by the request path and the fan-out worker.

mod hydrate;
pub use hydrate::Hydration;
mod likes;
pub use likes::LikedPosts;
pub(crate) use maintain::{FANOUT_BATCH, floor_of};
mod maintain;
mod read;
mod single_flight;
pub(crate) use single_flight::SingleFlight;
