//! What weft counts, per service, for Prometheus: connections, bytes, guest
//! calls and their durations, traps, restarts, limits hit, timers, outbound
//! connects, datagrams, key-value calls; each service's state; the
//! process's readiness; and the embedded key-value buckets' sizes. A leaf:
//! what reports into it resolves its series once, and it knows nothing of
//! what reports.

mod labels;
mod readiness;
mod service;

pub use labels::{
    Closed, Connect, Datagram, Export, KeyValue, LimitHit, Messaging, State, TrapCause,
};
pub use readiness::{Readiness, Ready};
pub use service::{Kind, ServiceMetrics};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use self::service::Services;

/// What tells a service's state at each scrape: its trap history.
pub trait StateSource: Send + Sync {
    fn state(&self) -> State;
}

/// What tells the embedded key-value buckets' sizes at each scrape: each
/// bucket's full name, keys and bytes.
pub trait BucketSource: Send + Sync {
    fn sizes(&self) -> Vec<BucketSize>;
}

/// One embedded bucket's full name and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BucketSize {
    pub name: String,
    pub keys: usize,
    pub bytes: usize,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// The process's metrics: the registry `/metrics` encodes, every service's
/// series, and each service's health for `weft_service_state` and
/// `/healthz`.
pub struct Metrics {
    registry: Registry,
    services: Arc<Services>,
    states: Arc<States>,
    buckets: Arc<Buckets>,
    reloads: Family<ReloadLabels, Counter>,
    readiness: Arc<Readiness>,
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
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The weft version running, as a label", build);
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads, by result (ok, failed)",
            reloads.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the process accepts new connections (/readyz answers 200), else 0",
            ready.clone(),
        );
        let services = Arc::new(Services::default());
        registry.register_collector(Box::new(services.clone()));
        let states = Arc::new(States::default());
        registry.register_collector(Box::new(states.clone()));
        let buckets = Arc::new(Buckets::default());
        registry.register_collector(Box::new(buckets.clone()));
        Self {
            registry,
            services,
            states,
            buckets,
            reloads,
            readiness: Arc::new(Readiness::new(ready)),
        }
    }

    /// Whether the process takes new connections.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// The series of the service `name`, of `kind`: made now if it has
    /// none, so that each shows from the first scrape; a service of the
    /// same name and kind (after a reload) continues the same series.
    pub fn service(&self, name: &str, kind: Kind) -> Arc<ServiceMetrics> {
        self.services.get(name, kind)
    }

    /// Report `name`'s state from `source` from now on (replacing what
    /// reported it before, after a reload), for as long as it lives.
    pub fn watch(&self, name: &str, source: Weak<dyn StateSource>) {
        self.states.lock().insert(name.to_owned(), source);
    }

    /// Report the embedded buckets' sizes from `source` from now on.
    pub fn watch_buckets(&self, source: Weak<dyn BucketSource>) {
        *self.buckets.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
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

/// The embedded key-value buckets, read at each scrape.
#[derive(Default)]
struct Buckets(Mutex<Option<Weak<dyn BucketSource>>>);

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buckets")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabel {
    bucket: String,
}

impl Collector for Buckets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let sizes = source.and_then(|s| s.upgrade()).map(|s| s.sizes());
        let sizes = sizes.unwrap_or_default();
        type Family = (&'static str, &'static str, fn(&BucketSize) -> usize);
        let families: [Family; 2] = [
            (
                "kv_bucket_keys",
                "Keys in each embedded key-value bucket (service:NAME/BUCKET, or shared/BUCKET)",
                |size| size.keys,
            ),
            (
                "kv_bucket_bytes",
                "Bytes of keys and values in each embedded key-value bucket",
                |size| size.bytes,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for size in &sizes {
                let labels = BucketLabel {
                    bucket: size.name.clone(),
                };
                let value = i64::try_from(value(size)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
