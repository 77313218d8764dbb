//! What each guest instance's `Store` holds: its resource table, a WASI
//! context that grants nothing, its memory limits and the time budget of
//! the call in flight.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::{self, Limits};
use crate::wasi;

/// Per-instance host state.
pub struct GuestState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) service: Arc<str>,
    /// Epoch ticks the call in flight may still run.
    ticks_left: u64,
    call_deadline: Duration,
}

/// The call in flight ran past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("guest call exceeded its {0:?} deadline")]
pub struct DeadlineExceeded(pub Duration);

impl GuestState {
    pub fn new(service: Arc<str>, limits: &Limits) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.handles);
        Self {
            table,
            wasi: wasi::context(&service),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .table_elements(limits.table_elements)
                .instances(limits::MAX_CORE_INSTANCES)
                .tables(limits::MAX_TABLES)
                .memories(limits::MAX_MEMORIES)
                .build(),
            service,
            ticks_left: 0,
            call_deadline: limits.call_deadline,
        }
    }

    /// Give the next call a fresh budget of `ticks` epoch ticks.
    pub fn start_call(&mut self, ticks: u64) {
        self.ticks_left = ticks;
    }

    /// The store's epoch callback: yield to the reactor at every tick, and
    /// trap once the call has used up its budget.
    pub fn on_epoch(mut store: StoreContextMut<'_, Self>) -> wasmtime::Result<UpdateDeadline> {
        let state = store.data_mut();
        if state.ticks_left == 0 {
            return Err(wasmtime::Error::new(DeadlineExceeded(state.call_deadline)));
        }
        state.ticks_left -= 1;
        Ok(UpdateDeadline::Yield(1))
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
