//! Announcements, on core NATS (not stored by JetStream), that a process
//! committed events to the SQL outbox, so that the relay, another process,
//! reads them at once. Without them it found them at its next poll
//! (`outbox.poll_interval_ms`, 500 ms): the floor of every post's fan-out
//! lag scaled out, ~0.3 s at the median even when idle.
//!
//! Not PostgreSQL's `LISTEN`/`NOTIFY`: a notifying transaction holds one
//! database-wide lock from before its commit until its commit record is
//! flushed, so notifying writers would commit one at a time. An
//! announcement lost (NATS unreachable, a relay restarting) costs only
//! that wait: the relay still polls.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::JetStream;

impl JetStream {
    fn outbox_subject(&self) -> String {
        format!("{}.outbox.appended", self.options().subject_prefix)
    }

    /// A function to call after each commit that appended outbox events.
    /// Calls coalesce: while one announcement is being sent, one more waits
    /// and the rest are dropped (a reader reads everything past its
    /// position, so one announcement stands for any number of commits).
    /// The sending task ends when the last copy of the function is dropped.
    pub fn outbox_announcer(&self) -> Arc<dyn Fn() + Send + Sync> {
        let (queue, mut queued) = tokio::sync::mpsc::channel::<()>(1);
        let (client, subject) = (self.client.clone(), self.outbox_subject());
        tokio::spawn(async move {
            while queued.recv().await.is_some() {
                // Flushed at once: the announcement is the whole point of
                // the call, and the next waits for this one anyway.
                let sent = match client.publish(subject.clone(), Bytes::new()).await {
                    Ok(()) => client.flush().await.map_err(anyhow::Error::from),
                    Err(error) => Err(anyhow::Error::from(error)),
                };
                if let Err(error) = sent {
                    tracing::debug!(error = %error, "cannot announce outbox events; the relay polls");
                }
            }
        });
        Arc::new(move || {
            let _ = queue.try_send(());
        })
    }

    /// Every announcement made by any process of this deployment from the
    /// moment this returns. The server has the subscription by then: an
    /// announcement of its own, sent after it on the same connection, has
    /// come back through it. (A subscription is sent without waiting, and
    /// async-nats' `flush` only empties the client's buffer: it does not
    /// wait for the server. Without the round trip, 1 run in 5 of the test
    /// below lost an announcement made in the next millisecond.)
    pub async fn outbox_announcements(
        &self,
    ) -> anyhow::Result<Pin<Box<dyn Stream<Item = ()> + Send>>> {
        let subject = self.outbox_subject();
        let mut subscriber = self.client.subscribe(subject.clone()).await?;
        self.client.publish(subject, Bytes::new()).await?;
        self.client.flush().await?;
        tokio::time::timeout(std::time::Duration::from_secs(5), subscriber.next())
            .await
            .map_err(|_| anyhow::anyhow!("NATS did not confirm the announcement subscription"))?
            .ok_or_else(|| anyhow::anyhow!("the announcement subscription closed"))?;
        Ok(Box::pin(subscriber.map(|_| ())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use starling_testing::NatsStream;

    use crate::{JetStream, JetStreamOptions};

    async fn connect(names: &NatsStream) -> JetStream {
        let options = JetStreamOptions {
            stream: names.stream.clone(),
            subject_prefix: names.subject_prefix.clone(),
            ..JetStreamOptions::default()
        };
        JetStream::connect(&names.url, options).await.unwrap()
    }

    #[tokio::test]
    async fn a_commit_announced_by_one_process_reaches_another() {
        let Some(names) = NatsStream::new() else {
            return;
        };
        // Two connections, as two processes of one deployment.
        let (writer, relay) = (connect(&names).await, connect(&names).await);
        let mut announcements = relay.outbox_announcements().await.unwrap();
        let announce = writer.outbox_announcer();
        announce();
        tokio::time::timeout(Duration::from_secs(5), announcements.next())
            .await
            .expect("the announcement arrives")
            .expect("the subscription is open");
        // Many commits at once coalesce: no more announcements than calls,
        // at least one after the last.
        for _ in 0..100 {
            announce();
        }
        let mut received = 0;
        while let Ok(Some(())) =
            tokio::time::timeout(Duration::from_millis(500), announcements.next()).await
        {
            received += 1;
        }
        assert!((1..=100).contains(&received), "{received} announcements");
    }
}
