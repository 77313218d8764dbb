//! A coarse clock kept by the epoch tickers, so that starting a guest call
//! and checking its deadline cost an atomic load, not a system call. It is
//! at most one tick behind real time while a call runs; one per process.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static CLOCK: LazyLock<CoarseClock> = LazyLock::new(CoarseClock::new);

/// The process's coarse clock.
pub fn coarse() -> &'static CoarseClock {
    &CLOCK
}

/// Microseconds since the clock was made, advanced at every epoch tick.
pub struct CoarseClock {
    origin: Instant,
    micros: AtomicU64,
}

impl CoarseClock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            micros: AtomicU64::new(0),
        }
    }

    /// Read the real time into the clock: the ticker calls this each tick,
    /// and a call that wakes the ticker before it reads the clock. Never
    /// backwards, whichever of two reads lands last.
    pub fn tick(&self) {
        let elapsed = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_max(elapsed, Ordering::AcqRel);
    }

    /// The time as of the last tick.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Acquire))
    }
}
