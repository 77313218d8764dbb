//! `wasi:keyvalue@0.2.0-draft`, as wasmtime-wasi-keyvalue 48 and
//! wasmCloud serve it: increments of `u64`, list-keys cursors of `u64`, no
//! compare-and-swap.

use wasmtime::component::Resource;

use crate::capability::keyvalue::place::Failure;
use crate::capability::keyvalue::{KeyValueState, NotOpened, check_batch, check_key};
use crate::wit::keyvalue::wasi::keyvalue::store::{Bucket, Error, KeyResponse};
use crate::wit::keyvalue::wasi::keyvalue::{atomics, batch, store};

type Answer<T> = wasmtime::Result<Result<T, Error>>;

/// What the guest is told of `result`, counted.
fn answer<T>(state: &KeyValueState, result: Result<T, Failure>) -> Answer<T> {
    Ok(state.counted(result).map_err(Error::Other))
}

impl store::Host for KeyValueState {
    async fn open(&mut self, identifier: String) -> Answer<Resource<Bucket>> {
        Ok(match self.open_bucket(&identifier) {
            Ok(rep) => Ok(Resource::new_own(rep)),
            Err(NotOpened::NoSuchStore) => Err(Error::NoSuchStore),
            Err(NotOpened::AccessDenied) => Err(Error::AccessDenied),
            Err(NotOpened::Other(why)) => Err(Error::Other(why)),
        })
    }
}

impl store::HostBucket for KeyValueState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<Option<Vec<u8>>> {
        let result = self.place(bucket.rep())?.get(&key).await;
        answer(self, result)
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Answer<()> {
        if let Err(failure) = self.check_value(&key, &value) {
            return answer(self, Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = self.place(bucket.rep())?.set(&key, value, bounds).await;
        answer(self, result)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<()> {
        let result = self.place(bucket.rep())?.delete(&key).await;
        answer(self, result)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<bool> {
        let result = self.place(bucket.rep())?.exists(&key).await;
        answer(self, result)
    }

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

impl batch::Host for KeyValueState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        if let Err(failure) = check_batch(keys.len()) {
            return answer(self, Err(failure));
        }
        let result = self.place(bucket.rep())?.get_many(&keys).await;
        let pairs = result.map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|value| (key, value)))
                .collect()
        });
        answer(self, pairs)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        if let Err(failure) = self.check_pairs(&key_values) {
            return answer(self, Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = self.place(bucket.rep())?.set_many(key_values, bounds).await;
        answer(self, result)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Answer<()> {
        if let Err(failure) = check_batch(keys.len()) {
            return answer(self, Err(failure));
        }
        let result = self.place(bucket.rep())?.delete_many(&keys).await;
        answer(self, result)
    }
}
