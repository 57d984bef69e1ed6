//! The guest's side of `wasi:keyvalue`: the WIT bindings and the host functions a guest calls,
//! each a thin translation onto [`KeyValue`] (which holds the limits and the backend).

use super::{Bucket, KeyValue, KvError, check_name};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue.wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::wasi::keyvalue::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::wasi::keyvalue::KvError,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// One request's view of the key-value store: the store and the request's resource table.
pub struct KvView<'a> {
    /// The host's store.
    pub kv: &'a KeyValue,
    /// The request's resources (open buckets live here).
    pub table: &'a mut ResourceTable,
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<String, KvError> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        let name = if identifier.is_empty() {
            "default".to_string()
        } else {
            identifier
        };
        check_name(&name).map_err(KvError)?;
        self.kv
            .metrics
            .keyvalue_op("open", "ok", std::time::Duration::ZERO);
        Ok(self.table.push(Bucket { name })?)
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        let KvError(text) = err;
        Ok(store::Error::Other(text))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let name = self.bucket(&bucket)?;
        let mut values = self
            .kv
            .run("get", self.kv.get_many(&name, vec![key]))
            .await?;
        Ok(values.pop().flatten())
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let name = self.bucket(&bucket)?;
        self.kv
            .run("set", self.kv.set_many(&name, vec![(key, value)]))
            .await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvError> {
        let name = self.bucket(&bucket)?;
        self.kv
            .run("delete", self.kv.delete_many(&name, vec![key]))
            .await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        let name = self.bucket(&bucket)?;
        let values = self
            .kv
            .run("exists", self.kv.get_many(&name, vec![key]))
            .await?;
        Ok(values.first().is_some_and(Option::is_some))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KvError> {
        let name = self.bucket(&bucket)?;
        let (keys, cursor) = self
            .kv
            .run("list_keys", self.kv.list_keys(&name, cursor.unwrap_or(0)))
            .await?;
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let name = self.bucket(&bucket)?;
        self.kv
            .run("increment", self.kv.increment(&name, &key, delta))
            .await
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let name = self.bucket(&bucket)?;
        let values = self
            .kv
            .run("get_many", self.kv.get_many(&name, keys.clone()))
            .await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|v| (key, v)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let name = self.bucket(&bucket)?;
        self.kv
            .run("set_many", self.kv.set_many(&name, key_values))
            .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        let name = self.bucket(&bucket)?;
        self.kv
            .run("delete_many", self.kv.delete_many(&name, keys))
            .await
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue/{store, atomics, batch}` to `linker`; `view` finds a store's view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
