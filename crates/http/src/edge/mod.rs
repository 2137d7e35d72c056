//! What an API gateway does before a request reaches its handler: knowing
//! the client (behind trusted proxies), shedding load past capacity,
//! enforcing rate limits with the standard headers, and answering retried
//! creates from their idempotency keys.

mod client;
mod idempotency;
mod rate_limit;
mod shedding;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub(crate) use client::ClientIp;
pub use client::TrustedProxies;
pub(crate) use idempotency::honour_idempotency_keys;
pub(crate) use rate_limit::{Verified, limit_rate};
pub use shedding::LoadShedding;
pub(crate) use shedding::shed_load;

/// Decides who the client is once, for every later layer and handler.
pub(crate) async fn identify_client(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = ClientIp::of(&request, &trusted);
    request.extensions_mut().insert(client);
    next.run(request).await
}

pub(crate) fn shedding_state(settings: &LoadShedding) -> Arc<shedding::Shedder> {
    shedding::Shedder::new(settings)
}
