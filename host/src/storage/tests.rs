//! Unit tests for the object database: typed values, transactions, limits and hardening.

use super::*;
use std::time::Instant;

fn open(dir: &tempfile::TempDir, max_bytes: u64) -> SqlStore {
    let config = StorageConfig {
        max_database_bytes: max_bytes,
        ..StorageConfig::default()
    };
    SqlStore::open(&dir.path().join("o/db.sqlite3"), &config).unwrap()
}

fn exec(store: &mut SqlStore, sql: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
    store.exec(sql, params)
}

#[test]
fn values_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (v ANY)", &[]).unwrap();
    let values = vec![
        Value::Null,
        Value::Integer(i64::MAX),
        Value::Integer(i64::MIN),
        Value::Real(-0.5),
        Value::Real(f64::INFINITY),
        Value::Text("ünïcode ✓".into()),
        Value::Text(String::new()),
        Value::Blob(vec![0, 255, 1]),
        Value::Blob(vec![]),
    ];
    for v in &values {
        exec(&mut s, "INSERT INTO t VALUES (?)", std::slice::from_ref(v)).unwrap();
    }
    let out = exec(&mut s, "SELECT v FROM t ORDER BY rowid", &[]).unwrap();
    let got: Vec<Value> = out.rows.into_iter().map(|mut r| r.remove(0)).collect();
    assert_eq!(format!("{got:?}"), format!("{values:?}"));
    assert_eq!(out.columns, vec!["v".to_string()]);
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
}

#[test]
fn counts_rows_and_runs_several_statements() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    let out = exec(
        &mut s,
        "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (?), (?); INSERT INTO t VALUES (?)",
        &[Value::Integer(1), Value::Integer(2), Value::Integer(3)],
    )
    .unwrap();
    assert_eq!(out.rows_written, 3);
    let out = exec(&mut s, "SELECT a FROM t", &[]).unwrap();
    assert_eq!(out.rows.len(), 3);
    assert!(out.rows_read >= 3);
    assert_eq!(out.rows_written, 0);
    let err = exec(&mut s, "SELECT ?", &[]).unwrap_err();
    assert!(matches!(err, SqlError::InvalidArgument(_)), "{err:?}");
    let err = exec(&mut s, "SELECT 1", &[Value::Null]).unwrap_err();
    assert!(matches!(err, SqlError::InvalidArgument(_)), "{err:?}");
}

#[test]
fn typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    assert!(matches!(
        exec(&mut s, "SELEC 1", &[]),
        Err(SqlError::Syntax(_))
    ));
    assert!(matches!(
        exec(&mut s, "SELECT * FROM missing", &[]),
        Err(SqlError::Syntax(_))
    ));
    exec(&mut s, "CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL)", &[]).unwrap();
    exec(&mut s, "INSERT INTO u VALUES ('a')", &[]).unwrap();
    assert!(matches!(
        exec(&mut s, "INSERT INTO u VALUES ('a')", &[]),
        Err(SqlError::Constraint(_))
    ));
    assert!(matches!(
        exec(&mut s, "INSERT INTO u VALUES (NULL)", &[]),
        Err(SqlError::Constraint(_))
    ));
    let long = format!("SELECT '{}'", "x".repeat(200_000));
    assert!(matches!(exec(&mut s, &long, &[]), Err(SqlError::TooBig(_))));
}

#[test]
fn hostile_statements_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    let outside = dir.path().join("stolen.sqlite3");
    for sql in [
        format!("ATTACH DATABASE '{}' AS x", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
        "VACUUM".to_string(),
        "SELECT load_extension('/tmp/x.so')".to_string(),
        "INSERT INTO _do_alarm (id, at) VALUES (0, 1)".to_string(),
        "SELECT * FROM _do_meta".to_string(),
        "DROP TABLE _do_alarm".to_string(),
        "CREATE TABLE _DO_mine (x)".to_string(),
        "PRAGMA journal_mode = DELETE".to_string(),
        "PRAGMA synchronous = OFF".to_string(),
        "PRAGMA writable_schema = ON".to_string(),
        "BEGIN".to_string(),
        "COMMIT".to_string(),
        "SAVEPOINT a".to_string(),
        "CREATE TEMP TABLE t (x)".to_string(),
        "DETACH DATABASE main".to_string(),
    ] {
        let err = exec(&mut s, &sql, &[]).unwrap_err();
        assert!(matches!(err, SqlError::AccessDenied(_)), "{sql}: {err:?}");
    }
    assert!(!outside.exists());
    // Harmless introspection stays available.
    exec(&mut s, "CREATE TABLE t (x)", &[]).unwrap();
    exec(&mut s, "PRAGMA table_info(t)", &[]).unwrap();
    exec(&mut s, "SELECT name FROM sqlite_master", &[]).unwrap();
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
}

/// What the authorizer cannot see: a rename's new name, a foreign key's target. Either would tie
/// a guest table to the host's (a foreign key into `_do_meta` made the host's own writes fail
/// with "foreign key mismatch"); the statement is undone and denied instead.
#[test]
fn schema_changes_cannot_reach_reserved_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    exec(&mut s, "PRAGMA foreign_keys = ON", &[]).unwrap();
    exec(&mut s, "CREATE TABLE t (x)", &[]).unwrap();
    for sql in [
        "ALTER TABLE t RENAME TO _do_x",
        "/* c */ alter table t rename to \"_DO_x\"",
        "CREATE TABLE c (v REFERENCES _do_meta(value))",
        "CREATE TABLE c (v INTEGER, FOREIGN KEY (v) REFERENCES _Do_alarm (id))",
        "ALTER TABLE t ADD COLUMN m REFERENCES _do_meta(key)",
        "CREATE TABLE c (v REFERENCES _do_later(x))",
    ] {
        // The second time the statement comes from the cache, unauthorized: still checked.
        for _ in 0..2 {
            let err = exec(&mut s, sql, &[]).unwrap_err();
            assert!(matches!(err, SqlError::AccessDenied(_)), "{sql}: {err:?}");
        }
    }
    // In a batch, the statements before the denied one stand. SQLite skips empty statements
    // (`;;`), whose text then starts with `;`.
    for sql in [
        "CREATE TABLE a (x); ALTER TABLE a RENAME TO _do_a",
        "; ;ALTER TABLE a RENAME TO _do_a",
        "SELECT 1;;CREATE TABLE c (v REFERENCES _do_meta(value))",
        // An FTS5 table renamed to `_do` renames its own tables to `_do_data`, `_do_idx`...
        "CREATE VIRTUAL TABLE f USING fts5(x); ALTER TABLE f RENAME TO _do",
    ] {
        let err = exec(&mut s, sql, &[]).unwrap_err();
        assert!(matches!(err, SqlError::AccessDenied(_)), "{sql}: {err:?}");
    }
    // The FTS5 table kept its name (and its tables theirs); it may go.
    exec(&mut s, "DROP TABLE f", &[]).unwrap();
    let guest_tables = |s: &mut SqlStore| {
        let out = exec(
            s,
            "SELECT name FROM sqlite_master \
             WHERE type = 'table' AND name NOT LIKE '\\_do\\_%' ESCAPE '\\' ORDER BY name",
            &[],
        )
        .unwrap();
        format!("{:?}", out.rows)
    };
    assert_eq!(
        guest_tables(&mut s),
        r#"[[Value::Text("a")], [Value::Text("t")]]"#
    );
    let columns = exec(&mut s, "PRAGMA table_info(t)", &[]).unwrap();
    assert_eq!(columns.rows.len(), 1);
    // Ordinary schema changes, foreign keys between guest tables included, still work.
    for sql in [
        "CREATE TABLE p (id INTEGER PRIMARY KEY)",
        "CREATE TABLE ch (p REFERENCES p(id))",
        "ALTER TABLE t RENAME TO t2",
        "ALTER TABLE t2 ADD COLUMN y REFERENCES p(id)",
        "CREATE TABLE IF NOT EXISTS t2 (x)",
        "CREATE TABLE IF NOT EXISTS t2 (x)",
        "CREATE INDEX i ON t2 (x)",
    ] {
        exec(&mut s, sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    exec(
        &mut s,
        "INSERT INTO p VALUES (1); INSERT INTO ch VALUES (1)",
        &[],
    )
    .unwrap();
    // The host's own writes to its tables are unaffected, and the event commits.
    s.set_meta("k", "v").unwrap();
    s.set_alarm(Some(5)).unwrap();
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
    assert_eq!(s.meta("k").unwrap().as_deref(), Some("v"));
    s.begin_event(None).unwrap();
    assert_eq!(
        guest_tables(&mut s),
        r#"[[Value::Text("a")], [Value::Text("ch")], [Value::Text("p")], [Value::Text("t2")]]"#
    );
}

/// Found by review: with a foreign key from a guest table into `_do_alarm` with `ON DELETE
/// CASCADE` and a trigger on that table, the host's own `DELETE FROM _do_alarm` ran the
/// guest's trigger with the authorizer off, which could rewrite the object's name.
#[test]
fn host_writes_cannot_cascade_into_guest_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    s.set_meta(NAME_KEY, "mine").unwrap();
    s.set_alarm(Some(5)).unwrap();
    exec(
        &mut s,
        "PRAGMA foreign_keys = ON; CREATE TABLE c (a INTEGER); INSERT INTO c VALUES (0)",
        &[],
    )
    .unwrap();
    for sql in [
        ";ALTER TABLE c ADD COLUMN b INTEGER AS (a) REFERENCES _do_alarm(id) ON DELETE CASCADE",
        "CREATE TABLE d (b INTEGER REFERENCES _do_alarm(id) ON DELETE CASCADE)",
    ] {
        let err = exec(&mut s, sql, &[]).unwrap_err();
        assert!(matches!(err, SqlError::AccessDenied(_)), "{sql}: {err:?}");
    }
    exec(
        &mut s,
        "CREATE TRIGGER tr AFTER DELETE ON c BEGIN \
         INSERT INTO _do_meta VALUES ('name', 'someone-else') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value; END",
        &[],
    )
    .unwrap();
    s.set_alarm(None).unwrap();
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
    assert_eq!(s.meta(NAME_KEY).unwrap().as_deref(), Some("mine"));
    assert_eq!(s.alarm().unwrap(), None);
}

/// Schema changes that are not `CREATE` or `ALTER` are checked after they ran: `ANALYZE` makes
/// `sqlite_stat1` and stays allowed (for the guest's tables only); `DROP` of a guest table too.
#[test]
fn other_schema_changes_stay_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    s.set_meta(NAME_KEY, "mine").unwrap();
    s.set_alarm(Some(5)).unwrap();
    exec(&mut s, "CREATE TABLE t (x); CREATE INDEX i ON t (x)", &[]).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (1), (2)", &[]).unwrap();
    for analyze in ["ANALYZE", "ANALYZE main", "ANALYZE _do_meta"] {
        exec(&mut s, analyze, &[]).unwrap();
        let stats = exec(&mut s, "SELECT tbl FROM sqlite_stat1", &[]).unwrap();
        assert_eq!(
            format!("{:?}", stats.rows),
            "[[Value::Text(\"t\")]]",
            "{analyze}"
        );
    }
    // Statistics are read into host memory with the schema: the guest may not write them, and
    // SQLite is built without STAT4 (whole index keys as samples; see .cargo/config.toml).
    for sql in [
        "INSERT INTO sqlite_stat1 VALUES ('t', 'i', '1 1')",
        "UPDATE sqlite_stat1 SET stat = '9 9'",
        "INSERT INTO SQLITE_STAT1 SELECT * FROM sqlite_stat1",
    ] {
        let err = exec(&mut s, sql, &[]).unwrap_err();
        assert!(matches!(err, SqlError::AccessDenied(_)), "{sql}: {err:?}");
    }
    let stat4 = exec(
        &mut s,
        "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat4'",
        &[],
    )
    .unwrap();
    assert_eq!(format!("{:?}", stat4.rows), "[[Value::Integer(0)]]");
    exec(&mut s, "DELETE FROM sqlite_stat1", &[]).unwrap();
    exec(&mut s, "DROP INDEX i; DROP TABLE t", &[]).unwrap();
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
}

/// A guest schema change stopped at the event's CPU limit ends the transaction under the
/// savepoint: the guest sees the interrupt, and nothing of the event is committed.
#[test]
fn schema_change_at_the_cpu_limit_rolls_the_event_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE kept (x)", &[]).unwrap();
    s.finish_event(true).unwrap();
    s.begin_event(Some(thread_cpu_time())).unwrap();
    exec(&mut s, "INSERT INTO kept VALUES (1)", &[]).unwrap();
    let err = exec(
        &mut s,
        "CREATE TABLE big AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
         SELECT i FROM n LIMIT 100000000",
        &[],
    )
    .unwrap_err();
    assert!(!matches!(err, SqlError::Syntax(_)), "{err:?}");
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::RolledBack);
    s.begin_event(None).unwrap();
    let rows = exec(&mut s, "SELECT count(*) FROM kept", &[]).unwrap();
    assert_eq!(format!("{:?}", rows.rows), "[[Value::Integer(0)]]");
    assert!(exec(&mut s, "SELECT * FROM big", &[]).is_err());
    s.finish_event(true).unwrap();
}

/// Found by review: a component's start code runs while it is instantiated, before the event's
/// transaction and CPU limit; its SQL is refused.
#[test]
fn guest_sql_outside_an_event_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    let err = exec(&mut s, "CREATE TABLE t (x)", &[]).unwrap_err();
    assert!(matches!(err, SqlError::Other(_)), "{err:?}");
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (x)", &[]).unwrap();
    s.finish_event(true).unwrap();
    assert!(exec(&mut s, "SELECT * FROM t", &[]).is_err());
}

/// A database from before guest statements were checked (user_version 1) is checked once when
/// opened: with a tie it is not opened (the object could reach the host's tables through it);
/// without one it is marked checked.
#[test]
fn databases_from_before_the_check_are_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o/db.sqlite3");
    let user_version = |path: &std::path::Path| -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    drop(open(&dir, 1 << 30));
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA user_version = 1; CREATE TABLE fine (x)")
        .unwrap();
    drop(raw);
    drop(open(&dir, 1 << 30));
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA user_version = 1; CREATE TABLE c (v REFERENCES _do_meta(value))")
        .unwrap();
    drop(raw);
    let config = StorageConfig::default();
    let err = SqlStore::open(&path, &config)
        .err()
        .expect("a tied database is not opened");
    assert!(matches!(err, StorageError::ReservedTies { .. }), "{err}");
    assert!(err.to_string().contains("_do_"), "{err}");
}

#[test]
fn rollback_discards_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.set_alarm(Some(5)).unwrap();
    s.finish_event(true).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (1)", &[]).unwrap();
    s.set_alarm(None).unwrap();
    assert_eq!(s.alarm().unwrap(), None);
    s.finish_event(false).unwrap();
    s.begin_event(None).unwrap();
    assert!(
        exec(&mut s, "SELECT * FROM t", &[])
            .unwrap()
            .rows
            .is_empty()
    );
    assert_eq!(s.alarm().unwrap(), Some(5));
}

#[test]
fn size_limit_dooms_the_event_and_keeps_earlier_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 64 * 1024);
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (b BLOB)", &[]).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (zeroblob(1000))", &[]).unwrap();
    s.finish_event(true).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (zeroblob(1000))", &[]).unwrap();
    let err = exec(&mut s, "INSERT INTO t VALUES (zeroblob(200000))", &[]).unwrap_err();
    assert!(matches!(err, SqlError::DatabaseFull(_)), "{err:?}");
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::RolledBackFull);
    s.begin_event(None).unwrap();
    let rows = exec(&mut s, "SELECT count(*) FROM t", &[]).unwrap().rows;
    assert!(matches!(rows.as_slice(), [row] if matches!(row.as_slice(), [Value::Integer(1)])));
    assert!(s.database_size().unwrap() <= 64 * 1024);
}

#[test]
fn runaway_queries_stop_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    let deadline = thread_cpu_time() + std::time::Duration::from_millis(50);
    s.begin_event(Some(deadline)).unwrap();
    let bomb =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let err = exec(&mut s, bomb, &[]).unwrap_err();
    assert!(
        matches!(err, SqlError::Other(ref m) if m.contains("CPU")),
        "{err:?}"
    );
}

#[test]
fn commits_await_a_sync_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir, 1 << 30);
    // A new database is the template, written without a commit: nothing awaits a sync until
    // the first write, whose sync also makes the new file and directories durable.
    assert!(!s.needs_sync());
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    assert!(s.needs_sync(), "a committed write awaits the group sync");
    s.sync().unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "SELECT * FROM t", &[]).unwrap();
    s.finish_event(true).unwrap();
    assert!(!s.needs_sync(), "a read-only event needs no sync");
    s.begin_event(None).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (1)", &[]).unwrap();
    s.finish_event(false).unwrap();
    assert!(!s.needs_sync(), "a rolled-back event needs no sync");
}

#[test]
fn new_databases_come_from_the_template_and_their_first_sync_covers_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objects/ab/new.sqlite3");
    let mut s = SqlStore::open(&path, &StorageConfig::default()).unwrap();
    let template = create::template(dir.path()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), template);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "object data is private to the host's user"
    );
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    let mut job = s.take_sync().expect("a write awaits a sync");
    job.new_dirs.sort();
    let root = dir.path().to_path_buf();
    let objects = root.join("objects");
    let shard = objects.join("ab");
    assert_eq!(
        job.new_dirs,
        vec![root, objects, shard],
        "every new entry's directory"
    );
    job.run().unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "INSERT INTO t VALUES (1)", &[]).unwrap();
    s.finish_event(true).unwrap();
    let job = s.take_sync().unwrap();
    assert!(job.new_dirs.is_empty(), "later syncs are the WAL's alone");
    // A failed sync fails every later one of the store (after a failed fsync the next may
    // report success with the pages lost): the events waiting on it fail, and the object
    // starts over from the disk.
    drop(s);
    let other = dir.path().join("objects/ab/other.sqlite3");
    let mut s = SqlStore::open(&other, &StorageConfig::default()).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    let job = s.take_sync().unwrap();
    s.sync_failed(&job, &StorageError::Sync("EIO".into()));
    assert!(s.needs_sync());
    let err = s.take_sync().unwrap().run().unwrap_err();
    assert!(err.to_string().contains("an earlier sync failed"), "{err}");
    assert!(s.sync().is_err());
    assert!(s.make_durable().is_err());
}

#[test]
fn a_creation_cut_short_by_power_loss_is_set_aside_and_the_object_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let template = create::template(dir.path()).unwrap().to_vec();
    let page = 4096;
    let mut first_page_only = template.clone();
    first_page_only[page..].fill(0);
    let cases: [(&str, Vec<u8>); 4] = [
        ("zeros", vec![0; page]),
        ("first page only", first_page_only),
        ("cut short", template[..100].to_vec()),
        ("last page zero", {
            let mut t = template.clone();
            let n = t.len();
            t[n - page..].fill(0);
            t
        }),
    ];
    for (what, bytes) in cases {
        let path = dir
            .path()
            .join(format!("{}.sqlite3", what.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(create::sidecar(&path, "-wal"), b"torn wal").unwrap();
        let mut s = SqlStore::open(&path, &StorageConfig::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        s.begin_event(None).unwrap();
        exec(&mut s, "CREATE TABLE t (a); INSERT INTO t VALUES (1)", &[]).unwrap();
        assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed, "{what}");
        s.sync().unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(&what.replace(' ', "-")) && n.contains(".unfinished-"))
            .collect();
        assert_eq!(
            aside.len(),
            2,
            "{what}: the file and its WAL are set aside: {aside:?}"
        );
    }
}

#[test]
fn damage_that_is_not_an_unfinished_creation_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o/db.sqlite3");
    {
        let mut s = open(&dir, 1 << 30);
        s.begin_event(None).unwrap();
        exec(&mut s, "CREATE TABLE t (a); INSERT INTO t VALUES (1)", &[]).unwrap();
        s.finish_event(true).unwrap();
        s.sync().unwrap();
    }
    // Closing checkpointed the data into the file; now scribble over its header.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&path, &bytes).unwrap();
    let err = match SqlStore::open(&path, &StorageConfig::default()) {
        Ok(_) => panic!("a damaged database must not open"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("db.sqlite3"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is left as it was"
    );
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

/// Storage settings that keep `spares` spare databases.
fn with_spares(spares: usize) -> StorageConfig {
    StorageConfig {
        spare_databases: spares,
        ..StorageConfig::default()
    }
}

/// The ID of object `name` of class `c`, under a fixed test key.
fn object_id(name: &str) -> crate::id::ObjectId {
    crate::id::IdMinter::with_key([7; 32])
        .from_name("c", name)
        .unwrap()
}

fn wait_for_spares(dbs: &Databases) {
    wait_until_full("spares were not made", || dbs.spares_ready());
}

fn wait_for_reserve(dbs: &Databases) {
    wait_until_full("the reserve was not filled", || dbs.spares_in_reserve());
}

/// Waits up to 10 s until `counts` gives (as many as, how many are wanted).
fn wait_until_full(what: &str, counts: impl Fn() -> (usize, usize)) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (now, wanted) = counts();
        if now >= wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now} of {wanted}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn new_objects_take_a_spare_and_a_claimed_spare_left_behind_is_moved_into_place() {
    let data = tempfile::tempdir().unwrap();
    let config = with_spares(8);
    let id = object_id("room");
    let path = database_path(data.path(), &id);
    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    wait_for_spares(&dbs);
    let mut s = dbs.open(&id, None).unwrap();
    assert_eq!(dbs.spares_ready().0, 7);
    assert!(path.exists(), "the spare now is the object's directory");
    assert_eq!(
        dbs.first_syncs_pending(),
        1,
        "the thread's disk work waits for it"
    );
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a); INSERT INTO t VALUES (42)", &[]).unwrap();
    s.finish_event(true).unwrap();
    let job = s.take_sync().unwrap();
    assert!(
        job.new_dirs.is_empty(),
        "a spare's files and entries are already durable"
    );
    job.run().unwrap();
    assert_eq!(dbs.first_syncs_pending(), 1, "until the job is dropped");
    drop(job);
    assert_eq!(dbs.first_syncs_pending(), 0);
    drop(s);
    // The connection followed the renamed files; closing it checkpointed and removed the WAL
    // at its new place, as SQLite's own close would have.
    assert!(
        !create::sidecar(&path, "-wal").exists(),
        "the WAL of a closed moved database is gone"
    );
    // Opening it again finds it in place: the spare the attempt to move took is put back.
    let mut s = dbs.open(&id, None).unwrap();
    assert_eq!(dbs.spares_ready().0, 7, "an existing object takes no spare");
    s.begin_event(None).unwrap();
    let rows = exec(&mut s, "SELECT a FROM t", &[]).unwrap().rows;
    assert_eq!(format!("{rows:?}"), "[[Value::Integer(42)]]");
    s.finish_event(true).unwrap();
    drop(s);
    // One spare missing is less than a batch (a quarter): no refill yet. The next new object
    // makes it two, and the thread makes a batch up to the target.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(dbs.spares_ready().0, 7);
    let other = object_id("other room");
    drop(dbs.open(&other, Some("other room")).unwrap());
    assert_eq!(dbs.first_syncs_pending(), 0, "closed without a sync");
    wait_for_spares(&dbs);
    wait_for_reserve(&dbs);
    assert_eq!(dbs.spares_in_reserve(), (2, 2), "two new objects came");
    drop(dbs);
    // A power loss before the rename reached the disk: the directory is back in spare/.
    let spare_dir = data.path().join("spare");
    std::fs::rename(path.parent().unwrap(), spare_dir.join("left-behind")).unwrap();
    let unclaimed = spares_in(&spare_dir).len() - 1;
    assert_eq!(
        unclaimed,
        8 + 2,
        "the ready spares and the reserve are still there"
    );
    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    assert!(
        path.exists(),
        "the claimed spare went back to its object's place"
    );
    let mut s = dbs.open(&id, None).unwrap();
    s.begin_event(None).unwrap();
    let rows = exec(&mut s, "SELECT a FROM t", &[]).unwrap().rows;
    assert_eq!(format!("{rows:?}"), "[[Value::Integer(42)]]");
    s.finish_event(true).unwrap();
    drop(s);
    wait_for_spares(&dbs);
    wait_for_reserve(&dbs);
    let names = spares_in(&spare_dir);
    // The two made for the reserve (two new objects came) were never opened, and are taken
    // again; the ones that were open lost their WAL when closed, and are made anew.
    assert_eq!(dbs.spares_in_reserve(), (2, 2));
    assert_eq!(
        names.len(),
        8 + 2,
        "old unclaimed spares removed, new ones made: {names:?}"
    );
}

/// The names of the spares in `spare_dir` (not of `.making/`, where they are made).
fn spares_in(spare_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(spare_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != ".making")
        .collect()
}

/// The reserve: spares made on disk, not open, once new objects pause, as many as new objects
/// came (at most `spare_reserve`); a burst of new objects takes them after the open ones; the
/// reserve left at shutdown is taken again at the next start, except a spare that is not
/// exactly as made.
#[test]
fn the_spare_reserve_grows_with_new_objects_and_is_kept_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        spare_databases: 4,
        spare_reserve: 8,
        ..StorageConfig::default()
    };
    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    wait_for_spares(&dbs);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        dbs.spares_in_reserve(),
        (0, 0),
        "no new objects, no reserve"
    );

    let write_and_read = |dbs: &Databases, name: &str| {
        let mut s = dbs.open(&object_id(name), Some(name)).unwrap();
        s.begin_event(None).unwrap();
        exec(&mut s, "CREATE TABLE t (a); INSERT INTO t VALUES (7)", &[]).unwrap();
        let rows = exec(&mut s, "SELECT a FROM t", &[]).unwrap().rows;
        assert_eq!(format!("{rows:?}"), "[[Value::Integer(7)]]", "{name}");
        s.finish_event(true).unwrap();
        s.take_sync().unwrap().run().unwrap();
    };
    for i in 0..6 {
        write_and_read(&dbs, &format!("first-{i}"));
    }
    wait_for_spares(&dbs);
    wait_for_reserve(&dbs);
    // Each took a spare unless the thread had none ready yet (then it made its own files).
    let (reserve, goal) = dbs.spares_in_reserve();
    assert_eq!(reserve, goal);
    assert!((4..=6).contains(&goal), "{goal}");
    // A burst: more new objects than open spares.
    for i in 0..10 {
        write_and_read(&dbs, &format!("burst-{i}"));
    }
    wait_for_spares(&dbs);
    wait_for_reserve(&dbs);
    assert_eq!(dbs.spares_in_reserve(), (8, 8), "at most spare_reserve");
    let mut kept = dbs.reserve_dirs();
    drop(dbs);

    // One reserve spare changed as a write would change it: not taken.
    let changed = kept.pop().unwrap();
    let wal = create::sidecar(&changed.join("db.sqlite3"), "-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..4].copy_from_slice(&[0x37, 0x7f, 0x06, 0x82]);
    std::fs::write(&wal, bytes).unwrap();

    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    wait_for_spares(&dbs);
    wait_for_reserve(&dbs);
    assert!(!changed.exists(), "a spare not as made is removed");
    // The open spares were refilled from the adopted ones, and the reserve made up again.
    let now = dbs.reserve_dirs();
    let open_now = dbs.spares_ready().0;
    assert_eq!(open_now, 4);
    let adopted = kept.iter().filter(|d| d.exists()).count();
    assert_eq!(
        adopted,
        kept.len(),
        "every unchanged reserve spare is still there"
    );
    // (One more if an open spare kept its WAL: one whose database could not be opened.)
    assert!(
        now.len() >= 7,
        "the reserve is as big as the spares adopted"
    );
    for name in (0..6)
        .map(|i| format!("first-{i}"))
        .chain((0..10).map(|i| format!("burst-{i}")))
    {
        let mut s = dbs.open(&object_id(&name), None).unwrap();
        s.begin_event(None).unwrap();
        let rows = exec(&mut s, "SELECT a FROM t", &[]).unwrap().rows;
        assert_eq!(format!("{rows:?}"), "[[Value::Integer(7)]]", "{name}");
        s.finish_event(true).unwrap();
    }
    write_and_read(&dbs, "after restart");
}

/// A database opened again after its WAL was deleted (its object was evicted) syncs its file
/// with its first sync: the last close synced the file only if its checkpoint copied anything
/// (an object made on demand that never committed had its template written, never synced).
/// Later syncs are the WAL's alone.
#[test]
fn a_reopened_database_syncs_its_file_with_the_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let config = StorageConfig::default();
    drop(SqlStore::open(&path, &config).unwrap());
    assert!(!create::sidecar(&path, "-wal").exists());
    let mut s = SqlStore::open(&path, &config).unwrap();
    for (round, query) in ["CREATE TABLE t (a)", "INSERT INTO t VALUES (1)"]
        .iter()
        .enumerate()
    {
        s.begin_event(None).unwrap();
        exec(&mut s, query, &[]).unwrap();
        s.finish_event(true).unwrap();
        let job = s.take_sync().unwrap();
        assert_eq!(job.db.is_some(), round == 0, "round {round}");
        assert_eq!(job.new_dirs.is_empty(), round > 0, "round {round}");
        job.run().unwrap();
    }
}

/// At start, a spare whose database cannot be read may hold a new object's acknowledged data:
/// it is moved aside, never removed; one the host was still making (an empty file, or part of
/// the template) holds nothing and is removed.
#[test]
fn unreadable_spares_are_kept_aside_and_half_made_ones_removed() {
    let data = tempfile::tempdir().unwrap();
    let spare_dir = data.path().join("spare");
    let make = |name: &str, bytes: &[u8]| {
        let dir = spare_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db.sqlite3"), bytes).unwrap();
    };
    let template = create::template(data.path()).unwrap();
    make("empty", b"");
    make("first-page", &template[..4096]);
    make("damaged", &[0xA5; 8192]);
    make(".making/half-made", &template[..4096]);
    let dbs = Databases::open_dir(data.path(), &StorageConfig::default()).unwrap();
    drop(dbs);
    assert!(
        !spare_dir.join(".making/half-made").exists(),
        "spares being made are removed"
    );
    let left: Vec<_> = std::fs::read_dir(&spare_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| ["empty", "first-page", "damaged"].contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let kept = data.path().join("spare-unreadable/damaged/db.sqlite3");
    assert_eq!(std::fs::read(kept).unwrap(), vec![0xA5; 8192]);
    assert!(!data.path().join("spare-unreadable/empty").exists());
    assert!(!data.path().join("spare-unreadable/first-page").exists());
}

#[test]
fn without_spares_new_objects_are_created_on_demand() {
    let data = tempfile::tempdir().unwrap();
    let config = with_spares(0);
    let id = object_id("room");
    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    let mut s = dbs.open(&id, None).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    let mut job = s.take_sync().unwrap();
    job.new_dirs.sort();
    let object_dir = database_path(data.path(), &id)
        .parent()
        .unwrap()
        .to_path_buf();
    let shard = object_dir.parent().unwrap().to_path_buf();
    assert_eq!(
        job.new_dirs,
        vec![shard, object_dir],
        "the object's entry and its file's"
    );
    assert!(!data.path().join("spare").exists());
    let shards = std::fs::read_dir(data.path().join("objects")).unwrap();
    let shards = shards
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(shards, 256, "all shard directories are made up front");
}

#[test]
fn databases_of_the_first_layout_are_moved_into_object_directories() {
    let (old, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id = object_id("room");
    let hex = id.to_hex();
    let flat = data.path().join("objects").join(&hex[..2]);
    std::fs::create_dir_all(&flat).unwrap();
    // A live database of the first layout, its last commit still in the WAL (as after a
    // crash): copy the files while the connection is open.
    let mut s = SqlStore::open(&old.path().join("db.sqlite3"), &StorageConfig::default()).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a); INSERT INTO t VALUES (7)", &[]).unwrap();
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    for (from, to) in [
        ("db.sqlite3", ".sqlite3"),
        ("db.sqlite3-wal", ".sqlite3-wal"),
    ] {
        std::fs::copy(old.path().join(from), flat.join(format!("{hex}{to}"))).unwrap();
    }
    drop(s);
    let config = with_spares(0);
    let dbs = Databases::open_dir(data.path(), &config).unwrap();
    assert!(!flat.join(format!("{hex}.sqlite3")).exists());
    let mut s = dbs.open(&id, None).unwrap();
    s.begin_event(None).unwrap();
    let rows = exec(&mut s, "SELECT a FROM t", &[]).unwrap().rows;
    assert_eq!(format!("{rows:?}"), "[[Value::Integer(7)]]");
    s.finish_event(true).unwrap();
    drop(s);
    drop(dbs);
    // Done once: the marker stops a second scan.
    assert!(data.path().join("objects/.layout-2").exists());
    Databases::open_dir(data.path(), &config).unwrap();
}

#[test]
fn one_host_per_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let config = with_spares(1);
    let first = Databases::open_dir(data.path(), &config).unwrap();
    let err = Databases::open_dir(data.path(), &config)
        .err()
        .expect("a second opener is refused");
    let message = err.to_string();
    assert!(
        message.contains("in use by another dohost")
            && message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // Closing (as a host does when it shuts down) lets the next one in.
    first.close();
    let id = object_id("late");
    assert!(
        matches!(first.open(&id, None), Err(StorageError::Closed)),
        "nothing opens after close (the lock is gone)"
    );
    let second = Databases::open_dir(data.path(), &config).unwrap();
    drop(second);
    drop(first);
}

/// The ID (and name) a claimed spare gets, read with a connection of its own.
fn stored_meta(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, value FROM _do_meta ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_new_objects_id_goes_in_with_its_first_commit_whatever_its_first_event_does() {
    let data = tempfile::tempdir().unwrap();
    let dbs = Databases::open_dir(data.path(), &with_spares(4)).unwrap();
    wait_for_spares(&dbs);
    let expect = |id: &crate::id::ObjectId, name: &str| {
        vec![
            ("id".to_string(), id.to_hex()),
            (NAME_KEY.to_string(), name.to_string()),
        ]
    };

    // Committed with the first event's own writes: one commit.
    let id = object_id("committed");
    let mut s = dbs.open(&id, Some("committed")).unwrap();
    assert_eq!(s.meta(NAME_KEY).unwrap().as_deref(), Some("committed"));
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    drop(s);
    assert_eq!(
        stored_meta(&database_path(data.path(), &id)),
        expect(&id, "committed")
    );

    // A first event that rolls back: the ID is committed on its own right after.
    let id = object_id("rolled back");
    let mut s = dbs.open(&id, Some("rolled back")).unwrap();
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE t (a)", &[]).unwrap();
    s.finish_event(false).unwrap();
    assert!(s.needs_sync(), "the ID's commit awaits the sync");
    s.sync().unwrap();
    drop(s);
    let path = database_path(data.path(), &id);
    assert_eq!(stored_meta(&path), expect(&id, "rolled back"));

    // No event at all (say, the instance could not be made): stored when the store closes.
    let id = object_id("never ran");
    drop(dbs.open(&id, Some("never ran")).unwrap());
    assert_eq!(
        stored_meta(&database_path(data.path(), &id)),
        expect(&id, "never ran")
    );
}

#[test]
fn a_warmed_up_spare_has_nothing_written_and_its_first_event_keeps_the_id() {
    let data = tempfile::tempdir().unwrap();
    let dbs = Databases::open_dir(data.path(), &with_spares(4)).unwrap();
    wait_for_spares(&dbs);
    // The warm-up's write was rolled back: every spare's WAL is still the zeros it was made of.
    let spare_dir = data.path().join("spare");
    for spare in spares_in(&spare_dir) {
        let wal = create::sidecar(&spare_dir.join(spare).join("db.sqlite3"), "-wal");
        let bytes = std::fs::read(&wal).unwrap();
        assert!(
            !bytes.is_empty() && bytes.iter().all(|b| *b == 0),
            "{wal:?}"
        );
    }
    let id = object_id("warm");
    let mut s = dbs.open(&id, Some("warm")).unwrap();
    s.begin_event(None).unwrap();
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = dbs.open(&id, None).unwrap();
    assert_eq!(s.meta(spares::ID_KEY).unwrap(), Some(id.to_hex()));
    assert_eq!(s.meta(NAME_KEY).unwrap().as_deref(), Some("warm"));
}

#[test]
fn a_guest_sending_the_hosts_own_statement_is_still_denied() {
    // The authorizer runs when a statement is prepared, and guest queries come from the
    // statement cache, as does the host's upsert into `_do_meta` (cached by the spare's
    // warm-up and by the host's write here). The same text sent by a guest, even padded, is
    // prepared and authorized as the guest's.
    let data = tempfile::tempdir().unwrap();
    let dbs = Databases::open_dir(data.path(), &with_spares(2)).unwrap();
    wait_for_spares(&dbs);
    let mut s = dbs.open(&object_id("victim"), Some("victim")).unwrap();
    s.begin_event(None).unwrap();
    s.set_meta(NAME_KEY, "renamed by the host").unwrap();
    for text in [
        META_UPSERT.to_string(),
        format!("  {META_UPSERT}\n"),
        format!("\u{3000}{META_UPSERT}\u{3000}"),
        format!("{META_UPSERT};"),
    ] {
        let err = exec(
            &mut s,
            &text,
            &[Value::Text("id".into()), Value::Text("00".into())],
        )
        .unwrap_err();
        assert!(matches!(err, SqlError::AccessDenied(_)), "{err:?}");
    }
    s.finish_event(true).unwrap();
    assert_eq!(
        s.meta(spares::ID_KEY).unwrap(),
        Some(object_id("victim").to_hex())
    );
}

#[test]
fn the_host_takes_no_statement_from_the_cache_but_through_host_statement() {
    // A `prepare_cached` outside `host_statement` could serve a guest the host's statement.
    let source = include_str!("mod.rs");
    let calls = source.matches(".prepare_cached(").count();
    assert_eq!(
        calls, 2,
        "prepare_cached: once in host_statement, once for guest queries"
    );
    for other in [include_str!("ahead.rs"), include_str!("spares.rs")] {
        assert!(!other.contains(".prepare_cached("));
    }
}

/// The schema of the database at `path`: each entry's type, name, table and SQL.
fn schema_of(path: &Path) -> Vec<(String, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn schema_statements_run_ahead_count_only_as_far_as_the_new_object_matches_them() {
    const TABLE: &str = "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT)";
    const INDEX: &str = "CREATE INDEX IF NOT EXISTS by_name ON players (name)";
    const INSERT: &str = "INSERT INTO players VALUES ('p1', 'Ann')";
    let data = tempfile::tempdir().unwrap();
    let dbs = Databases::open_dir(data.path(), &with_spares(16)).unwrap();
    wait_for_spares(&dbs);

    // The first new object teaches the spares what new objects begin with.
    let first = object_id("first");
    let mut s = dbs.open(&first, None).unwrap();
    assert!(s.ahead.is_none(), "nothing learned yet");
    s.begin_event(None).unwrap();
    let table_result = exec(&mut s, TABLE, &[]).unwrap();
    exec(&mut s, INDEX, &[]).unwrap();
    exec(&mut s, INSERT, &[]).unwrap();
    assert_eq!(s.finish_event(true).unwrap(), EventEnd::Committed);
    s.sync().unwrap();
    drop(s);
    let expected_schema = schema_of(&database_path(data.path(), &first));

    // Spares opened from now on run both statements ahead (not the INSERT). Take half the
    // ready ones at a time (claims take the last opened first) until the next five that claims
    // take have them. (The first object took one.)
    let mut taken = 1;
    for round in 0.. {
        for i in taken..8 {
            drop(
                dbs.open(&object_id(&format!("filler {round} {i}")), None)
                    .unwrap(),
            );
        }
        taken = 0;
        wait_for_spares(&dbs);
        if dbs.spares_run_ahead(5) == 5 {
            break;
        }
        assert!(round < 10, "no spares with statements run ahead");
    }
    let mut stores: Vec<_> = ["matched", "half", "other", "rolled back", "never ran"]
        .into_iter()
        .map(|name| {
            let id = object_id(name);
            let s = dbs.open(&id, Some(name)).unwrap();
            assert!(
                s.ahead.is_some(),
                "{name}: a spare with statements run ahead"
            );
            (id, s)
        })
        .collect();
    let path_of = |id: &crate::id::ObjectId| database_path(data.path(), id);
    let names = |id: &crate::id::ObjectId| -> Vec<String> {
        schema_of(&path_of(id))
            .into_iter()
            .map(|(_, name, _, _)| name)
            .collect()
    };
    let mut next = || stores.remove(0);

    // Both matched: the same schema, results and rows as the object that ran them itself.
    let (id, mut s) = next();
    s.begin_event(None).unwrap();
    let out = exec(&mut s, TABLE, &[]).unwrap();
    assert_eq!(format!("{out:?}"), format!("{table_result:?}"));
    exec(&mut s, INDEX, &[]).unwrap();
    assert_eq!(
        s.ahead.as_ref().map(|a| a.matched),
        Some(2),
        "both taken up"
    );
    exec(&mut s, INSERT, &[]).unwrap();
    assert!(s.ahead.is_none(), "settled by the next statement");
    let out = exec(&mut s, "SELECT name FROM players", &[]).unwrap();
    assert_eq!(out.rows.len(), 1);
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    drop(s);
    assert_eq!(schema_of(&path_of(&id)), expected_schema);
    assert_eq!(stored_meta(&path_of(&id))[0].1, id.to_hex());

    // The first matched, then another statement: the index run ahead is undone before it.
    let (id, mut s) = next();
    s.begin_event(None).unwrap();
    exec(&mut s, TABLE, &[]).unwrap();
    assert_eq!(s.ahead.as_ref().map(|a| a.matched), Some(1));
    let out = exec(
        &mut s,
        "SELECT name FROM sqlite_schema WHERE name = 'by_name'",
        &[],
    )
    .unwrap();
    assert!(out.rows.is_empty(), "the unmatched index is not seen");
    exec(&mut s, "CREATE TABLE other (a)", &[]).unwrap();
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut got = names(&id);
    got.retain(|n| !n.starts_with("_do_") && !n.starts_with("sqlite_autoindex__do_"));
    assert_eq!(got, ["players", "sqlite_autoindex_players_1", "other"]);
    assert_eq!(stored_meta(&path_of(&id))[0].1, id.to_hex());

    // A different first statement: nothing run ahead is kept.
    let (id, mut s) = next();
    s.begin_event(None).unwrap();
    exec(&mut s, "CREATE TABLE players (x)", &[]).unwrap();
    // Prepared ahead against the table run ahead, prepared again against this one.
    let err = exec(&mut s, INSERT, &[]).unwrap_err();
    assert!(format!("{err:?}").contains("1 columns"), "{err:?}");
    s.set_alarm(Some(5)).unwrap();
    s.finish_event(true).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut got = names(&id);
    got.retain(|n| !n.starts_with("_do_") && !n.starts_with("sqlite_autoindex__do_"));
    assert_eq!(got, ["players"]);
    assert_eq!(stored_meta(&path_of(&id)).len(), 2, "ID and name");

    // Matched, and the event rolled back: they go with it; the ID stays. (The size counts
    // only what the event has: asking for it settles the statements run ahead first.)
    let (id, mut s) = next();
    s.begin_event(None).unwrap();
    exec(&mut s, TABLE, &[]).unwrap();
    let with_table = s.database_size().unwrap();
    assert!(s.ahead.is_none());
    exec(&mut s, INDEX, &[]).unwrap();
    assert!(
        s.database_size().unwrap() > with_table,
        "the index ran in the event"
    );
    s.finish_event(false).unwrap();
    s.sync().unwrap();
    drop(s);
    assert!(!names(&id).iter().any(|n| n == "players"));
    assert_eq!(stored_meta(&path_of(&id))[0].1, id.to_hex());

    // Never an event: nothing but the ID.
    let (id, s) = next();
    drop(s);
    assert!(!names(&id).iter().any(|n| n == "players"));
    assert_eq!(stored_meta(&path_of(&id))[0].1, id.to_hex());

    // What runs ahead writes nothing to the spares' files: their WALs are the zeros they were
    // made of.
    let spare_dir = data.path().join("spare");
    for spare in spares_in(&spare_dir) {
        let wal = create::sidecar(&spare_dir.join(spare).join("db.sqlite3"), "-wal");
        let bytes = std::fs::read(&wal).unwrap();
        assert!(bytes.iter().all(|b| *b == 0), "{wal:?}");
    }
}
