//! What both `wasi:keyvalue` versions' bindings share but for their
//! types: a macro each version's file expands with its own bindings in
//! scope, giving the `list-keys` that differs.

/// `answer`, `store.open`, the bucket's methods but `list-keys` (given
/// as `$list_keys`), and `batch`, for the bindings in scope as `store`,
/// `batch`, `Bucket`, `Error` and `KeyResponse`.
macro_rules! same_in_both_versions {
    ($($list_keys:tt)*) => {
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
        $($list_keys)*

            async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
                self.open.remove(&bucket.rep());
                Ok(())
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
    };
}
