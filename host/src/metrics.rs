//! What weft counts, per service, for Prometheus: connections, bytes, guest
//! calls and their durations, traps, restarts, limits hit, timers and
//! outbound connects. Each service resolves its series once, so counting on
//! the data path is an atomic add, never a label lookup.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the guest call duration buckets: 10 µs, 40 µs, ...
/// up to 2.6 s, four times wider each.
const CALL_BUCKETS_FROM: f64 = 10e-6;
const CALL_BUCKETS_FACTOR: f64 = 4.0;
const CALL_BUCKETS: u16 = 10;

/// Declares a label enum: its variants, each with the label value it
/// shows, and `ALL` in order, which indexes its counters.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn label(self) -> &'static str {
                match self { $(Self::$variant => $label,)* }
            }
        }
    };
}

labels! {
    /// Why a connection ended.
    Closed {
        /// Closed by either side after its output was sent.
        Done = "done",
        /// Reset by the peer, or another socket error.
        Lost = "lost",
        /// The guest aborted it.
        Aborted = "aborted",
        /// The guest queued more than the write limit.
        WriteLimit = "write_limit",
        /// No traffic for the idle timeout.
        IdleTimeout = "idle_timeout",
        /// weft stopped, or a reload's drain timeout passed.
        Shutdown = "shutdown",
        /// Its instance trapped.
        Trap = "trap",
        /// No instance would take it: the service had failed, or
        /// instantiating failed.
        Refused = "refused",
        /// Its TLS handshake failed or timed out: no guest saw it.
        TlsHandshake = "tls_handshake",
    }
}

labels! {
    /// A guest export weft calls.
    Export {
        Constructor = "constructor",
        DataReceived = "data-received",
        ReadConnectionLost = "read-connection-lost",
        ConnectionLost = "connection-lost",
        TimerFired = "timer-fired",
        ConnectFailed = "connect-failed",
        Start = "start",
        Stop = "stop",
        StartProtocol = "start-protocol",
        DatagramReceived = "datagram-received",
        StopProtocol = "stop-protocol",
    }
}

labels! {
    /// What became of a datagram of a `udp:` service.
    Datagram {
        /// Delivered to the guest.
        Received = "received",
        /// Received but longer than `max-datagram`: dropped.
        TooLarge = "too_large",
        /// Received past `datagram-rate`: dropped.
        OverRate = "over_rate",
        /// Sent by the guest.
        Sent = "sent",
        /// A send refused: longer than `max-datagram`.
        SendTooLarge = "send_too_large",
        /// A send refused: not an address the guest may send to.
        SendDenied = "send_denied",
        /// A send refused: past `datagram-rate`.
        SendOverRate = "send_over_rate",
        /// A send the socket did not take.
        SendFailed = "send_failed",
    }
}

labels! {
    /// What ended an instance.
    TrapCause {
        /// It used its CPU deadline in one call.
        Deadline = "deadline",
        /// One call waited past its wall-clock limit.
        WallClock = "wall_clock",
        /// It trapped after a memory growth was refused.
        Memory = "memory",
        StackOverflow = "stack_overflow",
        /// `unreachable`: a Rust panic, an abort.
        Unreachable = "unreachable",
        Other = "other",
    }
}

labels! {
    /// A limit that stopped a guest or a connection.
    LimitHit {
        WriteLimit = "write_limit",
        Deadline = "deadline",
        WallClock = "wall_clock",
        /// A memory growth refused (the guest may carry on).
        Memory = "memory",
        /// A connection refused: the instance held its limit of handles.
        Handles = "handles",
        /// An accept waited for a connection slot.
        MaxConnections = "max_connections",
        Timers = "timers",
        Outbound = "outbound",
        /// A TLS handshake outlasted the handshake timeout.
        HandshakeTimeout = "handshake_timeout",
    }
}

labels! {
    /// How an outbound connect ended.
    Connect {
        Connected = "connected",
        InvalidEndpoint = "invalid_endpoint",
        Limit = "limit",
        Denied = "denied",
        NotResolvable = "not_resolvable",
        Refused = "refused",
        TimedOut = "timed_out",
        Failed = "failed",
    }
}

labels! {
    /// What a service is doing, as `weft_service_state` and `/healthz`
    /// report it.
    State {
        /// Its instances start when connections need them.
        Serving = "serving",
        /// A trap retired an instance; the next starts after a backoff.
        BackingOff = "backing_off",
        /// It trapped too often and refuses connections for a while.
        Failed = "failed",
    }
}

/// What tells a service's state at each scrape: its trap history.
pub trait StateSource: Send + Sync {
    fn state(&self) -> State;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    service: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    service: String,
    export: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    service: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    service: String,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    service: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    service: String,
    state: &'static str,
}

type CallFamily = Family<ExportLabels, Histogram, fn() -> Histogram>;
type Seconds = Counter<f64, AtomicU64>;

/// Every family of series, registered once per process.
#[derive(Clone)]
struct Families {
    accepted: Family<ServiceLabel, Counter>,
    active: Family<ServiceLabel, Gauge>,
    closed: Family<ReasonLabels, Counter>,
    received: Family<ServiceLabel, Counter>,
    sent: Family<ServiceLabel, Counter>,
    calls: CallFamily,
    cpu: Family<ServiceLabel, Seconds>,
    traps: Family<CauseLabels, Counter>,
    started: Family<ServiceLabel, Counter>,
    restarts: Family<ServiceLabel, Counter>,
    limit_hits: Family<LimitLabels, Counter>,
    log_dropped: Family<ServiceLabel, Counter>,
    timers: Family<ServiceLabel, Counter>,
    connects: Family<ResultLabels, Counter>,
    datagrams: Family<ResultLabels, Counter>,
}

/// The process's metrics: the registry `/metrics` encodes, and each
/// service's health for `weft_service_state` and `/healthz`.
pub struct Metrics {
    registry: Registry,
    families: Families,
    states: Arc<States>,
    reloads: Family<ReloadLabels, Counter>,
}

/// One service's series, resolved once.
pub struct ServiceMetrics {
    pub accepted: Counter,
    pub active: Gauge,
    closed: Vec<Counter>,
    pub received: Counter,
    pub sent: Counter,
    calls: Vec<Histogram>,
    cpu: Seconds,
    traps: Vec<Counter>,
    pub instances_started: Counter,
    pub restarts: Counter,
    limit_hits: Vec<Counter>,
    pub log_lines_dropped: Counter,
    pub timers_scheduled: Counter,
    connects: Vec<Counter>,
    datagrams: Vec<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, with no service yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let call_histogram: fn() -> Histogram = || {
            Histogram::new(exponential_buckets(
                CALL_BUCKETS_FROM,
                CALL_BUCKETS_FACTOR,
                CALL_BUCKETS,
            ))
        };
        let families = Families {
            accepted: Family::default(),
            active: Family::default(),
            closed: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            calls: Family::new_with_constructor(call_histogram),
            cpu: Family::default(),
            traps: Family::default(),
            started: Family::default(),
            restarts: Family::default(),
            limit_hits: Family::default(),
            log_dropped: Family::default(),
            timers: Family::default(),
            connects: Family::default(),
            datagrams: Family::default(),
        };
        let f = families.clone();
        let r = &mut registry;
        r.register("connections_accepted", "Connections accepted", f.accepted);
        r.register(
            "connections_active",
            "Connections open, accepted or outbound",
            f.active,
        );
        r.register(
            "connections_closed",
            "Connections ended, accepted or outbound, by reason",
            f.closed,
        );
        r.register_with_unit("received", "Bytes read from peers", Unit::Bytes, f.received);
        r.register_with_unit("sent", "Bytes written to peers", Unit::Bytes, f.sent);
        r.register_with_unit(
            "guest_call_duration",
            "Guest calls by export, and how long each took",
            Unit::Seconds,
            f.calls,
        );
        r.register_with_unit(
            "guest_cpu",
            "CPU time charged to guests against their deadlines (sampled at each epoch tick)",
            Unit::Seconds,
            f.cpu,
        );
        r.register(
            "guest_traps",
            "Guest instances ended by a trap, by cause",
            f.traps,
        );
        r.register("instances_started", "Guest instances started", f.started);
        r.register(
            "instance_restarts",
            "Shared instances started to replace one that trapped",
            f.restarts,
        );
        r.register(
            "limit_hits",
            "Times a limit stopped a guest or a connection",
            f.limit_hits,
        );
        r.register(
            "guest_log_lines_dropped",
            "Guest log lines dropped over the log rate",
            f.log_dropped,
        );
        r.register(
            "timers_scheduled",
            "Calls scheduled with call-later",
            f.timers,
        );
        r.register(
            "outbound_connects",
            "Outbound connections asked for, by result",
            f.connects,
        );
        r.register(
            "datagrams",
            "Datagrams of udp: services, received or sent, and dropped or refused, by result",
            f.datagrams,
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        r.register(
            "reloads",
            "Reloads, by result (ok, failed)",
            reloads.clone(),
        );
        let states = Arc::new(States::default());
        r.register_collector(Box::new(states.clone()));
        Self {
            registry,
            families,
            states,
            reloads,
        }
    }

    /// The series of the service `name`, every one created now so that
    /// each shows from the first scrape. A service of the same name
    /// (after a reload) continues the same series.
    pub fn service(&self, name: &str) -> Arc<ServiceMetrics> {
        let f = &self.families;
        let service = || ServiceLabel {
            service: name.to_owned(),
        };
        Arc::new(ServiceMetrics {
            accepted: f.accepted.get_or_create_owned(&service()),
            active: f.active.get_or_create_owned(&service()),
            closed: each(&f.closed, Closed::ALL.iter().map(|v| v.label()), |reason| {
                ReasonLabels {
                    service: name.to_owned(),
                    reason,
                }
            }),
            received: f.received.get_or_create_owned(&service()),
            sent: f.sent.get_or_create_owned(&service()),
            calls: each(&f.calls, Export::ALL.iter().map(|v| v.label()), |export| {
                ExportLabels {
                    service: name.to_owned(),
                    export,
                }
            }),
            cpu: f.cpu.get_or_create_owned(&service()),
            traps: each(
                &f.traps,
                TrapCause::ALL.iter().map(|v| v.label()),
                |cause| CauseLabels {
                    service: name.to_owned(),
                    cause,
                },
            ),
            instances_started: f.started.get_or_create_owned(&service()),
            restarts: f.restarts.get_or_create_owned(&service()),
            limit_hits: each(
                &f.limit_hits,
                LimitHit::ALL.iter().map(|v| v.label()),
                |limit| LimitLabels {
                    service: name.to_owned(),
                    limit,
                },
            ),
            log_lines_dropped: f.log_dropped.get_or_create_owned(&service()),
            timers_scheduled: f.timers.get_or_create_owned(&service()),
            connects: each(
                &f.connects,
                Connect::ALL.iter().map(|v| v.label()),
                |result| ResultLabels {
                    service: name.to_owned(),
                    result,
                },
            ),
            datagrams: each(
                &f.datagrams,
                Datagram::ALL.iter().map(|v| v.label()),
                |result| ResultLabels {
                    service: name.to_owned(),
                    result,
                },
            ),
        })
    }

    /// Report `name`'s state from `source` from now on (replacing what
    /// reported it before, after a reload), for as long as it lives.
    pub fn watch(&self, name: &str, source: Weak<dyn StateSource>) {
        self.states.lock().insert(name.to_owned(), source);
    }

    /// Stop reporting the state of `name`: it was removed by a reload.
    pub fn forget(&self, name: &str) {
        self.states.lock().remove(name);
    }

    /// Each service's state, by name.
    pub fn states(&self) -> Vec<(String, State)> {
        self.states.current()
    }

    /// Count a reload, successful or not.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// Every series in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// One series of `family` per label value, in their order: what a
/// service indexes by its label enum.
fn each<L, M, C>(
    family: &Family<L, M, C>,
    values: impl Iterator<Item = &'static str>,
    labels: impl Fn(&'static str) -> L,
) -> Vec<M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    values
        .map(|value| family.get_or_create_owned(&labels(value)))
        .collect()
}

impl ServiceMetrics {
    pub fn closed(&self, why: Closed) {
        self.closed[why as usize].inc();
    }

    /// One guest call into `export` that took `took`.
    pub fn called(&self, export: Export, took: Duration) {
        self.calls[export as usize].observe(took.as_secs_f64());
    }

    pub fn charged(&self, cpu: Duration) {
        if !cpu.is_zero() {
            self.cpu.inc_by(cpu.as_secs_f64());
        }
    }

    pub fn trapped(&self, cause: TrapCause) {
        self.traps[cause as usize].inc();
    }

    pub fn hit(&self, limit: LimitHit) {
        self.limit_hits[limit as usize].inc();
    }

    /// One datagram received or sent, or dropped or refused.
    pub fn datagram(&self, result: Datagram) {
        self.datagrams[result as usize].inc();
    }

    pub fn connect(&self, result: Connect) {
        self.connects[result as usize].inc();
    }
}

/// Each service's state, read at each scrape.
#[derive(Default)]
struct States(Mutex<BTreeMap<String, Weak<dyn StateSource>>>);

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lock().keys()).finish()
    }
}

impl States {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Weak<dyn StateSource>>> {
        // Only inserts and removals happen under the lock.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> Vec<(String, State)> {
        self.lock()
            .iter()
            .filter_map(|(name, source)| Some((name.clone(), source.upgrade()?.state())))
            .collect()
    }
}

impl Collector for States {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "service_state",
            "1 for the state each service is in (serving, backing_off, failed), else 0",
            None,
            MetricType::Gauge,
        )?;
        for (service, state) in self.current() {
            for each in State::ALL {
                let labels = StateLabels {
                    service: service.clone(),
                    state: each.label(),
                };
                ConstGauge::new(i64::from(*each == state))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
