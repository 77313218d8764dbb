//! A live guest instance, shared by the connections it serves. Calls into it
//! run one at a time, each under the deadline and memory cap; the first
//! trap retires the instance for good and is logged once, with its cause.
//! Components of every served WIT version and world are called alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use async_lock::Mutex;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::capability::messaging::{Delivery, Mailbox};
use crate::capability::outbound::Dialed;
use crate::capability::timers::{self, Timers};
use crate::capability::transport::{self, Alerts, DuePauses, Outbox};
use crate::guest::component::{GuestComponent, GuestPre};
use crate::guest::state::{Grants, GuestState};
use crate::metrics::{Export, LimitHit, Messaging, ServiceMetrics};
use crate::sandbox::limits::Isolation;
use crate::sandbox::{call_time, store, trap};
use crate::wit::{
    Address, CloseReason, ConnectError, Events, Producers, Protocols, Subscriber, datagram, v1,
};

/// What an instance reports to, and is served by: the service it belongs
/// to, which knows what instances do not.
pub trait Owner: Send + Sync {
    /// One of the instance's calls trapped, or its start did.
    fn trapped(&self);
    /// Where the outbound connections of `instance` land.
    fn landing(&self, instance: Weak<Instance>) -> Arc<dyn Dialed>;
}

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
    owner: Arc<dyn Owner>,
    timers: Arc<Timers>,
    /// What its subscriptions bring, for its delivery task.
    mailbox: Arc<Mailbox>,
    /// Producers whose connection's backlog filled in the call under way.
    due_pauses: Arc<DuePauses>,
    metrics: Arc<ServiceMetrics>,
}

struct Live {
    store: Store<GuestState>,
    guest: Guest,
    /// The `producers` export of a guest built against 0.2.5 or later.
    producers: Option<Producers>,
    /// The `subscriber` export of a `stateful-service` guest.
    subscriber: Option<Subscriber>,
}

/// The guest's exports, as its WIT version has them.
enum Guest {
    Current(Current),
    /// Built against `weft:protocol@0.1.0`: no reactor services.
    V1(v1::Service),
    /// The `datagram-service` world: no protocols, no reactor services.
    Datagram(datagram::DatagramService),
}

/// The exports every guest of the `service` world has since 0.2.0.
struct Current {
    protocols: Protocols,
    events: Events,
}

/// Run `$call` on the guest's `protocol` resource type, whichever WIT
/// version it was built against: the two versions' method calls are the
/// same but for the types bindgen gives them.
macro_rules! on_protocols {
    ($guest:expr, |$protocols:ident| $call:expr) => {
        match $guest {
            Guest::Current(guest) => {
                let $protocols = guest.protocols.protocol();
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
        owner: Arc<dyn Owner>,
    ) -> anyhow::Result<Arc<Self>> {
        let state = GuestState::new(grants);
        // With an instance per connection, every connection runs the start
        // hook: what it logs is news from the service's first instance only.
        let repeats = grants.limits.isolation == Isolation::Connection && id > 1;
        state.log.set_repeated(repeats);
        let timers = state.timers();
        let mailbox = state.mailbox();
        let mut store = store::new(&component.engine, state);
        let call = store::start_call(&mut store);
        let instantiating = async {
            Ok(match &component.pre {
                GuestPre::Current(current) => {
                    let instance = current.pre.instantiate_async(&mut store).await?;
                    let guest = Current {
                        protocols: current.protocols.load(&mut store, &instance)?,
                        events: current.events.load(&mut store, &instance)?,
                    };
                    let producers = match &current.producers {
                        Some(indices) => Some(indices.load(&mut store, &instance)?),
                        None => None,
                    };
                    let subscriber = match &current.subscriber {
                        Some(indices) => Some(indices.load(&mut store, &instance)?),
                        None => None,
                    };
                    (Guest::Current(guest), producers, subscriber)
                }
                GuestPre::V1(pre) => (
                    Guest::V1(pre.instantiate_async(&mut store).await?),
                    None,
                    None,
                ),
                GuestPre::Datagram(pre) => (
                    Guest::Datagram(pre.instantiate_async(&mut store).await?),
                    None,
                    None,
                ),
            })
        };
        let instantiated = call_time::metered(call.wall_clock_limit, instantiating).await;
        drop(call);
        let (guest, producers, subscriber) = match instantiated {
            Ok(guest) => guest,
            Err(error) => {
                if trap::is_trap(&error) {
                    let refused = store.data().as_ref().memory_refused().is_some();
                    trap::count(&grants.metrics, &error, refused);
                    owner.trapped();
                }
                return Err(error.into());
            }
        };
        let start_hook = match guest {
            Guest::Current(_) => Some(Export::Start),
            Guest::Datagram(_) => Some(Export::StartProtocol),
            Guest::V1(_) => None,
        };
        let delivers = subscriber.is_some();
        if !delivers {
            // Nothing would hand the guest what its subscriptions bring.
            mailbox.close();
        }
        let instance = Arc::new(Self {
            id,
            service: grants.service.clone(),
            live: Mutex::new(Live {
                store,
                guest,
                producers,
                subscriber,
            }),
            retirement: Alerts::default(),
            connections: AtomicUsize::new(0),
            owner,
            timers: timers.clone(),
            mailbox: mailbox.clone(),
            due_pauses: Arc::default(),
            metrics: grants.metrics.clone(),
        });
        let landing = instance.owner.landing(Arc::downgrade(&instance));
        instance
            .live
            .lock()
            .await
            .store
            .data_mut()
            .land_outbound_in(landing);
        if let Some(hook) = start_hook {
            instance
                .call(hook, async |live: &mut Live| match &live.guest {
                    Guest::Current(guest) => guest.events.call_start(&mut live.store).await,
                    Guest::Datagram(guest) => {
                        let handler = guest.weft_protocol_datagram_handler();
                        handler.call_start_protocol(&mut live.store).await
                    }
                    Guest::V1(_) => Ok(()),
                })
                .await
                .map_err(|error| anyhow::anyhow!("its start hook failed: {error}"))?;
        }
        if repeats {
            let live = instance.live.lock().await;
            live.store.data().log.set_repeated(false);
        }
        if start_hook == Some(Export::Start) {
            let weak = Arc::downgrade(&instance);
            tokio::spawn(timers::fire(timers, move |token| {
                let instance = weak.upgrade();
                async move {
                    match instance {
                        Some(instance) => instance.timer_fired(token).await.is_ok(),
                        None => false,
                    }
                }
            }));
        }
        if delivers {
            tokio::spawn(deliver(Arc::downgrade(&instance), mailbox));
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

    /// Whether the guest is behind on what its subscriptions brought, so
    /// that its connections' input should wait (see [`Mailbox::is_behind`]).
    pub fn is_behind(&self) -> bool {
        self.mailbox.is_behind()
    }

    /// Wait until the guest has caught up on what its subscriptions brought.
    pub async fn caught_up(&self) {
        self.mailbox.caught_up().await;
    }

    /// Build a protocol for a new connection (the WIT constructor):
    /// accepted, or made by `reactor.connect` with the token `client`.
    pub async fn build_protocol(
        &self,
        outbox: Arc<Outbox>,
        client: Option<u64>,
    ) -> Result<ResourceAny, CallError> {
        outbox.report_pauses_to(self.due_pauses.clone());
        let protocol = self
            .call(Export::Constructor, async |live: &mut Live| {
                let table = live.store.data_mut().table();
                let transport = transport::insert(table, outbox)
                    .map_err(|_| wasmtime::Error::new(TableFull))?;
                match &live.guest {
                    Guest::Current(guest) => {
                        let protocols = guest.protocols.protocol();
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
                    guest.events.call_timer_fired(&mut live.store, token).await
                }
                Guest::V1(_) | Guest::Datagram(_) => Ok(()),
            }
        })
        .await
    }

    /// Tell the producer watching `outbox`'s connection, if it has news,
    /// that the connection's unsent output is full (pause) or has drained
    /// (resume); a guest built before 0.2.5 cannot watch, so is never told.
    pub async fn tell_producer(&self, outbox: &Outbox) -> Result<(), CallError> {
        let mut live = self.live.lock().await;
        // Decided under the lock, as the pauses of `owed_pauses` are.
        let Some((token, full)) = outbox.producer_news() else {
            return Ok(());
        };
        let told = async |live: &mut Live| tell(live, token, full).await;
        self.call_locked(&mut live, producer_export(full), told)
            .await?;
        self.owed_pauses(&mut live).await
    }

    /// Hand the guest's `subscriber` export what a subscription brought.
    pub async fn deliver(&self, delivery: Delivery) -> Result<(), CallError> {
        let export = match &delivery {
            Delivery::Message(..) => Export::MessageReceived,
            Delivery::Dropped(..) => Export::MessagesDropped,
            Delivery::Interrupted(_) => Export::SubscriptionInterrupted,
            Delivery::Resumed(_) => Export::SubscriptionResumed,
        };
        self.call(export, async |live: &mut Live| {
            let Some(subscriber) = &live.subscriber else {
                return Ok(());
            };
            let store = &mut live.store;
            match &delivery {
                Delivery::Message(topic, message) => {
                    subscriber
                        .call_message_received(store, topic, message)
                        .await
                }
                Delivery::Dropped(topic, count) => {
                    subscriber.call_messages_dropped(store, topic, *count).await
                }
                Delivery::Interrupted(topic) => {
                    subscriber.call_subscription_interrupted(store, topic).await
                }
                Delivery::Resumed(topic) => {
                    subscriber.call_subscription_resumed(store, topic).await
                }
            }
        })
        .await?;
        if matches!(delivery, Delivery::Message(..)) {
            self.metrics.messaging(Messaging::Delivered, 1);
        }
        Ok(())
    }

    /// The connection asked for with `token` was not made.
    pub async fn connect_failed(&self, token: u64, reason: ConnectError) -> Result<(), CallError> {
        self.call(Export::ConnectFailed, async |live: &mut Live| {
            match &live.guest {
                Guest::Current(guest) => {
                    guest
                        .events
                        .call_connect_failed(&mut live.store, token, reason)
                        .await
                }
                Guest::V1(_) | Guest::Datagram(_) => Ok(()),
            }
        })
        .await
    }

    /// The server is shutting down: the guest's `stop` hook (a datagram
    /// guest's `stop-protocol`); `repeated` if what it logs at INFO is what
    /// another instance's stop hook has just logged.
    pub async fn stop(&self, repeated: bool) -> Result<(), CallError> {
        let hook = {
            let live = self.live.lock().await;
            live.store.data().log.set_repeated(repeated);
            match live.guest {
                Guest::Datagram(_) => Export::StopProtocol,
                _ => Export::Stop,
            }
        };
        self.call(hook, async |live: &mut Live| match &live.guest {
            Guest::Current(guest) => guest.events.call_stop(&mut live.store).await,
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
        let value = self.call_locked(&mut live, what, call).await?;
        self.owed_pauses(&mut live).await?;
        Ok(value)
    }

    /// Pause each producer whose connection's backlog the last call
    /// filled, before any other call can run: Twisted pauses a producer
    /// inside the `write` that fills the buffer, and a producer writing
    /// from its timers would otherwise write on until the connection's
    /// own task got the instance, past the write limit under load.
    async fn owed_pauses(&self, live: &mut Live) -> Result<(), CallError> {
        while let Some(token) = self.due_pauses.next() {
            let told = async |live: &mut Live| tell(live, token, true).await;
            self.call_locked(live, Export::PauseProducing, told).await?;
        }
        Ok(())
    }

    async fn call_locked<R>(
        &self,
        live: &mut Live,
        what: Export,
        call: impl AsyncFnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.is_retired() {
            return Err(CallError::Retired);
        }
        let started = store::start_call(&mut live.store);
        let began = std::time::Instant::now();
        let called = call_time::metered(started.wall_clock_limit, call(live)).await;
        drop(started);
        self.metrics.called(what, began.elapsed());
        let sandbox = live.store.data().as_ref();
        self.metrics.charged(sandbox.call_used());
        let memory_refused = sandbox.memory_refused();
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
        self.mailbox.close();
        trap::count(&self.metrics, &error, memory_refused.is_some());
        self.owner.trapped();
        let refused = memory_refused.map_or_else(String::new, |(asked, cap)| {
            format!(" after a memory growth to {asked} bytes was refused (cap {cap})")
        });
        tracing::error!(
            service = &*self.service,
            instance = self.id,
            connections = self.connections.load(Ordering::Relaxed),
            backtrace = trap::backtrace(&error),
            "guest trapped in {}: {}{refused}; instance retired, its connections closed",
            what.label(),
            error.root_cause()
        );
        Err(CallError::Trapped)
    }
}

/// Which export tells a producer its backlog is `full` or drained.
fn producer_export(full: bool) -> Export {
    if full {
        Export::PauseProducing
    } else {
        Export::ResumeProducing
    }
}

/// The call that tells the producer watching with `token` that its
/// backlog is `full` (pause) or drained (resume).
async fn tell(live: &mut Live, token: u64, full: bool) -> wasmtime::Result<()> {
    let Some(producers) = &live.producers else {
        return Ok(());
    };
    if full {
        producers.call_pause_producing(&mut live.store, token).await
    } else {
        producers
            .call_resume_producing(&mut live.store, token)
            .await
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Its timer and delivery tasks hold only a weak reference; this
        // ends them.
        self.timers.close();
        self.mailbox.close();
    }
}

/// An instance's delivery task: hand the guest what its subscriptions
/// bring, one call at a time, until the instance is retired or gone.
async fn deliver(instance: Weak<Instance>, mailbox: Arc<Mailbox>) {
    while let Some(delivery) = mailbox.next().await {
        let Some(instance) = instance.upgrade() else {
            return;
        };
        if instance.deliver(delivery).await.is_err() {
            return;
        }
    }
}
