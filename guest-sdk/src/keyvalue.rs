//! State kept by the host, not by this instance (`wasi:keyvalue`):
//! buckets that every worker, instance and version of the service share,
//! that outlive a trap or a reload, and that the operator may put on Redis
//! to share them between processes.

use std::fmt;

use crate::bindings::keyvalue::wasi::keyvalue::atomics::{self, Cas, CasError};
use crate::bindings::keyvalue::wasi::keyvalue::{batch, store};

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
            let page = self.bucket.list_keys(cursor.as_deref())?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Add `delta` to the decimal number at `key` (0 when unset) as one
    /// step no other instance or process can split, and return the sum.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Set `key` to `new` only if it still holds `expected` (`None`:
    /// unset); whether it did.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, Error> {
        let cas = Cas::new(&self.bucket, key)?;
        if cas.current()?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(CasError::CasFailed(_)) => Ok(false),
            Err(CasError::StoreError(error)) => Err(error.into()),
        }
    }

    /// Replace the value at `key` with `change(current)`, retrying when
    /// another writer got there first; returns the value set.
    pub fn update(
        &self,
        key: &str,
        mut change: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut cas = Cas::new(&self.bucket, key)?;
        loop {
            let new = change(cas.current()?.as_deref());
            match atomics::swap(cas, &new) {
                Ok(()) => return Ok(new),
                Err(CasError::CasFailed(fresh)) => cas = fresh,
                Err(CasError::StoreError(error)) => return Err(error.into()),
            }
        }
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
