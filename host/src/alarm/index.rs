//! The host's durable index of pending alarms (`<data>/alarms.sqlite3`).
//!
//! The object's own `_do_alarm` row is the truth; this index only tells the scheduler which
//! objects to wake and when. It is kept a superset of the truth: an alarm time is written here
//! (and synced) *before* the event that set it commits, and removed only *after* the event
//! that cleared it commits. A crash in between leaves an extra entry, which the object
//! resolves when it wakes (it re-reads `_do_alarm` and fires, reschedules or drops the entry).

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
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection inconsistent (SQLite
        // statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that object `id` should wake at `at` (after `retry` failed attempts).
    pub fn upsert(
        &self,
        id: &ObjectId,
        name: Option<&str>,
        at: i64,
        retry: u32,
    ) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO alarms (id, name, at, retry) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET name = coalesce(?2, name), at = ?3, retry = ?4",
            rusqlite::params![id.to_hex(), name, at, retry],
        )?;
        self.changed.notify_one();
        Ok(())
    }

    pub fn remove(&self, id: &ObjectId) -> Result<(), StorageError> {
        self.conn()
            .execute("DELETE FROM alarms WHERE id = ?1", [id.to_hex()])?;
        Ok(())
    }

    /// Removes an entry by its hex ID (for entries whose ID no longer parses).
    pub fn remove_hex(&self, id: &str) -> Result<(), StorageError> {
        self.conn()
            .execute("DELETE FROM alarms WHERE id = ?1", [id])?;
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
}
