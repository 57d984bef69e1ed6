//! The `redis://` backend, for replicas that share state: each bucket is one Redis hash,
//! `hotswap:{namespace}:{bucket}`, so a bucket's size is `HLEN` and `increment` is `HINCRBY`.
//! Writes that may add keys run as a script that checks the key limit and writes in one step.
//!
//! The connection is made on first use and re-made after a failure; every call has a deadline,
//! so a Redis that is down or stuck costs the guest an error, never a hung request.

use super::{BackendError, KeyPage, PAGE, bucket_full};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, Script, ServerErrorKind};
use std::time::Duration;

/// Deadline of one call, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// `KEYS[1]` = the hash; `ARGV` = field, value, field, value, …, max keys. Returns -1 when the
/// new fields would pass the limit (nothing written), else the number of new fields.
const SET_MANY: &str = r"
local max = tonumber(ARGV[#ARGV])
local new = 0
for i = 1, #ARGV - 1, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 and redis.call('HLEN', KEYS[1]) + new > max then return -1 end
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return new
";

/// `KEYS[1]` = the hash; `ARGV` = field, delta, max keys. Returns the new value, or an error
/// reply `FULL` when the field is new and the bucket is at its limit.
const INCREMENT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.error_reply('FULL the bucket is full')
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
";

pub(super) struct Redis {
    conn: ConnectionManager,
    set_many: Script,
    increment: Script,
}

fn hash(ns: &str, bucket: &str) -> String {
    format!("hotswap:{ns}:{bucket}")
}

fn unavailable(err: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("redis: {err}"))
}

impl Redis {
    /// A lazily connecting client for `url` (already checked by `StoreSpec::parse`).
    pub(super) fn new(url: &str) -> anyhow::Result<Redis> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis client: {e}"))?;
        Ok(Redis {
            conn,
            set_many: Script::new(SET_MANY),
            increment: Script::new(INCREMENT),
        })
    }

    /// Runs one call under [`CALL_TIMEOUT`]; only a timeout is an error here.
    async fn timed<T>(
        &self,
        f: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<redis::RedisResult<T>, BackendError> {
        tokio::time::timeout(CALL_TIMEOUT, f(self.conn.clone()))
            .await
            .map_err(|_| unavailable(format!("no answer within {} ms", CALL_TIMEOUT.as_millis())))
    }

    /// Runs one call under [`CALL_TIMEOUT`]; any failure means the backend is unavailable.
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        self.timed(f).await?.map_err(unavailable)
    }

    pub(super) async fn get_many(
        &self,
        ns: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let hash = hash(ns, bucket);
        match keys {
            [] => Ok(Vec::new()),
            [key] => {
                let value: Option<Vec<u8>> =
                    self.call(async |mut c| c.hget(&hash, key).await).await?;
                Ok(vec![value])
            }
            _ => {
                self.call(async |mut c| {
                    redis::cmd("HMGET")
                        .arg(&hash)
                        .arg(keys)
                        .query_async(&mut c)
                        .await
                })
                .await
            }
        }
    }

    pub(super) async fn set_many(
        &self,
        ns: &str,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        max_keys: u64,
    ) -> Result<(), BackendError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut invocation = self.set_many.key(hash(ns, bucket));
        for (key, value) in pairs {
            invocation.arg(key).arg(value.as_slice());
        }
        invocation.arg(max_keys);
        let new: i64 = self
            .call(async |mut c| invocation.invoke_async(&mut c).await)
            .await?;
        if new < 0 {
            return Err(bucket_full(bucket, max_keys));
        }
        Ok(())
    }

    pub(super) async fn delete_many(
        &self,
        ns: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let hash = hash(ns, bucket);
        self.call(async |mut c| c.hdel::<_, _, ()>(&hash, keys).await)
            .await
    }

    pub(super) async fn list_keys(
        &self,
        ns: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<KeyPage, BackendError> {
        let hash = hash(ns, bucket);
        let (next, flat): (u64, Vec<String>) = self
            .call(async |mut c| {
                redis::cmd("HSCAN")
                    .arg(&hash)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        // HSCAN answers field, value, field, value, …
        let keys = flat.into_iter().step_by(2).collect();
        Ok((keys, (next != 0).then_some(next)))
    }

    pub(super) async fn increment(
        &self,
        ns: &str,
        bucket: &str,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, BackendError> {
        let delta_i64 = i64::try_from(delta).map_err(|_| {
            BackendError::Refused(format!("a delta of {delta} is more than Redis can add"))
        })?;
        let mut invocation = self.increment.key(hash(ns, bucket));
        invocation.arg(key).arg(delta_i64).arg(max_keys);
        let result: redis::RedisResult<i64> = self
            .timed(async |mut c| invocation.invoke_async(&mut c).await)
            .await?;
        match result {
            Ok(sum) => u64::try_from(sum)
                .map_err(|_| BackendError::Refused(format!("the value of `{key}` is negative"))),
            // What the script or HINCRBY refuse is about the request, not the backend.
            Err(err) if err.code() == Some("FULL") => Err(bucket_full(bucket, max_keys)),
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => {
                Err(BackendError::Refused(format!(
                    "the value of `{key}` is not an unsigned decimal number ({err})"
                )))
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}
