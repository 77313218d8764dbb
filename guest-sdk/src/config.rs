//! The operator's settings for this service (`config.KEY=VALUE` after the
//! endpoint), read through `wasi:config/store`.

use crate::bindings::wasi::config::store;

/// The value of `key`, or `None` when the operator did not set it.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}
