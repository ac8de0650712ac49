//! `wasi:keyvalue` (store, atomics, batch) over the module's durable state: one bucket,
//! `default` (or the empty name), holding the same keys as `wedge:edge/state`, under the same
//! quota and key limits, kept across restarts. Other bucket names are `no-such-store`: a module
//! has one store. The batch calls are not atomic (the interface does not promise it): each key
//! is one write, in order, and the first failure stops the rest.

use wasmtime::component::Resource;

use crate::bindings::wasi::keyvalue::store::{Error, KeyResponse};
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

use super::HostState;

/// An open bucket: the module's state. Carries nothing; the module is in the store data.
pub struct Bucket;

/// Keys per `list-keys` page; the cursor is the index of the next key.
const PAGE: usize = 1000;

/// The names `open` accepts for the module's one bucket.
const BUCKET_NAMES: [&str; 2] = ["", "default"];

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl HostState {
    fn bucket_ok(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.get(bucket)?;
        Ok(())
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.module.state.set(&key, value).await.map_err(other)
    }
}

impl store::Host for HostState {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        if !BUCKET_NAMES.contains(&identifier.as_str()) {
            return Ok(Err(Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket)?))
    }
}

impl store::HostBucket for HostState {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.bucket_ok(&bucket)?;
        Ok(self.module.state.get(&key).map_err(other))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.bucket_ok(&bucket)?;
        Ok(self.put(key, value).await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.bucket_ok(&bucket)?;
        Ok(self.module.state.delete(&key).await.map_err(other))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        self.bucket_ok(&bucket)?;
        Ok(self
            .module
            .state
            .get(&key)
            .map(|v| v.is_some())
            .map_err(other))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        self.bucket_ok(&bucket)?;
        let keys = match self.module.state.keys() {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(other(e))),
        };
        // The cursor is the guest's: clamp it rather than trust it.
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = (start + PAGE).min(keys.len());
        Ok(Ok(KeyResponse {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        }))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    /// Calls of one module never overlap, so read, add and write is atomic for the module; the
    /// number is decimal text, as wasmtime's own implementation keeps it.
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        self.bucket_ok(&bucket)?;
        let current = match self.module.state.get(&key) {
            Ok(None) => 0,
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                Some(n) => n,
                None => return Ok(Err(other(format!("the value of `{key}` is not a number")))),
            },
            Err(e) => return Ok(Err(other(e))),
        };
        let Some(next) = u64::checked_add(current, delta) else {
            return Ok(Err(other(format!("incrementing `{key}` overflows"))));
        };
        Ok(self
            .put(key, next.to_string().into_bytes())
            .await
            .map(|()| next))
    }
}

impl batch::Host for HostState {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        self.bucket_ok(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match self.module.state.get(&key) {
                Ok(value) => values.push(value.map(|v| (key, v))),
                Err(e) => return Ok(Err(other(e))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.bucket_ok(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = self.put(key, value).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.bucket_ok(&bucket)?;
        for key in keys {
            if let Err(e) = self.module.state.delete(&key).await {
                return Ok(Err(other(e)));
            }
        }
        Ok(Ok(()))
    }
}
