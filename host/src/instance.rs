//! A live guest instance, shared by the connections it serves. Calls into it
//! run one at a time, each under the deadline and memory cap; the first
//! trap retires the instance for good and is logged once, with its cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use wasmtime::component::ResourceAny;
use wasmtime::{Store, WasmBacktrace};

use crate::bindings::{CloseReason, Service};
use crate::limits::Limits;
use crate::runtime::{GuestComponent, Runtime};
use crate::state::GuestState;
use crate::transport::{Outbox, TransportHandle};

/// One guest instance and what is known about its health.
pub struct Instance {
    /// Numbered per service, from 1, for the log.
    pub id: u64,
    service: Arc<str>,
    live: Mutex<Live>,
    retired: CancellationToken,
    /// Connections with a protocol built in this instance.
    connections: AtomicUsize,
    deadline_ticks: u64,
}

struct Live {
    store: Store<GuestState>,
    guest: Service,
}

/// Why a call into the guest did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// This call trapped; the instance is now retired and the trap logged.
    #[error("the guest trapped")]
    Trapped,
    /// The instance was retired by an earlier trap.
    #[error("the guest instance was retired after a trap")]
    Retired,
}

impl Instance {
    /// Instantiate `component` for `service`.
    pub async fn start(
        runtime: &Runtime,
        component: &GuestComponent,
        service: Arc<str>,
        id: u64,
        limits: &Limits,
    ) -> anyhow::Result<Arc<Self>> {
        let mut store = Store::new(runtime.engine(), GuestState::new(service.clone(), limits));
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(GuestState::on_epoch);
        let deadline_ticks = limits.deadline_ticks();
        store.data_mut().start_call(deadline_ticks);
        store.set_epoch_deadline(1);
        let guest = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(Arc::new(Self {
            id,
            service,
            live: Mutex::new(Live { store, guest }),
            retired: CancellationToken::new(),
            connections: AtomicUsize::new(0),
            deadline_ticks,
        }))
    }

    /// Whether a trap has retired this instance.
    pub fn is_retired(&self) -> bool {
        self.retired.is_cancelled()
    }

    /// Resolves once this instance is retired.
    pub fn retirement(&self) -> WaitForCancellationFuture<'_> {
        self.retired.cancelled()
    }

    /// Build a protocol for a new connection (the WIT constructor).
    pub async fn build_protocol(&self, outbox: Arc<Outbox>) -> Result<ResourceAny, CallError> {
        let protocol = self
            .call("constructor", async |live: &mut Live| {
                let transport = live
                    .store
                    .data_mut()
                    .table
                    .push(TransportHandle::new(outbox))?;
                let protocols = live.guest.weft_protocol_protocol().protocol();
                protocols.call_constructor(&mut live.store, transport).await
            })
            .await?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(protocol)
    }

    /// Deliver bytes from the peer.
    pub async fn data_received(&self, protocol: ResourceAny, data: &[u8]) -> Result<(), CallError> {
        self.call("data-received", async |live: &mut Live| {
            let protocols = live.guest.weft_protocol_protocol().protocol();
            protocols
                .call_data_received(&mut live.store, protocol, data)
                .await
        })
        .await
    }

    /// Tell the protocol the peer shut down its write side.
    pub async fn read_connection_lost(&self, protocol: ResourceAny) -> Result<(), CallError> {
        self.call("read-connection-lost", async |live: &mut Live| {
            let protocols = live.guest.weft_protocol_protocol().protocol();
            protocols
                .call_read_connection_lost(&mut live.store, protocol)
                .await
        })
        .await
    }

    /// Tell the protocol its connection ended, then drop it.
    pub async fn connection_lost(
        &self,
        protocol: ResourceAny,
        reason: CloseReason,
    ) -> Result<(), CallError> {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.call("connection-lost", async |live: &mut Live| {
            let protocols = live.guest.weft_protocol_protocol().protocol();
            protocols
                .call_connection_lost(&mut live.store, protocol, reason)
                .await?;
            protocol.resource_drop_async(&mut live.store).await
        })
        .await
    }

    /// Run one call with a fresh deadline; a failure retires the instance.
    async fn call<R>(
        &self,
        what: &'static str,
        call: impl AsyncFnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut live = self.live.lock().await;
        if self.is_retired() {
            return Err(CallError::Retired);
        }
        live.store.data_mut().start_call(self.deadline_ticks);
        live.store.set_epoch_deadline(1);
        match call(&mut live).await {
            Ok(value) => Ok(value),
            Err(error) => {
                self.retired.cancel();
                tracing::error!(
                    service = &*self.service,
                    instance = self.id,
                    connections = self.connections.load(Ordering::Relaxed),
                    backtrace = backtrace(&error),
                    "guest trapped in {what}: {}; instance retired, its connections closed",
                    error.root_cause()
                );
                Err(CallError::Trapped)
            }
        }
    }
}

/// The guest functions on the trap's stack, innermost first, on one line.
fn backtrace(error: &wasmtime::Error) -> String {
    let Some(trace) = error.downcast_ref::<WasmBacktrace>() else {
        return String::new();
    };
    trace
        .frames()
        .iter()
        .filter_map(|frame| frame.func_name())
        .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
        .collect::<Vec<_>>()
        .join(" < ")
}
