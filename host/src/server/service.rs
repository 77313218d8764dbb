//! A service: one component served on one endpoint, by one worker or
//! several. Each worker hands its new connections a guest instance (its
//! shared one, or a fresh one per connection) and restarts after traps with
//! backoff; a service that keeps trapping refuses connections for a while.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio_util::task::TaskTracker;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::capability::datagram::DatagramPort;
use crate::capability::keyvalue::spec::KeyValueSpec;
use crate::capability::keyvalue::{Embedded, KeyValueGrant};
use crate::capability::log::LogBudget;
use crate::capability::messaging::spec::MessagingSpec;
use crate::capability::messaging::{MessagingGrant, Topics};
use crate::capability::outbound::{Dialed, Outbound};
use crate::capability::transport::Alerts;
use crate::guest::component::GuestComponent;
use crate::guest::instance::{Instance, Owner};
use crate::guest::state::Grants;
use crate::metrics::{Closed, Kind, Metrics, ServiceMetrics, State, StateSource};
use crate::net::policy::Policy;
use crate::net::proxy::{Proxied, ProxyFrom};
use crate::net::stream::Stream;
use crate::sandbox::limits::{Isolation, Limits};
use crate::server::connection::{self, Dialer, Reactor};

/// The first restart after a trap waits this long; each further trap within
/// the restart window doubles it, up to `MAX_RESTART_BACKOFF`.
const FIRST_RESTART_BACKOFF: Duration = Duration::from_millis(50);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// One worker of a service: the component, its limits, and the instances
/// serving the worker's connections.
pub struct Service {
    pub name: Arc<str>,
    pub limits: Limits,
    pub health: Arc<Health>,
    /// Where its connections, accepted and outbound, run.
    pub reactor: Reactor,
    /// Its accepted connections (also in `reactor.tasks`): what a reload
    /// waits for before closing this version down.
    pub accepted: TaskTracker,
    component: Arc<GuestComponent>,
    current: Mutex<Option<Arc<Instance>>>,
    instances_started: Arc<AtomicU64>,
    grants: Grants,
    /// What its instances report traps to and land connections through.
    owner: Arc<dyn Owner>,
    /// Every instance started, while it lives: told `stop` on shutdown.
    started: std::sync::Mutex<Vec<Weak<Instance>>>,
    /// Where a `udp:` service's guests may send besides back to senders.
    policy: Policy,
    /// For a `haproxy:` endpoint, who may send the PROXY header.
    pub proxy: Option<ProxyFrom>,
}

/// What the workers of one service have in common: its trap history,
/// its allowance of log lines, the numbering of its instances and its
/// metrics.
#[derive(Clone)]
pub struct Common {
    health: Arc<Health>,
    log_budget: LogBudget,
    instances_started: Arc<AtomicU64>,
    metrics: Arc<ServiceMetrics>,
}

impl Common {
    /// A fresh trap history and log allowance for the service `name`, of
    /// `kind`, whose state and series `metrics` reports from now on.
    pub fn new(name: Arc<str>, kind: Kind, limits: &Limits, metrics: &Metrics) -> Self {
        let health = Arc::new(Health::new(name.clone(), limits));
        metrics.watch(&name, Arc::downgrade(&health) as Weak<dyn StateSource>);
        let service_metrics = metrics.service(&name, kind);
        Self {
            health,
            log_budget: LogBudget::new(name, limits.log_rate, service_metrics.clone()),
            instances_started: Arc::default(),
            metrics: service_metrics,
        }
    }
}

/// What an operator gives a service beyond its limits: the destinations
/// it may connect to, its configuration, its key-value buckets and topics,
/// and the process's embedded store and topics they may live in.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub policy: Policy,
    /// For a `haproxy:` endpoint, who may send the PROXY header.
    pub proxy: Option<ProxyFrom>,
    pub config: Vec<(String, String)>,
    pub keyvalue: KeyValueSpec,
    pub embedded: Arc<Embedded>,
    pub messaging: MessagingSpec,
    pub topics: Arc<Topics>,
}

/// Why a connection got no instance.
#[derive(Debug, thiserror::Error)]
pub enum NoInstance {
    /// The service trapped too often and is refusing connections.
    #[error("the service is marked failed")]
    Failed,
    /// Instantiation itself failed (the error is logged).
    #[error("the guest could not be instantiated")]
    Start,
}

impl Service {
    /// A worker of the service `common` belongs to, whose connections
    /// are woken by `stopping` and run as `tasks`.
    pub fn new(
        name: Arc<str>,
        component: Arc<GuestComponent>,
        limits: Limits,
        settings: Settings,
        common: &Common,
        stopping: Arc<Alerts>,
        tasks: TaskTracker,
    ) -> Self {
        let reactor = Reactor {
            service: name.clone(),
            limits: limits.clone(),
            metrics: common.metrics.clone(),
            stopping,
            tasks,
        };
        let grants = Grants {
            service: name.clone(),
            limits: limits.clone(),
            log_budget: common.log_budget.clone(),
            outbound: Arc::new(Outbound::new(
                settings.policy.clone(),
                name.clone(),
                &limits,
                reactor.tasks.clone(),
            )),
            config: Arc::new(WasiConfigVariables::from_iter(settings.config)),
            metrics: common.metrics.clone(),
            keyvalue: Arc::new(KeyValueGrant::new(
                name.clone(),
                settings.keyvalue,
                settings.embedded,
                &limits,
                common.metrics.clone(),
            )),
            messaging: Arc::new(MessagingGrant::new(
                name.clone(),
                settings.messaging,
                settings.topics,
                &limits,
                common.metrics.clone(),
            )),
            datagram: std::sync::OnceLock::new(),
        };
        let owner = Arc::new(Keeper {
            health: common.health.clone(),
            reactor: reactor.clone(),
            peer: None,
        });
        Self {
            health: common.health.clone(),
            name,
            limits,
            reactor,
            accepted: TaskTracker::new(),
            component,
            current: Mutex::new(None),
            instances_started: common.instances_started.clone(),
            grants,
            owner,
            started: std::sync::Mutex::default(),
            policy: settings.policy,
            proxy: settings.proxy,
        }
    }

    /// Give this version of a `udp:` service its worker's socket (a handle
    /// on it), before its first instance starts: what its instances send
    /// through, under its limits.
    pub fn datagram_port(&self, socket: std::net::UdpSocket) -> std::io::Result<Arc<DatagramPort>> {
        let port = Arc::new(DatagramPort::new(
            socket,
            &self.limits,
            self.policy.clone(),
            self.reactor.metrics.clone(),
        )?);
        // A version is attached once, by the one worker it belongs to.
        let _ = self.grants.datagram.set(port.clone());
        Ok(port)
    }

    /// Serve one accepted connection, from `peer` if a network peer (as
    /// its PROXY header names it, if `proxied`), until it ends. `_permit`
    /// is the service's connection slot, released when this returns.
    pub async fn serve(
        self: Arc<Self>,
        stream: Stream,
        peer: Option<IpAddr>,
        proxied: Option<Proxied>,
        _permit: OwnedSemaphorePermit,
    ) {
        // Boxed: instantiation's future is large and only needed once.
        let Ok(instance) = Box::pin(self.instance(peer)).await else {
            // Why is logged by the service; dropping the stream closes it.
            self.reactor.metrics.closed(Closed::Refused);
            return;
        };
        connection::serve(stream, instance, None, proxied, &self.reactor).await;
    }

    /// Start the shared instance now rather than at the first connection,
    /// so that its `start` hook runs before anything connects.
    pub async fn start_shared(&self) {
        if self.limits.isolation == Isolation::Shared {
            let _ = self.instance(None).await;
        }
    }

    /// Tell every live instance the server is stopping (`events.stop`),
    /// one call each, under the deadline.
    pub async fn stop_instances(&self) {
        let live: Vec<Arc<Instance>> = {
            let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
            started.retain(|weak| weak.strong_count() > 0);
            started.iter().filter_map(Weak::upgrade).collect()
        };
        for (n, instance) in live.iter().enumerate() {
            // With an instance per connection, each runs the stop hook: what
            // it logs is news from the first only.
            let repeated = self.limits.isolation == Isolation::Connection && n > 0;
            let _ = instance.stop(repeated).await;
        }
    }

    /// The instance a new connection goes to. Shared: one instance serves
    /// every connection, so guest state is shared, as in a Twisted factory.
    /// Per connection: a fresh instance each time.
    /// `peer` is the connection's network peer, if it has one.
    pub async fn instance(&self, peer: Option<IpAddr>) -> Result<Arc<Instance>, NoInstance> {
        if self.health.refusing() {
            return Err(NoInstance::Failed);
        }
        if self.limits.isolation == Isolation::Connection {
            let owner = Arc::new(Keeper {
                health: self.health.clone(),
                reactor: self.reactor.clone(),
                peer,
            });
            return self.start(owner, peer).await;
        }
        let mut current = self.current.lock().await;
        if let Some(instance) = current.as_ref().filter(|i| !i.is_retired()) {
            return Ok(instance.clone());
        }
        let instance = self.start(self.owner.clone(), None).await?;
        if current.is_some() {
            self.reactor.metrics.restarts.inc();
            // The one it replaces was retired by a trap.
            tracing::info!(
                service = &*self.name,
                instance = instance.id,
                "started a fresh guest instance"
            );
        }
        *current = Some(instance.clone());
        Ok(instance)
    }

    async fn start(
        &self,
        owner: Arc<dyn Owner>,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Instance>, NoInstance> {
        let not_before = self.health.next_start(Instant::now(), peer);
        if not_before > Instant::now() {
            // Only after a trap: sleeping even until "now" costs a timer tick.
            tokio::time::sleep_until(not_before.into()).await;
        }
        let id = self.instances_started.fetch_add(1, Ordering::Relaxed) + 1;
        let clock = Instant::now();
        let started = Instance::start(&self.component, id, &self.grants, owner).await;
        tracing::debug!(instance = id, took = ?clock.elapsed(), "guest instance started");
        if let Ok(instance) = &started {
            self.reactor.metrics.instances_started.inc();
            let mut live = self.started.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|weak| weak.strong_count() > 0);
            live.push(Arc::downgrade(instance));
        }
        started.map_err(|error| {
            tracing::error!(
                service = &*self.name,
                "cannot start a guest instance: {error:#}"
            );
            NoInstance::Start
        })
    }
}

/// What a worker's instances report to: the service's trap history, and
/// the reactor their outbound connections run in; for an instance of one
/// connection, the peer it serves.
struct Keeper {
    health: Arc<Health>,
    reactor: Reactor,
    peer: Option<IpAddr>,
}

impl Owner for Keeper {
    fn trapped(&self) {
        self.health.record_trap(self.peer);
    }

    fn landing(&self, instance: Weak<Instance>) -> Arc<dyn Dialed> {
        Arc::new(Dialer::new(instance, self.reactor.clone()))
    }
}

/// A service's trap history: it sets the restart backoff and marks the
/// service failed after too many traps within the restart window. With
/// one instance per connection, a trap costs only its own connection, so
/// traps are counted per peer address instead: a peer past the limit is
/// refused for the window, and everyone else is served on.
pub struct Health {
    service: Arc<str>,
    max_restarts: u32,
    window: Duration,
    per_peer: bool,
    state: std::sync::Mutex<HealthState>,
}

/// Peers whose traps are remembered at once; past it the peer with the
/// oldest last trap is forgotten, so a flood of addresses costs bounded
/// memory.
const MAX_PEERS: usize = 10_000;

#[derive(Default)]
struct HealthState {
    /// When recent traps happened, oldest first, within the window.
    traps: VecDeque<Instant>,
    failed_until: Option<Instant>,
    /// With one instance per connection: each peer's own trap history.
    peers: HashMap<IpAddr, Traps>,
}

/// One peer's recent traps, and until when it is refused.
#[derive(Default)]
struct Traps {
    at: VecDeque<Instant>,
    refused_until: Option<Instant>,
}

impl Health {
    fn new(service: Arc<str>, limits: &Limits) -> Self {
        Self {
            service,
            max_restarts: limits.max_restarts,
            window: limits.restart_window,
            per_peer: limits.isolation == Isolation::Connection,
            state: std::sync::Mutex::default(),
        }
    }

    /// Count a trap of an instance that served `peer` (if one connection
    /// from a network peer); past the limit, mark the service failed, or
    /// with one instance per connection, refuse the peer.
    pub fn record_trap(&self, peer: Option<IpAddr>) {
        let now = Instant::now();
        if self.per_peer
            && let Some(peer) = peer
        {
            return self.record_peer_trap(peer, now);
        }
        let mut state = self.lock();
        self.forget_old(&mut state, now);
        state.traps.push_back(now);
        if state.failed_until.is_none() && state.traps.len() >= self.max_restarts as usize {
            state.failed_until = Some(now + self.window);
            tracing::error!(
                service = &*self.service,
                "service failed: {} traps within {:?}; refusing connections for {:?}",
                state.traps.len(),
                self.window,
                self.window
            );
        }
    }

    fn record_peer_trap(&self, peer: IpAddr, now: Instant) {
        let mut state = self.lock();
        if !state.peers.contains_key(&peer) && state.peers.len() >= MAX_PEERS {
            let window = self.window;
            state.peers.retain(|_, traps| {
                traps
                    .at
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= window)
            });
            if state.peers.len() >= MAX_PEERS {
                let oldest = state
                    .peers
                    .iter()
                    .min_by_key(|(_, traps)| traps.at.back().copied())
                    .map(|(peer, _)| *peer);
                if let Some(oldest) = oldest {
                    state.peers.remove(&oldest);
                }
            }
        }
        let traps = state.peers.entry(peer).or_default();
        while traps
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            traps.at.pop_front();
        }
        traps.at.push_back(now);
        if traps.refused_until.is_none() && traps.at.len() >= self.max_restarts as usize {
            traps.refused_until = Some(now + self.window);
            tracing::warn!(
                service = &*self.service,
                %peer,
                "{} traps within {:?} by connections from {peer}; refusing its connections for {:?}",
                traps.at.len(),
                self.window,
                self.window
            );
        }
    }

    /// Whether connections from `peer` are refused, after its connections'
    /// instances trapped too often.
    pub fn refusing_peer(&self, peer: IpAddr) -> bool {
        if !self.per_peer {
            return false;
        }
        let mut state = self.lock();
        let Some(traps) = state.peers.get_mut(&peer) else {
            return false;
        };
        match traps.refused_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                state.peers.remove(&peer);
                false
            }
            None => false,
        }
    }

    /// Whether connections are being refused; logs when that ends.
    pub fn refusing(&self) -> bool {
        let mut state = self.lock();
        match state.failed_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                state.failed_until = None;
                state.traps.clear();
                tracing::info!(
                    service = &*self.service,
                    "service accepting connections again"
                );
                false
            }
            None => false,
        }
    }

    /// When the next instance may start: right away without recent traps,
    /// else after a backoff that doubles with each trap in the window.
    /// With one instance per connection, only the traps of the peer's own
    /// connections count.
    fn next_start(&self, now: Instant, peer: Option<IpAddr>) -> Instant {
        let mut state = self.lock();
        self.forget_old(&mut state, now);
        let traps = match (self.per_peer, peer) {
            (true, Some(peer)) => match state.peers.get(&peer) {
                Some(traps) => &traps.at,
                None => return now,
            },
            _ => &state.traps,
        };
        let recent = traps
            .iter()
            .filter(|t| now.duration_since(**t) <= self.window)
            .count();
        let Some(last) = traps.back().filter(|_| recent > 0) else {
            return now;
        };
        let doublings = u32::try_from(recent - 1).unwrap_or(u32::MAX).min(16);
        *last + (FIRST_RESTART_BACKOFF * 2u32.pow(doublings)).min(MAX_RESTART_BACKOFF)
    }

    fn forget_old(&self, state: &mut HealthState, now: Instant) {
        while state
            .traps
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            state.traps.pop_front();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HealthState> {
        // Only plain updates happen under the lock; they cannot panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StateSource for Health {
    /// What the service is doing now, for metrics and `/healthz`.
    fn state(&self) -> State {
        let now = Instant::now();
        if self.lock().failed_until.is_some_and(|until| now < until) {
            State::Failed
        } else if self.next_start(now, None) > now {
            State::BackingOff
        } else {
            State::Serving
        }
    }
}
