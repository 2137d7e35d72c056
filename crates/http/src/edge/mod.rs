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
pub use client::{AddressRange, TrustedProxies};
pub(crate) use idempotency::honour_idempotency_keys;
pub(crate) use rate_limit::limit_rate;
pub use shedding::LoadShedding;
pub(crate) use shedding::shed_load;

/// The caller of this request's bearer credential, checked already.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified(pub(crate) starling_app::accounts::Caller);

/// The caller of the request's bearer credential when it is valid, checking
/// it at most once per request: the result stays in the request for the
/// later layers and the handler's extractor.
pub(crate) async fn verified_caller(
    state: &crate::state::HttpState,
    request: &mut Request,
) -> Option<starling_app::accounts::Caller> {
    if let Some(Verified(caller)) = request.extensions().get::<Verified>() {
        return Some(*caller);
    }
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))?
        .1
        .trim();
    let caller = crate::extract::caller_of(state, token).await.ok()?;
    request.extensions_mut().insert(Verified(caller));
    Some(caller)
}

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
