//! The `sqlite` backend: one file per host process (rows carry the namespace, so apps that use
//! the same file one after another stay apart). The host holds the file's lock for as long as it
//! runs (`locking_mode = EXCLUSIVE`): no lock system calls per statement, and a second host
//! opening the same file is told so at once instead of waiting on a lock. State shared by
//! several hosts belongs in Redis.
//!
//! The file is in WAL mode with `synchronous = NORMAL`: a committed write is in the log before
//! the call returns, so a killed or crashed host loses nothing it acknowledged; a power cut may
//! lose the last few commits (`FULL` would fsync every write, a millisecond or more each). Calls
//! run on the guest's task: each is a few microseconds on an index, like the host calls a guest
//! makes anyway. A set of a key that exists is one statement; adding keys is a transaction that
//! checks the bucket's size (kept by triggers) first.

use super::{BackendError, KeyPage, PAGE, add_decimal, bucket_full};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (ns, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_sizes (
    ns TEXT NOT NULL, bucket TEXT NOT NULL, keys INTEGER NOT NULL,
    PRIMARY KEY (ns, bucket)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS kv_added AFTER INSERT ON kv BEGIN
    INSERT INTO kv_sizes VALUES (NEW.ns, NEW.bucket, 1)
        ON CONFLICT (ns, bucket) DO UPDATE SET keys = keys + 1;
END;
CREATE TRIGGER IF NOT EXISTS kv_removed AFTER DELETE ON kv BEGIN
    UPDATE kv_sizes SET keys = keys - 1 WHERE ns = OLD.ns AND bucket = OLD.bucket;
END;
";

/// The file and, once opened, the connection.
pub(super) struct Sqlite {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

fn unavailable(path: &std::path::Path, err: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("sqlite `{}`: {err}", path.display()))
}

impl Sqlite {
    pub(super) fn new(path: PathBuf) -> Self {
        Sqlite {
            path,
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<Connection, BackendError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(&self.path, e))?;
        }
        let conn = Connection::open(&self.path).map_err(|e| unavailable(&self.path, e))?;
        // Exclusive first, so that the WAL index lives in this process's memory, then take the
        // lock at once (no waiting: another host holding it is an error now, not a stall).
        conn.busy_timeout(Duration::ZERO)
            .and_then(|()| conn.pragma_update(None, "locking_mode", "EXCLUSIVE"))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    unavailable(
                        &self.path,
                        "the file is in use by another hotswap process (a SQLite store is one \
                         host's; share state between hosts with `--keyvalue redis://…`)",
                    )
                }
                _ => unavailable(&self.path, e),
            })?;
        tracing::info!(path = %self.path.display(), "key-value store opened");
        Ok(conn)
    }

    /// Runs `f` on the connection, opening it first if needed. A failed call drops the
    /// connection, so the next call starts afresh (a file that became writable again, say).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => guard.insert(self.open()?),
        };
        match f(conn) {
            Ok(result) => result,
            Err(err) => {
                *guard = None;
                Err(unavailable(&self.path, err))
            }
        }
    }

    pub(super) fn get_many(
        &self,
        ns: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        self.with(|conn| {
            let mut get = conn.prepare_cached(
                "SELECT value FROM kv WHERE ns = ?1 AND bucket = ?2 AND key = ?3",
            )?;
            let values = keys
                .iter()
                .map(|key| {
                    get.query_row(params![ns, bucket, key], |row| row.get(0))
                        .optional()
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(values))
        })
    }

    pub(super) fn set_many(
        &self,
        ns: &str,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        max_keys: u64,
    ) -> Result<(), BackendError> {
        self.with(|conn| {
            // The common case, one key that exists: a single statement, its own transaction.
            if let [(key, value)] = pairs
                && conn
                    .prepare_cached(UPDATE)?
                    .execute(params![ns, bucket, key, value])?
                    == 1
            {
                return Ok(Ok(()));
            }
            let tx = Tx::begin(conn)?;
            {
                let mut update = conn.prepare_cached(UPDATE)?;
                let mut insert = conn.prepare_cached("INSERT INTO kv VALUES (?1, ?2, ?3, ?4)")?;
                for (key, value) in pairs {
                    if update.execute(params![ns, bucket, key, value])? == 0 {
                        if size(conn, ns, bucket)? >= max_keys {
                            // Dropping the transaction rolls back the pairs already written.
                            return Ok(Err(bucket_full(bucket, max_keys)));
                        }
                        insert.execute(params![ns, bucket, key, value])?;
                    }
                }
            }
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    pub(super) fn delete_many(
        &self,
        ns: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<(), BackendError> {
        self.with(|conn| {
            let tx = Tx::begin(conn)?;
            {
                let mut delete = conn
                    .prepare_cached("DELETE FROM kv WHERE ns = ?1 AND bucket = ?2 AND key = ?3")?;
                for key in keys {
                    delete.execute(params![ns, bucket, key])?;
                }
            }
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    pub(super) fn list_keys(
        &self,
        ns: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<KeyPage, BackendError> {
        self.with(|conn| {
            let mut list = conn.prepare_cached(
                "SELECT key FROM kv WHERE ns = ?1 AND bucket = ?2 ORDER BY key LIMIT ?3 OFFSET ?4",
            )?;
            // One more than a page tells whether another page follows.
            let offset = i64::try_from(cursor).unwrap_or(i64::MAX);
            let mut keys = list
                .query_map(params![ns, bucket, PAGE as i64 + 1, offset], |row| {
                    row.get(0)
                })?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let more = keys.len() > PAGE;
            keys.truncate(PAGE);
            let next = cursor.saturating_add(keys.len() as u64);
            Ok(Ok((keys, more.then_some(next))))
        })
    }

    pub(super) fn increment(
        &self,
        ns: &str,
        bucket: &str,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, BackendError> {
        self.with(|conn| {
            let tx = Tx::begin(conn)?;
            let current: Option<Vec<u8>> = conn
                .prepare_cached(GET)?
                .query_row(params![ns, bucket, key], |row| row.get(0))
                .optional()?;
            if current.is_none() && size(conn, ns, bucket)? >= max_keys {
                return Ok(Err(bucket_full(bucket, max_keys)));
            }
            let sum = match add_decimal(key, current.as_deref(), delta) {
                Ok(sum) => sum,
                Err(refused) => return Ok(Err(refused)),
            };
            conn.prepare_cached(
                "INSERT INTO kv VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (ns, bucket, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![ns, bucket, key, sum.to_string().into_bytes()])?;
            tx.commit()?;
            Ok(Ok(sum))
        })
    }
}

const GET: &str = "SELECT value FROM kv WHERE ns = ?1 AND bucket = ?2 AND key = ?3";
const UPDATE: &str = "UPDATE kv SET value = ?4 WHERE ns = ?1 AND bucket = ?2 AND key = ?3";

/// A write transaction from cached statements (`rusqlite::Transaction` parses `BEGIN` and
/// `COMMIT` anew each time: a seventh of a get-and-set request's CPU). Rolled back on drop
/// unless committed.
struct Tx<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> Tx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Tx { conn, done: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The number of keys in a bucket.
fn size(conn: &Connection, ns: &str, bucket: &str) -> rusqlite::Result<u64> {
    let keys: Option<i64> = conn
        .prepare_cached("SELECT keys FROM kv_sizes WHERE ns = ?1 AND bucket = ?2")?
        .query_row(params![ns, bucket], |row| row.get(0))
        .optional()?;
    Ok(keys.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_on_the_same_file_is_refused_at_once() {
        let dir = crate::test_dir("kv-lock");
        let path = dir.join("kv.sqlite3");
        let first = Sqlite::new(path.clone());
        first
            .set_many("app", "b", &[("a".into(), b"1".to_vec())], 10)
            .unwrap();
        let second = Sqlite::new(path.clone());
        let started = std::time::Instant::now();
        match second.get_many("app", "b", &["a".into()]) {
            Err(BackendError::Unavailable(reason)) => {
                assert!(
                    reason.contains("in use by another hotswap process"),
                    "{reason}"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(first);
        assert_eq!(
            second.get_many("app", "b", &["a".into()]).unwrap(),
            vec![Some(b"1".to_vec())]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn values_survive_reopening_and_limits_hold() {
        let dir = crate::test_dir("kv-test");
        let path = dir.join("kv.sqlite3");
        let db = Sqlite::new(path.clone());
        db.set_many("app", "b", &[("a".into(), b"1".to_vec())], 2)
            .unwrap();
        assert_eq!(db.increment("app", "b", "n", 5, 2).unwrap(), 5);
        // The bucket holds 2 keys now: a third is refused, an existing one still updates.
        assert!(matches!(
            db.set_many("app", "b", &[("c".into(), vec![])], 2),
            Err(BackendError::Refused(_))
        ));
        db.set_many("app", "b", &[("a".into(), b"2".to_vec())], 2)
            .unwrap();
        // Another namespace is another set of buckets.
        assert_eq!(
            db.get_many("other", "b", &["a".into()]).unwrap(),
            vec![None]
        );
        drop(db);

        let db = Sqlite::new(path.clone());
        assert_eq!(
            db.get_many("app", "b", &["a".into(), "n".into(), "zz".into()])
                .unwrap(),
            vec![Some(b"2".to_vec()), Some(b"5".to_vec()), None]
        );
        db.delete_many("app", "b", &["a".into()]).unwrap();
        db.set_many("app", "b", &[("c".into(), vec![])], 2).unwrap();
        assert_eq!(
            db.list_keys("app", "b", 0).unwrap(),
            (vec!["c".into(), "n".into()], None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
