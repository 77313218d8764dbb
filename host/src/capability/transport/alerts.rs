//! Waking every live connection of an instance (retired by a trap) or of
//! the server (shutting down) at once, idle ones included, without each
//! connection polling a shared future on every event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::Outbox;

/// A flag that, once raised, stays raised, and the connections to wake
/// when it is.
#[derive(Default)]
pub struct Alerts {
    raised: AtomicBool,
    members: Mutex<HashMap<u64, Weak<Outbox>>>,
    next_member: AtomicU64,
}

/// A connection's place in an [`Alerts`]; leaving is dropping it.
pub struct Membership<'a> {
    alerts: &'a Alerts,
    id: u64,
}

impl Alerts {
    /// Whether the alert has been raised.
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Raise the alert and wake every member.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        let members: Vec<Arc<Outbox>> = self.lock().values().filter_map(Weak::upgrade).collect();
        for outbox in members {
            outbox.alert();
        }
    }

    /// Wake `outbox`'s connection when the alert is raised.
    pub fn join(&self, outbox: &Arc<Outbox>) -> Membership<'_> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::downgrade(outbox));
        Membership { alerts: self, id }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Outbox>>> {
        // Only map inserts and removals happen under the lock.
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.alerts.lock().remove(&self.id);
    }
}
