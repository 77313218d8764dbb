//! Key-value state kept by the host, through the standard
//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`): a guest
//! opens buckets by name inside its service's namespace, and each bucket
//! lives where the operator put it (embedded in the process, or Redis).

mod embedded;
mod redis;
pub mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::metrics::{KeyValue as Outcome, ServiceMetrics};
use crate::sandbox::limits::Limits;
use crate::wit::keyvalue::wasi::keyvalue::store::{Bucket, Error, KeyResponse};
use crate::wit::keyvalue::wasi::keyvalue::{atomics, batch, store};

pub use embedded::Embedded;
use embedded::{Bounds, Full, Increment};
use redis::{Redis, Unavailable};
use spec::{Backend, KeyValueSpec, check_bucket_name};

/// Buckets one instance may have open at once.
const MAX_OPEN: usize = 256;

/// The longest key.
const MAX_KEY: usize = 4096;

/// Keys one batch call may name.
const MAX_BATCH: usize = 1000;

/// Keys one `list-keys` page of an embedded bucket holds.
const PAGE: usize = 1000;

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
            .map(|address| (address.clone(), Arc::new(Redis::new(address))))
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

/// Why a bucket was not opened.
enum Refused {
    /// The operator gave the service no store.
    Off,
    /// The service has its most embedded buckets.
    Buckets(usize),
}

/// Where an open bucket's keys are.
enum Place {
    Embedded(Arc<embedded::Bucket>),
    Redis { redis: Arc<Redis>, prefix: String },
}

/// Why a call failed, as the guest and the metrics see it.
enum Failure {
    ValueSize(usize),
    Buckets(usize),
    Full(Full),
    Invalid(String),
    Unavailable(String),
}

impl From<Unavailable> for Failure {
    fn from(Unavailable(why): Unavailable) -> Self {
        Failure::Unavailable(why)
    }
}

/// One instance's key-value state: its service's grant and the buckets it
/// has open, by the rep of the guest's handle.
pub struct KeyValueState {
    grant: Arc<KeyValueGrant>,
    open: HashMap<u32, Place>,
    next_rep: u32,
}

impl KeyValueState {
    pub fn new(grant: Arc<KeyValueGrant>) -> Self {
        Self {
            grant,
            open: HashMap::new(),
            next_rep: 1,
        }
    }

    fn place(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<&Place> {
        self.open
            .get(&bucket.rep())
            .ok_or_else(|| wasmtime::format_err!("unknown bucket handle"))
    }

    /// The guest's answer to a call that ended with `result`, counted.
    fn answer<T>(&self, result: Result<T, Failure>) -> wasmtime::Result<Result<T, Error>> {
        let metrics = &self.grant.metrics;
        let (outcome, message) = match result {
            Ok(value) => {
                metrics.keyvalue(Outcome::Ok);
                return Ok(Ok(value));
            }
            Err(Failure::ValueSize(size)) => (
                Outcome::ValueSize,
                format!(
                    "the value of {size} bytes is over the service's kv-value-size of {} bytes",
                    self.grant.value_size
                ),
            ),
            Err(Failure::Buckets(most)) => (
                Outcome::Buckets,
                format!("the service has its most buckets, kv-buckets={most}"),
            ),
            Err(Failure::Full(Full::Keys(keys))) => (
                Outcome::Keys,
                format!("the bucket holds its most keys, kv-keys={keys}"),
            ),
            Err(Failure::Full(Full::Bytes(bytes))) => (
                Outcome::Bytes,
                format!("the bucket would hold more than kv-bytes={bytes} bytes"),
            ),
            Err(Failure::Invalid(why)) => (Outcome::Invalid, why),
            Err(Failure::Unavailable(why)) => (
                Outcome::Unavailable,
                format!("the key-value backend is unavailable: {why}"),
            ),
        };
        metrics.keyvalue(outcome);
        Ok(Err(Error::Other(message)))
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), Failure> {
        check_key(key)?;
        if value.len() > self.grant.value_size {
            return Err(Failure::ValueSize(value.len()));
        }
        Ok(())
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

/// Add `wasi:keyvalue`'s `store`, `atomics` and `batch` to `linker`, each
/// instance working on the state `state` projects from its store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut KeyValueState,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    atomics::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)?;
    batch::add_to_linker::<T, HasSelf<KeyValueState>>(linker, state)
}

impl store::Host for KeyValueState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        if let Err(why) = check_bucket_name(&identifier) {
            self.grant.metrics.keyvalue(Outcome::Invalid);
            tracing::debug!(service = &*self.grant.namespace, "no bucket opened: {why}");
            return Ok(Err(Error::NoSuchStore));
        }
        let place = match self.grant.place(&identifier) {
            Ok(place) => place,
            Err(Refused::Off) => {
                self.grant.metrics.keyvalue(Outcome::Invalid);
                return Ok(Err(Error::AccessDenied));
            }
            Err(Refused::Buckets(most)) => {
                return self.answer(Err(Failure::Buckets(most)));
            }
        };
        if self.open.len() >= MAX_OPEN {
            let why = format!("an instance may have at most {MAX_OPEN} buckets open");
            return self.answer(Err(Failure::Invalid(why)));
        }
        while self.open.contains_key(&self.next_rep) {
            self.next_rep = self.next_rep.wrapping_add(1);
        }
        let rep = self.next_rep;
        self.next_rep = self.next_rep.wrapping_add(1);
        self.open.insert(rep, place);
        self.answer(Ok(Resource::new_own(rep)))
    }
}

impl store::HostBucket for KeyValueState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => Ok(bucket.lock().get(&key).cloned()),
            Place::Redis { redis, prefix } => redis
                .get(&format!("{prefix}{key}"))
                .await
                .map_err(Failure::from),
        };
        self.answer(result)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(failure) = self.check_value(&key, &value) {
            return self.answer(Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => bucket
                .lock()
                .set(&key, value, bounds)
                .map_err(Failure::Full),
            Place::Redis { redis, prefix } => redis
                .set(&format!("{prefix}{key}"), &value)
                .await
                .map_err(Failure::from),
        };
        self.answer(result)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => {
                bucket.lock().delete(&key);
                Ok(())
            }
            Place::Redis { redis, prefix } => redis
                .delete(&[format!("{prefix}{key}")])
                .await
                .map_err(Failure::from),
        };
        self.answer(result)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => Ok(bucket.lock().get(&key).is_some()),
            Place::Redis { redis, prefix } => redis
                .exists(&format!("{prefix}{key}"))
                .await
                .map_err(Failure::from),
        };
        self.answer(result)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let cursor = cursor.unwrap_or(0);
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => Ok(bucket.lock().keys(cursor, PAGE)),
            Place::Redis { redis, prefix } => match redis.scan(prefix, cursor).await {
                Ok((keys, next)) => {
                    let keys = keys
                        .into_iter()
                        .filter_map(|key| key.strip_prefix(prefix.as_str()).map(str::to_owned))
                        .collect();
                    Ok((keys, next))
                }
                Err(unavailable) => Err(Failure::from(unavailable)),
            },
        };
        self.answer(result.map(|(keys, cursor)| KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.open.remove(&bucket.rep());
        Ok(())
    }
}

impl atomics::Host for KeyValueState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(failure) = check_key(&key) {
            return self.answer(Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => increment_embedded(&mut bucket.lock(), &key, delta, bounds),
            Place::Redis { redis, prefix } => redis
                .increment(&format!("{prefix}{key}"), delta)
                .await
                .map_err(Failure::from),
        };
        self.answer(result)
    }
}

/// Add `delta` to the decimal number at `key` (0 if unset), as Redis's
/// INCRBY does, so that a guest sees the same bytes on either backend.
fn increment_embedded(
    data: &mut embedded::Data,
    key: &str,
    delta: u64,
    bounds: Bounds,
) -> Result<u64, Failure> {
    data.increment(key, delta, bounds)
        .map_err(|failed| match failed {
            Increment::NotANumber => Failure::Invalid("the value is not a decimal number".into()),
            Increment::Overflow => Failure::Invalid("the increment overflows".into()),
            Increment::Full(full) => Failure::Full(full),
        })
}

impl batch::Host for KeyValueState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        if let Err(failure) = check_batch(keys.len()) {
            return self.answer(Err(failure));
        }
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => {
                let data = bucket.lock();
                let values = keys.iter().map(|key| data.get(key).cloned()).collect();
                Ok(values)
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<String> =
                    keys.iter().map(|key| format!("{prefix}{key}")).collect();
                redis.get_many(&prefixed).await.map_err(Failure::from)
            }
        };
        let pairs = result.map(|values: Vec<Option<Vec<u8>>>| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|value| (key, value)))
                .collect()
        });
        self.answer(pairs)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let checked = check_batch(key_values.len()).and_then(|()| {
            key_values
                .iter()
                .try_for_each(|(key, value)| self.check_value(key, value))
        });
        if let Err(failure) = checked {
            return self.answer(Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = match self.place(&bucket)? {
            // Each pair is set on its own, as the interface allows: a
            // refusal leaves the pairs before it set.
            Place::Embedded(bucket) => {
                let mut data = bucket.lock();
                key_values
                    .into_iter()
                    .try_for_each(|(key, value)| data.set(&key, value, bounds))
                    .map_err(Failure::Full)
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<(String, Vec<u8>)> = key_values
                    .into_iter()
                    .map(|(key, value)| (format!("{prefix}{key}"), value))
                    .collect();
                redis.set_many(&prefixed).await.map_err(Failure::from)
            }
        };
        self.answer(result)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(failure) = check_batch(keys.len()) {
            return self.answer(Err(failure));
        }
        let result = match self.place(&bucket)? {
            Place::Embedded(bucket) => {
                let mut data = bucket.lock();
                keys.iter().for_each(|key| data.delete(key));
                Ok(())
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<String> =
                    keys.iter().map(|key| format!("{prefix}{key}")).collect();
                redis.delete(&prefixed).await.map_err(Failure::from)
            }
        };
        self.answer(result)
    }
}
