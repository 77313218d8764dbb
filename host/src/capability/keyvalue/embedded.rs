//! The embedded key-value backend: buckets in this process's memory, one
//! per name, shared by every worker, instance and version of the services
//! that reach it, so they outlive traps and reloads. Each bucket is
//! bounded in keys and bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metrics::{BucketSize, BucketSource};

/// Every embedded bucket of the process, by full name (namespace and
/// bucket).
#[derive(Default)]
pub struct Embedded {
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedded")
    }
}

impl Embedded {
    /// The bucket `name`, made empty the first time it is asked for;
    /// `None` if that would make more than `most` buckets whose names
    /// start with `prefix` (a service's own).
    pub fn bucket(&self, name: &str, prefix: &str, most: usize) -> Option<Arc<Bucket>> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(name) {
            return Some(bucket.clone());
        }
        if name.starts_with(prefix)
            && buckets.keys().filter(|n| n.starts_with(prefix)).count() >= most
        {
            return None;
        }
        Some(buckets.entry(name.to_owned()).or_default().clone())
    }
}

impl BucketSource for Embedded {
    /// Each bucket's full name, keys and bytes, for metrics.
    fn sizes(&self) -> Vec<BucketSize> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut sizes: Vec<_> = buckets
            .iter()
            .map(|(name, bucket)| {
                let data = bucket.lock();
                BucketSize {
                    name: name.clone(),
                    keys: data.map.len(),
                    bytes: data.bytes,
                }
            })
            .collect();
        sizes.sort();
        sizes
    }
}

/// One bucket: its keys and what they weigh.
#[derive(Default)]
pub struct Bucket {
    data: Mutex<Data>,
}

#[derive(Default)]
pub struct Data {
    map: HashMap<String, Vec<u8>>,
    /// The length of every key and value.
    bytes: usize,
}

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// A new key, and the bucket holds its most keys.
    Keys(usize),
    /// The bucket would hold more than its most bytes.
    Bytes(usize),
}

/// Why an increment failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Increment {
    NotANumber,
    Overflow,
    Full(Full),
}

/// A bucket's bounds, the writing service's.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub keys: usize,
    pub bytes: usize,
}

impl Bucket {
    pub fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Data {
    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// Set `key` to `value` unless that would pass `bounds`.
    pub fn set(&mut self, key: &str, value: Vec<u8>, bounds: Bounds) -> Result<(), Full> {
        let old = self.map.get(key).map(|old| key.len() + old.len());
        if old.is_none() && self.map.len() >= bounds.keys {
            return Err(Full::Keys(bounds.keys));
        }
        let bytes = self.bytes - old.unwrap_or(0) + key.len() + value.len();
        if bytes > bounds.bytes && bytes > self.bytes {
            return Err(Full::Bytes(bounds.bytes));
        }
        self.bytes = bytes;
        match self.map.get_mut(key) {
            Some(old) => *old = value,
            None => {
                self.map.insert(key.to_owned(), value);
            }
        }
        Ok(())
    }

    /// Add `delta` to the decimal number at `key` (0 if unset), in place;
    /// a signed 64-bit number, as Redis keeps.
    pub fn increment(&mut self, key: &str, delta: i64, bounds: Bounds) -> Result<i64, Increment> {
        let current = match self.map.get(key) {
            None => 0,
            Some(value) => std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or(Increment::NotANumber)?,
        };
        let next = current.checked_add(delta).ok_or(Increment::Overflow)?;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(next).as_bytes();
        match self.map.get_mut(key) {
            // Same bounds as `set`: a longer number may not fit.
            Some(value) if digits.len() <= value.len() => {
                self.bytes -= value.len() - digits.len();
                value.clear();
                value.extend_from_slice(digits);
            }
            _ => self
                .set(key, digits.to_vec(), bounds)
                .map_err(Increment::Full)?,
        }
        Ok(next)
    }

    pub fn delete(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.len();
        }
    }

    /// Up to `count` keys in order from the `cursor`th, and where the
    /// next page starts, if there is one.
    pub fn keys(&self, cursor: u64, count: usize) -> (Vec<String>, Option<u64>) {
        let mut keys: Vec<&String> = self.map.keys().collect();
        keys.sort_unstable();
        let from = usize::try_from(cursor)
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let to = from.saturating_add(count).min(keys.len());
        let page = keys[from..to].iter().map(|key| (*key).clone()).collect();
        let next = (to < keys.len()).then_some(to as u64);
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Bounds = Bounds {
        keys: 100,
        bytes: 1000,
    };

    #[test]
    fn a_bucket_is_shared_by_name_and_counts_what_it_holds() {
        let store = Embedded::default();
        store
            .bucket("a/x", "a/", 9)
            .unwrap()
            .lock()
            .set("k", b"vv".to_vec(), ROOMY)
            .unwrap();
        assert_eq!(
            store.bucket("a/x", "a/", 9).unwrap().lock().get("k"),
            Some(&b"vv".to_vec())
        );
        assert_eq!(store.bucket("b/x", "b/", 9).unwrap().lock().get("k"), None);
        store
            .bucket("a/x", "a/", 9)
            .unwrap()
            .lock()
            .set("k", b"v".to_vec(), ROOMY)
            .unwrap();
        let size = |name: &str, keys, bytes| BucketSize {
            name: name.to_owned(),
            keys,
            bytes,
        };
        assert_eq!(store.sizes(), [size("a/x", 1, 2), size("b/x", 0, 0)]);
        store.bucket("a/x", "a/", 9).unwrap().lock().delete("k");
        assert_eq!(store.sizes()[0], size("a/x", 0, 0));
    }

    #[test]
    fn a_namespace_makes_at_most_its_buckets() {
        let store = Embedded::default();
        assert!(store.bucket("a/1", "a/", 2).is_some());
        assert!(store.bucket("a/2", "a/", 2).is_some());
        assert!(store.bucket("a/3", "a/", 2).is_none());
        assert!(
            store.bucket("a/1", "a/", 2).is_some(),
            "an existing one opens"
        );
        assert!(
            store.bucket("b/1", "b/", 2).is_some(),
            "another namespace's count is its own"
        );
    }

    #[test]
    fn writes_past_the_bounds_are_refused_and_change_nothing() {
        let bounds = Bounds { keys: 2, bytes: 10 };
        let mut data = Data::default();
        data.set("a", b"1234".to_vec(), bounds).unwrap();
        data.set("b", b"1".to_vec(), bounds).unwrap();
        assert_eq!(data.set("c", b"1".to_vec(), bounds), Err(Full::Keys(2)));
        assert_eq!(
            data.set("b", b"123456".to_vec(), bounds),
            Err(Full::Bytes(10))
        );
        // Replacing a key with a value no larger is always allowed.
        data.set("a", b"12".to_vec(), bounds).unwrap();
        assert_eq!((data.map.len(), data.bytes), (2, 5));
    }

    #[test]
    fn keys_come_in_pages_in_order() {
        let mut data = Data::default();
        for key in ["c", "a", "b"] {
            data.set(key, Vec::new(), ROOMY).unwrap();
        }
        assert_eq!(data.keys(0, 2), (vec!["a".into(), "b".into()], Some(2)));
        assert_eq!(data.keys(2, 2), (vec!["c".into()], None));
        assert_eq!(data.keys(9, 2), (vec![], None));
    }

    #[test]
    fn increments_count_in_decimal_in_place_within_the_bounds() {
        let mut data = Data::default();
        assert_eq!(data.increment("n", 9, ROOMY), Ok(9));
        assert_eq!(data.increment("n", 1, ROOMY), Ok(10));
        assert_eq!(data.get("n"), Some(&b"10".to_vec()));
        assert_eq!(data.bytes, 3);
        data.set("t", b"x".to_vec(), ROOMY).unwrap();
        assert_eq!(data.increment("t", 1, ROOMY), Err(Increment::NotANumber));
        assert_eq!(
            data.increment("n", i64::MAX, ROOMY),
            Err(Increment::Overflow)
        );
        assert_eq!(data.increment("m", -3, ROOMY), Ok(-3));
        data.delete("m");
        let tight = Bounds { keys: 2, bytes: 5 };
        assert_eq!(
            data.increment("n", 990, tight),
            Err(Increment::Full(Full::Bytes(5)))
        );
        assert_eq!(data.get("n"), Some(&b"10".to_vec()));
    }
}
