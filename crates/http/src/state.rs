//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use starling_app::App;
use starling_app::live::LiveHub;
use starling_app::ports::{RateLimiter, RateLimits};

/// Brings sampled gauges (pool usage, backlog, runtime figures) up to date
/// right before `/metrics` is rendered, so they cost nothing between scrapes.
#[async_trait::async_trait]
pub trait RefreshGauges: Send + Sync {
    async fn refresh(&self);
}

/// Cloned for every request by axum: one reference count, not one per field.
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

pub struct Shared {
    pub app: Arc<App>,
    pub metrics: Option<PrometheusHandle>,
    pub gauges: Option<Arc<dyn RefreshGauges>>,
    /// Enforces `rate_limits` at the edge; `None`: no rate limiting.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    pub rate_limits: Option<RateLimits>,
    /// Live streams; `None`: `/api/v1/stream` answers 503.
    pub streaming: Option<Streaming>,
    draining: AtomicBool,
    /// The last readiness answer and when it was found (see `ops::readyz`).
    pub(crate) readiness: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

/// What `/api/v1/stream` runs on.
pub struct Streaming {
    pub hub: Arc<LiveHub>,
    /// An idle stream gets a comment line this often.
    pub heartbeat: Duration,
}

impl std::ops::Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl HttpState {
    pub fn new(
        app: Arc<App>,
        metrics: Option<PrometheusHandle>,
        gauges: Option<Arc<dyn RefreshGauges>>,
        rate_limiting: Option<(Arc<dyn RateLimiter>, RateLimits)>,
    ) -> Self {
        let (rate_limiter, rate_limits) = match rate_limiting {
            Some((limiter, limits)) => (Some(limiter), Some(limits)),
            None => (None, None),
        };
        Self(Arc::new(Shared {
            app,
            metrics,
            gauges,
            rate_limiter,
            rate_limits,
            streaming: None,
            draining: AtomicBool::new(false),
            readiness: tokio::sync::Mutex::new(None),
        }))
    }

    /// Serves live streams from `streaming`. Called while building, before
    /// the state is shared.
    pub fn with_streaming(mut self, streaming: Option<Streaming>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.streaming = streaming;
        }
        self
    }

    /// From now on `/readyz` answers 503, so load balancers stop sending
    /// new traffic while in-flight requests finish.
    /// Open live streams end (clients reconnect elsewhere), so that they
    /// do not hold the shutdown up.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Some(streaming) = &self.streaming {
            streaming.hub.close();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
