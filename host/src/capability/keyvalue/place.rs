//! What can be done to an open bucket, on whichever backend holds it:
//! the operations both `wasi:keyvalue` versions are made of.

use std::sync::Arc;

use crate::capability::keyvalue::embedded::{self, Bounds, Full, Increment};
use crate::capability::keyvalue::redis::{Redis, Unavailable};

/// Where an open bucket's keys are.
#[derive(Clone)]
pub enum Place {
    Embedded(Arc<embedded::Bucket>),
    Redis { redis: Arc<Redis>, prefix: String },
}

/// Why a call failed, as the guest and the metrics see it.
pub enum Failure {
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

impl From<Increment> for Failure {
    fn from(failed: Increment) -> Self {
        match failed {
            Increment::NotANumber => Failure::Invalid("the value is not a decimal number".into()),
            Increment::Overflow => Failure::Invalid("the increment overflows".into()),
            Increment::Full(full) => Failure::Full(full),
        }
    }
}

/// Keys one `list-keys` page of an embedded bucket holds.
const PAGE: usize = 1000;

impl Place {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        match self {
            Place::Embedded(bucket) => Ok(bucket.lock().get(key).cloned()),
            Place::Redis { redis, prefix } => Ok(redis.get(&format!("{prefix}{key}")).await?),
        }
    }

    pub async fn set(&self, key: &str, value: Vec<u8>, bounds: Bounds) -> Result<(), Failure> {
        match self {
            Place::Embedded(bucket) => bucket.lock().set(key, value, bounds).map_err(Failure::Full),
            Place::Redis { redis, prefix } => {
                Ok(redis.set(&format!("{prefix}{key}"), &value).await?)
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), Failure> {
        self.delete_many(&[key.to_owned()]).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Failure> {
        match self {
            Place::Embedded(bucket) => Ok(bucket.lock().get(key).is_some()),
            Place::Redis { redis, prefix } => Ok(redis.exists(&format!("{prefix}{key}")).await?),
        }
    }

    /// A page of keys from `cursor`, and the next page's cursor.
    pub async fn keys(&self, cursor: u64) -> Result<(Vec<String>, Option<u64>), Failure> {
        match self {
            Place::Embedded(bucket) => Ok(bucket.lock().keys(cursor, PAGE)),
            Place::Redis { redis, prefix } => {
                let (keys, next) = redis.scan(prefix, cursor).await?;
                let keys = keys
                    .into_iter()
                    .filter_map(|key| key.strip_prefix(prefix.as_str()).map(str::to_owned))
                    .collect();
                Ok((keys, next))
            }
        }
    }

    /// Add `delta` to the decimal number at `key` (0 if unset), as Redis's
    /// INCRBY does, so that a guest sees the same bytes on either backend.
    pub async fn increment(&self, key: &str, delta: i64, bounds: Bounds) -> Result<i64, Failure> {
        match self {
            Place::Embedded(bucket) => Ok(bucket.lock().increment(key, delta, bounds)?),
            Place::Redis { redis, prefix } => {
                Ok(redis.increment(&format!("{prefix}{key}"), delta).await?)
            }
        }
    }

    /// Set `key` to `value` if it still holds `expected` (`None`: unset);
    /// whether it did.
    pub async fn swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        bounds: Bounds,
    ) -> Result<bool, Failure> {
        match self {
            Place::Embedded(bucket) => {
                let mut data = bucket.lock();
                if data.get(key).map(Vec::as_slice) != expected {
                    return Ok(false);
                }
                data.set(key, value, bounds).map_err(Failure::Full)?;
                Ok(true)
            }
            Place::Redis { redis, prefix } => Ok(redis
                .swap(&format!("{prefix}{key}"), expected, &value)
                .await?),
        }
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Failure> {
        match self {
            Place::Embedded(bucket) => {
                let data = bucket.lock();
                Ok(keys.iter().map(|key| data.get(key).cloned()).collect())
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<String> =
                    keys.iter().map(|key| format!("{prefix}{key}")).collect();
                Ok(redis.get_many(&prefixed).await?)
            }
        }
    }

    /// Set each pair. On the embedded store each pair is set on its own,
    /// as the interface allows: a refusal leaves the pairs before it set.
    pub async fn set_many(
        &self,
        pairs: Vec<(String, Vec<u8>)>,
        bounds: Bounds,
    ) -> Result<(), Failure> {
        match self {
            Place::Embedded(bucket) => {
                let mut data = bucket.lock();
                pairs
                    .into_iter()
                    .try_for_each(|(key, value)| data.set(&key, value, bounds))
                    .map_err(Failure::Full)
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<(String, Vec<u8>)> = pairs
                    .into_iter()
                    .map(|(key, value)| (format!("{prefix}{key}"), value))
                    .collect();
                Ok(redis.set_many(&prefixed).await?)
            }
        }
    }

    pub async fn delete_many(&self, keys: &[String]) -> Result<(), Failure> {
        match self {
            Place::Embedded(bucket) => {
                let mut data = bucket.lock();
                keys.iter().for_each(|key| data.delete(key));
                Ok(())
            }
            Place::Redis { redis, prefix } => {
                let prefixed: Vec<String> =
                    keys.iter().map(|key| format!("{prefix}{key}")).collect();
                Ok(redis.delete(&prefixed).await?)
            }
        }
    }
}
