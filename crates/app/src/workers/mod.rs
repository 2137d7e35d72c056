//! Background workers: a generic consumer loop over the event log, and the
//! handlers it drives (the fan-out worker keeps home timelines up to date).

mod audiences;
mod consumer;
mod fanout;

pub use consumer::{ConsumerOptions, EventHandler, run_consumer};
pub use fanout::FanoutWorker;
