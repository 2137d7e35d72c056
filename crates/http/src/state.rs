//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use starling_app::App;

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
    draining: AtomicBool,
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
    ) -> Self {
        Self(Arc::new(Shared {
            app,
            metrics,
            gauges,
            draining: AtomicBool::new(false),
        }))
    }

    /// From now on `/readyz` answers 503, so load balancers stop sending
    /// new traffic while in-flight requests finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
