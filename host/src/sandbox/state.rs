//! What each guest instance's `Store` holds: its resource table, a WASI
//! context that grants nothing, its memory caps, its share of the service's
//! log allowance, its timers, outbound connections and configuration, and
//! the time budget of the call in flight.

use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;

use crate::guest::Grants;
use crate::guest::datagram::DatagramPort;
use crate::guest::log::LogBudget;
use crate::guest::outbound::{OpenCount, Outbound};
use crate::guest::timers::Timers;
use crate::guest::wasi;
use crate::ops::metrics::{LimitHit, ServiceMetrics};
use crate::sandbox::call_time;
use crate::sandbox::clock::CoarseClock;
use crate::sandbox::instance::Instance;
use crate::sandbox::limits::{self, EPOCH_TICK, WALL_CLOCK_DEADLINES};

/// The most a call's first stretch, up to its first tick, is charged. That
/// stretch is not clocked, which would cost every call a clock read, but
/// read on the coarse clock, which also counts time the guest was
/// descheduled; a running guest meets its first tick within a tick.
const FIRST_STRETCH_CHARGE: Duration = EPOCH_TICK.saturating_mul(2);

/// Per-instance host state.
pub struct GuestState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) caps: Caps,
    pub(crate) service: Arc<str>,
    pub(crate) log_budget: LogBudget,
    pub(crate) timers: Arc<Timers>,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) outbound_open: OpenCount,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) metrics: Arc<ServiceMetrics>,
    /// A `udp:` service's socket.
    pub(crate) datagram: Option<Arc<DatagramPort>>,
    /// The instance this store belongs to, once it exists.
    pub(crate) instance: Weak<Instance>,
    clock: Arc<CoarseClock>,
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

impl GuestState {
    pub fn new(grants: &Grants, clock: Arc<CoarseClock>) -> Self {
        let limits = &grants.limits;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.handles);
        Self {
            table,
            wasi: wasi::context(&grants.service, &grants.log_budget),
            caps: Caps {
                memory: limits.memory,
                refused: None,
                metrics: grants.metrics.clone(),
            },
            service: grants.service.clone(),
            log_budget: grants.log_budget.clone(),
            timers: Arc::new(Timers::new(limits.timers)),
            outbound: grants.outbound.clone(),
            outbound_open: OpenCount::default(),
            config: grants.config.clone(),
            metrics: grants.metrics.clone(),
            datagram: grants.datagram.get().cloned(),
            instance: Weak::new(),
            call_used: Duration::ZERO,
            call_counted: Duration::ZERO,
            clock,
            deadline: limits.deadline,
        }
    }

    /// The CPU time charged to the call in flight, or the last one.
    pub fn call_used(&self) -> Duration {
        self.call_used
    }

    /// Give the next call its full deadline, from now; returns how long it
    /// may last in wall-clock time.
    pub fn start_call(&mut self) -> Duration {
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
    pub fn on_epoch(mut store: StoreContextMut<'_, Self>) -> wasmtime::Result<UpdateDeadline> {
        let state = store.data_mut();
        let now = state.clock.now();
        state.call_used += call_time::charge().unwrap_or_else(|| {
            now.saturating_sub(state.call_counted)
                .min(FIRST_STRETCH_CHARGE)
        });
        state.call_counted = now;
        if state.call_used >= state.deadline {
            return Err(wasmtime::Error::new(DeadlineExceeded(state.deadline)));
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Caps on what an instance may allocate. A refused growth fails inside
/// the guest (`memory.grow` returns -1); the refusal is remembered so that
/// the trap which usually follows can be explained in the log.
pub struct Caps {
    memory: usize,
    /// The last growth refused during the call in flight: (asked, cap).
    pub(crate) refused: Option<(usize, usize)>,
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

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::sandbox::bindings::weft::protocol::types::Host for GuestState {}
