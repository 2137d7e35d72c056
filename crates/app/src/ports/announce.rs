//! What a change announces. The use case decides which event a change
//! emits and builds it; the store only appends it to the outbox in the
//! change's own transaction, so the event exists exactly when the change
//! does. Where the event depends on what only the transaction can see (a
//! follow changed nothing; the followee's follower count right after it;
//! the author of a liked post), the use case hands the store a rule over
//! the change's outcome instead of a finished event.

use starling_domain::{Event, EventId};

use crate::telemetry;

/// An event to append with a change, as the use case built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: EventId,
    pub event: Event,
    /// The W3C trace context of the request that made the change, so that
    /// the handlers' spans join its trace.
    pub trace_parent: Option<String>,
}

impl NewEvent {
    pub fn new(id: EventId, event: Event, trace_parent: Option<String>) -> Self {
        Self {
            id,
            event,
            trace_parent,
        }
    }

    /// An event of the request being served, in its trace.
    pub fn in_current_trace(id: EventId, event: Event) -> Self {
        Self::new(id, event, telemetry::current_traceparent())
    }
}

/// Makes an event (or none) of a change's outcome.
type Rule<O> = Box<dyn FnOnce(&O) -> Option<Event> + Send>;

/// The use case's rule for what a change with outcome `O` announces: the
/// store applies it to the outcome inside the change's transaction and
/// appends the event it gives (none for a change that changed nothing).
pub struct Announce<O> {
    id: EventId,
    trace_parent: Option<String>,
    rule: Rule<O>,
}

impl<O> Announce<O> {
    pub fn new(
        id: EventId,
        trace_parent: Option<String>,
        rule: impl FnOnce(&O) -> Option<Event> + Send + 'static,
    ) -> Self {
        Self {
            id,
            trace_parent,
            rule: Box::new(rule),
        }
    }

    /// A rule of the request being served, its event in the request's trace.
    pub fn in_current_trace(
        id: EventId,
        rule: impl FnOnce(&O) -> Option<Event> + Send + 'static,
    ) -> Self {
        Self::new(id, telemetry::current_traceparent(), rule)
    }

    /// The event to append for `outcome`, if the change announces one.
    pub fn event_for(self, outcome: &O) -> Option<NewEvent> {
        (self.rule)(outcome).map(|event| NewEvent::new(self.id, event, self.trace_parent))
    }
}

impl<O> std::fmt::Debug for Announce<O> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Announce")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use starling_domain::UserId;

    use super::*;

    #[test]
    fn the_rule_decides_from_the_outcome() {
        let rule = |changed: &bool| changed.then_some(Event::ProfileUpdated { user_id: UserId(3) });
        let announced = Announce::new(EventId(9), Some("trace".into()), rule).event_for(&true);
        assert_eq!(
            announced,
            Some(NewEvent::new(
                EventId(9),
                Event::ProfileUpdated { user_id: UserId(3) },
                Some("trace".into())
            ))
        );
        assert_eq!(
            Announce::new(EventId(9), None, rule).event_for(&false),
            None
        );
    }
}
