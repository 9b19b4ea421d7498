//! The host's durable index of pending alarms (`<data>/alarms.sqlite3`).
//!
//! The object's own `_do_alarm` row is the truth; this index only tells the scheduler which
//! objects to wake and when. It never lets an object wake later than its alarm: before an
//! event that sets an alarm commits, the entry is moved *earlier* if the new time is earlier
//! (never later: the commit may not happen, or not survive a crash); and an entry is moved
//! later or removed only once the object's database holds the reason durably (after the sync
//! of the commit that cleared or postponed the alarm). So a crash or a rolled-back event can
//! leave an entry that is early or stale, never one that is late or missing; the object
//! resolves it when it wakes (it re-reads `_do_alarm` and fires, reschedules or drops the
//! entry). "Durable" follows `--sync`: with `off` nothing is synced, and an OS crash can
//! leave the index and the databases disagreeing either way.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Notify;

use crate::id::ObjectId;
use crate::storage::StorageError;

/// An index entry that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAlarm {
    pub id: String,
    pub name: Option<String>,
    /// When the next attempt is due (Unix ms).
    pub at: i64,
    /// Failed attempts so far.
    pub retry: u32,
}

/// The index. Shared by all event threads and the scheduler; each call is short.
pub struct AlarmIndex {
    conn: Mutex<Connection>,
    /// Woken whenever an entry is added or changed, so the scheduler can re-plan.
    pub(crate) changed: Notify,
    /// Writes that failed so far (a full disk, say): see [`AlarmIndex::failed_writes`].
    failed_writes: std::sync::atomic::AtomicU64,
}

impl AlarmIndex {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.to_path_buf(),
            source,
        };
        crate::storage::configure_sqlite();
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS alarms (
                 id TEXT PRIMARY KEY,
                 name TEXT,
                 at INTEGER NOT NULL,
                 retry INTEGER NOT NULL DEFAULT 0
             ) STRICT;
             CREATE INDEX IF NOT EXISTS alarms_at ON alarms (at);",
        )
        .map_err(open_err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            changed: Notify::new(),
            failed_writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection inconsistent (SQLite
        // statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one writing statement; returns the rows it changed, counting a failure.
    fn write(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StorageError> {
        self.conn().execute(sql, params).map_err(|e| {
            self.failed_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            e.into()
        })
    }

    /// A write that fails, as one would on a full disk.
    #[cfg(test)]
    pub(crate) fn fail_a_write(&self) {
        assert!(
            self.write("INSERT INTO no_such_table VALUES (1)", [])
                .is_err()
        );
    }

    /// How many writes to the index have failed since it was opened: the scheduler tells by
    /// it an entry left as it was because no write could take (a full disk) from one left so
    /// on purpose.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that object `id` should wake at `at` (after `retry` failed attempts).
    pub fn upsert(
        &self,
        id: &ObjectId,
        name: Option<&str>,
        at: i64,
        retry: u32,
    ) -> Result<(), StorageError> {
        self.write(
            "INSERT INTO alarms (id, name, at, retry) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET name = coalesce(?2, name), at = ?3, retry = ?4
             WHERE at IS NOT ?3 OR retry IS NOT ?4 OR (?2 IS NOT NULL AND name IS NOT ?2)",
            rusqlite::params![id.to_hex(), name, at, retry],
        )?;
        self.changed.notify_one();
        Ok(())
    }

    /// Before a commit that sets object `id`'s alarm to `at`: adds the entry, or moves it
    /// earlier (with its retry count reset) if `at` is earlier. Never moves it later.
    pub fn upsert_earliest(
        &self,
        id: &ObjectId,
        name: Option<&str>,
        at: i64,
    ) -> Result<(), StorageError> {
        self.write(
            "INSERT INTO alarms (id, name, at, retry) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT (id) DO UPDATE SET name = coalesce(?2, name),
                 retry = CASE WHEN ?3 < at THEN 0 ELSE retry END, at = min(at, ?3)
             WHERE ?3 < at OR (?2 IS NOT NULL AND name IS NOT ?2)",
            rusqlite::params![id.to_hex(), name, at],
        )?;
        self.changed.notify_one();
        Ok(())
    }

    /// Moves object `id`'s entry to `new_at` if it is still exactly (`at`, `retry`), in one
    /// statement, so that it never undoes a change the object made meanwhile. Returns whether
    /// it moved.
    pub fn postpone_if_unchanged(
        &self,
        id: &ObjectId,
        at: i64,
        retry: u32,
        new_at: i64,
    ) -> Result<bool, StorageError> {
        let changed = self.write(
            "UPDATE alarms SET at = ?4 WHERE id = ?1 AND at = ?2 AND retry = ?3",
            rusqlite::params![id.to_hex(), at, retry, new_at],
        )?;
        Ok(changed > 0)
    }

    pub fn remove(&self, id: &ObjectId) -> Result<(), StorageError> {
        self.write("DELETE FROM alarms WHERE id = ?1", [id.to_hex()])?;
        Ok(())
    }

    /// Removes an entry by its hex ID (for entries whose ID no longer parses).
    pub fn remove_hex(&self, id: &str) -> Result<(), StorageError> {
        self.write("DELETE FROM alarms WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The entry of object `id`: (next attempt time, failed attempts).
    pub fn get(&self, id: &ObjectId) -> Result<Option<(i64, u32)>, StorageError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT at, retry FROM alarms WHERE id = ?1",
                [id.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Up to `limit` entries due at `now`, oldest first.
    pub fn due(&self, now: i64, limit: usize) -> Result<Vec<DueAlarm>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, at, retry FROM alarms WHERE at <= ?1 ORDER BY at LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![now, limit as i64], |r| {
            Ok(DueAlarm {
                id: r.get(0)?,
                name: r.get(1)?,
                at: r.get(2)?,
                retry: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The earliest entry time after `now`, if any.
    pub fn next_after(&self, now: i64) -> Result<Option<i64>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT min(at) FROM alarms WHERE at > ?1", [now], |r| {
                r.get(0)
            })?)
    }

    /// Number of entries.
    #[cfg(test)]
    fn len(&self) -> Result<usize, StorageError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM alarms", [], |r| r.get(0))?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdMinter;

    #[test]
    fn due_and_next() {
        let dir = tempfile::tempdir().unwrap();
        let index = AlarmIndex::open(&dir.path().join("alarms.sqlite3")).unwrap();
        let m = IdMinter::with_key([1; 32]);
        let (a, b) = (
            m.from_name("c", "a").unwrap(),
            m.from_name("c", "b").unwrap(),
        );
        index.upsert(&a, Some("a"), 100, 0).unwrap();
        index.upsert(&b, None, 300, 0).unwrap();
        assert_eq!(index.due(150, 10).unwrap().len(), 1);
        assert_eq!(index.next_after(150).unwrap(), Some(300));
        index.upsert(&a, None, 200, 2).unwrap();
        assert_eq!(index.get(&a).unwrap(), Some((200, 2)));
        let due = index.due(250, 10).unwrap();
        assert_eq!(
            due[0].name.as_deref(),
            Some("a"),
            "a later upsert without a name keeps it"
        );
        index.remove(&a).unwrap();
        assert_eq!(index.len().unwrap(), 1);
    }

    /// Before a commit, an entry only moves earlier: a later time waits for the commit to be
    /// durable (the object re-indexes itself when it wakes early).
    #[test]
    fn upsert_earliest_never_postpones() {
        let dir = tempfile::tempdir().unwrap();
        let index = AlarmIndex::open(&dir.path().join("alarms.sqlite3")).unwrap();
        let a = IdMinter::with_key([1; 32]).from_name("c", "a").unwrap();
        index.upsert_earliest(&a, Some("a"), 500).unwrap();
        assert_eq!(index.get(&a).unwrap(), Some((500, 0)));
        index.upsert_earliest(&a, None, 900).unwrap();
        assert_eq!(index.get(&a).unwrap(), Some((500, 0)), "not moved later");
        index.upsert(&a, None, 600, 3).unwrap();
        index.upsert_earliest(&a, None, 700).unwrap();
        assert_eq!(
            index.get(&a).unwrap(),
            Some((600, 3)),
            "a pending retry is kept"
        );
        index.upsert_earliest(&a, None, 100).unwrap();
        assert_eq!(
            index.get(&a).unwrap(),
            Some((100, 0)),
            "an earlier alarm is a new one"
        );
        assert_eq!(index.due(100, 10).unwrap()[0].name.as_deref(), Some("a"));
    }
}
