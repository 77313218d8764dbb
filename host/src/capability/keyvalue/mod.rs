//! Key-value state kept by the host, through the standard
//! `wasi:keyvalue` (`store`, `atomics`, `batch`; `0.2.0-draft` and
//! `0.2.0-draft2`, one file each): a guest opens buckets by name inside its
//! service's namespace, and each bucket lives where the operator put it
//! (embedded in the process, or Redis).

// Before the versions, which expand it.
#[macro_use]
mod both;
mod draft;
mod draft2;
mod embedded;
mod place;
mod redis;
pub mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::metrics::{KeyValue as Outcome, ServiceMetrics};
use crate::sandbox::limits::Limits;

pub use embedded::Embedded;
use embedded::{Bounds, Full};
use place::{Failure, Place};
pub use redis::Redis;
use spec::{Backend, KeyValueSpec, check_bucket_name};

/// Buckets one instance may have open at once.
const MAX_OPEN: usize = 256;

/// The longest key.
const MAX_KEY: usize = 4096;

/// Keys one batch call may name.
const MAX_BATCH: usize = 1000;

/// What a service's instances may reach: its namespace, each bucket's
/// backend, its quotas; one per worker and version, so that each worker
/// has its own Redis connections.
pub struct KeyValueGrant {
    namespace: Arc<str>,
    spec: KeyValueSpec,
    embedded: Arc<Embedded>,
    redis: HashMap<spec::RedisAddress, Arc<Redis>>,
    value_size: usize,
    bounds: Bounds,
    /// Embedded buckets of its own the service may make.
    buckets: usize,
    metrics: Arc<ServiceMetrics>,
}

impl KeyValueGrant {
    /// The grant of the service `namespace`, whose embedded buckets are in
    /// `embedded` (the process's), under `limits`.
    pub fn new(
        namespace: Arc<str>,
        spec: KeyValueSpec,
        embedded: Arc<Embedded>,
        limits: &Limits,
        metrics: Arc<ServiceMetrics>,
    ) -> Self {
        let redis = spec
            .backends()
            .filter_map(|backend| match backend {
                Backend::Redis(address) => Some(address.clone()),
                _ => None,
            })
            .map(|address| (address.clone(), Arc::new(Redis::new(address, "key-value"))))
            .collect();
        Self {
            namespace,
            spec,
            embedded,
            redis,
            value_size: limits.kv_value_size,
            bounds: Bounds {
                keys: limits.kv_keys,
                bytes: limits.kv_bytes,
            },
            buckets: limits.kv_buckets,
            metrics,
        }
    }

    /// Where the bucket `name` is.
    fn place(&self, name: &str) -> Result<Place, Refused> {
        // A shared name is the same bucket for every service sharing it;
        // any other is the service's own.
        let own = format!("service:{}/", self.namespace);
        let full = match self.spec.is_shared(name) {
            true => format!("shared/{name}"),
            false => format!("{own}{name}"),
        };
        match self.spec.backend_of(name) {
            Backend::Embedded => self
                .embedded
                .bucket(&full, &own, self.buckets)
                .map(Place::Embedded)
                .ok_or(Refused::Buckets(self.buckets)),
            Backend::Redis(address) => Ok(Place::Redis {
                redis: self.redis.get(address).ok_or(Refused::Off)?.clone(),
                prefix: format!("weft:kv:{full}:"),
            }),
            Backend::Off => Err(Refused::Off),
        }
    }
}

/// Why the grant gave no bucket.
enum Refused {
    /// The operator gave the service no store.
    Off,
    /// The service has its most embedded buckets.
    Buckets(usize),
}

/// One instance's key-value state: its service's grant, the buckets it
/// has open and its compare-and-swap operations under way, by the rep of
/// the guest's handle (reps are this state's own, for both versions).
pub struct KeyValueState {
    grant: Arc<KeyValueGrant>,
    open: HashMap<u32, Place>,
    swaps: HashMap<u32, Swap>,
    next_rep: u32,
}

/// A compare-and-swap begun (`cas.new`): the value the key held then.
struct Swap {
    bucket: Place,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Why `open` gave no bucket.
enum NotOpened {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl KeyValueState {
    pub fn new(grant: Arc<KeyValueGrant>) -> Self {
        Self {
            grant,
            open: HashMap::new(),
            swaps: HashMap::new(),
            next_rep: 1,
        }
    }

    /// A rep no handle of this state has.
    fn fresh_rep(&mut self) -> u32 {
        while self.next_rep == 0
            || self.open.contains_key(&self.next_rep)
            || self.swaps.contains_key(&self.next_rep)
        {
            self.next_rep = self.next_rep.wrapping_add(1);
        }
        let rep = self.next_rep;
        self.next_rep = self.next_rep.wrapping_add(1);
        rep
    }

    /// Open the bucket `name`: the rep of its handle.
    fn open_bucket(&mut self, name: &str) -> Result<u32, NotOpened> {
        let metrics = self.grant.metrics.clone();
        if let Err(why) = check_bucket_name(name) {
            metrics.keyvalue(Outcome::Invalid);
            tracing::debug!(service = &*self.grant.namespace, "no bucket opened: {why}");
            return Err(NotOpened::NoSuchStore);
        }
        let place = match self.grant.place(name) {
            Ok(place) => place,
            Err(Refused::Off) => {
                metrics.keyvalue(Outcome::Invalid);
                return Err(NotOpened::AccessDenied);
            }
            Err(Refused::Buckets(most)) => {
                return Err(NotOpened::Other(self.refusal(Failure::Buckets(most))));
            }
        };
        if self.open.len() >= MAX_OPEN {
            let why = format!("an instance may have at most {MAX_OPEN} buckets open");
            return Err(NotOpened::Other(self.refusal(Failure::Invalid(why))));
        }
        let rep = self.fresh_rep();
        self.open.insert(rep, place);
        metrics.keyvalue(Outcome::Ok);
        Ok(rep)
    }

    /// The open bucket behind the handle `rep`.
    fn place(&self, rep: u32) -> wasmtime::Result<&Place> {
        self.open
            .get(&rep)
            .ok_or_else(|| wasmtime::format_err!("unknown bucket handle"))
    }

    /// `result`, counted; a failure as the message `error.other` carries.
    fn counted<T>(&self, result: Result<T, Failure>) -> Result<T, String> {
        match result {
            Ok(value) => {
                self.grant.metrics.keyvalue(Outcome::Ok);
                Ok(value)
            }
            Err(failure) => Err(self.refusal(failure)),
        }
    }

    /// Count `failure` and say what it was.
    fn refusal(&self, failure: Failure) -> String {
        let (outcome, message) = match failure {
            Failure::ValueSize(size) => (
                Outcome::ValueSize,
                format!(
                    "the value of {size} bytes is over the service's kv-value-size of {} bytes",
                    self.grant.value_size
                ),
            ),
            Failure::Buckets(most) => (
                Outcome::Buckets,
                format!("the service has its most buckets, kv-buckets={most}"),
            ),
            Failure::Full(Full::Keys(keys)) => (
                Outcome::Keys,
                format!("the bucket holds its most keys, kv-keys={keys}"),
            ),
            Failure::Full(Full::Bytes(bytes)) => (
                Outcome::Bytes,
                format!("the bucket would hold more than kv-bytes={bytes} bytes"),
            ),
            Failure::Invalid(why) => (Outcome::Invalid, why),
            Failure::Unavailable(why) => (
                Outcome::Unavailable,
                format!("the key-value backend is unavailable: {why}"),
            ),
        };
        self.grant.metrics.keyvalue(outcome);
        message
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), Failure> {
        check_key(key)?;
        if value.len() > self.grant.value_size {
            return Err(Failure::ValueSize(value.len()));
        }
        Ok(())
    }

    /// Check every pair of a `set-many`.
    fn check_pairs(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), Failure> {
        check_batch(pairs.len())?;
        pairs
            .iter()
            .try_for_each(|(key, value)| self.check_value(key, value))
    }
}

fn check_key(key: &str) -> Result<(), Failure> {
    if key.len() > MAX_KEY {
        return Err(Failure::Invalid(format!(
            "a key of {} bytes is over the longest, {MAX_KEY}",
            key.len()
        )));
    }
    Ok(())
}

fn check_batch(count: usize) -> Result<(), Failure> {
    if count > MAX_BATCH {
        return Err(Failure::Invalid(format!(
            "a batch of {count} keys is over the most, {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// Add both versions of `wasi:keyvalue`'s `store`, `atomics` and `batch`
/// to `linker`, each instance working on the state `state` projects from
/// its store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut KeyValueState,
) -> wasmtime::Result<()> {
    use crate::wit::keyvalue::wasi::keyvalue as draft;
    use crate::wit::keyvalue2::wasi::keyvalue as draft2;
    draft::store::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    draft::atomics::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    draft::batch::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    draft2::store::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    draft2::atomics::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    draft2::batch::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)
}
