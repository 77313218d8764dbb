//! What each guest instance's `Store` holds: its resource table, a WASI
//! context that grants nothing, its memory caps, its share of the service's
//! log allowance and the time budget of the call in flight.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::clock::CoarseClock;
use crate::guest_log::LogBudget;
use crate::limits::{self, Limits};
use crate::wasi;

/// Per-instance host state.
pub struct GuestState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) caps: Caps,
    pub(crate) service: Arc<str>,
    pub(crate) log_budget: LogBudget,
    clock: Arc<CoarseClock>,
    /// When, on `clock`, the call in flight must have returned.
    call_deadline: Duration,
    deadline: Duration,
}

/// The call in flight ran past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its {0:?} deadline")]
pub struct DeadlineExceeded(pub Duration);

impl GuestState {
    pub fn new(
        service: Arc<str>,
        limits: &Limits,
        log_budget: LogBudget,
        clock: Arc<CoarseClock>,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.handles);
        Self {
            table,
            wasi: wasi::context(&service, &log_budget),
            caps: Caps {
                memory: limits.memory,
                refused: None,
            },
            service,
            log_budget,
            call_deadline: Duration::ZERO,
            clock,
            deadline: limits.deadline,
        }
    }

    /// Give the next call its full deadline, from now.
    pub fn start_call(&mut self) {
        self.call_deadline = self.clock.now() + self.deadline;
        self.caps.refused = None;
    }

    /// The store's epoch callback, run at every tick while guest code runs:
    /// yield to the reactor, or trap once the call is past its deadline.
    /// Wall-clock time (as the ticker last read it) is checked, so a
    /// spinning guest stops within a tick of its deadline however late the
    /// ticks come.
    pub fn on_epoch(mut store: StoreContextMut<'_, Self>) -> wasmtime::Result<UpdateDeadline> {
        let state = store.data_mut();
        if state.clock.now() >= state.call_deadline {
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
}

impl ResourceLimiter for Caps {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory;
        if !allowed {
            self.refused = Some((desired, self.memory));
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

impl crate::bindings::weft::protocol::types::Host for GuestState {}
