//! What each guest instance's store holds: the sandbox's caps and call
//! budget, a resource table, a WASI context that grants nothing, and each
//! capability's state, composed from what its service grants.

use std::sync::{Arc, OnceLock};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;

use crate::capability::datagram::{DatagramPort, DatagramState};
use crate::capability::keyvalue::{KeyValueGrant, KeyValueState};
use crate::capability::log::{LogBudget, LogState};
use crate::capability::messaging::{Mailbox, MessagingGrant, MessagingState};
use crate::capability::outbound::{Dialed, Outbound, OutboundState};
use crate::capability::timers::{Timers, TimersState};
use crate::capability::wasi;
use crate::metrics::ServiceMetrics;
use crate::sandbox::limits::Limits;
use crate::sandbox::store::SandboxState;

/// What a service's instances are granted: its name and limits, its
/// share of the log, its outbound policy, its configuration, its
/// key-value buckets and where what they do is counted.
pub struct Grants {
    pub service: Arc<str>,
    pub limits: Limits,
    pub log_budget: LogBudget,
    pub outbound: Arc<Outbound>,
    pub config: Arc<WasiConfigVariables>,
    pub metrics: Arc<ServiceMetrics>,
    /// Its key-value buckets.
    pub keyvalue: Arc<KeyValueGrant>,
    /// Its topics.
    pub messaging: Arc<MessagingGrant>,
    /// For a `udp:` service, its worker's socket, set before the first
    /// instance starts.
    pub datagram: OnceLock<Arc<DatagramPort>>,
}

/// Per-instance host state.
pub struct GuestState {
    sandbox: SandboxState,
    pub(super) table: ResourceTable,
    wasi: WasiCtx,
    pub(super) log: LogState,
    pub(super) timers: TimersState,
    pub(super) outbound: OutboundState,
    pub(super) config: Arc<WasiConfigVariables>,
    pub(super) datagram: DatagramState,
    pub(super) keyvalue: KeyValueState,
    pub(super) messaging: MessagingState,
}

impl GuestState {
    pub fn new(grants: &Grants) -> Self {
        let limits = &grants.limits;
        let service = &grants.service;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.handles);
        let log = LogState::new(service.clone(), grants.log_budget.clone());
        Self {
            sandbox: SandboxState::new(limits, grants.metrics.clone()),
            table,
            wasi: wasi::context(&log),
            log,
            timers: TimersState::new(limits.timers, service.clone(), grants.metrics.clone()),
            outbound: OutboundState::new(grants.outbound.clone(), grants.metrics.clone()),
            config: grants.config.clone(),
            datagram: DatagramState::new(grants.datagram.get().cloned()),
            keyvalue: KeyValueState::new(grants.keyvalue.clone()),
            messaging: MessagingState::new(grants.messaging.clone()),
        }
    }

    /// The instance's scheduled calls, which its timer task fires.
    pub fn timers(&self) -> Arc<Timers> {
        self.timers.timers.clone()
    }

    /// What the instance's subscriptions bring, which its delivery task
    /// hands to the guest.
    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.messaging.mailbox()
    }

    /// Where the guest's handles live.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Where the instance's outbound connections land from now on.
    pub fn land_outbound_in(&mut self, dialed: Arc<dyn Dialed>) {
        self.outbound.land_in(dialed);
    }
}

impl AsMut<SandboxState> for GuestState {
    fn as_mut(&mut self) -> &mut SandboxState {
        &mut self.sandbox
    }
}

impl AsRef<SandboxState> for GuestState {
    fn as_ref(&self) -> &SandboxState {
        &self.sandbox
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
