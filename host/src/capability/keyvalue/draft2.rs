//! `wasi:keyvalue@0.2.0-draft2`, as Spin 3 serves it: signed increments,
//! list-keys cursors of text, and compare-and-swap (`cas`, `swap`).

use wasmtime::component::Resource;

use crate::capability::keyvalue::place::Failure;
use crate::capability::keyvalue::{KeyValueState, NotOpened, Swap, check_batch, check_key};
use crate::wit::keyvalue2::wasi::keyvalue::atomics::{Cas, CasError};
use crate::wit::keyvalue2::wasi::keyvalue::store::{Bucket, Error, KeyResponse};
use crate::wit::keyvalue2::wasi::keyvalue::{atomics, batch, store};

same_in_both_versions! {
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Answer<KeyResponse> {
        let cursor = match cursor.as_deref().map(str::parse::<u64>) {
            None => 0,
            Some(Ok(cursor)) => cursor,
            Some(Err(_)) => {
                let why = "the cursor is not one list-keys gave".to_owned();
                return answer(self, Err(Failure::Invalid(why)));
            }
        };
        let result = self.place(bucket.rep())?.keys(cursor).await;
        answer(
            self,
            result.map(|(keys, next)| KeyResponse {
                keys,
                cursor: next.map(|next| next.to_string()),
            }),
        )
    }
}

impl atomics::Host for KeyValueState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Answer<i64> {
        if let Err(failure) = check_key(&key) {
            return answer(self, Err(failure));
        }
        let bounds = self.grant.bounds;
        let result = self
            .place(bucket.rep())?
            .increment(&key, delta, bounds)
            .await;
        answer(self, result)
    }

    /// Set the key to `value` if it still holds what it held when `cas`
    /// began; if not, a fresh `cas` with what it holds now.
    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let swap = self
            .swaps
            .remove(&cas.rep())
            .ok_or_else(|| wasmtime::format_err!("unknown cas handle"))?;
        if let Err(failure) = self.check_value(&swap.key, &value) {
            let why = self.refusal(failure);
            return Ok(Err(CasError::StoreError(Error::Other(why))));
        }
        let bounds = self.grant.bounds;
        let swapped = swap
            .bucket
            .swap(&swap.key, swap.seen.as_deref(), value, bounds)
            .await;
        match self.counted(swapped) {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                let seen = swap.bucket.get(&swap.key).await;
                match self.counted(seen) {
                    Ok(seen) => {
                        let rep = self.fresh_rep();
                        self.swaps.insert(rep, Swap { seen, ..swap });
                        Ok(Err(CasError::CasFailed(Resource::new_own(rep))))
                    }
                    Err(why) => Ok(Err(CasError::StoreError(Error::Other(why)))),
                }
            }
            Err(why) => Ok(Err(CasError::StoreError(Error::Other(why)))),
        }
    }
}

impl atomics::HostCas for KeyValueState {
    /// Begin a compare-and-swap of `key`: note what it holds now.
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<Resource<Cas>> {
        if let Err(failure) = check_key(&key) {
            return answer(self, Err(failure));
        }
        let place = self.place(bucket.rep())?.clone();
        let seen = match self.counted(place.get(&key).await) {
            Ok(seen) => seen,
            Err(why) => return Ok(Err(Error::Other(why))),
        };
        let rep = self.fresh_rep();
        self.swaps.insert(
            rep,
            Swap {
                bucket: place,
                key,
                seen,
            },
        );
        Ok(Ok(Resource::new_own(rep)))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Answer<Option<Vec<u8>>> {
        let swap = self
            .swaps
            .get(&cas.rep())
            .ok_or_else(|| wasmtime::format_err!("unknown cas handle"))?;
        Ok(Ok(swap.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.swaps.remove(&cas.rep());
        Ok(())
    }
}
