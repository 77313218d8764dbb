//! State kept by the host, not by this instance (`wasi:keyvalue`):
//! buckets that every worker, instance and version of the service share,
//! that outlive a trap or a reload, and that the operator may put on Redis
//! to share them between processes.

use std::fmt;

use crate::bindings::keyvalue::wasi::keyvalue::{atomics, batch, store};

/// A named bucket of keys and byte values, in the service's namespace.
pub struct Bucket {
    bucket: store::Bucket,
}

/// Why a key-value call failed: the bucket may not be opened, or the
/// backend refused or could not answer (a quota, Redis away).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No bucket of that name can be opened.
    NoSuchStore,
    /// The operator gave this service no key-value store.
    AccessDenied,
    /// Anything else, as the host says it.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str("no such bucket"),
            Error::AccessDenied => f.write_str("key-value access denied"),
            Error::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NoSuchStore => Error::NoSuchStore,
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::Other(why) => Error::Other(why),
        }
    }
}

impl Bucket {
    /// Open the bucket `name` (1 to 64 letters, digits, `.`, `_`, `-`).
    pub fn open(name: &str) -> Result<Bucket, Error> {
        Ok(Bucket {
            bucket: store::open(name)?,
        })
    }

    /// The value of `key`, if it is set.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// Set `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        Ok(self.bucket.set(key, value)?)
    }

    /// Remove `key`; removing a key that is not set is no error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` is set.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key, a page at a time (on Redis a key may come twice).
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Add `delta` to the decimal number at `key` (0 when unset) as one
    /// step no other instance or process can split, and return the sum.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// The values of `keys`, in their order.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let found = batch::get_many(&self.bucket, keys)?;
        Ok(found
            .into_iter()
            .map(|pair| pair.map(|(_, value)| value))
            .collect())
    }

    /// Set each key to its value.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), Error> {
        Ok(batch::set_many(&self.bucket, pairs)?)
    }

    /// Remove each of `keys`.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        Ok(batch::delete_many(&self.bucket, keys)?)
    }
}
