//! A line protocol over a key-value bucket, built with plain wit-bindgen
//! against the standard `wasi:keyvalue@0.2.0-draft2` WIT (as a component
//! made for Spin 3's key-value would be): `open BUCKET`, `set K V`,
//! `get K`, `incr K N` (N may be negative), `keys`, `cas K EXPECTED NEW`
//! (swap if K holds EXPECTED), `race K NEW` (a swap whose key another
//! writer changes first, then retried with the handle the failure gives).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "weft:protocol/service",
    generate_all,
});

/// The standard key-value interfaces, from their own WIT package.
mod kv {
    wit_bindgen::generate!({
        path: "../../../wit/standard/keyvalue-0.2.0-draft2",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use std::cell::RefCell;

use exports::weft::protocol::protocol::{Guest, GuestProtocol};
use exports::weft::protocol::{events, producers};
use kv::wasi::keyvalue::atomics::{self, Cas, CasError};
use kv::wasi::keyvalue::store;
use weft::protocol::transport::Transport;
use weft::protocol::types::{CloseReason, ConnectError};

include!("../../kv-standard/src/lines.rs");

fn text(value: Option<Vec<u8>>) -> String {
    value.map_or("none".into(), |value| {
        String::from_utf8_lossy(&value).into_owned()
    })
}

/// Swap `cas` to `new`: `ok`, or what the key holds now.
fn swap(cas: Cas, new: &str) -> Result<String, store::Error> {
    match atomics::swap(cas, new.as_bytes()) {
        Ok(()) => Ok("ok".into()),
        Err(CasError::CasFailed(fresh)) => Ok(format!("changed to {}", text(fresh.current()?))),
        Err(CasError::StoreError(error)) => Err(error),
    }
}

impl Lines {
    fn answer(&self, line: &str) -> String {
        let words: Vec<&str> = line.split(' ').collect();
        if let ["open", name] = words.as_slice() {
            return match store::open(name) {
                Ok(bucket) => {
                    *self.bucket.borrow_mut() = Some(bucket);
                    "ok".into()
                }
                Err(error) => shown(error),
            };
        }
        let bucket = self.bucket.borrow();
        let Some(bucket) = bucket.as_ref() else {
            return "error: no bucket open".into();
        };
        let result = match words.as_slice() {
            ["set", key, value] => bucket.set(key, value.as_bytes()).map(|()| "ok".into()),
            ["get", key] => bucket.get(key).map(text),
            ["incr", key, delta] => atomics::increment(bucket, key, delta.parse().unwrap_or(0))
                .map(|sum| sum.to_string()),
            ["keys"] => bucket.list_keys(None).map(|page| {
                let mut keys = page.keys;
                keys.sort();
                keys.join(" ")
            }),
            ["cas", key, expected, new] => {
                Cas::new(bucket, key).and_then(|cas| match cas.current()? {
                    Some(current) if current == expected.as_bytes() => swap(cas, new),
                    current => Ok(format!("holds {}", text(current))),
                })
            }
            ["race", key, new] => Cas::new(bucket, key).and_then(|cas| {
                bucket.set(key, b"intruder")?;
                match atomics::swap(cas, new.as_bytes()) {
                    Ok(()) => Ok("swapped over the intruder".into()),
                    Err(CasError::CasFailed(fresh)) => {
                        let seen = text(fresh.current()?);
                        Ok(format!("changed to {seen}, retried: {}", swap(fresh, new)?))
                    }
                    Err(CasError::StoreError(error)) => Err(error),
                }
            }),
            _ => return format!("error: unknown command {line}"),
        };
        result.unwrap_or_else(shown)
    }
}
