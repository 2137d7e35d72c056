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

#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<App>,
    pub metrics: Option<PrometheusHandle>,
    pub gauges: Option<Arc<dyn RefreshGauges>>,
    draining: Arc<AtomicBool>,
}

impl HttpState {
    pub fn new(app: Arc<App>, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            app,
            metrics,
            gauges: None,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn with_gauges(mut self, gauges: Arc<dyn RefreshGauges>) -> Self {
        self.gauges = Some(gauges);
        self
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
