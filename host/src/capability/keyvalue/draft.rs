//! `wasi:keyvalue@0.2.0-draft`, as wasmtime-wasi-keyvalue 48 and
//! wasmCloud serve it: increments of `u64`, list-keys cursors of `u64`, no
//! compare-and-swap.

use wasmtime::component::Resource;

use crate::capability::keyvalue::place::Failure;
use crate::capability::keyvalue::{KeyValueState, NotOpened, check_batch, check_key};
use crate::wit::keyvalue::wasi::keyvalue::store::{Bucket, Error, KeyResponse};
use crate::wit::keyvalue::wasi::keyvalue::{atomics, batch, store};

same_in_both_versions! {
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Answer<KeyResponse> {
        let result = self.place(bucket.rep())?.keys(cursor.unwrap_or(0)).await;
        answer(
            self,
            result.map(|(keys, cursor)| KeyResponse { keys, cursor }),
        )
    }
}

impl atomics::Host for KeyValueState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Answer<u64> {
        if let Err(failure) = check_key(&key) {
            return answer(self, Err(failure));
        }
        let Ok(delta) = i64::try_from(delta) else {
            return answer(
                self,
                Err(Failure::Invalid("the increment overflows".into())),
            );
        };
        let bounds = self.grant.bounds;
        let result = self
            .place(bucket.rep())?
            .increment(&key, delta, bounds)
            .await;
        let result = result.and_then(|sum| {
            u64::try_from(sum).map_err(|_| Failure::Invalid(format!("the value is {sum}")))
        });
        answer(self, result)
    }
}
