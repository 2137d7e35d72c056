//! Who the current request acts for, as adapters may need to know it: a
//! store with read replicas sends the reads of an account that just wrote
//! to the primary, so the account sees its own writes (read-your-writes).
//!
//! The HTTP layer opens a scope per request; the authentication step fills
//! in the account once it is known. Outside any scope (workers, tools) no
//! caller is known.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use starling_domain::UserId;

tokio::task_local! {
    static CALLER: Arc<OnceLock<UserId>>;
}

/// A slot for the caller of one request, filled once authenticated.
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<UserId>>);

impl CallerSlot {
    /// Records the authenticated caller (the first one recorded stays).
    pub fn set(&self, caller: UserId) {
        let _ = self.0.set(caller);
    }

    pub fn get(&self) -> Option<UserId> {
        self.0.get().copied()
    }

    /// Runs `work` with this slot as the current request's caller.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CALLER.scope(self.0.clone(), work).await
    }
}

/// The account the current request acts for, when known.
pub fn current_caller() -> Option<UserId> {
    CALLER.try_with(|slot| slot.get().copied()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_caller_is_known_inside_its_scope_only() {
        assert_eq!(current_caller(), None);
        let slot = CallerSlot::default();
        slot.scope(async {
            assert_eq!(current_caller(), None);
            slot.set(UserId(7));
            assert_eq!(current_caller(), Some(UserId(7)));
        })
        .await;
        assert_eq!(current_caller(), None);
    }
}
