//! Background workers: a generic consumer loop over the event log, the
//! handlers it drives (the fan-out worker keeps home timelines up to date,
//! the notifier makes notifications, the thumbnailer makes thumbnails),
//! the account-deletion saga's runner, and the relay that moves outbox events onto a broker in scaled-out mode.

mod audiences;
mod consumer;
mod deletion;
mod fanout;
mod notifier;
mod relay;
mod thumbnailer;

pub use consumer::{ConsumerOptions, EventHandler, run_consumer};
pub use deletion::{AccountDeletions, DeletionSettings};
pub use fanout::FanoutWorker;
pub use notifier::{LIKE_WITHDRAW_WINDOW_MS, Notifier};
pub use relay::{RELAY_CONSUMER, run_relay};
pub use thumbnailer::Thumbnailer;
