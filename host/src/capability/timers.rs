//! Timers: `reactor.call-later` and its `delayed-call` handle (Twisted's
//! callLater and IDelayedCall). An instance's scheduled calls wait in its
//! [`Timers`] queue; [`fire`], run by the instance's timer task, hands
//! each back when due, to become a guest call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use wasmtime::component::{Resource, ResourceTable};

use crate::metrics::{LimitHit, ServiceMetrics};
use crate::wit::weft::protocol::reactor::{DelayedCall, HostDelayedCall, TimerError};

/// The guest's handle on one scheduled call, stored in its resource table.
struct CallHandle {
    id: u64,
}

/// An instance's timers: its scheduled calls, shared with its timer task,
/// and where refusals are counted and logged.
pub struct TimersState {
    pub timers: Arc<Timers>,
    service: Arc<str>,
    metrics: Arc<ServiceMetrics>,
}

impl TimersState {
    /// At most `cap` calls scheduled at once, for the service `service`.
    pub fn new(cap: usize, service: Arc<str>, metrics: Arc<ServiceMetrics>) -> Self {
        Self {
            timers: Arc::new(Timers::new(cap)),
            service,
            metrics,
        }
    }
}

/// What the timer interface works on: an instance's timers, and the
/// resource table its handles live in.
pub struct TimersView<'a> {
    pub state: &'a mut TimersState,
    pub table: &'a mut ResourceTable,
}

impl TimersView<'_> {
    /// The scheduled call behind the guest's handle `this`.
    fn id(&self, this: &Resource<DelayedCall>) -> wasmtime::Result<u64> {
        let handle: &CallHandle = self.table.get(&Resource::new_borrow(this.rep()))?;
        Ok(handle.id)
    }

    fn timers(&self) -> &Timers {
        &self.state.timers
    }
}

/// One instance's scheduled calls, shared by its store (which schedules)
/// and its timer task (which fires).
pub struct Timers {
    queue: Mutex<Queue>,
    /// Wakes the timer task: a call was scheduled earlier than any other,
    /// or the instance is gone.
    wake: Notify,
    /// Calls that may be scheduled at once.
    cap: usize,
}

#[derive(Default)]
struct Queue {
    /// Scheduled calls by due time, then by the order they were scheduled.
    due: BTreeMap<(Instant, u64), u64>,
    /// When each scheduled call is due, by id.
    when: HashMap<u64, Instant>,
    next_id: u64,
    /// The instance is retired or dropped: nothing fires any more.
    closed: bool,
}

impl Timers {
    pub fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::default(),
            wake: Notify::new(),
            cap,
        }
    }

    /// Schedule `token` to fire after `delay`; `None` past the cap.
    fn schedule(&self, delay: Duration, token: u64) -> Option<u64> {
        let mut queue = self.lock();
        if queue.when.len() >= self.cap || queue.closed {
            return None;
        }
        let id = queue.next_id;
        queue.next_id += 1;
        let due = after(delay);
        queue.place(id, due, token);
        let earliest = queue.due.keys().next() == Some(&(due, id));
        drop(queue);
        if earliest {
            self.wake.notify_one();
        }
        Some(id)
    }

    /// Move a scheduled call to the due time `new_due` computes from its
    /// current one; nothing if it has fired or was cancelled.
    fn move_to(&self, id: u64, new_due: impl FnOnce(Instant) -> Instant) {
        let mut queue = self.lock();
        let Some(due) = queue.when.get(&id).copied() else {
            return;
        };
        let Some(token) = queue.due.remove(&(due, id)) else {
            return;
        };
        queue.place(id, new_due(due), token);
        drop(queue);
        self.wake.notify_one();
    }

    fn cancel(&self, id: u64) {
        let mut queue = self.lock();
        if let Some(due) = queue.when.remove(&id) {
            queue.due.remove(&(due, id));
        }
    }

    fn active(&self, id: u64) -> bool {
        self.lock().when.contains_key(&id)
    }

    /// Drop every scheduled call and fire nothing more: the instance was
    /// retired or dropped.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.due.clear();
        queue.when.clear();
        drop(queue);
        self.wake.notify_one();
    }

    /// The first call due by `now`, taken off the queue.
    fn pop_due(&self, now: Instant) -> Option<u64> {
        let mut queue = self.lock();
        let (&(due, id), _) = queue
            .due
            .iter()
            .next()
            .filter(|((due, _), _)| *due <= now)?;
        queue.when.remove(&id);
        queue.due.remove(&(due, id))
    }

    /// When the next call is due, or `Err` once closed.
    fn next_due(&self) -> Result<Option<Instant>, ()> {
        let queue = self.lock();
        if queue.closed {
            return Err(());
        }
        Ok(queue.due.keys().next().map(|(due, _)| *due))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only map updates happen under the lock; they cannot panic.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Queue {
    fn place(&mut self, id: u64, due: Instant, token: u64) {
        self.when.insert(id, due);
        self.due.insert((due, id), token);
    }
}

/// Now plus `delay`, saturating far in the future.
fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The instance's timer task: sleep until the next call is due, hand
/// every due call's token to `due` in order (a guest call each), until the
/// instance is retired or dropped (its timers closed) or `due` says it
/// can take no more.
pub async fn fire<F, Fut>(timers: Arc<Timers>, mut due: F)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let next = match timers.next_due() {
            Ok(next) => next,
            Err(()) => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = timers.wake.notified() => continue,
                }
            }
            None => {
                timers.wake.notified().await;
                continue;
            }
        }
        // Calls scheduled while these fire are due later than `now`, so a
        // guest that keeps rescheduling itself goes round the outer loop.
        let now = Instant::now();
        while let Some(token) = timers.pop_due(now) {
            if !due(token).await {
                return;
            }
            // Most calls finish in their first poll; without this a guest
            // firing timers back to back would never give its thread up.
            tokio::task::consume_budget().await;
        }
    }
}

impl HostDelayedCall for TimersView<'_> {
    fn cancel(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<()> {
        let id = self.id(&this)?;
        self.timers().cancel(id);
        Ok(())
    }

    fn reset(&mut self, this: Resource<DelayedCall>, delay: u64) -> wasmtime::Result<()> {
        let id = self.id(&this)?;
        self.timers()
            .move_to(id, |_| after(Duration::from_nanos(delay)));
        Ok(())
    }

    fn delay(&mut self, this: Resource<DelayedCall>, delay: u64) -> wasmtime::Result<()> {
        let id = self.id(&this)?;
        self.timers().move_to(id, |due| {
            due.checked_add(Duration::from_nanos(delay)).unwrap_or(due)
        });
        Ok(())
    }

    fn active(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<bool> {
        let id = self.id(&this)?;
        Ok(self.timers().active(id))
    }

    fn drop(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<()> {
        // The call stays scheduled: dropping the handle does not cancel it.
        self.table
            .delete(Resource::<CallHandle>::new_own(this.rep()))?;
        Ok(())
    }
}

impl TimersView<'_> {
    /// `reactor.call-later`.
    pub fn call_later(
        &mut self,
        delay: u64,
        token: u64,
    ) -> wasmtime::Result<Result<Resource<DelayedCall>, TimerError>> {
        let state = &self.state;
        let Some(id) = state.timers.schedule(Duration::from_nanos(delay), token) else {
            state.metrics.hit(LimitHit::Timers);
            tracing::warn!(
                service = &*state.service,
                "refused a timer: the guest has its limit of {} scheduled",
                state.timers.cap
            );
            return Ok(Err(TimerError::Limit));
        };
        match self.table.push(CallHandle { id }) {
            Ok(handle) => {
                state.metrics.timers_scheduled.inc();
                Ok(Ok(Resource::new_own(handle.rep())))
            }
            Err(_) => {
                state.timers.cancel(id);
                Ok(Err(TimerError::Limit))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_fire_in_due_order_then_scheduling_order() {
        let timers = Timers::new(10);
        let late = timers.schedule(Duration::from_millis(20), 1).unwrap();
        timers.schedule(Duration::from_millis(10), 2).unwrap();
        timers.schedule(Duration::from_millis(10), 3).unwrap();
        assert_eq!(timers.pop_due(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(30)).await;
        let now = Instant::now();
        let fired: Vec<u64> = std::iter::from_fn(|| timers.pop_due(now)).collect();
        assert_eq!(fired, [2, 3, 1]);
        assert!(!timers.active(late));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_reset_and_delay_move_a_call() {
        let timers = Timers::new(10);
        let cancelled = timers.schedule(Duration::from_millis(10), 1).unwrap();
        let reset = timers.schedule(Duration::from_millis(10), 2).unwrap();
        let delayed = timers.schedule(Duration::from_millis(10), 3).unwrap();
        timers.cancel(cancelled);
        timers.move_to(reset, |_| after(Duration::from_millis(50)));
        timers.move_to(delayed, |due| due + Duration::from_millis(20));
        assert!(!timers.active(cancelled));
        tokio::time::advance(Duration::from_millis(35)).await;
        assert_eq!(timers.pop_due(Instant::now()), Some(3));
        assert_eq!(timers.pop_due(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(timers.pop_due(Instant::now()), Some(2));
    }

    #[test]
    fn the_cap_counts_scheduled_calls_and_close_drops_them() {
        let timers = Timers::new(2);
        let first = timers.schedule(Duration::ZERO, 1).unwrap();
        timers.schedule(Duration::ZERO, 2).unwrap();
        assert_eq!(timers.schedule(Duration::ZERO, 3), None);
        timers.cancel(first);
        assert!(timers.schedule(Duration::ZERO, 4).is_some());
        timers.close();
        assert_eq!(timers.next_due(), Err(()));
        assert_eq!(timers.schedule(Duration::ZERO, 5), None);
    }
}
