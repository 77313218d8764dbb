//! The reactor's time services (Twisted's `reactor.callLater` and
//! `task.LoopingCall`): calls scheduled on the host, whose firings the host
//! delivers as events, in order with the connections' events.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bindings::weft::protocol::reactor as wit;
pub use crate::bindings::weft::protocol::reactor::TimerError;

thread_local! {
    /// The calls scheduled and not yet run, by the token given the host.
    static TIMERS: RefCell<HashMap<u64, Box<dyn FnOnce()>>> = RefCell::default();
    /// The last token given the host, for a timer or a connection.
    static LAST_TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// A fresh token for something the host will answer later: a timer here,
/// or an outbound connection (`endpoints`).
pub(crate) fn token() -> u64 {
    LAST_TOKEN.set(LAST_TOKEN.get() + 1);
    LAST_TOKEN.get()
}

/// A call scheduled by [`call_later`] (Twisted's IDelayedCall). Dropping it
/// does not cancel the call.
pub struct DelayedCall {
    handle: wit::DelayedCall,
    token: u64,
}

/// Call `f` after `delay` (Twisted's `reactor.callLater`). Calls due at
/// the same time run in the order they were scheduled. Fails only when the
/// instance already has as many calls scheduled as the operator allows.
pub fn call_later(delay: Duration, f: impl FnOnce() + 'static) -> Result<DelayedCall, TimerError> {
    let token = token();
    let handle = wit::call_later(nanos(delay), token)?;
    TIMERS.with_borrow_mut(|timers| timers.insert(token, Box::new(f)));
    Ok(DelayedCall { handle, token })
}

impl DelayedCall {
    /// Stop the call from happening; nothing once it has run.
    pub fn cancel(&self) {
        self.handle.cancel();
        TIMERS.with_borrow_mut(|timers| timers.remove(&self.token));
    }

    /// Run the call `delay` from now instead (Twisted's reset).
    pub fn reset(&self, delay: Duration) {
        self.handle.reset(nanos(delay));
    }

    /// Run the call `delay` later than it was due (Twisted's delay).
    pub fn delay(&self, delay: Duration) {
        self.handle.delay(nanos(delay));
    }

    /// Whether the call is still to happen (Twisted's active).
    pub fn active(&self) -> bool {
        self.handle.active()
    }
}

/// The host says the call scheduled with `token` is due.
pub(crate) fn fire(token: u64) {
    // Taken out first: the call may schedule others.
    if let Some(call) = TIMERS.with_borrow_mut(|timers| timers.remove(&token)) {
        call();
    }
}

fn nanos(delay: Duration) -> u64 {
    u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX)
}

/// Call a function every `interval` (Twisted's `task.LoopingCall`): on the
/// interval's grid from when it started, skipping beats that were missed
/// rather than bunching them up.
#[derive(Clone)]
pub struct LoopingCall(Rc<RefCell<Looping>>);

struct Looping {
    /// Out of the cell while it runs, so it may stop its own loop.
    call: Option<Box<dyn FnMut()>>,
    interval: Duration,
    started: Option<Instant>,
    next: Option<DelayedCall>,
}

impl LoopingCall {
    /// A loop that will call `f`; nothing happens until [`start`].
    ///
    /// [`start`]: LoopingCall::start
    pub fn new(f: impl FnMut() + 'static) -> Self {
        Self(Rc::new(RefCell::new(Looping {
            call: Some(Box::new(f)),
            interval: Duration::ZERO,
            started: None,
            next: None,
        })))
    }

    /// Call the function every `interval`, the first time now if `now`.
    pub fn start(&self, interval: Duration, now: bool) -> Result<(), TimerError> {
        self.stop();
        {
            let mut looping = self.0.borrow_mut();
            looping.interval = interval;
            looping.started = Some(Instant::now());
        }
        if now {
            self.beat();
            Ok(())
        } else {
            self.schedule(interval)
        }
    }

    /// Stop calling (Twisted's stop).
    pub fn stop(&self) {
        let mut looping = self.0.borrow_mut();
        looping.started = None;
        if let Some(next) = looping.next.take() {
            next.cancel();
        }
    }

    /// Whether the loop is started (Twisted's `running`).
    pub fn running(&self) -> bool {
        self.0.borrow().started.is_some()
    }

    fn beat(&self) {
        let call = self.0.borrow_mut().call.take();
        if let Some(mut call) = call {
            call();
            self.0.borrow_mut().call = Some(call);
        }
        let (started, interval) = {
            let looping = self.0.borrow();
            (looping.started, looping.interval)
        };
        let Some(started) = started else {
            return; // Stopped by the call.
        };
        let elapsed = started.elapsed();
        let beats = if interval.is_zero() {
            0
        } else {
            elapsed.as_nanos() / interval.as_nanos()
        };
        let next = interval.saturating_mul(u32::try_from(beats + 1).unwrap_or(u32::MAX));
        if self.schedule(next.saturating_sub(elapsed)).is_err() {
            crate::log::error("LoopingCall stopped: no timer left for its next call");
            self.0.borrow_mut().started = None;
        }
    }

    fn schedule(&self, delay: Duration) -> Result<(), TimerError> {
        let this = self.clone();
        let next = call_later(delay, move || this.beat())?;
        self.0.borrow_mut().next = Some(next);
        Ok(())
    }
}
