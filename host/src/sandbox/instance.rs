//! A live guest instance, shared by the connections it serves. Calls into it
//! run one at a time, each under the deadline and memory cap; the first
//! trap retires the instance for good and is logged once, with its cause.
//! Components built against either WIT version are called alike; a
//! datagram service's instance is called for its socket's datagrams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_lock::Mutex;
use wasmtime::component::ResourceAny;
use wasmtime::{Store, WasmBacktrace};

use crate::guest::Grants;
use crate::guest::timers::{self, Timers};
use crate::guest::transport::{Outbox, TransportHandle};
use crate::net::alerts::Alerts;
use crate::ops::metrics::{Export, LimitHit, ServiceMetrics, TrapCause};
use crate::sandbox::bindings::{Address, CloseReason, ConnectError, Service, datagram, v1};
use crate::sandbox::call_time;
use crate::sandbox::call_time::WallClockExceeded;
use crate::sandbox::runtime::{GuestComponent, GuestPre};
use crate::sandbox::state::{DeadlineExceeded, GuestState};
use crate::service::Health;

/// One guest instance and what is known about its health.
pub struct Instance {
    /// Numbered per service, from 1, for the log.
    pub id: u64,
    service: Arc<str>,
    live: Mutex<Live>,
    /// Raised when a trap retires the instance; wakes its connections.
    retirement: Alerts,
    /// Connections with a protocol built in this instance.
    connections: AtomicUsize,
    health: Arc<Health>,
    timers: Arc<Timers>,
    metrics: Arc<ServiceMetrics>,
}

struct Live {
    store: Store<GuestState>,
    guest: Guest,
}

/// The guest's exports, as its WIT version has them.
enum Guest {
    Current(Service),
    /// Built against `weft:protocol@0.1.0`: no reactor services.
    V1(v1::Service),
    /// The `datagram-service` world: no protocols, no reactor services.
    Datagram(datagram::DatagramService),
}

/// Run `$call` on the guest's `protocol` resource type, whichever WIT
/// version it was built against: the two versions' method calls are the
/// same but for the types bindgen gives them.
macro_rules! on_protocols {
    ($guest:expr, |$protocols:ident| $call:expr) => {
        match $guest {
            Guest::Current(guest) => {
                let $protocols = guest.weft_protocol_protocol().protocol();
                $call
            }
            Guest::V1(guest) => {
                let $protocols = guest.weft_protocol_protocol().protocol();
                $call
            }
            Guest::Datagram(_) => Err(wasmtime::Error::msg(NO_PROTOCOLS))?,
        }
    };
}

/// Why a datagram guest cannot be asked for a protocol: the endpoint
/// checks keep it from happening.
const NO_PROTOCOLS: &str = "a datagram guest serves no connections";

/// Why a call into the guest did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// This call trapped; the instance is now retired and the trap logged.
    #[error("the guest trapped")]
    Trapped,
    /// The instance was retired by an earlier trap.
    #[error("the guest instance was retired after a trap")]
    Retired,
    /// The instance holds as many handles as its limit allows; the new
    /// connection is refused, the instance carries on.
    #[error("the guest holds its limit of handles")]
    HandleLimit,
}

/// A new transport did not fit in the instance's resource table.
#[derive(Debug, thiserror::Error)]
#[error("resource table full")]
struct TableFull;

impl Instance {
    /// Instantiate `component` for a service, then run its `start` hook
    /// and its timer task. A trap while instantiating or starting counts
    /// against the service's health like any other.
    pub async fn start(
        component: &GuestComponent,
        id: u64,
        grants: &Grants,
        health: Arc<Health>,
    ) -> anyhow::Result<Arc<Self>> {
        let state = GuestState::new(grants, component.clock.clone());
        let timers = state.timers.clone();
        let mut store = Store::new(&component.engine, state);
        store.limiter(|state| &mut state.caps);
        store.epoch_deadline_callback(GuestState::on_epoch);
        let wall_clock_limit = store.data_mut().start_call();
        store.set_epoch_deadline(1);
        let instantiating = async {
            Ok(match &component.pre {
                GuestPre::Current(pre) => Guest::Current(pre.instantiate_async(&mut store).await?),
                GuestPre::V1(pre) => Guest::V1(pre.instantiate_async(&mut store).await?),
                GuestPre::Datagram(pre) => {
                    Guest::Datagram(pre.instantiate_async(&mut store).await?)
                }
            })
        };
        let guest = match call_time::metered(wall_clock_limit, instantiating).await {
            Ok(guest) => guest,
            Err(error) => {
                if error.is::<wasmtime::Trap>()
                    || error.is::<DeadlineExceeded>()
                    || error.is::<WallClockExceeded>()
                {
                    let refused = store.data().caps.refused.is_some();
                    count_trap(&grants.metrics, &error, refused);
                    health.record_trap();
                }
                return Err(error.into());
            }
        };
        let start_hook = match guest {
            Guest::Current(_) => Some(Export::Start),
            Guest::Datagram(_) => Some(Export::StartProtocol),
            Guest::V1(_) => None,
        };
        let instance = Arc::new(Self {
            id,
            service: grants.service.clone(),
            live: Mutex::new(Live { store, guest }),
            retirement: Alerts::default(),
            connections: AtomicUsize::new(0),
            health,
            timers: timers.clone(),
            metrics: grants.metrics.clone(),
        });
        instance.live.lock().await.store.data_mut().instance = Arc::downgrade(&instance);
        if let Some(hook) = start_hook {
            instance
                .call(hook, async |live: &mut Live| match &live.guest {
                    Guest::Current(guest) => {
                        guest
                            .weft_protocol_events()
                            .call_start(&mut live.store)
                            .await
                    }
                    Guest::Datagram(guest) => {
                        let handler = guest.weft_protocol_datagram_handler();
                        handler.call_start_protocol(&mut live.store).await
                    }
                    Guest::V1(_) => Ok(()),
                })
                .await
                .map_err(|error| anyhow::anyhow!("its start hook failed: {error}"))?;
        }
        if start_hook == Some(Export::Start) {
            tokio::spawn(timers::fire(Arc::downgrade(&instance), timers));
        }
        Ok(instance)
    }

    /// Whether a trap has retired this instance.
    pub fn is_retired(&self) -> bool {
        self.retirement.raised()
    }

    /// The connections to wake when this instance is retired.
    pub fn retirement(&self) -> &Alerts {
        &self.retirement
    }

    /// Build a protocol for a new connection (the WIT constructor):
    /// accepted, or made by `reactor.connect` with the token `client`.
    pub async fn build_protocol(
        &self,
        outbox: Arc<Outbox>,
        client: Option<u64>,
    ) -> Result<ResourceAny, CallError> {
        let protocol = self
            .call(Export::Constructor, async |live: &mut Live| {
                let table = &mut live.store.data_mut().table;
                let transport = table
                    .push(TransportHandle::new(outbox))
                    .map_err(|_| wasmtime::Error::new(TableFull))?;
                match &live.guest {
                    Guest::Current(guest) => {
                        let protocols = guest.weft_protocol_protocol().protocol();
                        protocols
                            .call_constructor(&mut live.store, transport, client)
                            .await
                    }
                    Guest::V1(guest) => {
                        let protocols = guest.weft_protocol_protocol().protocol();
                        protocols.call_constructor(&mut live.store, transport).await
                    }
                    Guest::Datagram(_) => Err(wasmtime::Error::msg(NO_PROTOCOLS)),
                }
            })
            .await?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(protocol)
    }

    /// Deliver bytes from the peer.
    pub async fn data_received(&self, protocol: ResourceAny, data: &[u8]) -> Result<(), CallError> {
        self.call(Export::DataReceived, async |live: &mut Live| {
            on_protocols!(&live.guest, |protocols| {
                protocols
                    .call_data_received(&mut live.store, protocol, data)
                    .await
            })
        })
        .await
    }

    /// Tell the protocol the peer shut down its write side.
    pub async fn read_connection_lost(&self, protocol: ResourceAny) -> Result<(), CallError> {
        self.call(Export::ReadConnectionLost, async |live: &mut Live| {
            on_protocols!(&live.guest, |protocols| {
                protocols
                    .call_read_connection_lost(&mut live.store, protocol)
                    .await
            })
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
        self.call(Export::ConnectionLost, async |live: &mut Live| {
            on_protocols!(&live.guest, |protocols| {
                protocols
                    .call_connection_lost(&mut live.store, protocol, reason)
                    .await?
            });
            protocol.resource_drop_async(&mut live.store).await
        })
        .await
    }

    /// A call scheduled with `reactor.call-later` is due.
    pub async fn timer_fired(&self, token: u64) -> Result<(), CallError> {
        self.call(Export::TimerFired, async |live: &mut Live| {
            match &live.guest {
                Guest::Current(guest) => {
                    guest
                        .weft_protocol_events()
                        .call_timer_fired(&mut live.store, token)
                        .await
                }
                Guest::V1(_) | Guest::Datagram(_) => Ok(()),
            }
        })
        .await
    }

    /// The connection asked for with `token` was not made.
    pub async fn connect_failed(&self, token: u64, reason: ConnectError) -> Result<(), CallError> {
        self.call(Export::ConnectFailed, async |live: &mut Live| {
            match &live.guest {
                Guest::Current(guest) => {
                    let events = guest.weft_protocol_events();
                    events
                        .call_connect_failed(&mut live.store, token, reason)
                        .await
                }
                Guest::V1(_) | Guest::Datagram(_) => Ok(()),
            }
        })
        .await
    }

    /// The server is shutting down: the guest's `stop` hook (a datagram
    /// guest's `stop-protocol`).
    pub async fn stop(&self) -> Result<(), CallError> {
        let hook = match self.live.lock().await.guest {
            Guest::Datagram(_) => Export::StopProtocol,
            _ => Export::Stop,
        };
        self.call(hook, async |live: &mut Live| match &live.guest {
            Guest::Current(guest) => {
                guest
                    .weft_protocol_events()
                    .call_stop(&mut live.store)
                    .await
            }
            Guest::Datagram(guest) => {
                let handler = guest.weft_protocol_datagram_handler();
                handler.call_stop_protocol(&mut live.store).await
            }
            Guest::V1(_) => Ok(()),
        })
        .await
    }

    /// A datagram arrived from `sender` (a datagram guest only).
    pub async fn datagram_received(&self, data: &[u8], sender: Address) -> Result<(), CallError> {
        self.call(
            Export::DatagramReceived,
            async |live: &mut Live| match &live.guest {
                Guest::Datagram(guest) => {
                    let handler = guest.weft_protocol_datagram_handler();
                    handler
                        .call_datagram_received(&mut live.store, data, &sender)
                        .await
                }
                _ => Err(wasmtime::Error::msg("a stream guest takes no datagrams")),
            },
        )
        .await
    }

    /// Run one call with a fresh deadline; a failure retires the instance.
    async fn call<R>(
        &self,
        what: Export,
        call: impl AsyncFnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut live = self.live.lock().await;
        if self.is_retired() {
            return Err(CallError::Retired);
        }
        let wall_clock_limit = live.store.data_mut().start_call();
        live.store.set_epoch_deadline(1);
        let began = std::time::Instant::now();
        let called = call_time::metered(wall_clock_limit, call(&mut live)).await;
        self.metrics.called(what, began.elapsed());
        self.metrics.charged(live.store.data().call_used());
        let error = match called {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if error.is::<TableFull>() {
            self.metrics.hit(LimitHit::Handles);
            tracing::warn!(
                service = &*self.service,
                instance = self.id,
                "the guest holds its limit of handles; refusing a connection"
            );
            return Err(CallError::HandleLimit);
        }
        self.retirement.raise();
        self.timers.close();
        count_trap(
            &self.metrics,
            &error,
            live.store.data().caps.refused.is_some(),
        );
        self.health.record_trap();
        let refused = live
            .store
            .data()
            .caps
            .refused
            .map_or_else(String::new, |(asked, cap)| {
                format!(" after a memory growth to {asked} bytes was refused (cap {cap})")
            });
        tracing::error!(
            service = &*self.service,
            instance = self.id,
            connections = self.connections.load(Ordering::Relaxed),
            backtrace = backtrace(&error),
            "guest trapped in {}: {}{refused}; instance retired, its connections closed",
            what.label(),
            error.root_cause()
        );
        Err(CallError::Trapped)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Its timer task holds only a weak reference; this ends it.
        self.timers.close();
    }
}

/// Count a trap by its cause, and the limit behind it if one was.
/// `memory_refused`: a growth was refused in the call that trapped, which
/// is then almost always why (a Rust guest aborts when allocation fails).
fn count_trap(metrics: &ServiceMetrics, error: &wasmtime::Error, memory_refused: bool) {
    let cause = if error.is::<DeadlineExceeded>() {
        metrics.hit(LimitHit::Deadline);
        TrapCause::Deadline
    } else if error.is::<WallClockExceeded>() {
        metrics.hit(LimitHit::WallClock);
        TrapCause::WallClock
    } else if memory_refused {
        TrapCause::Memory
    } else {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => TrapCause::StackOverflow,
            Some(wasmtime::Trap::UnreachableCodeReached) => TrapCause::Unreachable,
            _ => TrapCause::Other,
        }
    };
    metrics.trapped(cause);
}

/// Frames of a guest backtrace kept in the log, after runs of the same
/// function (deep recursion) are folded into one.
const BACKTRACE_FRAMES: usize = 16;

/// The guest functions on the trap's stack, innermost first, on one line:
/// repeated frames folded (`f ×5000`), at most `BACKTRACE_FRAMES` kept.
fn backtrace(error: &wasmtime::Error) -> String {
    let Some(trace) = error.downcast_ref::<WasmBacktrace>() else {
        return String::new();
    };
    let mut folded: Vec<(String, usize)> = Vec::new();
    for frame in trace.frames() {
        let name = frame.func_name().map_or_else(
            || "?".to_owned(),
            |name| format!("{:#}", rustc_demangle::demangle(name)),
        );
        match folded.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => folded.push((name, 1)),
        }
    }
    let mut parts: Vec<String> = folded
        .iter()
        .take(BACKTRACE_FRAMES)
        .map(|(name, count)| match count {
            1 => name.clone(),
            n => format!("{name} ×{n}"),
        })
        .collect();
    if folded.len() > BACKTRACE_FRAMES {
        parts.push(format!("{} more", folded.len() - BACKTRACE_FRAMES));
    }
    parts.join(" < ")
}
