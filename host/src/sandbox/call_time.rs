//! How the time a guest call uses is measured: the CPU time of the thread
//! running it, between the poll that resumed it and the epoch callback
//! that charges it, and a wall-clock cap for calls that wait instead.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

thread_local! {
    /// This thread's CPU clock when it resumed the guest call it is
    /// polling, unless it is that call's first poll (or it was charged).
    static RESUMED_AT: Cell<Option<Duration>> = const { Cell::new(None) };
    /// Whether the call this thread polls gave the thread back at an epoch
    /// tick ([`yielded`]) rather than to wait for something.
    static YIELDED: Cell<bool> = const { Cell::new(false) };
}

/// The call in flight, mostly waiting rather than running, outlasted its
/// wall-clock limit.
#[derive(Debug, thiserror::Error)]
#[error("the call was still waiting after {0:?}, its wall-clock limit")]
pub struct WallClockExceeded(pub Duration);

/// Poll a guest call to completion, giving up on it with
/// [`WallClockExceeded`] once it has waited `wall_clock_limit` in all; the
/// store is then left mid-call, so its instance must be retired. Only
/// waiting counts: a call that yielded at an epoch tick is ready at once,
/// and the time it then spends queued behind other calls (a thousand
/// instances given their connections' EOF together) is the reactor's, not
/// the guest's. A call that yields may resume on another reactor thread,
/// so each poll after the first notes the CPU clock of the thread resuming
/// it, for [`charge`]. The first poll, where most calls end, costs neither
/// a clock read nor a timer.
pub fn metered<F: Future>(wall_clock_limit: Duration, call: F) -> Metered<F> {
    Metered {
        call,
        wall_clock_limit,
        polled: false,
        waited: Duration::ZERO,
        waiting_since: None,
        timer: None,
    }
}

pin_project! {
    /// The future of [`metered`]. It holds the call in place rather than in
    /// an async fn's frame, which would keep both the argument and its
    /// pinned copy in every connection task.
    pub struct Metered<F> {
        #[pin]
        call: F,
        wall_clock_limit: Duration,
        polled: bool,
        // Time spent waiting in earlier waits, and when the current began.
        waited: Duration,
        waiting_since: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future<Output = wasmtime::Result<T>>, T> Future for Metered<F> {
    type Output = wasmtime::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(since) = this.waiting_since.take() {
            *this.waited += since.elapsed();
        }
        let resumed_at = std::mem::replace(this.polled, true).then(thread_cpu_time);
        RESUMED_AT.set(resumed_at);
        YIELDED.set(false);
        let polled = this.call.poll(cx);
        RESUMED_AT.set(None);
        if polled.is_ready() {
            return polled;
        }
        if YIELDED.replace(false) {
            // Woken already: nothing is waited for until it runs again.
            *this.timer = None;
            return Poll::Pending;
        }
        let limit = *this.wall_clock_limit;
        if *this.waited >= limit {
            return Poll::Ready(Err(WallClockExceeded(limit).into()));
        }
        let now = Instant::now();
        *this.waiting_since = Some(now);
        let due = tokio::time::Instant::from_std(now + (limit - *this.waited));
        let timer = match this.timer {
            Some(timer) => {
                timer.as_mut().reset(due);
                timer
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep_until(due))),
        };
        timer
            .as_mut()
            .poll(cx)
            .map(|()| Err(WallClockExceeded(limit).into()))
    }
}

/// Note that the call being polled gives its thread back at an epoch tick,
/// to be resumed as soon as the reactor comes back to it.
pub fn yielded() {
    YIELDED.set(true);
}

/// The CPU time this thread has spent in the call it is polling since the
/// poll resumed it or since the last charge, or `None` in a call's first
/// poll, which is not clocked. Only meaningful inside [`metered`].
pub fn charge() -> Option<Duration> {
    let resumed_at = RESUMED_AT.get()?;
    let now = thread_cpu_time();
    RESUMED_AT.set(Some(now));
    Some(now.saturating_sub(resumed_at))
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
