//! Each object's own SQLite database: opening, the event transaction, and guest statements.
//!
//! Invariants:
//! - One [`SqlStore`] (one connection) per live object, owned by that object's actor and used by
//!   one thread at a time; nothing else opens the file while the object is live on this host.
//! - The file path is derived only from the hex object ID
//!   (`objects/<2 hex>/<64 hex>/db.sqlite3`, see [`spares`]).
//! - Every event runs between [`SqlStore::begin_event`] and [`SqlStore::finish_event`]: one
//!   SQLite transaction, committed (and synced per [`SyncMode`]) or rolled back as a whole.
//! - Guest statements go through [`SqlStore::exec`], which turns on the authorizer
//!   (see [`security`]); host statements never do.

mod ahead;
mod create;
mod security;
mod spares;

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Batch, Connection, ErrorCode, OpenFlags, Statement, StatementStatus};

pub(crate) use self::create::write_durably;
use self::security::GuestMode;
pub use self::security::{RESERVED_PREFIX, is_reserved};
pub use self::spares::{Databases, database_path, some_object_id};

/// `_do_meta` key holding the object's name, for objects addressed by name.
pub const NAME_KEY: &str = "name";
use crate::bindings::sql::{SqlError, Value};
use crate::limits::thread_cpu_time;

/// Writes one `_do_meta` pair.
const META_UPSERT: &str =
    "INSERT INTO _do_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2";
/// The host's statements that come from the connection's statement cache. Guest queries come
/// from it too, keyed by their (trimmed) text, and SQLite's authorizer only runs when a
/// statement is prepared: a guest query with one of these texts is prepared afresh, never
/// taken from the cache, or it would run the host's statement, allowed to write `_do_meta`.
const HOST_CACHED: [&str; 2] = [META_UPSERT, SCHEMA_VERSION_QUERY];
/// Reads the schema's version, which SQLite bumps with every change to the schema.
const SCHEMA_VERSION_QUERY: &str = "PRAGMA schema_version";

/// Version of the host's tables in an object database, kept in `PRAGMA user_version`.
/// 2: checked for ties to the reserved namespace ([`reserved_ties`]), which guest statements
/// could make before that check existed.
const SCHEMA_VERSION: i64 = 2;

/// SQL making the host's tables of an object database and setting [`SCHEMA_VERSION`].
fn host_schema() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS _do_meta (key TEXT PRIMARY KEY, value ANY) STRICT;
         CREATE TABLE IF NOT EXISTS _do_alarm (id INTEGER PRIMARY KEY CHECK (id = 0), at INTEGER NOT NULL) STRICT;
         PRAGMA user_version = {SCHEMA_VERSION};"
    )
}

/// Below this many free bytes on its file system, a statement's "database or disk is full"
/// is taken for a full disk, not the object's size limit (SQLite reports both the same way;
/// the file system may refuse a write with some blocks still free, kept for its metadata).
const DISK_FULL_BELOW: u64 = 8 * 1024 * 1024;

/// Which "database or disk is full" a statement of the event met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    /// The object's size limit (`max_page_count`).
    SizeLimit,
    /// The file system holding the database (see [`DISK_FULL_BELOW`]).
    Disk,
}

/// Finds what may tie the schema to the host's reserved namespace beyond the host's own tables
/// (those of [`host_schema`]): objects named `_do_...` or on such a table, and foreign keys
/// referencing a `_do_...` table. The authorizer cannot prevent these: `ALTER TABLE t RENAME
/// TO _do_x` shows it only the old name, and a foreign key's target is not shown at all (yet
/// it makes the host's writes to the target check the guest's table, or fail). Guest
/// statements that may change the schema run in a savepoint and are undone if one is found.
///
/// Each of these has `_do_` in the object's SQL text (SQLite rewrites it on a rename), so this
/// cheap pass over `sqlite_schema` lists the few candidates (usually none) that
/// [`reserved_ties`] looks at closely.
const RESERVED_CANDIDATES: &str = "SELECT name, tbl_name FROM sqlite_schema \
    WHERE sql LIKE '%\\_do\\_%' ESCAPE '\\' AND tbl_name NOT IN ('_do_meta', '_do_alarm')";

/// How durable a commit is when the event's response is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every commit is on disk (fsynced) before its event's response leaves; concurrent
    /// events of one object share one fsync (group commit). Survives process crashes and
    /// power loss. The default, as in workerd.
    ///
    /// Implemented as WAL with `synchronous=NORMAL` (commits write the WAL without syncing)
    /// plus an explicit sync of the WAL file by the object's actor before it releases the
    /// responses of the events committed since the last sync.
    #[default]
    Full,
    /// WAL with `synchronous=NORMAL`: commits survive a crash of dohost but the last ones may be
    /// lost on power loss or an OS crash.
    Normal,
    /// `synchronous=OFF`: for tests and throwaway data only; an OS crash can corrupt data.
    Off,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full | SyncMode::Normal => "NORMAL",
            SyncMode::Off => "OFF",
        }
    }
}

impl FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(SyncMode::Full),
            "normal" => Ok(SyncMode::Normal),
            "off" => Ok(SyncMode::Off),
            other => Err(format!(
                "unknown sync mode {other:?}: use full, normal or off"
            )),
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Full => "full",
            SyncMode::Normal => "normal",
            SyncMode::Off => "off",
        })
    }
}

/// Settings shared by every object database on a host.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Durability of commits.
    pub sync: SyncMode,
    /// Largest database file, in bytes (rounded down to whole pages).
    pub max_database_bytes: u64,
    /// Largest result `exec` will hold for a guest, in bytes (approximate).
    pub max_result_bytes: usize,
    /// Empty databases kept ready (open) for new objects (see [`Databases`]); 0 creates each
    /// on demand (and keeps no reserve either).
    pub spare_databases: usize,
    /// Most spare databases kept made on disk, not open, behind the open ones: they absorb a
    /// burst of new objects with no file creation or sync while it lasts.
    pub spare_reserve: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            sync: SyncMode::Full,
            max_database_bytes: 10 * 1024 * 1024 * 1024,
            max_result_bytes: 64 * 1024 * 1024,
            spare_databases: 32,
            spare_reserve: 1024,
        }
    }
}

/// Host-level storage failures (not guest SQL errors, which are [`SqlError`]s).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create database {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the new-database template in {dir}: {reason}")]
    Template { dir: PathBuf, reason: String },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("commit failed, the event's writes were rolled back: {0}")]
    Commit(rusqlite::Error),
    #[error("syncing the database to disk failed; recent writes may not be durable: {0}")]
    Sync(String),
    #[error(
        "the data directory {dir} is in use by another dohost ({holder}): run one host per \
         data directory"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("the host is shutting down: its data directory is closed")]
    Closed,
    #[error(
        "database {path} has a table named _do_... or a foreign key to one (made through a \
         hole closed in dohost on 2026-11-27), through which the object could reach the host's \
         own tables; it is not opened. Remove the table with the sqlite3 tool, then start the \
         object again"
    )]
    ReservedTies { path: PathBuf },
    #[error("cannot lock the data directory ({path}): {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How an event's transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventEnd {
    Committed,
    /// Rolled back although the handler succeeded, because a statement hit the database size
    /// limit during the event.
    RolledBackFull,
    /// Rolled back although the handler succeeded, because a statement found the disk
    /// holding the database full.
    RolledBackDiskFull,
    /// Rolled back: the handler failed, or something rolled the transaction back under it
    /// (a storage error, a guest statement the host had to undo with the whole event).
    RolledBack,
}

/// Whether a guest query is a single statement: it has no `;` but trailing ones.
fn is_single_statement(query: &str) -> bool {
    !query.trim_end().trim_end_matches(';').contains(';')
}

/// What one `exec` produced.
#[derive(Debug, Default, Clone)]
pub struct ExecResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_read: u64,
    pub rows_written: u64,
}

/// One group-commit sync: fsyncs the WAL file (and, for a database file created since the
/// last sync, that file and the directories holding new entries, so that the new files survive
/// a power loss).
#[derive(Debug, Clone)]
pub struct SyncJob {
    path: PathBuf,
    /// The store's own descriptor of its WAL (see [`SqlStore::wal_file`]), or why it could
    /// not be opened (the job then fails without poisoning the store: nothing was lost).
    wal: Result<Arc<SyncFile>, String>,
    /// The database file, when this store created (or set up) it and it is not synced yet.
    db: Option<Arc<SyncFile>>,
    /// Directories with entries not yet synced (a new file's, a new WAL's).
    new_dirs: Vec<PathBuf>,
    /// An earlier sync of this database failed: this one fails too (see
    /// [`SqlStore::sync_error`]).
    failed: Option<String>,
    /// Tells the spare thread, when the job is dropped, that a new object's first sync is done.
    _first_sync: Option<Arc<spares::FirstSync>>,
}

impl SyncJob {
    pub fn run(&self) -> Result<(), StorageError> {
        let fail = |why: String| {
            Err(StorageError::Sync(format!(
                "{}: {why}",
                self.path.display()
            )))
        };
        if let Some(earlier) = &self.failed {
            return fail(format!(
                "an earlier sync failed, so commits since may not be durable: {earlier}"
            ));
        }
        let wal = match &self.wal {
            Ok(wal) => wal,
            Err(why) => return fail(format!("cannot open the WAL: {why}")),
        };
        let result = if self.new_dirs.is_empty() && self.db.is_none() {
            wal.file.sync_data()
        } else {
            // A new object's files and directory entries: synced at once, so the file
            // system can cover them with one journal commit instead of one each. (Directory
            // descriptors carry no SQLite locks; the database file is synced only through the
            // store's own descriptor, see `SyncFile`.)
            std::thread::scope(|scope| {
                let dirs: Vec<_> = self
                    .new_dirs
                    .iter()
                    .map(|p| scope.spawn(move || fs::File::open(p).and_then(|f| f.sync_all())))
                    .collect();
                let db = self
                    .db
                    .as_ref()
                    .map(|db| scope.spawn(move || db.file.sync_all()));
                let wal = wal.file.sync_data();
                dirs.into_iter().chain(db).fold(wal, |acc, t| {
                    let r = t
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("sync thread panicked")));
                    acc.and(r)
                })
            })
        };
        result.or_else(|e| fail(e.to_string()))
    }
}

/// A descriptor of one of a store's files, held from before its first sync until after the
/// connection has closed, and the only one the host itself syncs through:
/// - Linux reports a failed write-back once per open file description, to each one open when
///   it failed: a descriptor opened for each sync could miss an error that SQLite's own
///   descriptor (a checkpoint, a WAL restart) saw first, and report success for pages that
///   never reached the disk;
/// - closing any descriptor of the database file drops every POSIX lock the process holds on
///   it, so opening and closing one while the connection lives would silently end its
///   exclusive lock against other processes.
#[derive(Debug)]
pub(crate) struct SyncFile {
    file: fs::File,
    /// Set when a sync failed: the file's cached pages are dropped once the connection has
    /// closed, so that the next open reads what is on the disk, not pages the kernel kept in
    /// memory after failing to write them (best effort: `POSIX_FADV_DONTNEED`).
    discard_cache: AtomicBool,
}

impl SyncFile {
    fn open(path: &Path) -> std::io::Result<Arc<Self>> {
        Ok(Self::new(fs::File::open(path)?))
    }

    /// The WAL of the database at `db`.
    fn open_wal(db: &Path) -> std::io::Result<Arc<Self>> {
        Self::open(&create::sidecar(db, "-wal"))
    }

    fn new(file: fs::File) -> Arc<Self> {
        Arc::new(Self {
            file,
            discard_cache: AtomicBool::new(false),
        })
    }
}

impl Drop for SyncFile {
    fn drop(&mut self) {
        if self.discard_cache.load(Ordering::Acquire) {
            use std::os::fd::AsRawFd;
            // SAFETY: an advisory call on a descriptor this value owns; no memory is passed.
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// An object's open database.
pub struct SqlStore {
    conn: Connection,
    guest: GuestMode,
    /// CPU deadline for the current event: the thread CPU time ([`thread_cpu_time`]) in
    /// nanoseconds at which statements stop; `u64::MAX` = none. Read by SQLite's progress
    /// handler, so runaway queries stop with the event's CPU time limit (CPU time, like the
    /// guest's own: a statement that waits for the CPU on a loaded machine is not charged).
    deadline: Arc<AtomicU64>,
    config: StorageConfig,
    in_event: bool,
    /// Set when the event must not commit: a statement found the database or its disk
    /// `full`, or the transaction was rolled back under the event (see [`SqlStore::exec`]).
    doomed: bool,
    full: Option<Full>,
    page_size: u64,
    path: PathBuf,
    /// Set by SQLite's WAL hook after every commit that wrote: the WAL holds commits that
    /// are not synced yet.
    unsynced: Arc<AtomicBool>,
    /// Directories holding new entries (this database file, a new directory on its path)
    /// not synced yet: the first sync syncs them and the file.
    new_dirs: Vec<PathBuf>,
    /// Still in the first-commit `synchronous=OFF` mode of a fresh WAL (see
    /// [`SqlStore::open_file`]).
    fresh_wal: Arc<AtomicBool>,
    /// The files were renamed while this connection was open (a spare claimed by an object,
    /// see [`SqlStore::moved_to`]): SQLite still knows them by their old names.
    moved: bool,
    /// A database made from a claimed spare, until its first sync (see [`spares::FirstSync`]).
    first_sync: Option<Arc<spares::FirstSync>>,
    /// Metadata to write with the next commit (see [`SqlStore::defer_metas`]).
    deferred: Vec<(&'static str, String)>,
    /// Set when a sync failed. After a failed fsync Linux may report the next one as a
    /// success although the pages it failed to write are gone, so every later sync of this
    /// store fails too: the events waiting for it are failed, and the object starts over
    /// from what is on disk (the close neither checkpoints nor keeps the cached pages).
    sync_error: Option<String>,
    // Declared after `conn`, so dropped after the connection has closed (see `SyncFile`).
    /// The WAL, opened at the first sync and kept.
    wal_file: Option<Arc<SyncFile>>,
    /// The database file, when this store created it or set it up: synced with the first
    /// sync (`db_file_unsynced`), and kept open until the connection has closed.
    db_file: Option<Arc<SyncFile>>,
    db_file_unsynced: bool,
    /// Statements run ahead on this spare, in a transaction left open for the object's first
    /// event (see [`ahead`]).
    ahead: Option<ahead::Ahead>,
    /// Set for a new object's store until its first event ends: what that event begins with.
    learn: Option<ahead::Learn>,
}

impl SqlStore {
    /// Opens (creating if needed) the database at `path` with the host's settings.
    ///
    /// A file left unfinished by a power loss during its creation (see [`create`]) holds nothing
    /// that was ever acknowledged: it is set aside and the object starts afresh.
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Self, StorageError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let create_err = |source| StorageError::Create {
            path: path.to_path_buf(),
            source,
        };
        let mut new_dirs = create::create_dirs(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let template = create::template(dir)?;
        let mut created = create::write_new(path, template).map_err(create_err)?;
        if created.is_none() && create::unfinished(path, template).map_err(create_err)? {
            let aside = create::set_aside(path).map_err(create_err)?;
            tracing::warn!(
                path = %path.display(),
                aside = %aside.display(),
                "database file was left unfinished by an interrupted creation (nothing in it was \
                 ever acknowledged); set it aside and starting the object afresh"
            );
            created = create::write_new(path, template).map_err(create_err)?;
        }
        // The file's entry in its directory: new, or (an existing file) possibly never synced.
        new_dirs.push(dir.to_path_buf());
        // SQLite creates the WAL when it opens the file: a new directory entry as well. (Only
        // a missing WAL counts as fresh: an emptied one may still hold older frames on disk,
        // and SQLite's own sync of a restarted WAL's header is what keeps them out.)
        let fresh_wal = !create::sidecar(path, "-wal").exists();
        let db_file = match created {
            Some(file) => SyncFile::new(file),
            // An existing file is synced with the first sync too, with its directory: the
            // last close synced it only if its checkpoint copied anything (an object made on
            // demand that never committed was not), and a process that was killed did not
            // close it at all. Opened before the connection, and kept until after it closes.
            None => {
                // And the directory's entry in its shard, which a killed process may have made
                // and never synced.
                new_dirs.extend(dir.parent().map(Path::to_path_buf));
                SyncFile::open(path).map_err(create_err)?
            }
        };
        new_dirs.sort();
        new_dirs.dedup();
        Self::open_file(path, config, new_dirs, fresh_wal, Some(db_file))
    }

    /// Opens a database made from a spare (see [`spares`]): the whole template and a WAL of
    /// zeros, all synced, so nothing about the files is new.
    /// `ahead`: statements to run and prepare ahead for the object (see [`ahead`]), after the
    /// warm-up.
    fn open_spare(
        path: &Path,
        config: &StorageConfig,
        warm: bool,
        ahead: Option<&ahead::Statements>,
    ) -> Result<Self, StorageError> {
        let mut store = Self::open_file(path, config, Vec::new(), true, None)?;
        if warm && let Err(e) = store.warm_up() {
            tracing::warn!(path = %path.display(), "cannot warm up a spare database: {e}");
            store.rollback_quietly();
            // Still inside the warm-up's transaction: not a store to hand to an object.
            if !store.conn.is_autocommit() {
                return Err(e.into());
            }
            return Ok(store);
        }
        if let Some(plan) = ahead {
            store.ahead(plan);
        }
        Ok(store)
    }

    /// Runs, and rolls back, the write a new object's first event begins with (its ID into
    /// `_do_meta`), so that its first event finds the statement prepared and cached, the
    /// schema parsed and the files' pages in the OS cache: measured on 200-300 new objects
    /// 10 ms apart, the start of the first event (`BEGIN` and the ID) took 83-124 us at p50
    /// without it, 43-56 us with it, a later event's 5 us. Writes nothing to the files: a
    /// rollback before any commit leaves the WAL untouched. A store the rollback left inside
    /// a transaction is not kept.
    fn warm_up(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN")?;
        let written = self
            .host_statement(META_UPSERT)
            .and_then(|mut upsert| upsert.execute([spares::ID_KEY, ""]));
        self.conn.execute_batch("ROLLBACK")?;
        written?;
        // The rollback dropped the pages it had changed from SQLite's cache (as a rollback in
        // WAL mode does): read them back, the key's index and the table, or the first event
        // reads them from the file (two `pread`s on its way; the connection holds the file
        // exclusively, so the cache stays valid until then).
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM _do_meta WHERE key = ?1), \
                 (SELECT sum(length(value)) FROM _do_meta)",
                [spares::ID_KEY],
                |_| Ok(()),
            )
            .map(drop)
    }

    /// Opens the database file at `path`. `new_dirs` lists the directories whose entries
    /// (the file's own, its WAL's, or a directory's on its path) are new and not yet synced.
    /// `fresh_wal`: the WAL holds no frames of earlier connections (new, or all zeros).
    /// `db_file`: the file's descriptor, if it is to be synced with the first sync (see
    /// [`SyncFile`]).
    ///
    /// With a fresh WAL the connection starts with `synchronous=OFF` until its first commit:
    /// in NORMAL mode SQLite would fsync the WAL header it writes first, and the directory,
    /// on its own, before the commit's frames. The host's group sync covers header, frames and
    /// directory together before any response leaves, and a WAL without earlier frames has
    /// nothing a torn header could bring back. After the first commit the configured mode
    /// applies (see [`SqlStore::settle_sync_mode`]); checkpoints wait for it.
    fn open_file(
        path: &Path,
        config: &StorageConfig,
        mut new_dirs: Vec<PathBuf>,
        fresh_wal: bool,
        mut db_file: Option<Arc<SyncFile>>,
    ) -> Result<Self, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.to_path_buf(),
            source,
        };
        // No URI filenames, no shared cache: the path is ours and the connection is private.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let configured = configure_sqlite();
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        if !configured {
            shrink_lookaside(&conn);
        }
        // One connection per object database (see the module invariants), so take the file
        // exclusively: WAL then needs no shared-memory index (fewer syscalls per activation),
        // and no other process can write behind the host's back. The busy timeout covers the
        // moment an evicted object's connection is still closing while it is re-activated.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")
            .map_err(open_err)?;
        let guest = GuestMode::default();
        security::harden(&mut conn, guest.clone()).map_err(open_err)?;
        let page_size: u64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .map_err(open_err)?
            .max(512) as u64;
        let max_pages = (config.max_database_bytes / page_size).clamp(1, u32::MAX as u64);
        let fresh_wal = Arc::new(AtomicBool::new(fresh_wal && config.sync != SyncMode::Off));
        let initial_sync = if fresh_wal.load(Ordering::Relaxed) {
            "OFF"
        } else {
            config.sync.pragma()
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {initial_sync};
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;
             PRAGMA max_page_count = {max_pages};"
        ))
        .map_err(open_err)?;
        let unsynced = Arc::new(AtomicBool::new(false));
        {
            // Replaces SQLite's automatic checkpoint (which is itself a WAL hook): mark the
            // commit for the actor's group sync, and checkpoint at the usual 1000 pages (not
            // while the connection is still in its first-commit OFF mode, whose checkpoints
            // would not sync the database file).
            let unsynced = unsynced.clone();
            let fresh_wal = fresh_wal.clone();
            let checkpoint_failed = AtomicBool::new(false);
            let hook_path = path.to_path_buf();
            conn.wal_hook(Some(
                move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                    unsynced.store(true, Ordering::Release);
                    if pages >= 1000 && !fresh_wal.load(Ordering::Acquire) {
                        // Passive: never blocks. In NORMAL mode a checkpoint syncs the WAL first.
                        // A failure loses nothing: the frames stay in the WAL (SQLite does not
                        // count them as copied), and a failed write-back of the WAL shows in
                        // the host's own sync too (its descriptor was open: see `SyncFile`).
                        // Logged once per store (a full disk fails every commit's attempt).
                        if let Err(e) = wal.checkpoint()
                            && !checkpoint_failed.swap(true, Ordering::AcqRel)
                        {
                            tracing::warn!(path = %hook_path.display(), "checkpoint failed (the WAL keeps its frames): {e}");
                        }
                    }
                    Ok(())
                },
            ))
            .map_err(open_err)?;
        }
        // A new database gets WAL mode and the host's tables in one transaction, made durable
        // by the first group sync (which, for a new file, also syncs it and its directory); an
        // existing one (user_version set) skips all of this, which keeps re-activation cheap.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version == 1 {
            // Made before guest statements were checked for ties: check once.
            if reserved_ties(&conn).map_err(open_err)? {
                return Err(StorageError::ReservedTies {
                    path: path.to_path_buf(),
                });
            }
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(open_err)?;
        } else if version < SCHEMA_VERSION {
            // An empty file (a creation interrupted before the template was written): set it
            // up the way the template was made. No syncs while the file is set up: nothing
            // about a new object has been acknowledged yet, and its first group sync makes the
            // file, its WAL and its directory durable before any response leaves.
            conn.execute_batch(&format!(
                "PRAGMA synchronous = OFF;
                 PRAGMA journal_mode = WAL;
                 BEGIN; {schema} COMMIT;
                 PRAGMA synchronous = {initial_sync};",
                schema = host_schema(),
            ))
            .map_err(open_err)?;
            if let Some(dir) = path.parent()
                && !new_dirs.iter().any(|d| d == dir)
            {
                new_dirs.push(dir.to_path_buf());
            }
            // Its header was written in place: the file is synced with the first sync.
            if db_file.is_none() {
                db_file = Some(SyncFile::open(path).map_err(|source| StorageError::Create {
                    path: path.to_path_buf(),
                    source,
                })?);
            }
        }
        let db_file_unsynced = db_file.is_some();
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        {
            let deadline = deadline.clone();
            // Every 10,000 VM steps (some 50-100 us of work): a clock read there costs well
            // under 1 % of it.
            conn.progress_handler(
                10_000,
                Some(move || {
                    let limit = deadline.load(Ordering::Relaxed);
                    limit != u64::MAX && thread_cpu_time().as_nanos() as u64 > limit
                }),
            )
            .map_err(open_err)?;
        }
        // Now, before anything can sync the WAL through SQLite's own descriptor (see
        // `SyncFile`); reading the database made SQLite open (or create) it. If this fails, the
        // first sync tries again.
        let wal_file = SyncFile::open_wal(path)
            .inspect_err(
                |e| tracing::warn!(path = %path.display(), "cannot open the WAL to sync it: {e}"),
            )
            .ok();
        Ok(Self {
            conn,
            guest,
            deadline,
            config: config.clone(),
            in_event: false,
            doomed: false,
            full: None,
            page_size,
            path: path.to_path_buf(),
            unsynced,
            new_dirs,
            fresh_wal,
            sync_error: None,
            moved: false,
            first_sync: None,
            deferred: Vec::new(),
            wal_file,
            db_file,
            db_file_unsynced,
            ahead: None,
            learn: None,
        })
    }

    /// The database's directory was renamed under this open connection, so that its file is
    /// now `path`. SQLite keeps working through the descriptors it holds: the connection has
    /// read the database (so the WAL is open too), and with exclusive locking it never reopens
    /// either by name. At close SQLite notices the file moved and neither checkpoints nor
    /// deletes the WAL; [`Drop`] does both itself.
    pub(super) fn moved_to(&mut self, path: &Path) {
        self.path = path.to_path_buf();
        self.moved = true;
    }

    /// Whether an event is running (between [`SqlStore::begin_event`] and
    /// [`SqlStore::finish_event`]).
    pub fn in_event(&self) -> bool {
        self.in_event
    }

    /// Starts the event transaction. Statements stop once the thread has used `cpu_deadline`
    /// of CPU time ([`thread_cpu_time`]): the event runs on this thread.
    pub fn begin_event(&mut self, cpu_deadline: Option<Duration>) -> Result<(), StorageError> {
        debug_assert!(!self.in_event, "events on one object never overlap");
        self.settle_sync_mode()?;
        let nanos =
            cpu_deadline.map_or(u64::MAX, |d| d.as_nanos().min(u64::MAX as u128 - 1) as u64);
        self.deadline.store(nanos, Ordering::Relaxed);
        // A spare's statements run ahead left their transaction open for this event.
        if self.ahead.is_none() || self.conn.is_autocommit() {
            self.ahead = None;
            self.conn.execute_batch("BEGIN")?;
        }
        if let Err(e) = self.write_metas(&[]) {
            self.rollback_quietly();
            return Err(e);
        }
        self.in_event = true;
        self.doomed = false;
        self.full = None;
        Ok(())
    }

    /// Ends the event transaction: commits if `commit` and nothing doomed it, else rolls back.
    /// A failed commit is rolled back and reported as [`StorageError::Commit`].
    pub fn finish_event(&mut self, commit: bool) -> Result<EventEnd, StorageError> {
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        // Undoes what was run ahead and not matched (a failure dooms the event).
        let _ = self.settle_ahead();
        self.in_event = false;
        let end = if !commit {
            EventEnd::RolledBack
        } else if let Some(full) = self.full {
            match full {
                Full::SizeLimit => EventEnd::RolledBackFull,
                Full::Disk => EventEnd::RolledBackDiskFull,
            }
        } else if self.doomed {
            EventEnd::RolledBack
        } else {
            EventEnd::Committed
        };
        if end == EventEnd::Committed {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                self.rollback_quietly();
                self.finish_learning(false);
                return Err(StorageError::Commit(e));
            }
            self.deferred.clear();
            self.finish_learning(true);
        } else {
            self.rollback_quietly();
            self.finish_learning(false);
            // The deferred metadata went with the event: it must not wait for a later commit.
            self.set_metas(&[])?;
        }
        Ok(end)
    }

    fn rollback_quietly(&mut self) {
        // Whatever was run ahead goes with the transaction.
        self.ahead = None;
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!("rollback failed: {e}");
        }
    }

    /// Whether commits await [`SqlStore::sync`] before their responses may be released
    /// (only in [`SyncMode::Full`]).
    pub fn needs_sync(&self) -> bool {
        self.config.sync == SyncMode::Full
            && (self.unsynced.load(Ordering::Acquire) || self.sync_error.is_some())
    }

    /// Takes the pending sync, if commits await one: the returned [`SyncJob`] makes every
    /// commit so far durable and can run on any thread. Report its failure with
    /// [`SqlStore::sync_failed`].
    pub fn take_sync(&mut self) -> Option<SyncJob> {
        if let Err(e) = self.settle_sync_mode() {
            tracing::error!(path = %self.path.display(), "{e}");
        }
        if self.config.sync != SyncMode::Full {
            return None;
        }
        if self.sync_error.is_none() && !self.unsynced.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(self.sync_job())
    }

    /// A job that syncs everything written so far (failing at once after an earlier failure).
    fn sync_job(&mut self) -> SyncJob {
        let wal = match &self.wal_file {
            Some(wal) => Ok(wal.clone()),
            None => match SyncFile::open_wal(&self.path) {
                Ok(wal) => {
                    self.wal_file = Some(wal.clone());
                    Ok(wal)
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let db = if self.db_file_unsynced {
            self.db_file.clone()
        } else {
            None
        };
        self.db_file_unsynced = false;
        SyncJob {
            path: self.path.clone(),
            wal,
            db,
            new_dirs: std::mem::take(&mut self.new_dirs),
            failed: self.sync_error.clone(),
            _first_sync: self.first_sync.take(),
        }
    }

    /// Leaves the first-commit `synchronous=OFF` mode of a fresh WAL once a commit wrote the
    /// WAL header: from then on SQLite syncs at checkpoints as the configured mode says.
    fn settle_sync_mode(&mut self) -> Result<(), StorageError> {
        if self.fresh_wal.load(Ordering::Acquire) && self.unsynced.load(Ordering::Acquire) {
            self.conn
                .execute_batch(&format!(
                    "PRAGMA synchronous = {}",
                    self.config.sync.pragma()
                ))
                .map_err(StorageError::Sqlite)?;
            self.fresh_wal.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// A sync taken with [`SqlStore::take_sync`] failed: its commits still await one.
    pub fn sync_failed(&mut self, job: &SyncJob, error: &StorageError) {
        // A WAL that could not be opened (out of descriptors, say) lost nothing: the next
        // sync tries again. Any failed fsync poisons the store.
        if job.wal.is_ok() || job.failed.is_some() {
            self.sync_error.get_or_insert_with(|| error.to_string());
        }
        self.unsynced.store(true, Ordering::Release);
        if self.new_dirs.is_empty() {
            self.new_dirs = job.new_dirs.clone();
        }
        if job.db.is_some() {
            self.db_file_unsynced = true;
        }
    }

    /// Makes every commit so far durable now, in `--sync normal` too (not `off`): for the rare
    /// commits that something outside the database relies on, such as the alarm index
    /// dropping an entry once the alarm is cleared.
    pub fn make_durable(&mut self) -> Result<(), StorageError> {
        match self.config.sync {
            SyncMode::Full => self.sync(),
            SyncMode::Normal => {
                let job = self.sync_job();
                job.run().inspect_err(|e| self.sync_failed(&job, e))
            }
            SyncMode::Off => Ok(()),
        }
    }

    /// Syncs now, on this thread.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        match self.take_sync() {
            Some(job) => job.run().inspect_err(|e| self.sync_failed(&job, e)),
            None => Ok(()),
        }
    }

    /// Runs a guest query (one or more statements) with `params`.
    pub fn exec(&mut self, query: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        if !self.in_event {
            // A component's start code could call in while it is instantiated: no transaction
            // and no CPU limit then.
            return Err(SqlError::Other(
                "SQL runs only during an event (a request or an alarm), not while the object \
                 is being instantiated"
                    .into(),
            ));
        }
        if let Some(out) = self.take_ahead(query, params) {
            self.learn(query, params, true);
            return Ok(out);
        }
        self.settle_ahead().map_err(ahead::settle_error)?;
        self.guest.set(true);
        let mut result = self.exec_guest(query, params);
        self.guest.set(false);
        self.learn(query, params, result.is_ok());
        if let Err(SqlError::DatabaseFull(message)) = &mut result {
            self.doomed = true;
            // SQLite reports the size limit and the OS's "no space left" the same way.
            match self.disk_free() {
                Some(free) if free < DISK_FULL_BELOW => {
                    // If an earlier statement of the event hit the size limit, that stays the reason.
                    self.full.get_or_insert(Full::Disk);
                    tracing::warn!(path = %self.path.display(), "a guest statement failed: the file system holding the database is full ({free} bytes free)");
                    message.push_str(&format!(
                        ": the disk holding the object's database is full ({free} bytes free)"
                    ));
                }
                _ => {
                    self.full = Some(Full::SizeLimit);
                    message.push_str(": the object's database reached its size limit");
                }
            }
        }
        // Some errors (full disk, out of memory) make SQLite roll the whole transaction back.
        // Keep the event inside a transaction, and never commit what is left of it.
        if result.is_err() && self.in_event && self.conn.is_autocommit() {
            self.doomed = true;
            if let Err(e) = self.conn.execute_batch("BEGIN") {
                tracing::warn!("cannot restart the event transaction: {e}");
            }
        }
        result
    }

    /// Bytes free for this process on the file system holding the database, if known.
    fn disk_free(&self) -> Option<u64> {
        let dir = self.path.parent()?;
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string and `stat` is written by the call.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: the call succeeded, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        // Root may use the blocks ext4 reserves; others may not.
        // SAFETY: `geteuid` has no preconditions.
        let blocks = if unsafe { libc::geteuid() } == 0 {
            stat.f_bfree
        } else {
            stat.f_bavail
        };
        // Both are 64 bits wide on 64-bit Linux, narrower on some 32-bit targets.
        #[allow(clippy::useless_conversion)]
        Some(u64::from(blocks).saturating_mul(u64::from(stat.f_frsize)))
    }

    /// One of the host's statements, from the statement cache. The only way the host takes a
    /// statement from the cache: it must be listed in [`HOST_CACHED`], so that a guest query
    /// with the same text is never served the host's statement.
    fn host_statement(&self, sql: &'static str) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        debug_assert!(HOST_CACHED.contains(&sql), "not in HOST_CACHED: {sql}");
        self.conn.prepare_cached(sql)
    }

    /// A guest query of a single statement (not one of [`HOST_CACHED`]) from the statement
    /// cache, prepared (and so authorized) in guest mode if it was not there.
    fn guest_cached(&self, query: &str) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        debug_assert!(self.guest.is_on() && !HOST_CACHED.contains(&query.trim()));
        self.conn.prepare_cached(query)
    }

    fn exec_guest(&mut self, query: &str, params: &[Value]) -> Result<ExecResult, SqlError> {
        let changes_before = self.conn.total_changes();
        let mut out = ExecResult::default();
        let mut params = params;
        // A single statement is taken from the statement cache. Anything else runs statement
        // by statement, each prepared only after the previous one ran (a later statement may
        // use a table an earlier one creates).
        let single = is_single_statement(query);
        if single && HOST_CACHED.contains(&query.trim()) {
            // Prepared (and authorized) for the guest, not the host's cached statement; trimmed
            // as the cache would have.
            let mut stmt = self.conn.prepare(query.trim()).map_err(sql_error)?;
            out.rows_read += self.run_guest_statement(&mut stmt, &mut params, &mut out)?;
        } else if single {
            match self.guest_cached(query) {
                Ok(mut stmt) => {
                    out.rows_read += self.run_guest_statement(&mut stmt, &mut params, &mut out)?;
                }
                Err(rusqlite::Error::Empty) => {}
                Err(e) => return Err(sql_error(e)),
            }
        } else {
            let mut batch = Batch::new(&self.conn, query);
            while let Some(mut stmt) =
                fallible_iterator::FallibleIterator::next(&mut batch).map_err(sql_error)?
            {
                out = ExecResult {
                    rows_read: out.rows_read,
                    ..Default::default()
                };
                out.rows_read += self.run_guest_statement(&mut stmt, &mut params, &mut out)?;
            }
        }
        if !params.is_empty() {
            return Err(SqlError::InvalidArgument(format!(
                "{} more parameter(s) than the query has placeholders",
                params.len()
            )));
        }
        out.rows_written = self.conn.total_changes().saturating_sub(changes_before);
        Ok(out)
    }

    /// Runs one guest statement. One that may change the schema (`CREATE`, `ALTER`) runs
    /// inside a savepoint, and is undone and denied if it tied the schema to the reserved
    /// namespace ([`reserved_ties`]), unless it is a plain `CREATE` that does not mention the
    /// reserved prefix, which cannot ([`security::is_plain_create`]). Any other statement that
    /// writes and changes the schema (`DROP`, `ANALYZE`) is checked the same way after it ran,
    /// and if it made a tie, the whole event is rolled back: a second line of defence, should
    /// SQLite ever read a statement differently from [`security::may_change_schema`].
    fn run_guest_statement(
        &self,
        stmt: &mut Statement<'_>,
        params: &mut &[Value],
        out: &mut ExecResult,
    ) -> Result<u64, SqlError> {
        let sql = stmt.expanded_sql();
        if let Some(word) = sql.as_deref().and_then(security::denied_keyword) {
            return Err(SqlError::AccessDenied(format!(
                "{word} is not allowed in objects"
            )));
        }
        if stmt.readonly() {
            return run_statement(stmt, params, out, &self.config);
        }
        if !sql.as_deref().is_none_or(security::may_change_schema) {
            let before = self.schema_version();
            let result = run_statement(stmt, params, out, &self.config);
            if let Err(denied) = self.check_schema_change(&before) {
                self.end_event_transaction();
                return Err(denied);
            }
            return result;
        }
        // `CREATE` or `ALTER`. A plain `CREATE` (a new object's `CREATE TABLE`, say) that does
        // not mention the reserved prefix cannot make a tie, and needs neither the savepoint
        // nor the check (some 50 us of a new object's first event).
        if sql
            .as_deref()
            .is_some_and(|s| security::is_plain_create(s) && !security::mentions_reserved(s))
        {
            return run_statement(stmt, params, out, &self.config);
        }
        self.as_host(|conn| conn.execute_batch("SAVEPOINT _do_guest_ddl"))
            .map_err(sql_error)?;
        let before = self.schema_version();
        let result = run_statement(stmt, params, out, &self.config)
            .and_then(|read| self.check_schema_change(&before).map(|()| read));
        if self.conn.is_autocommit() {
            // The statement's failure ended the whole transaction (an interrupt at the CPU
            // limit, say), savepoint included; `exec` begins it anew and dooms the event.
            return result;
        }
        let end = match result {
            Ok(_) => "RELEASE _do_guest_ddl",
            Err(_) => "ROLLBACK TO _do_guest_ddl; RELEASE _do_guest_ddl",
        };
        if let Err(e) = self.as_host(|conn| conn.execute_batch(end)) {
            // The statement could not be undone: end the event's transaction instead, so that
            // nothing of it is committed.
            tracing::warn!("cannot end a guest schema change's savepoint: {e}");
            self.end_event_transaction();
            return Err(sql_error(e));
        }
        result
    }

    /// After a guest statement: if the schema changed since `before` (its version then), the
    /// schema must have no tie to the reserved namespace ([`reserved_ties`]).
    fn check_schema_change(&self, before: &rusqlite::Result<i64>) -> Result<(), SqlError> {
        if let (Ok(a), Ok(b)) = (before, self.schema_version())
            && *a == b
        {
            return Ok(());
        }
        match self.as_host(reserved_ties) {
            Ok(false) => Ok(()),
            Ok(true) => Err(SqlError::AccessDenied(
                "names starting with _do_, and foreign keys to such tables, are reserved for the \
                 host"
                    .into(),
            )),
            Err(e) => Err(sql_error(e)),
        }
    }

    /// The schema's version (see [`SCHEMA_VERSION_QUERY`]).
    fn schema_version(&self) -> rusqlite::Result<i64> {
        self.as_host(|_| {
            self.host_statement(SCHEMA_VERSION_QUERY)?
                .query_row([], |r| r.get(0))
        })
    }

    /// Rolls the event's transaction back in the middle of a guest query, which then fails:
    /// [`SqlStore::exec`] sees the connection out of its transaction, begins a new one and
    /// dooms the event, so nothing of it is committed.
    fn end_event_transaction(&self) {
        if let Err(e) = self.as_host(|conn| conn.execute_batch("ROLLBACK")) {
            tracing::warn!("cannot roll back the event's transaction: {e}");
        }
    }

    /// Runs `f` on the connection with the guest authorizer off (the host's own statements in
    /// the middle of a guest query), then puts the mode back.
    fn as_host<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let guest = self.guest.is_on();
        self.guest.set(false);
        let result = f(&self.conn);
        self.guest.set(guest);
        result
    }

    /// Size of the database in bytes (pages in use times page size).
    pub fn database_size(&mut self) -> Result<u64, StorageError> {
        self.settle_ahead()?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok(pages.max(0) as u64 * self.page_size)
    }

    /// The object's alarm time, including changes made earlier in the current event.
    pub fn alarm(&self) -> Result<Option<i64>, StorageError> {
        let mut stmt = self.conn.prepare("SELECT at FROM _do_alarm WHERE id = 0")?;
        let mut rows = stmt.query([])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Sets (`Some`) or clears (`None`) the alarm inside the current transaction.
    pub fn set_alarm(&mut self, at: Option<i64>) -> Result<(), StorageError> {
        self.settle_ahead()?;
        match at {
            Some(at) => self.conn.execute(
                "INSERT INTO _do_alarm (id, at) VALUES (0, ?1) ON CONFLICT (id) DO UPDATE SET at = ?1",
                [at],
            )?,
            None => self.conn.execute("DELETE FROM _do_alarm WHERE id = 0", [])?,
        };
        Ok(())
    }

    /// A value from the host's metadata table (or deferred for it).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        if let Some((_, value)) = self.deferred.iter().rev().find(|(k, _)| *k == key) {
            return Ok(Some(value.clone()));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT value FROM _do_meta WHERE key = ?1")?;
        let mut rows = stmt.query([key])?;
        Ok(match rows.next()? {
            Some(row) => row.get(0)?,
            None => None,
        })
    }

    /// Stores a metadata value (inside the current transaction, if any).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        self.set_metas(&[(key, value)])
    }

    /// Metadata for the next commit: the event's, if one is about to run, else their own.
    /// A new object's ID goes in with its first event this way: one commit instead of two
    /// on its first request, and never a commit of the object without its ID before it.
    /// Read back by [`SqlStore::meta`] meanwhile; written at the latest when the store closes.
    pub(super) fn defer_metas(&mut self, pairs: &[(&'static str, &str)]) {
        self.deferred
            .extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
    }

    /// Stores metadata values with any deferred ones, all in one transaction: their own, or
    /// the current one if one is open. The deferred ones stay deferred until the transaction
    /// holding them commits: their own here, or the open one (see [`SqlStore::finish_event`]).
    pub fn set_metas(&mut self, pairs: &[(&str, &str)]) -> Result<(), StorageError> {
        self.settle_ahead()?;
        self.write_metas(pairs)
    }

    /// [`SqlStore::set_metas`], leaving anything run ahead as it is.
    fn write_metas(&mut self, pairs: &[(&str, &str)]) -> Result<(), StorageError> {
        let deferred = std::mem::take(&mut self.deferred);
        let all = deferred
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(pairs.iter().copied());
        let autocommit = self.conn.is_autocommit();
        let own = autocommit && deferred.len() + pairs.len() > 1;
        let result = (|| -> rusqlite::Result<()> {
            if own {
                self.conn.execute_batch("BEGIN")?;
            }
            for (key, value) in all {
                self.host_statement(META_UPSERT)?.execute([key, value])?;
            }
            if own {
                self.conn.execute_batch("COMMIT")?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.deferred = deferred;
            if own {
                self.rollback_quietly();
            }
            return Err(e.into());
        }
        if !autocommit {
            self.deferred = deferred;
        }
        Ok(())
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        // A spare never claimed: what was run ahead goes.
        if self.ahead.is_some() {
            self.rollback_quietly();
        }
        // Metadata still deferred (no event ever committed): written now, before the close
        // makes it durable. (If it cannot be, the directory stays: another actor of the same
        // object may be opening it already. Nothing in it was ever acknowledged.)
        if !self.deferred.is_empty() {
            // An event left open (a panic on the way) is abandoned, as the close would do.
            self.rollback_quietly();
            if let Err(e) = self.set_metas(&[]) {
                tracing::error!(path = %self.path.display(), "cannot store the object's ID: {e}");
            }
        }
        // Commits not synced yet (their responses are held): synced now, with any new
        // directory entries, rather than left to the close's checkpoint, which does not sync
        // those entries and may be blocked.
        if let Err(e) = self.sync() {
            tracing::error!(path = %self.path.display(), "sync before closing failed: {e}");
        }
        // After a failed sync the WAL may hold frames the disk does not: no checkpoint may copy
        // them into the file, and their cached pages go once the connection has closed, so
        // the next open recovers only what the disk holds (see `sync_error`).
        if self.sync_error.is_some() {
            if let Err(e) = self
                .conn
                .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            {
                tracing::error!(path = %self.path.display(), "cannot keep the close from checkpointing: {e}");
            }
            for file in self.wal_file.iter().chain(&self.db_file) {
                file.discard_cache.store(true, Ordering::Release);
            }
            return;
        }
        // Closing checkpoints the WAL into the file and deletes the WAL: that checkpoint must
        // sync the file first, which the first-commit OFF mode would not do.
        if self.fresh_wal.load(Ordering::Acquire)
            && let Err(e) = self.conn.execute_batch(&format!(
                "PRAGMA synchronous = {}",
                self.config.sync.pragma()
            ))
        {
            tracing::error!(path = %self.path.display(), "cannot restore synchronous mode: {e}");
        }
        // A moved database (see `moved_to`): SQLite's close skips its checkpoint and the WAL's
        // removal, so do what it would. The WAL goes only once everything in it is in the
        // (synced) file; otherwise it stays, and the next open reads its frames back.
        if self.moved {
            let checkpoint = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
            match checkpoint {
                Ok(0) => {
                    let wal = create::sidecar(&self.path, "-wal");
                    if let Err(e) = fs::remove_file(&wal) {
                        tracing::warn!(path = %wal.display(), "cannot remove the WAL: {e}");
                    }
                }
                Ok(_) => {
                    tracing::warn!(path = %self.path.display(), "checkpoint before closing was blocked; the WAL stays")
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "cannot checkpoint before closing: {e}")
                }
            }
        }
    }
}

/// Lookaside memory (SQLite's per-connection pool for small allocations): 32 slots of 256
/// bytes. SQLite's default, 1200 x 100 bytes, is about 120 KiB per connection, most of an idle
/// object's footprint (one connection per live object); 32 slots keep the fast path for the
/// common small allocations at an eighth of the memory.
const LOOKASIDE: (std::ffi::c_int, std::ffi::c_int) = (256, 32);

/// Sets SQLite's process-wide defaults for object connections, once, before SQLite starts.
/// Every host path that opens a database calls it first (`sqlite3_config` must not race with
/// SQLite starting up); later calls wait for the first and do nothing:
///
/// - the lookaside size (`LOOKASIDE`), so connections are born with it rather than allocating and
///   initialising SQLite's default first (page faults on fresh memory at every open);
/// - no bulk page-cache allocation per connection (SQLite's default is 20 pages, about 90 KiB,
///   touched at the first read): pages are allocated as a database uses them;
/// - no memory statistics: with them, every SQLite allocation and free takes a process-wide
///   mutex to count bytes, which the host never reads (no soft heap limit either).
///
/// Returns whether SQLite took the settings (it refuses once it has started, e.g. if
/// something else in the process opened a database first).
pub fn configure_sqlite() -> bool {
    static CONFIGURED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CONFIGURED.get_or_init(|| {
        // SAFETY: sqlite3_config is only valid before sqlite3_initialize (it returns
        // SQLITE_MISUSE otherwise, which is handled); the variadic arguments have the types
        // SQLite reads for these options (int, int; and void*, int, int).
        unsafe {
            let lookaside = rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_LOOKASIDE,
                LOOKASIDE.0,
                LOOKASIDE.1,
            );
            let page_cache = rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as std::ffi::c_int,
                0 as std::ffi::c_int,
            );
            let memstatus = rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            );
            let ok = lookaside == rusqlite::ffi::SQLITE_OK
                && page_cache == rusqlite::ffi::SQLITE_OK
                && memstatus == rusqlite::ffi::SQLITE_OK;
            if !ok {
                tracing::debug!(
                    "SQLite had started before its settings could be made \
                     (codes {lookaside}, {page_cache}, {memstatus}); each connection shrinks \
                     its lookaside"
                );
            }
            ok
        }
    })
}

/// Resizes a connection's lookaside memory to [`LOOKASIDE`], for when [`configure_sqlite`]
/// came too late.
fn shrink_lookaside(conn: &Connection) {
    // SAFETY: called right after open, before any statement, on a handle this thread owns;
    // SQLITE_DBCONFIG_LOOKASIDE with a null buffer makes SQLite allocate the pool itself.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE.0,
            LOOKASIDE.1,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!("cannot resize SQLite lookaside memory (code {rc})");
    }
}

/// Whether the schema has an object named `_do_...` or on such a table, or a foreign key to
/// such a table, other than the host's own (see [`RESERVED_CANDIDATES`]).
fn reserved_ties(conn: &Connection) -> rusqlite::Result<bool> {
    let mut candidates = conn.prepare(RESERVED_CANDIDATES)?;
    let mut rows = candidates.query([])?;
    while let Some(row) = rows.next()? {
        let (name, table): (String, String) = (row.get(0)?, row.get(1)?);
        if security::is_reserved(&name) || security::is_reserved(&table) {
            return Ok(true);
        }
        let mut keys = conn.prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?;
        let targets = keys.query_map([&name], |r| r.get::<_, String>(0))?;
        for target in targets {
            if security::is_reserved(&target?) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Binds, runs and collects one statement. Returns the rows it read.
fn run_statement(
    stmt: &mut Statement<'_>,
    params: &mut &[Value],
    out: &mut ExecResult,
    config: &StorageConfig,
) -> Result<u64, SqlError> {
    let wanted = stmt.parameter_count();
    if wanted > params.len() {
        return Err(SqlError::InvalidArgument(format!(
            "the statement has {wanted} placeholder(s) but only {} parameter(s) are left",
            params.len()
        )));
    }
    let (mine, rest) = params.split_at(wanted);
    *params = rest;
    stmt.clear_bindings();
    for (i, value) in mine.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, BoundValue(value))
            .map_err(sql_error)?;
    }
    out.columns = stmt.column_names().map(str::to_owned).collect();
    let scans_before = stmt.get_status(StatementStatus::FullscanStep);
    let ncols = stmt.column_count();
    let mut bytes = 0usize;
    let mut returned = 0u64;
    {
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(sql_error)? {
            let mut values = Vec::with_capacity(ncols);
            for i in 0..ncols {
                let value = row.get_ref(i).map_err(sql_error)?;
                bytes += value_size(&value);
                values.push(from_sqlite(value));
            }
            if bytes > config.max_result_bytes {
                return Err(SqlError::TooBig(format!(
                    "the result is larger than {} bytes; page it with LIMIT/OFFSET or a WHERE on a key",
                    config.max_result_bytes
                )));
            }
            out.rows.push(values);
            returned += 1;
        }
    }
    let scans = stmt
        .get_status(StatementStatus::FullscanStep)
        .saturating_sub(scans_before);
    Ok(returned + scans.max(0) as u64)
}

fn value_size(value: &ValueRef<'_>) -> usize {
    16 + match value {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
        _ => 0,
    }
}

fn from_sqlite(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// A WIT value bound as a statement parameter.
struct BoundValue<'a>(&'a Value);

impl rusqlite::ToSql for BoundValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Maps a SQLite failure on a guest statement to the typed WIT error.
fn sql_error(err: rusqlite::Error) -> SqlError {
    let message = err.to_string();
    let code = match &err {
        rusqlite::Error::SqliteFailure(e, _) | rusqlite::Error::SqlInputError { error: e, .. } => {
            e.code
        }
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => {
            return SqlError::InvalidArgument(message);
        }
        _ => return SqlError::Other(message),
    };
    match code {
        ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch => SqlError::Constraint(message),
        // Which of the size limit and a full disk it was is added by `SqlStore::exec`.
        ErrorCode::DiskFull => SqlError::DatabaseFull(message),
        ErrorCode::TooBig => SqlError::TooBig(message),
        ErrorCode::AuthorizationForStatementDenied => SqlError::AccessDenied(message),
        ErrorCode::ParameterOutOfRange => SqlError::InvalidArgument(message),
        ErrorCode::OperationInterrupted => {
            SqlError::Other(format!("{message}: the event ran out of CPU time"))
        }
        // SQLITE_ERROR: parse errors, missing tables or columns, denied functions, limits.
        ErrorCode::Unknown if message.contains("not authorized") => SqlError::AccessDenied(message),
        ErrorCode::Unknown if message.contains("too many") || message.contains("too big") => {
            SqlError::TooBig(message)
        }
        ErrorCode::Unknown => SqlError::Syntax(message),
        _ => SqlError::Other(message),
    }
}

#[cfg(test)]
mod tests;
