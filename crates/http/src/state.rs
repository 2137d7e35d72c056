//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use starling_app::App;

#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<App>,
    pub metrics: Option<PrometheusHandle>,
    draining: Arc<AtomicBool>,
}

impl HttpState {
    pub fn new(app: Arc<App>, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            app,
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        }
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
