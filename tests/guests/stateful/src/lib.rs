//! stateful: a `wasi:http` test guest of the `hotswap:host/stateful-guest` world, which reads
//! runtime configuration (`wasi:config/store`) and keeps state in the host's key-value store
//! (`wasi:keyvalue`), so the host's tests can check that both work and that state outlives a
//! swap.
//!
//! Routes (all `GET`; `bucket=B` opens bucket B, default `""`; a key-value error answers
//! 500 `error <kind>[: <text>]`, e.g. `error other: bucket ... is full`):
//!
//! | route | behaviour |
//! |---|---|
//! | `/hello` | 200 `hello` (touches neither interface) |
//! | `/config?key=K` | 200 with the value of K, or 404 `none` |
//! | `/config-all` | 200, one `key=value` line per value, sorted |
//! | `/kv/incr?key=K[&by=N]` | `increment(K, N)` (N defaults to 1); 200 with the new value |
//! | `/kv/get?key=K` | 200 with the value, or 404 `none` |
//! | `/kv/set?key=K&value=V` | `set(K, V)`; 200 `ok` |
//! | `/kv/set-big?key=K&n=N` | `set(K, N bytes)`; 200 `ok` |
//! | `/kv/getset?key=K` | `get(K)`, then `set(K, value + 1)`: a get and a set, not atomic; 200 with the new value |
//! | `/kv/delete?key=K` | `delete(K)`; 200 `ok` |
//! | `/kv/exists?key=K` | 200 `true` or `false` |
//! | `/kv/list` | 200, every key (all pages), one per line |
//! | `/kv/get-many?keys=a,b` | 200, `key=value` or `key!` (unset) per line |
//! | `/kv/set-many?pairs=a:1,b:2` | `set-many`; 200 `ok` |
//! | `/kv/delete-many?keys=a,b` | `delete-many`; 200 `ok` |

#[path = "../../misbehave/src/http.rs"]
mod http;

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "hotswap:host/stateful-guest",
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::config::store as config;
use bindings::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use bindings::wasi::keyvalue::{atomics, batch, store};
use http::respond;
use misbehave_core::query_param;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        if !matches!(request.method(), Method::Get) {
            return respond(out, 404, "not found");
        }
        let param = |key: &str| query_param(query, key);
        match path {
            "/hello" => respond(out, 200, "hello"),
            "/config" => match config::get(&param("key").unwrap_or_default()) {
                Ok(Some(value)) => respond(out, 200, &value),
                Ok(None) => respond(out, 404, "none"),
                Err(e) => respond(out, 500, &format!("config error {e:?}")),
            },
            "/config-all" => match config::get_all() {
                Ok(mut all) => {
                    all.sort();
                    let lines: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                    respond(out, 200, &lines)
                }
                Err(e) => respond(out, 500, &format!("config error {e:?}")),
            },
            kv if kv.starts_with("/kv/") => {
                let bucket = param("bucket").unwrap_or_default();
                let (status, body) = match store::open(&bucket) {
                    Ok(bucket) => keyvalue(&bucket, &kv[4..], &param),
                    Err(e) => (500, describe(e)),
                };
                respond(out, status, &body)
            }
            _ => respond(out, 404, "not found"),
        }
    }
}

/// Runs one `/kv/…` route on `bucket`.
fn keyvalue(
    bucket: &store::Bucket,
    route: &str,
    param: &dyn Fn(&str) -> Option<String>,
) -> (u16, String) {
    let key = param("key").unwrap_or_default();
    let list = |name: &str| -> Vec<String> {
        param(name)
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let result: Result<(u16, String), store::Error> = (|| match route {
        "incr" => {
            let by = param("by").and_then(|n| n.parse().ok()).unwrap_or(1);
            Ok((200, atomics::increment(bucket, &key, by)?.to_string()))
        }
        "get" => Ok(match bucket.get(&key)? {
            Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
            None => (404, "none".into()),
        }),
        "set" => {
            bucket.set(&key, param("value").unwrap_or_default().as_bytes())?;
            Ok((200, "ok".into()))
        }
        "set-big" => {
            let n = param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            bucket.set(&key, &vec![b'x'; n])?;
            Ok((200, "ok".into()))
        }
        "getset" => {
            let now: u64 = bucket
                .get(&key)?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            bucket.set(&key, (now + 1).to_string().as_bytes())?;
            Ok((200, (now + 1).to_string()))
        }
        "delete" => {
            bucket.delete(&key)?;
            Ok((200, "ok".into()))
        }
        "exists" => Ok((200, bucket.exists(&key)?.to_string())),
        "list" => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok((200, keys.iter().map(|k| format!("{k}\n")).collect()))
        }
        "get-many" => {
            let keys = list("keys");
            let values = batch::get_many(bucket, &keys)?;
            let lines = keys
                .iter()
                .zip(values)
                .map(|(key, value)| match value {
                    Some((_, v)) => format!("{key}={}\n", String::from_utf8_lossy(&v)),
                    None => format!("{key}!\n"),
                })
                .collect();
            Ok((200, lines))
        }
        "set-many" => {
            let pairs: Vec<(String, Vec<u8>)> = list("pairs")
                .iter()
                .filter_map(|p| p.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            batch::set_many(bucket, &pairs)?;
            Ok((200, "ok".into()))
        }
        "delete-many" => {
            batch::delete_many(bucket, &list("keys"))?;
            Ok((200, "ok".into()))
        }
        _ => Ok((404, "not found".into())),
    })();
    result.unwrap_or_else(|e| (500, describe(e)))
}

/// `error no-such-store`, `error access-denied` or `error other: <text>`.
fn describe(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "error no-such-store".into(),
        store::Error::AccessDenied => "error access-denied".into(),
        store::Error::Other(text) => format!("error other: {text}"),
    }
}

bindings::export!(Component with_types_in bindings);
