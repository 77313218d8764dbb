//! What the sandbox keeps in every store, whatever else the store holds:
//! the caps on what the instance may allocate, and the budget of the call
//! in flight, charged at each epoch tick; and stores made with both wired
//! in.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

use crate::metrics::{LimitHit, ServiceMetrics};
use crate::sandbox::call_time;
use crate::sandbox::clock::{self, CoarseClock};
use crate::sandbox::limits::{self, EPOCH_TICK, Limits, WALL_CLOCK_DEADLINES};
use crate::sandbox::ticker;

/// The most a call's first stretch, up to its first tick, is charged. That
/// stretch is not clocked, which would cost every call a clock read, but
/// read on the coarse clock, which also counts time the guest was
/// descheduled; a running guest meets its first tick within a tick.
const FIRST_STRETCH_CHARGE: Duration = EPOCH_TICK.saturating_mul(2);

/// A store's caps and call budget.
pub struct SandboxState {
    caps: Caps,
    clock: &'static CoarseClock,
    /// CPU time charged to the call in flight so far.
    call_used: Duration,
    /// When, on `clock`, it was last charged.
    call_counted: Duration,
    deadline: Duration,
}

/// The call in flight ran past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its {0:?} deadline")]
pub struct DeadlineExceeded(pub Duration);

/// A store for `data`, its allocations capped and its calls interrupted
/// at each epoch tick to be charged.
pub fn new<T>(engine: &Engine, data: T) -> Store<T>
where
    T: AsMut<SandboxState> + Send + 'static,
{
    let mut store = Store::new(engine, data);
    store.limiter(|data| &mut data.as_mut().caps);
    store.epoch_deadline_callback(|mut store| store.data_mut().as_mut().on_epoch());
    store
}

/// A call started on a store: the epoch tickers run while this lives.
pub struct Call {
    /// How long the call may last in wall-clock time.
    pub wall_clock_limit: Duration,
    _busy: Option<ticker::Busy>,
}

/// Start the store's next call: its full deadline, from now, with the
/// epoch ticker running until the returned [`Call`] is dropped.
pub fn start_call<T: AsMut<SandboxState>>(store: &mut Store<T>) -> Call {
    let busy = ticker::busy();
    let wall_clock_limit = store.data_mut().as_mut().start_call();
    store.set_epoch_deadline(1);
    Call {
        wall_clock_limit,
        _busy: busy,
    }
}

impl SandboxState {
    /// Caps and a budget as `limits` set them; refused growths are
    /// counted in `metrics`.
    pub fn new(limits: &Limits, metrics: Arc<ServiceMetrics>) -> Self {
        Self {
            caps: Caps {
                memory: limits.memory,
                refused: None,
                metrics,
            },
            clock: clock::coarse(),
            call_used: Duration::ZERO,
            call_counted: Duration::ZERO,
            deadline: limits.deadline,
        }
    }

    /// The CPU time charged to the call in flight, or the last one.
    pub fn call_used(&self) -> Duration {
        self.call_used
    }

    /// The last memory growth refused during the call in flight, or the
    /// last one: (asked, cap) in bytes.
    pub fn memory_refused(&self) -> Option<(usize, usize)> {
        self.caps.refused
    }

    fn start_call(&mut self) -> Duration {
        self.call_used = Duration::ZERO;
        self.call_counted = self.clock.now();
        self.caps.refused = None;
        self.deadline * WALL_CLOCK_DEADLINES
    }

    /// The store's epoch callback, run at the first tick seen while guest
    /// code runs: charge the call the CPU time it used since the last
    /// charge, then trap if that is past its deadline, else yield to the
    /// reactor. A spinning guest sees every tick, so it stops within a tick
    /// of its deadline of CPU time; time spent descheduled by a loaded
    /// machine, or queued after a yield, is not the guest's and not charged.
    fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let now = self.clock.now();
        self.call_used += call_time::charge().unwrap_or_else(|| {
            now.saturating_sub(self.call_counted)
                .min(FIRST_STRETCH_CHARGE)
        });
        self.call_counted = now;
        if self.call_used >= self.deadline {
            return Err(wasmtime::Error::new(DeadlineExceeded(self.deadline)));
        }
        call_time::yielded();
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Caps on what an instance may allocate. A refused growth fails inside
/// the guest (`memory.grow` returns -1); the refusal is remembered so that
/// the trap which usually follows can be explained in the log.
struct Caps {
    memory: usize,
    /// The last growth refused during the call in flight: (asked, cap).
    refused: Option<(usize, usize)>,
    metrics: Arc<ServiceMetrics>,
}

impl ResourceLimiter for Caps {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory;
        if allowed {
            // How an operator (and the leak tests) can see that a guest's
            // memory stays flat: after warm-up, these lines stop.
            tracing::debug!(from = current, to = desired, "guest memory grows");
        } else {
            self.refused = Some((desired, self.memory));
            self.metrics.hit(LimitHit::Memory);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= limits::TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        limits::MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        limits::MAX_TABLES
    }

    fn memories(&self) -> usize {
        limits::MAX_MEMORIES
    }
}
