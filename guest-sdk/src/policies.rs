//! Twisted's `policies.TimeoutMixin`: time out a connection that stays
//! idle. The protocol owns a [`TimeoutMixin`], calls `reset_timeout` on
//! activity, and says at creation what timing out does.

use std::rc::Rc;
use std::time::Duration;

use crate::reactor::{DelayedCall, call_later};

/// An idle timer for one connection (Twisted's TimeoutMixin). Dropping it
/// cancels the timer.
pub struct TimeoutMixin {
    period: Option<Duration>,
    call: Option<DelayedCall>,
    timeout_connection: Rc<dyn Fn()>,
}

impl TimeoutMixin {
    /// A timer, not yet set, that calls `timeout_connection` (Twisted's
    /// timeoutConnection) when the connection has been idle for the period
    /// given to [`set_timeout`](Self::set_timeout).
    pub fn new(timeout_connection: impl Fn() + 'static) -> Self {
        Self {
            period: None,
            call: None,
            timeout_connection: Rc::new(timeout_connection),
        }
    }

    /// Time out after `period` of idleness, or never (`None`); returns the
    /// period before (Twisted's setTimeout).
    pub fn set_timeout(&mut self, period: Option<Duration>) -> Option<Duration> {
        let previous = std::mem::replace(&mut self.period, period);
        match (period, self.call.as_ref().filter(|call| call.active())) {
            (None, Some(call)) => {
                call.cancel();
                self.call = None;
            }
            (Some(period), Some(call)) => call.reset(period),
            (Some(period), None) => {
                let timed_out = self.timeout_connection.clone();
                self.call = call_later(period, move || timed_out()).ok();
                if self.call.is_none() {
                    crate::log::warn(
                        "TimeoutMixin: no timer left; this connection will not time out",
                    );
                }
            }
            (None, None) => {}
        }
        previous
    }

    /// Restart the idle period: call this on activity (Twisted's
    /// resetTimeout).
    pub fn reset_timeout(&self) {
        if let (Some(period), Some(call)) = (self.period, &self.call) {
            call.reset(period);
        }
    }
}

impl Drop for TimeoutMixin {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.cancel();
        }
    }
}
