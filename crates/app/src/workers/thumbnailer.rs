//! The thumbnailer: makes each upload's thumbnail from its `MediaUploaded`
//! event, off the upload's request. Idempotent: an upload already ready (a
//! redelivery) or gone is skipped. Runs in the fan-out worker's processes.

use std::sync::Arc;

use async_trait::async_trait;
use starling_domain::{Event, EventEnvelope};

use crate::error::AppResult;
use crate::media::MediaLibrary;
use crate::workers::EventHandler;

pub struct Thumbnailer {
    media: Arc<MediaLibrary>,
}

impl Thumbnailer {
    pub const CONSUMER: &'static str = "thumbnailer";

    pub fn new(media: Arc<MediaLibrary>) -> Self {
        Self { media }
    }
}

#[async_trait]
impl EventHandler for Thumbnailer {
    fn name(&self) -> &'static str {
        Self::CONSUMER
    }

    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()> {
        if let Event::MediaUploaded { media_id, .. } = &envelope.event {
            self.media.make_thumbnail(*media_id).await?;
        }
        Ok(())
    }
}
