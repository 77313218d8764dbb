//! A line protocol over a key-value bucket, built with plain wit-bindgen
//! against the standard `wasi:keyvalue@0.2.0-draft` WIT (as a component
//! made for wasmtime's or Spin's key-value would be), not weft's SDK:
//! `open BUCKET`, `set K V`, `get K`, `del K`, `exists K`, `incr K N`,
//! `keys`, `getmany K...`, `setmany K=V...`, `delmany K...`; each line gets
//! one line back, `error: ...` when the call fails.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "weft:protocol/service",
    generate_all,
});

/// The standard key-value interfaces, from their own WIT package.
mod kv {
    wit_bindgen::generate!({
        path: "../../../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use std::cell::RefCell;

use exports::weft::protocol::protocol::{Guest, GuestProtocol};
use exports::weft::protocol::{events, producers};
use kv::wasi::keyvalue::{atomics, batch, store};
use weft::protocol::transport::Transport;
use weft::protocol::types::{CloseReason, ConnectError};

include!("lines.rs");

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
        let owned = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect::<Vec<_>>();
        let result = match words.as_slice() {
            ["set", key, value] => bucket.set(key, value.as_bytes()).map(|()| "ok".into()),
            ["setbig", key, size] => {
                let value = vec![b'x'; size.parse().unwrap_or(0)];
                bucket.set(key, &value).map(|()| "ok".into())
            }
            ["get", key] => bucket.get(key).map(|value| match value {
                Some(value) => String::from_utf8_lossy(&value).into_owned(),
                None => "none".into(),
            }),
            ["del", key] => bucket.delete(key).map(|()| "ok".into()),
            ["exists", key] => bucket.exists(key).map(|found| found.to_string()),
            ["incr", key, delta] => atomics::increment(bucket, key, delta.parse().unwrap_or(0))
                .map(|sum| sum.to_string()),
            ["keys"] => bucket.list_keys(None).map(|page| {
                let mut keys = page.keys;
                keys.sort();
                keys.join(" ")
            }),
            ["getmany", keys @ ..] => batch::get_many(bucket, &owned(keys)).map(|found| {
                let shown: Vec<String> = found
                    .into_iter()
                    .map(|pair| match pair {
                        Some((key, value)) => format!("{key}={}", String::from_utf8_lossy(&value)),
                        None => "none".into(),
                    })
                    .collect();
                shown.join(" ")
            }),
            ["setmany", pairs @ ..] => {
                let pairs: Vec<(String, Vec<u8>)> = pairs
                    .iter()
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
                    .collect();
                batch::set_many(bucket, &pairs).map(|()| "ok".into())
            }
            ["delmany", keys @ ..] => {
                batch::delete_many(bucket, &owned(keys)).map(|()| "ok".into())
            }
            _ => return format!("error: unknown command {line}"),
        };
        result.unwrap_or_else(shown)
    }
}
