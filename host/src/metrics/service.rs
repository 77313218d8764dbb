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

use crate::metrics::labels::{
    Closed, Connect, Datagram, Export, KeyValue, LimitHit, Messaging, TrapCause,
};

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
    keyvalue: Vec<Counter>,
    messaging: Vec<Counter>,
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
            keyvalue: fresh(KeyValue::ALL.len()),
            messaging: fresh(Messaging::ALL.len()),
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

    /// One `wasi:keyvalue` call, and how it ended.
    pub fn keyvalue(&self, result: KeyValue) {
        self.keyvalue[result as usize].inc();
    }

    /// `count` publish/subscribe operations or messages, and how they
    /// ended.
    pub fn messaging(&self, result: Messaging, count: u64) {
        self.messaging[result as usize].inc_by(count);
    }
}

/// A series' labels: its service, and the one label more some families
/// have (a reason, an export, a cause, a limit, a result).
struct Labels<'a> {
    service: &'a str,
    label: Label,
}

/// A family's own label and its value, if it has one.
type Label = Option<(&'static str, &'static str)>;

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        ("service", self.service).encode(encoder.encode_label())?;
        match self.label {
            Some(label) => label.encode(encoder.encode_label()),
            None => Ok(()),
        }
    }
}

/// A service's series of one family, each with its own label.
type Series<'a> = Vec<(Label, &'a dyn EncodeMetric)>;

/// One family: what `/metrics` says of it once, and each service's series
/// of it.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    metric_type: MetricType,
    series: for<'a> fn(&'a ServiceMetrics) -> Series<'a>,
}

/// Every family, in the order `/metrics` writes them.
const FAMILIES: &[Family] = &[
    Family {
        name: "connections_accepted",
        help: "Connections accepted",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| s.of(Kind::Stream, vec![(None, &s.accepted)]),
    },
    Family {
        name: "connections_active",
        help: "Connections open, accepted or outbound",
        unit: None,
        metric_type: MetricType::Gauge,
        series: |s| s.of(Kind::Stream, vec![(None, &s.active)]),
    },
    Family {
        name: "connections_closed",
        help: "Connections ended, accepted or outbound, by reason",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| {
            s.of(
                Kind::Stream,
                each("reason", Closed::ALL, Closed::label, &s.closed),
            )
        },
    },
    Family {
        name: "received",
        help: "Bytes read from peers",
        unit: Some(Unit::Bytes),
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.received)],
    },
    Family {
        name: "sent",
        help: "Bytes written to peers",
        unit: Some(Unit::Bytes),
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.sent)],
    },
    Family {
        name: "guest_call_duration",
        help: "Guest calls by export, and how long each took",
        unit: Some(Unit::Seconds),
        metric_type: MetricType::Histogram,
        series: |s| {
            // The last three are the datagram world's.
            let (stream, datagram) = Export::ALL.split_at(Export::ALL.len() - 3);
            let exports = match s.kind {
                Kind::Stream => stream,
                Kind::Datagram => datagram,
            };
            each("export", exports, Export::label, &s.calls)
        },
    },
    Family {
        name: "guest_cpu",
        help: "CPU time charged to guests against their deadlines (sampled at each epoch tick)",
        unit: Some(Unit::Seconds),
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.cpu)],
    },
    Family {
        name: "guest_traps",
        help: "Guest instances ended by a trap, by cause",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| each("cause", TrapCause::ALL, TrapCause::label, &s.traps),
    },
    Family {
        name: "instances_started",
        help: "Guest instances started",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.instances_started)],
    },
    Family {
        name: "instance_restarts",
        help: "Shared instances started to replace one that trapped",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.restarts)],
    },
    Family {
        name: "limit_hits",
        help: "Times a limit stopped a guest or a connection",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| {
            let limits = match s.kind {
                Kind::Stream => LimitHit::ALL,
                Kind::Datagram => &[LimitHit::Deadline, LimitHit::WallClock, LimitHit::Memory],
            };
            each("limit", limits, LimitHit::label, &s.limit_hits)
        },
    },
    Family {
        name: "guest_log_lines_dropped",
        help: "Guest log lines dropped over the log rate",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| vec![(None, &s.log_lines_dropped)],
    },
    Family {
        name: "timers_scheduled",
        help: "Calls scheduled with call-later",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| s.of(Kind::Stream, vec![(None, &s.timers_scheduled)]),
    },
    Family {
        name: "outbound_connects",
        help: "Outbound connections asked for, by result",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| {
            s.of(
                Kind::Stream,
                each("result", Connect::ALL, Connect::label, &s.connects),
            )
        },
    },
    Family {
        name: "datagrams",
        help: "Datagrams of udp: services, received or sent, and dropped or refused, by result",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| {
            let series = each("result", Datagram::ALL, Datagram::label, &s.datagrams);
            s.of(Kind::Datagram, series)
        },
    },
    Family {
        name: "keyvalue_calls",
        help: "wasi:keyvalue calls, by result (a quota refused, the backend unavailable)",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| each("result", KeyValue::ALL, KeyValue::label, &s.keyvalue),
    },
    Family {
        name: "messages",
        help: "Publish/subscribe messages and calls, by result (published, delivered, dropped, a quota refused)",
        unit: None,
        metric_type: MetricType::Counter,
        series: |s| each("result", Messaging::ALL, Messaging::label, &s.messaging),
    },
];

/// The series of the `chosen` values of a label enum, each labelled
/// `name`; `metrics` holds one per value of the enum, in its order.
fn each<'a, E: Copy + Into<usize>, M: EncodeMetric>(
    name: &'static str,
    chosen: &[E],
    label: fn(E) -> &'static str,
    metrics: &'a [M],
) -> Series<'a> {
    chosen
        .iter()
        .map(|&value| {
            let metric: &dyn EncodeMetric = &metrics[value.into()];
            (Some((name, label(value))), metric)
        })
        .collect()
}

impl ServiceMetrics {
    /// `series` if the service is of `kind`, else none: a family that
    /// does not apply to it.
    fn of<'a>(&self, kind: Kind, series: Series<'a>) -> Series<'a> {
        if self.kind == kind {
            series
        } else {
            Vec::new()
        }
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

impl Collector for Services {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let services: Vec<(String, Arc<ServiceMetrics>)> = self
            .lock()
            .iter()
            .map(|(name, series)| (name.clone(), series.clone()))
            .collect();
        for family in FAMILIES {
            // With a full stop, as the registry writes the help of what it holds.
            let help = format!("{}.", family.help);
            let mut descriptor = encoder.encode_descriptor(
                family.name,
                &help,
                family.unit.as_ref(),
                family.metric_type,
            )?;
            for (service, metrics) in &services {
                for (label, metric) in (family.series)(metrics) {
                    let labels = Labels { service, label };
                    metric.encode(descriptor.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
