//! One service's series, made when the service starts so that counting on
//! the data path is an atomic add, never a label lookup; and how every
//! service's series are written: each family once, its series grouped by
//! service, only the series that apply to the service's kind.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel as _, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Unit;

use crate::metrics::labels::{Closed, Connect, Datagram, Export, LimitHit, TrapCause};

/// Upper bounds of the guest call duration buckets: 10 µs, 40 µs, ...
/// up to 2.6 s, four times wider each.
const CALL_BUCKETS_FROM: f64 = 10e-6;
const CALL_BUCKETS_FACTOR: f64 = 4.0;
const CALL_BUCKETS: u16 = 10;

/// What a service serves, which decides the series it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Connections (`tcp:`, `tcp6:`, `ssl:`, `unix:`).
    Stream,
    /// Datagrams (`udp:`).
    Datagram,
}

/// One service's series.
pub struct ServiceMetrics {
    kind: Kind,
    pub accepted: Counter,
    pub active: Gauge,
    closed: Vec<Counter>,
    pub received: Counter,
    pub sent: Counter,
    calls: Vec<Histogram>,
    cpu: Counter<f64, AtomicU64>,
    traps: Vec<Counter>,
    pub instances_started: Counter,
    pub restarts: Counter,
    limit_hits: Vec<Counter>,
    pub log_lines_dropped: Counter,
    pub timers_scheduled: Counter,
    connects: Vec<Counter>,
    datagrams: Vec<Counter>,
}

/// `n` fresh metrics.
fn fresh<M: Default>(n: usize) -> Vec<M> {
    std::iter::repeat_with(M::default).take(n).collect()
}

impl ServiceMetrics {
    /// Every series of a service of `kind`, at zero. Those that do not
    /// apply to its kind count into nothing shown.
    pub fn new(kind: Kind) -> Self {
        let histogram = || {
            Histogram::new(exponential_buckets(
                CALL_BUCKETS_FROM,
                CALL_BUCKETS_FACTOR,
                CALL_BUCKETS,
            ))
        };
        Self {
            kind,
            accepted: Counter::default(),
            active: Gauge::default(),
            closed: fresh(Closed::ALL.len()),
            received: Counter::default(),
            sent: Counter::default(),
            calls: std::iter::repeat_with(histogram)
                .take(Export::ALL.len())
                .collect(),
            cpu: Counter::default(),
            traps: fresh(TrapCause::ALL.len()),
            instances_started: Counter::default(),
            restarts: Counter::default(),
            limit_hits: fresh(LimitHit::ALL.len()),
            log_lines_dropped: Counter::default(),
            timers_scheduled: Counter::default(),
            connects: fresh(Connect::ALL.len()),
            datagrams: fresh(Datagram::ALL.len()),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

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

    /// The guest exports a service of this kind has called.
    fn exports(&self) -> &'static [Export] {
        match self.kind {
            Kind::Stream => &Export::ALL[..Export::ALL.len() - 3],
            Kind::Datagram => &Export::ALL[Export::ALL.len() - 3..],
        }
    }

    /// The limits that can stop a service of this kind.
    fn limits(&self) -> &'static [LimitHit] {
        match self.kind {
            Kind::Stream => LimitHit::ALL,
            Kind::Datagram => &[LimitHit::Deadline, LimitHit::WallClock, LimitHit::Memory],
        }
    }
}

/// The service alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ServiceLabel<'a> {
    service: &'a str,
}

impl EncodeLabelSet for ServiceLabel<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        ("service", self.service).encode(encoder.encode_label())
    }
}

/// A service and one more label: a reason, an export, a result...
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TwoLabels<'a> {
    service: &'a str,
    name: &'static str,
    value: &'static str,
}

impl EncodeLabelSet for TwoLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        ("service", self.service).encode(encoder.encode_label())?;
        (self.name, self.value).encode(encoder.encode_label())
    }
}

/// Every service's series, by name: what `/metrics` writes of them.
#[derive(Default)]
pub(super) struct Services(Mutex<BTreeMap<String, Arc<ServiceMetrics>>>);

impl Services {
    /// The series of the service `name`, made now if it has none (or had
    /// another kind), so that each shows from the first scrape. A service
    /// of the same name (after a reload) continues the same series.
    pub(super) fn get(&self, name: &str, kind: Kind) -> Arc<ServiceMetrics> {
        let mut services = self.lock();
        match services.get(name) {
            Some(series) if series.kind == kind => series.clone(),
            _ => {
                let series = Arc::new(ServiceMetrics::new(kind));
                services.insert(name.to_owned(), series.clone());
                series
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ServiceMetrics>>> {
        // Only inserts and lookups happen under the lock.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lock().keys()).finish()
    }
}

/// One family: its name, help, unit and type, once, then each of its
/// series.
fn family<'a, L: EncodeLabelSet + 'a, M: EncodeMetric + 'a>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<Unit>),
    metric_type: MetricType,
    series: impl IntoIterator<Item = (L, &'a M)>,
) -> Result<(), fmt::Error> {
    // With a full stop, as the registry writes the help of what it holds.
    let help = format!("{help}.");
    let mut family = encoder.encode_descriptor(name, &help, unit.as_ref(), metric_type)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Services {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let services: Vec<(String, Arc<ServiceMetrics>)> = self
            .lock()
            .iter()
            .map(|(name, series)| (name.clone(), series.clone()))
            .collect();
        let of = |kind: Option<Kind>| {
            services
                .iter()
                .filter(move |(_, s)| kind.is_none_or(|kind| s.kind == kind))
        };
        let streams = Some(Kind::Stream);
        let e = &mut encoder;
        let one = |pick: fn(&ServiceMetrics) -> &Counter, kind| {
            of(kind).map(move |(name, s)| (ServiceLabel { service: name }, pick(s)))
        };
        family(
            e,
            ("connections_accepted", "Connections accepted", None),
            MetricType::Counter,
            one(|s| &s.accepted, streams),
        )?;
        family(
            e,
            (
                "connections_active",
                "Connections open, accepted or outbound",
                None,
            ),
            MetricType::Gauge,
            of(streams).map(|(name, s)| (ServiceLabel { service: name }, &s.active)),
        )?;
        let each = |kind,
                    name: &'static str,
                    values: &'static [&'static str],
                    pick: fn(&ServiceMetrics) -> &[Counter]| {
            of(kind).flat_map(move |(service, s)| {
                values.iter().zip(pick(s)).map(move |(value, counter)| {
                    (
                        TwoLabels {
                            service,
                            name,
                            value,
                        },
                        counter,
                    )
                })
            })
        };
        family(
            e,
            (
                "connections_closed",
                "Connections ended, accepted or outbound, by reason",
                None,
            ),
            MetricType::Counter,
            each(streams, "reason", Closed::LABELS, |s| &s.closed),
        )?;
        family(
            e,
            ("received", "Bytes read from peers", Some(Unit::Bytes)),
            MetricType::Counter,
            one(|s| &s.received, None),
        )?;
        family(
            e,
            ("sent", "Bytes written to peers", Some(Unit::Bytes)),
            MetricType::Counter,
            one(|s| &s.sent, None),
        )?;
        family(
            e,
            (
                "guest_call_duration",
                "Guest calls by export, and how long each took",
                Some(Unit::Seconds),
            ),
            MetricType::Histogram,
            of(None).flat_map(|(service, s)| {
                s.exports().iter().map(move |export| {
                    let labels = TwoLabels {
                        service,
                        name: "export",
                        value: export.label(),
                    };
                    (labels, &s.calls[*export as usize])
                })
            }),
        )?;
        family(
            e,
            (
                "guest_cpu",
                "CPU time charged to guests against their deadlines (sampled at each epoch tick)",
                Some(Unit::Seconds),
            ),
            MetricType::Counter,
            of(None).map(|(name, s)| (ServiceLabel { service: name }, &s.cpu)),
        )?;
        family(
            e,
            (
                "guest_traps",
                "Guest instances ended by a trap, by cause",
                None,
            ),
            MetricType::Counter,
            each(None, "cause", TrapCause::LABELS, |s| &s.traps),
        )?;
        family(
            e,
            ("instances_started", "Guest instances started", None),
            MetricType::Counter,
            one(|s| &s.instances_started, None),
        )?;
        family(
            e,
            (
                "instance_restarts",
                "Shared instances started to replace one that trapped",
                None,
            ),
            MetricType::Counter,
            one(|s| &s.restarts, None),
        )?;
        family(
            e,
            (
                "limit_hits",
                "Times a limit stopped a guest or a connection",
                None,
            ),
            MetricType::Counter,
            of(None).flat_map(|(service, s)| {
                s.limits().iter().map(move |limit| {
                    let labels = TwoLabels {
                        service,
                        name: "limit",
                        value: limit.label(),
                    };
                    (labels, &s.limit_hits[*limit as usize])
                })
            }),
        )?;
        family(
            e,
            (
                "guest_log_lines_dropped",
                "Guest log lines dropped over the log rate",
                None,
            ),
            MetricType::Counter,
            one(|s| &s.log_lines_dropped, None),
        )?;
        family(
            e,
            ("timers_scheduled", "Calls scheduled with call-later", None),
            MetricType::Counter,
            one(|s| &s.timers_scheduled, streams),
        )?;
        family(
            e,
            (
                "outbound_connects",
                "Outbound connections asked for, by result",
                None,
            ),
            MetricType::Counter,
            each(streams, "result", Connect::LABELS, |s| &s.connects),
        )?;
        family(
            e,
            (
                "datagrams",
                "Datagrams of udp: services, received or sent, and dropped or refused, by result",
                None,
            ),
            MetricType::Counter,
            each(Some(Kind::Datagram), "result", Datagram::LABELS, |s| {
                &s.datagrams
            }),
        )
    }
}
