//! Where object databases live, and spare databases made ahead for new objects.
//!
//! Each object has a directory `objects/<2 hex>/<64 hex>/` holding `db.sqlite3` and, while it is
//! live, its WAL. Creating those files on a new object's first request costs file-system
//! metadata writes that must be durable before the response: the new file, its WAL, the
//! directory entries. A background thread does that work ahead of time instead: it keeps a few
//! spare object directories in `spare/`, each with the database template and a WAL file already
//! written out (zeros) and everything synced, and with its SQLite connection already open. A
//! new object takes one with a single `rename` of the directory into place (the connection
//! follows the files: SQLite holds them open), so its first request opens nothing and its first
//! sync is an overwrite of already-allocated WAL blocks. The rename is also how the host learns
//! that the object is new: it does not replace an existing directory (`RENAME_NOREPLACE`), and
//! when it finds one the spare goes back unused and the object's own database is opened.
//!
//! The thread refills in batches, once a quarter of the spares are taken, rather than after
//! every claim: the spares of a batch share the sync of `spare/`, and so do the claims since
//! the last batch. It refills once new objects pause (see [`Spares::busy_for`]), so that its
//! work does not compete with a new object's first event, unless half the spares are gone. For
//! the same reason a claim wakes the thread itself only then: otherwise the engine's epoch
//! thread does, on its next tick ([`Databases::nudge_on`]).
//!
//! A spare is made in `spare/.making/` and renamed into `spare/` when its files are synced
//! (see [`Spares::make_one`]).
//!
//! Behind the open spares is a reserve: spares made and synced the same way but not opened
//! (no file descriptors, no memory). The thread refills the open spares from it, which costs
//! no disk writes, so a burst of new objects finds its databases made and causes no file
//! creation or sync beside its own commits while the reserve lasts. The reserve is made only
//! while new objects pause, so its writes do not queue in front of a new object's first sync,
//! and only as large as the number of new objects seen since the start (at most
//! `spare_reserve`). Unopened spares are kept across restarts: at start, one exactly as made
//! (the template and a WAL of zeros: nothing was ever committed to it) is synced and taken
//! back into the reserve.
//!
//! Durability without syncing the rename on the request path: the object's ID is part of the
//! first commit to a claimed spare's database (`_do_meta` key `id`, written with the object's
//! first event), so every acknowledged write of the object lies behind it in the same WAL. The
//! background thread syncs the renamed directories once new objects pause, or at the latest
//! [`CLAIMS_SYNCED_WITHIN`] after the first claim (several claims sharing the sync of
//! `spare/`), so their writes do not queue in front of new objects' first syncs: always the
//! shard directories that received spares before
//! `spare/`, with claims held off meanwhile, so that the thread itself never makes a claimed
//! directory's removal from `spare/` durable before its new entry. If power is lost before
//! that, the directory may be found back in `spare/` at the next start, and
//! [`Databases::open_dir`] moves every spare that holds an ID to its object's place before
//! anything is served. Spares without an ID hold nothing (nothing was ever committed to them)
//! and are removed then. (On a file system without a journal a rename is not atomic across a
//! power loss in any case: the kernel may write either directory first.)

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::ahead::Plan;
use super::{SqlStore, StorageConfig, StorageError, create};
use crate::engine::{EpochTicker, Nudge};
use crate::id::ObjectId;

/// File name of an object's database inside its directory.
const DB_FILE: &str = "db.sqlite3";
/// `_do_meta` key holding the object's ID in a database made from a spare.
pub(super) const ID_KEY: &str = "id";
/// Bytes of zeros a spare's WAL starts with: room for the first events' frames (4 KiB pages
/// plus 24-byte frame headers) without growing the file.
const SPARE_WAL_BYTES: usize = 16 * (4096 + 24) + 32;

/// The object databases of one data directory.
pub struct Databases {
    data_dir: PathBuf,
    /// The data directory's lock file, held (`flock`) until [`Databases::close`].
    lock: Mutex<Option<fs::File>>,
    config: StorageConfig,
    spares: Option<Arc<Spares>>,
    /// The spare-making thread; joined by [`Databases::close`] (or on drop), so no
    /// background work outlives this.
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by [`Databases::close`]: no database opens after it (the lock is gone).
    closed: AtomicBool,
}

/// Spare object directories, and the thread that makes them.
struct Spares {
    dir: PathBuf,
    config: StorageConfig,
    /// Ready (fully synced) spare directories, most with their database open.
    ready: Mutex<Vec<Spare>>,
    /// Made and synced spare directories whose databases are not open (the reserve): the
    /// thread opens them to refill `ready`, which costs no disk writes.
    reserve: Mutex<Vec<PathBuf>>,
    /// Spares found intact in `spare/` at start, not yet synced and taken into the reserve.
    leftovers: Mutex<Vec<PathBuf>>,
    /// Held by a claim while it renames, and by the thread while it syncs `spare/`.
    claiming: Mutex<()>,
    /// Shard directories that received claimed spares and await a sync.
    unsynced: Mutex<Unsynced>,
    /// Claims removed entries from `spare/` since it was last synced.
    spare_dir_dirty: AtomicBool,
    /// Open spares kept ready.
    target: usize,
    /// Most spares kept in the reserve.
    reserve_max: usize,
    /// New objects that took a spare since the start, plus the spares adopted at start: the
    /// reserve is filled up to this many (at most `reserve_max`), so a host that makes few
    /// new objects keeps few spares on disk.
    demand: AtomicUsize,
    /// When the last claims happened: the thread's disk work waits for a pause in them.
    claims: Mutex<Claims>,
    /// Spare names are `<prefix>-<seq>`; the prefix (process ID and start time) keeps them
    /// apart from any left by an earlier run (a container's process is always PID 1).
    prefix: String,
    seq: AtomicU64,
    worker: Mutex<Option<std::thread::Thread>>,
    stop: AtomicBool,
    /// What new objects began their first event with, run ahead on spares as they are opened
    /// (see [`super::ahead`]).
    plan: Arc<Plan>,
    /// Wakes the thread after a claim (see [`Databases::nudge_on`]).
    nudge: Nudge,
}

/// Longest the thread's disk work waits for the last new object's first sync (see
/// [`FirstSync`]): most are done in well under 1 ms, and the sync tells the thread so; this
/// covers a first event that never commits.
const QUIET: Duration = Duration::from_millis(5);

/// Longest a claimed spare's new directory entry waits for its sync while new objects keep
/// coming: well within the kernel's own write-back of dirty metadata (30 s by default), so
/// the host, not the kernel, decides the order in which the directories reach the disk.
const CLAIMS_SYNCED_WITHIN: Duration = Duration::from_secs(5);

/// About how long the thread's disk work takes on a disk that syncs in 0.2-0.3 ms: making a
/// spare (three syncs, and that of `spare/` after the last), and syncing claims' directories.
const SPARE_TAKES: Duration = Duration::from_millis(2);
const SYNC_CLAIMS_TAKES: Duration = Duration::from_millis(1);

/// Least time after which a new object that comes at a steady pace counts as overdue (see
/// [`late`]).
const LATE: Duration = Duration::from_millis(1);

/// Most spares made for the reserve between two looks at what else is due.
const RESERVE_BATCH: usize = 16;

/// What the spare thread does next.
#[derive(Debug, PartialEq)]
enum Step {
    /// Sync this many spares found at start, into the reserve (while new objects pause).
    Adopt(usize),
    /// Refill the open spares: this many are missing; `at_once` if half of them are gone
    /// (else making new ones stops when the next new object is due).
    Ready { missing: usize, at_once: bool },
    /// Sync the directories that claims changed (once new objects pause, or after
    /// [`CLAIMS_SYNCED_WITHIN`]).
    SyncClaims,
    /// Make up to this many spares for the reserve, while new objects pause.
    Reserve(usize),
    /// A new object's first sync is not done, or the next new object is due: look again
    /// after this long (or when woken).
    Wait(Duration),
    /// Nothing to do until a claim (or closing) wakes the thread.
    Idle,
}

/// When claims happened.
#[derive(Default)]
struct Claims {
    last: Option<Instant>,
    /// The time between the last two.
    gap: Option<Duration>,
    /// Claimed spares whose databases have not had their first sync yet (see [`FirstSync`]).
    first_syncs: usize,
    /// The thread waits for those syncs: the last one wakes it.
    awaited: bool,
}

impl Claims {
    /// A claim now: its database's first sync is pending from here on (see [`FirstSync`]).
    fn note(&mut self, now: Instant) {
        self.gap = self.last.map(|last| now.saturating_duration_since(last));
        self.last = Some(now);
        self.first_syncs += 1;
    }

    /// See [`Spares::busy_for`].
    fn busy_for(&mut self, now: Instant, work: Duration) -> Option<Duration> {
        let since = now.saturating_duration_since(self.last?);
        // Until the new objects' first syncs are done, at most QUIET: a first event may fail
        // and leave its object live without a sync.
        if since < QUIET && self.first_syncs > 0 {
            self.awaited = true;
            return Some(QUIET - since);
        }
        match self.gap {
            // At a steady pace the next one is due `gap` after the last, give or take the
            // client's timer and the network: the pace counts as broken (a pause) only once it
            // is [`late`] overdue. Waiting just until `gap` started the work as the next one
            // came in, and its syncs queued in front of that object's first.
            Some(gap) if since + work >= gap && since < gap + late(gap) => {
                Some(gap + late(gap) - since)
            }
            _ => None,
        }
    }
}

/// How late a new object may be, after the last two's gap, before the thread takes the pace
/// as broken: a quarter of the gap, at least [`LATE`].
fn late(gap: Duration) -> Duration {
    (gap / 4).max(LATE)
}

/// Held by a database made from a claimed spare until its first sync has run (it goes with
/// that [`super::SyncJob`]), or until it is closed without one: the thread's disk work waits
/// for it (see [`Spares::busy_for`]), so that its writes do not queue in front of that sync,
/// and starts as soon as it is done.
#[derive(Debug)]
pub(super) struct FirstSync(Weak<Spares>);

impl FirstSync {
    /// For a claim that [`Claims::note`] counted.
    fn new(spares: &Arc<Spares>) -> Self {
        Self(Arc::downgrade(spares))
    }
}

impl Drop for FirstSync {
    fn drop(&mut self) {
        let Some(spares) = self.0.upgrade() else {
            return;
        };
        let wake = {
            let mut claims = spares.claims.lock().unwrap_or_else(|e| e.into_inner());
            claims.first_syncs = claims.first_syncs.saturating_sub(1);
            claims.first_syncs == 0 && std::mem::take(&mut claims.awaited)
        };
        if wake {
            spares.wake();
        }
    }
}

/// Directories that claims changed and that await a sync.
#[derive(Default)]
struct Unsynced {
    dirs: Vec<PathBuf>,
    /// When the first of them was changed.
    since: Option<Instant>,
}

/// A ready spare: its directory, and its database already open (unless opening failed, in
/// which case the claim opens it).
struct Spare {
    dir: PathBuf,
    store: Option<SqlStore>,
}

/// What [`Spares::claim`] did for an object.
// Returned once per opened object and taken apart at once: boxing the store would only add an
// allocation to a new object's first request.
#[allow(clippy::large_enum_variant)]
enum Claim {
    /// A spare is the object's directory now, with its open database if it had one.
    Taken(Option<SqlStore>, FirstSync),
    /// The object's directory exists: not a new object.
    Exists,
    /// No spare was ready, or moving one failed: the object's database is opened (or
    /// created) in place.
    NoSpare,
}

/// Renames `from` to `to` unless `to` exists (`renameat2` with `RENAME_NOREPLACE`: the check
/// and the move are one step). On a file system without it, looks first, then renames.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call; no other memory is passed.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS) => {
            if to.exists() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// Whether a failed move of a spare found the object's directory already there.
fn is_already_there(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY))
}

impl Databases {
    /// The databases under `data_dir`, keeping `spares` new-object directories ready (0 = none).
    /// Before returning, moves any spare that an object had claimed to its object's place (a
    /// power loss can leave it in `spare/`) and removes unclaimed ones.
    ///
    /// Takes the data directory's lock first (`<data>/lock`): one host per directory.
    pub fn open_dir(data_dir: &Path, config: &StorageConfig) -> Result<Self, StorageError> {
        let lock = lock_data_dir(data_dir)?;
        let spares = config.spare_databases;
        let dir = data_dir.join("spare");
        let leftovers = recover_spares(data_dir, &dir).map_err(|source| StorageError::Create {
            path: dir.clone(),
            source,
        })?;
        // All 256 shard directories up front: no new object waits for a `mkdir` of its shard
        // or a sync of the new entry.
        let objects = data_dir.join("objects");
        let moved = migrate_flat_layout(&objects).map_err(|source| StorageError::Create {
            path: objects.clone(),
            source,
        })?;
        if moved > 0 {
            tracing::info!(
                "moved {moved} object database(s) from objects/<2 hex>/<id>.sqlite3 (dohost \
                 before 2026-11-27) to objects/<2 hex>/<id>/db.sqlite3"
            );
        }
        make_shards(&objects).map_err(|source| StorageError::CreateDir {
            path: objects,
            source,
        })?;
        let (spares, worker) = match spares {
            0 => {
                leftovers.iter().for_each(|d| drop(fs::remove_dir_all(d)));
                (None, None)
            }
            n => {
                make_making_dir(&dir).map_err(|source| StorageError::Create {
                    path: dir.clone(),
                    source,
                })?;
                let (spares, worker) = Spares::start(dir, config.clone(), n, leftovers);
                (Some(spares), Some(worker))
            }
        };
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            lock: Mutex::new(Some(lock)),
            config: config.clone(),
            spares,
            worker: Mutex::new(worker),
            closed: AtomicBool::new(false),
        })
    }

    /// Opens the database of `id`, creating it (from a spare if one is ready) if it is new.
    /// A new object's database from a spare gets its ID, and `name` if given, in its first
    /// commit.
    pub fn open(&self, id: &ObjectId, name: Option<&str>) -> Result<SqlStore, StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let path = database_path(&self.data_dir, id);
        let object_dir = path.parent().expect("database files have a directory");
        // No look first whether the object exists: the move of a spare fails if it does (one
        // path lookup fewer on the way of a new object's first request).
        if let Some(spares) = &self.spares
            && let Claim::Taken(store, first_sync) = spares.claim(object_dir)
        {
            let hex = id.to_hex();
            let mut meta = vec![(ID_KEY, hex.as_str())];
            meta.extend(name.map(|name| (super::NAME_KEY, name)));
            let result = match store {
                Some(mut store) => {
                    store.moved_to(&path);
                    Ok(store)
                }
                None => SqlStore::open_spare(&path, &self.config, false, None),
            }
            .map(|mut store| {
                store.defer_metas(&meta);
                store.learn_into(spares.plan.clone());
                store.first_sync = Some(Arc::new(first_sync));
                store
            });
            if result.is_err() {
                // A spare that cannot be opened: take it away, so the next attempt starts
                // over (without its ID it could not be recovered from `spare/` after a power
                // loss).
                let _ = fs::remove_dir_all(object_dir);
            }
            return result;
        }
        SqlStore::open(&path, &self.config)
    }

    /// Spare databases ready (open) now.
    pub fn spares_open(&self) -> usize {
        self.spares
            .as_ref()
            .map_or(0, |s| s.ready.lock().map_or(0, |r| r.len()))
    }

    /// Lets `ticker` wake the spare-database thread after claims that need nothing at once,
    /// instead of the claim itself (see [`EpochTicker`]).
    pub fn nudge_on(&self, ticker: &EpochTicker) {
        if let Some(spares) = &self.spares {
            ticker.take_over(
                spares,
                |s| &s.nudge,
                Spares::wake,
                |s| s.stop.load(Ordering::Acquire),
            );
        }
    }
}

#[cfg(test)]
impl Databases {
    /// New objects made from spares whose first sync has not run yet.
    pub(super) fn first_syncs_pending(&self) -> usize {
        self.spares
            .as_ref()
            .map_or(0, |s| s.claims.lock().unwrap().first_syncs)
    }

    /// Spares ready now, and how many are kept.
    pub(super) fn spares_ready(&self) -> (usize, usize) {
        self.spares
            .as_ref()
            .map_or((0, 0), |s| (s.ready.lock().unwrap().len(), s.target))
    }

    /// The reserve's spare directories now.
    pub(super) fn reserve_dirs(&self) -> Vec<PathBuf> {
        self.spares
            .as_ref()
            .map_or(Vec::new(), |s| s.reserve.lock().unwrap().clone())
    }

    /// Spares in the reserve now, and how many the reserve is being filled to.
    pub(super) fn spares_in_reserve(&self) -> (usize, usize) {
        self.spares.as_ref().map_or((0, 0), |s| {
            (s.reserve.lock().unwrap().len(), s.reserve_goal())
        })
    }

    /// How many of the `next` ready spares that claims take next have statements run ahead.
    pub(super) fn spares_run_ahead(&self, next: usize) -> usize {
        self.spares.as_ref().map_or(0, |s| {
            let ready = s.ready.lock().unwrap();
            ready
                .iter()
                .rev()
                .take(next)
                .filter(|spare| spare.store.as_ref().is_some_and(|s| s.ahead.is_some()))
                .count()
        })
    }
}

impl Databases {
    /// Stops making spares: joins the background thread, closes the spares' connections,
    /// syncs the directories claims changed and releases the data directory's lock; opening
    /// a database fails from then on. A host calls this when it shuts down, so that nothing it
    /// started still writes in the data directory when another host (say, the same one
    /// restarted) opens it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(spares) = &self.spares {
            spares.stop.store(true, Ordering::Release);
            spares.wake();
            let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(worker) = worker {
                let _ = worker.join();
            }
            spares
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            if let Err(e) = spares.sync_claims() {
                tracing::warn!(dir = %spares.dir.display(), "cannot sync a directory: {e}");
            }
        }
        // Closing the file releases the lock.
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        self.close();
    }
}

/// The file in a data directory that the host serving from it holds locked.
const LOCK_FILE: &str = "lock";
/// How long a host waits for the lock held by another (one still shutting down, say).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Locks `data_dir` for this host (`flock` on `<data>/lock`, which then names this process), so
/// that two hosts never serve, recover spares or write object databases in one directory: the
/// kernel releases the lock when the holder exits, however it exits. Waits up to
/// [`LOCK_WAIT`] for a holder that is shutting down.
fn lock_data_dir(data_dir: &Path) -> Result<fs::File, StorageError> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let path = data_dir.join(LOCK_FILE);
    let lock_err = |source| StorageError::Lock {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(lock_err)?;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_err)?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(lock_err(err));
        }
        if std::time::Instant::now() >= deadline {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(StorageError::InUse {
                dir: data_dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "a process that holds its lock file".into()
                } else {
                    holder.into()
                },
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "pid {}", std::process::id()))
        .map_err(lock_err)?;
    Ok(file)
}

/// Where the database of `id` lives inside the data directory.
pub fn database_path(data_dir: &Path, id: &ObjectId) -> PathBuf {
    object_dir(data_dir, &id.to_hex()).join(DB_FILE)
}

fn object_dir(data_dir: &Path, hex: &str) -> PathBuf {
    data_dir.join("objects").join(&hex[..2]).join(hex)
}

impl Spares {
    fn start(
        dir: PathBuf,
        config: StorageConfig,
        target: usize,
        leftovers: Vec<PathBuf>,
    ) -> (Arc<Self>, std::thread::JoinHandle<()>) {
        let reserve_max = config.spare_reserve;
        let spares = Arc::new(Spares {
            dir,
            config,
            ready: Mutex::new(Vec::new()),
            reserve: Mutex::new(Vec::new()),
            demand: AtomicUsize::new(leftovers.len().min(reserve_max)),
            leftovers: Mutex::new(leftovers),
            claiming: Mutex::new(()),
            unsynced: Mutex::new(Unsynced::default()),
            spare_dir_dirty: AtomicBool::new(false),
            target,
            reserve_max,
            claims: Mutex::new(Claims::default()),
            prefix: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
            seq: AtomicU64::new(0),
            worker: Mutex::new(None),
            stop: AtomicBool::new(false),
            nudge: Nudge::default(),
            plan: Arc::default(),
        });
        let weak = Arc::downgrade(&spares);
        let handle = std::thread::Builder::new()
            .name("dohost-spares".into())
            .spawn(move || Spares::work(weak))
            .expect("spawn the spare-database thread");
        *spares.worker.lock().unwrap() = Some(handle.thread().clone());
        (spares, handle)
    }

    /// Moves a ready spare (or, if none is, one from the reserve) to `object_dir`, unless
    /// that exists already: then the spare is put back, and the object is not new.
    fn claim(self: &Arc<Self>, object_dir: &Path) -> Claim {
        let claiming = self.claiming.lock().unwrap_or_else(|e| e.into_inner());
        // And whether it came from the reserve, which a spare not used goes back to.
        let (spare, left, reserved) = {
            let mut ready = self.ready.lock().unwrap();
            let spare = match ready.pop() {
                Some(spare) => Some((spare, false)),
                None => self
                    .reserve
                    .lock()
                    .unwrap()
                    .pop()
                    .map(|dir| (Spare { dir, store: None }, true)),
            };
            match spare {
                Some((spare, reserved)) => (spare, ready.len(), reserved),
                None => {
                    drop(ready);
                    // Still answers whether the object is new: the caller opens it either way.
                    return Claim::NoSpare;
                }
            }
        };
        let result = (|| -> io::Result<Vec<PathBuf>> {
            let parent = object_dir.parent().unwrap_or(Path::new("."));
            // The shard directory exists but for the first objects in it: made only then.
            let mut dirs = match rename_no_replace(&spare.dir, object_dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && spare.dir.exists() => {
                    let dirs = create::create_dirs(parent)?;
                    rename_no_replace(&spare.dir, object_dir)?;
                    dirs
                }
                done => done.map(|()| Vec::new())?,
            };
            dirs.push(parent.to_path_buf());
            Ok(dirs)
        })();
        if let Err(e) = &result
            && is_already_there(e)
        {
            // Not a new object: the spare goes back where it was taken from, untouched.
            if reserved {
                self.reserve.lock().unwrap().push(spare.dir);
            } else {
                self.ready.lock().unwrap().push(spare);
            }
            return Claim::Exists;
        }
        let first_unsynced = match &result {
            Ok(dirs) => {
                self.claims.lock().unwrap().note(Instant::now());
                self.demand.fetch_add(1, Ordering::Relaxed);
                let mut unsynced = self.unsynced.lock().unwrap();
                let first = unsynced.dirs.is_empty();
                if first {
                    unsynced.since = Some(Instant::now());
                }
                unsynced.dirs.extend(dirs.iter().cloned());
                self.spare_dir_dirty.store(true, Ordering::Release);
                first
            }
            Err(_) => false,
        };
        drop(claiming);
        if first_unsynced || self.target.saturating_sub(left) >= self.batch() {
            // The refill waits for a pause in new objects anyway unless half the spares are
            // gone, and the directories' sync for one (see `next_step`): the ticker wakes the
            // thread then, off this new object's path.
            self.nudge.wake(left * 2 <= self.target, || self.wake());
        }
        match result {
            Ok(_) => Claim::Taken(spare.store, FirstSync::new(self)),
            Err(e) => {
                tracing::warn!(spare = %spare.dir.display(), "cannot use a spare database: {e}");
                drop(spare.store);
                let _ = fs::remove_dir_all(&spare.dir);
                Claim::NoSpare
            }
        }
    }

    /// The thread refills once this many spares are missing: a quarter of the target, so the
    /// rest covers new objects while a batch is made.
    fn batch(&self) -> usize {
        (self.target / 4).max(1)
    }

    fn wake(&self) {
        if let Some(worker) = &*self.worker.lock().unwrap() {
            worker.unpark();
        }
    }

    /// How many spares the reserve is filled to: as many as new objects took spares since the
    /// start (plus those adopted at start), at most `reserve_max`.
    fn reserve_goal(&self) -> usize {
        self.demand.load(Ordering::Relaxed).min(self.reserve_max)
    }

    /// What the thread does next, in order: sync the directories of claims that waited
    /// [`CLAIMS_SYNCED_WITHIN`]; refill the open spares once a batch is missing (from the
    /// reserve, then from the spares found at start, then by making new ones), while new
    /// objects pause unless half the spares are gone; and, while new objects pause, sync
    /// claims' directories, take the spares found at start into the reserve, and fill the
    /// reserve.
    fn next_step(&self) -> Step {
        // Claims' directories are synced once new objects pause too (or when the oldest has
        // waited CLAIMS_SYNCED_WITHIN): their disk writes would queue in front of new
        // objects' first syncs, and nothing acknowledged depends on them (see the module's
        // documentation).
        let claims_due = {
            let unsynced = self.unsynced.lock().unwrap();
            if !unsynced.dirs.is_empty() {
                let age = unsynced.since.map_or(Duration::MAX, |t| t.elapsed());
                Some(CLAIMS_SYNCED_WITHIN.saturating_sub(age))
            } else if self.spare_dir_dirty.load(Ordering::Acquire) {
                Some(Duration::ZERO)
            } else {
                None
            }
        };
        if claims_due.is_some_and(|due| due.is_zero()) {
            return Step::SyncClaims;
        }
        let mut wait = None::<Duration>;
        let mut wait_at_most = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
        let ready = self.ready.lock().unwrap().len();
        let missing = self.target.saturating_sub(ready);
        if missing >= self.batch() {
            // Opening spares costs no disk writes but CPU, which a new object's first event
            // on the other core felt (the p99 of new objects' first requests at 100/s halved
            // when the refill waited): at once only once half the spares are gone.
            if ready * 2 <= self.target {
                return Step::Ready {
                    missing,
                    at_once: true,
                };
            }
            match self.busy_for(SPARE_TAKES) {
                None => {
                    return Step::Ready {
                        missing,
                        at_once: false,
                    };
                }
                Some(busy) => wait_at_most(busy),
            }
        }
        if let Some(due) = claims_due {
            match self.busy_for(SYNC_CLAIMS_TAKES) {
                None => return Step::SyncClaims,
                Some(busy) => wait_at_most(busy.min(due)),
            }
        }
        let leftovers = self.leftovers.lock().unwrap().len();
        let short = self
            .reserve_goal()
            .saturating_sub(self.reserve.lock().unwrap().len());
        if leftovers > 0 || short > 0 {
            match self.busy_for(SPARE_TAKES) {
                None if leftovers > 0 => return Step::Adopt(leftovers.min(RESERVE_BATCH)),
                None => return Step::Reserve(short.min(RESERVE_BATCH)),
                Some(busy) => wait_at_most(busy),
            }
        }
        wait.map_or(Step::Idle, Step::Wait)
    }

    /// How long to wait before disk work that takes about `work`: until the last new object's
    /// first sync is done (at most [`QUIET`] after it came; the sync wakes the thread), and,
    /// if new objects came at a steady pace, until the work would end before the next one is
    /// due (or that one is a quarter of the interval late: [`late`]). `None`: now.
    ///
    /// Measured on 1,000 new objects at 100/s (the end-to-end harness), the share of them that
    /// found this thread at work when they came: 32-59% (3 runs) when the wait was 5 ms after
    /// each new object and ended as the next was due; 7-24% since (3 runs), and 43% in a slow
    /// spell of the disk, when making a spare takes longer than [`SPARE_TAKES`].
    fn busy_for(&self, work: Duration) -> Option<Duration> {
        self.claims.lock().unwrap().busy_for(Instant::now(), work)
    }

    /// The background loop (see [`Spares::next_step`]). Ends when the [`Databases`] is closed
    /// or dropped.
    fn work(weak: Weak<Spares>) {
        let mut failures = 0u32;
        loop {
            let Some(spares) = weak.upgrade() else { return };
            if spares.stop.load(Ordering::Acquire) {
                return;
            }
            let step = spares.next_step();
            let (work, result) = match step {
                Step::Adopt(n) => ("adopt the spare databases found at start", spares.adopt(n)),
                Step::Ready { missing, at_once } => (
                    "make spare databases",
                    spares.refill_ready(missing, at_once),
                ),
                Step::SyncClaims => ("sync the directories claims changed", spares.sync_claims()),
                Step::Reserve(n) => ("make spare databases", spares.fill_reserve(n)),
                Step::Wait(_) | Step::Idle => ("", Ok(())),
            };
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    // A full disk, say: new objects are created on demand meanwhile.
                    if failures == 0 {
                        tracing::warn!(
                            dir = %spares.dir.display(),
                            "cannot {work} (retrying in the background): {e}"
                        );
                    }
                    failures = failures.saturating_add(1);
                }
            }
            drop(spares);
            if failures > 0 {
                std::thread::park_timeout(Duration::from_millis(100 << failures.min(6)));
            } else if let Step::Wait(wait) = step {
                std::thread::park_timeout(wait);
            } else if step == Step::Idle {
                // Claims wake the thread (and so does closing).
                std::thread::park();
            }
        }
    }

    /// Refills the open spares (`missing` of them): from the reserve, which costs no disk
    /// writes, and by making the rest: unless `at_once`, only until the next new object is due
    /// (the next step makes the others), so that their syncs do not queue in front of its.
    fn refill_ready(&self, missing: usize, at_once: bool) -> io::Result<()> {
        let from_reserve = {
            let mut reserve = self.reserve.lock().unwrap();
            let keep = reserve.len().saturating_sub(missing);
            reserve.split_off(keep)
        };
        let mut rest = missing - from_reserve.len();
        self.open_ready(from_reserve);
        if rest > 0 && !self.leftovers.lock().unwrap().is_empty() {
            let adopted = self.take_leftovers(rest, usize::MAX)?;
            rest -= adopted.len();
            self.open_ready(adopted);
        }
        if rest > 0 {
            let made = self.make_batch(rest, || at_once || self.busy_for(SPARE_TAKES).is_none())?;
            self.open_ready(made);
        }
        Ok(())
    }

    /// Makes up to `count` spares for the reserve, stopping early when a new object comes.
    fn fill_reserve(&self, count: usize) -> io::Result<()> {
        let made = self.make_batch(count, || self.busy_for(SPARE_TAKES).is_none())?;
        self.reserve.lock().unwrap().extend(made);
        Ok(())
    }

    /// Takes up to `count` of the spares found intact at start into the reserve (while there
    /// is room in it; the rest are removed).
    fn adopt(&self, count: usize) -> io::Result<()> {
        let room = self
            .reserve_max
            .saturating_sub(self.reserve.lock().unwrap().len());
        let adopted = self.take_leftovers(count, room)?;
        self.reserve.lock().unwrap().extend(adopted);
        Ok(())
    }

    /// Takes up to `count` of the spares found intact at start, once each is synced (an
    /// earlier run may have written its files and stopped before syncing them), and up to
    /// `keep` of them: the others are removed. On an error, the ones not yet taken go back.
    fn take_leftovers(&self, count: usize, keep: usize) -> io::Result<Vec<PathBuf>> {
        let mut found = {
            let mut leftovers = self.leftovers.lock().unwrap();
            let from = leftovers.len().saturating_sub(count);
            leftovers.split_off(from)
        };
        let mut taken = Vec::new();
        let result = (|| {
            while let Some(dir) = found.pop() {
                if taken.len() < keep && sync_spare(&dir).is_ok() {
                    taken.push(dir);
                } else if let Err(e) = remove(fs::remove_dir_all(&dir)) {
                    found.push(dir);
                    return Err(e);
                }
            }
            // Their entries in `spare/` too (and the removals).
            self.spare_dir_dirty.store(true, Ordering::Release);
            self.sync_claims()
        })();
        if let Err(e) = result {
            let mut leftovers = self.leftovers.lock().unwrap();
            leftovers.extend(found);
            leftovers.append(&mut taken);
            return Err(e);
        }
        tracing::debug!(count = taken.len(), "took spare databases found at start");
        Ok(taken)
    }

    /// Makes up to `count` spares (fewer if closing, or once `go_on` says stop), syncs `spare/`
    /// once for all of them (and for the claims since the last sync), and returns them.
    fn make_batch(&self, count: usize, go_on: impl Fn() -> bool) -> io::Result<Vec<PathBuf>> {
        let started = Instant::now();
        let mut made = Vec::new();
        let mut error = None;
        for _ in 0..count {
            if self.stop.load(Ordering::Acquire) || !go_on() {
                break;
            }
            match self.make_one() {
                Ok(dir) => made.push(dir),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // One sync of `spare/` for the batch's entries and the claims' removals; first that of
        // `.making/`, so that no spare that may be claimed is also found there after a power
        // loss (the start removes what is there).
        let synced = if made.is_empty() {
            Ok(())
        } else {
            self.spare_dir_dirty.store(true, Ordering::Release);
            fs::File::open(self.dir.join(MAKING_DIR)).and_then(|d| d.sync_all())
        };
        if let Err(e) = synced.and_then(|()| self.sync_claims()) {
            made.iter().for_each(|d| drop(fs::remove_dir_all(d)));
            return Err(e);
        }
        tracing::debug!(
            count = made.len(),
            made_and_synced_us = started.elapsed().as_micros() as u64,
            "made a batch of spare databases"
        );
        match error {
            // The ones made are good; the next attempt reports the error if it persists.
            Some(e) if made.is_empty() => Err(e),
            _ => Ok(made),
        }
    }

    /// Opens the databases of synced spares and makes them ready, one by one so claims can take
    /// the first while the rest open.
    ///
    /// Each is warmed up too ([`SqlStore::warm_up`]: some 50 us less on its first event),
    /// unless fewer than half the spares are ready: new objects then come faster than spares,
    /// and the thread's time is better spent making them ready.
    fn open_ready(&self, dirs: Vec<PathBuf>) {
        for dir in dirs {
            let warm = self.ready.lock().unwrap().len() * 2 >= self.target;
            let plan = warm.then(|| self.plan.get()).flatten();
            let store = SqlStore::open_spare(&dir.join(DB_FILE), &self.config, warm, plan.as_deref())
                .inspect_err(|e| {
                    tracing::warn!(spare = %dir.display(), "cannot open a spare database ahead: {e}")
                })
                .ok();
            self.ready.lock().unwrap().push(Spare { dir, store });
        }
    }

    /// Makes the directory entries that claims changed durable: first the shard directories
    /// that received spares, then (if claims or a new batch changed it) `spare/`, whose sync
    /// also makes a batch's new spares durable. Claims wait while `spare/` is synced, so no
    /// claim's removal from `spare/` is made durable here before its new entry is.
    fn sync_claims(&self) -> io::Result<()> {
        let sync_shards = || -> io::Result<()> {
            let (mut dirs, since) = {
                let mut unsynced = self.unsynced.lock().unwrap();
                (std::mem::take(&mut unsynced.dirs), unsynced.since.take())
            };
            dirs.sort();
            dirs.dedup();
            for (i, dir) in dirs.iter().enumerate() {
                if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
                    let mut unsynced = self.unsynced.lock().unwrap();
                    unsynced.dirs.extend(dirs[i..].iter().cloned());
                    unsynced.since = since.or(unsynced.since);
                    return Err(e);
                }
            }
            Ok(())
        };
        // Most of the work without holding claims off; then the few claimed meanwhile.
        sync_shards()?;
        let _claims = self.claiming.lock().unwrap_or_else(|e| e.into_inner());
        sync_shards()?;
        if self.spare_dir_dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = fs::File::open(&self.dir).and_then(|d| d.sync_all())
        {
            self.spare_dir_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Makes one spare directory, everything in it synced (but not its entry in `spare/`).
    ///
    /// It is made in `spare/.making/` and renamed into `spare/` when done, so that its syncs
    /// never write `spare/`: on ext4 without a journal, syncing a new file also writes its new
    /// parent directories, up to the first that is not new, and `spare/` holds the removals of
    /// claims whose new entries may not be durable yet. (`.making/` itself is made and synced
    /// at start.) The batch then syncs `.making/` before `spare/`, so a spare is never found in
    /// both after a power loss.
    fn make_one(&self) -> io::Result<PathBuf> {
        let making = self.dir.join(MAKING_DIR);
        fs::create_dir_all(&making)?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{seq}", self.prefix);
        let staged = making.join(&name);
        // Not inside the clean-up below: a directory already there is not this one's to remove.
        fs::create_dir(&staged)?;
        let result = (|| {
            let template = create::template(&self.dir).map_err(io::Error::other)?;
            let db = staged.join(DB_FILE);
            create::write_new_synced(&db, template)?;
            create::write_new_synced(&create::sidecar(&db, "-wal"), &vec![0; SPARE_WAL_BYTES])?;
            fs::File::open(&staged)?.sync_all()?;
            let dir = self.dir.join(&name);
            fs::rename(&staged, &dir)?;
            Ok(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staged);
        }
        result
    }
}

/// At start: spares that hold an object's ID go to the object's place; the rest are removed.
/// Returns the spares that are intact and unclaimed (exactly as made), for the reserve.
fn recover_spares(data_dir: &Path, spare_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(spare_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut moved = false;
    let mut intact = Vec::new();
    // Listed first: nothing is made in `spare/` while it is read, but keep it that way.
    let entries = entries.collect::<io::Result<Vec<_>>>()?;
    for entry in entries {
        let dir = entry.path();
        if entry.file_name() == MAKING_DIR {
            // Spares being made when the host stopped: never claimed.
            remove(fs::remove_dir_all(&dir))?;
            continue;
        }
        if !dir.is_dir() {
            // A template being made when the host stopped.
            remove(fs::remove_file(&dir))?;
            continue;
        }
        // Checked without opening it: SQLite would delete the WAL of zeros when it closes.
        if is_unclaimed_spare(&dir, data_dir).unwrap_or(false) {
            intact.push(dir);
            continue;
        }
        let hex = match claimed_by(&dir.join(DB_FILE)) {
            Ok(Some(hex)) => hex,
            Ok(None) => {
                remove(fs::remove_dir_all(&dir))?;
                continue;
            }
            // A spare being made when the host stopped: its file is a prefix of the template.
            Err(_) if spare_in_the_making(&dir.join(DB_FILE), data_dir)? => {
                remove(fs::remove_dir_all(&dir))?;
                continue;
            }
            // Anything but damage (no file descriptors, no memory, an I/O error): the host
            // does not start, rather than serve the object without the data the spare may
            // hold.
            Err(ClaimError::Other(e)) => {
                return Err(io::Error::other(format!(
                    "cannot read the spare database {}, which may hold a new object's data: {e}",
                    dir.display()
                )));
            }
            // Damaged: it may hold an object's acknowledged writes, but cannot say whose. Kept
            // for an operator, out of the way.
            Err(ClaimError::Damaged(e)) => {
                let aside = data_dir.join(UNREADABLE_DIR);
                fs::create_dir_all(&aside)?;
                // Its entry too (an earlier start may have made it and stopped).
                fs::File::open(data_dir)?.sync_all()?;
                let to = aside.join(dir.file_name().unwrap_or_default());
                fs::rename(&dir, &to)?;
                fs::File::open(&aside)?.sync_all()?;
                moved = true;
                tracing::error!(
                    spare = %dir.display(),
                    kept = %to.display(),
                    "cannot read a spare database (it may hold a new object's data; moved aside \
                     for an operator to inspect): {e}"
                );
                continue;
            }
        };
        let target = object_dir(data_dir, &hex);
        if target.exists() {
            tracing::error!(
                spare = %dir.display(),
                object = %target.display(),
                "a spare holds data of an object that also exists in its place; leaving both \
                 for an operator to inspect"
            );
            continue;
        }
        let parent = target.parent().expect("object directories have a parent");
        for d in create::create_dirs(parent)? {
            fs::File::open(d)?.sync_all()?;
        }
        fs::rename(&dir, &target)?;
        fs::File::open(parent)?.sync_all()?;
        tracing::info!(object = %hex, "moved a new object's database from spare/ to its place");
        moved = true;
    }
    if moved {
        fs::File::open(spare_dir)?.sync_all()?;
    }
    Ok(intact)
}

/// Whether `dir` is a spare exactly as [`Spares::make_one`] makes it: the database template
/// and a WAL of zeros, nothing else. Nothing was ever committed to it (a commit writes the
/// WAL's header), so it holds no object's data.
fn is_unclaimed_spare(dir: &Path, template_dir: &Path) -> io::Result<bool> {
    let db = dir.join(DB_FILE);
    let wal = create::sidecar(&db, "-wal");
    if fs::read_dir(dir)?.count() != 2 || fs::metadata(&wal)?.len() != SPARE_WAL_BYTES as u64 {
        return Ok(false);
    }
    let template = create::template(template_dir).map_err(io::Error::other)?;
    Ok(fs::read(&db)? == template && fs::read(&wal)?.iter().all(|&b| b == 0))
}

/// Syncs a spare's files and directory.
fn sync_spare(dir: &Path) -> io::Result<()> {
    let db = dir.join(DB_FILE);
    fs::File::open(&db)?.sync_all()?;
    fs::File::open(create::sidecar(&db, "-wal"))?.sync_all()?;
    fs::File::open(dir)?.sync_all()
}

/// Where spares are made, inside `spare/`, before they are renamed into it.
const MAKING_DIR: &str = ".making";

/// Makes `spare/.making/` and syncs it and the directories above it that are new, before any
/// claim: later syncs of spares made in it then stop at it (see [`Spares::make_one`]).
fn make_making_dir(spare_dir: &Path) -> io::Result<()> {
    let making = spare_dir.join(MAKING_DIR);
    let mut dirs = create::create_dirs(&making)?;
    dirs.push(making);
    dirs.iter()
        .rev()
        .try_for_each(|d| fs::File::open(d)?.sync_all())
}

/// Where spares whose databases could not be read at start are kept (see `recover_spares`).
const UNREADABLE_DIR: &str = "spare-unreadable";

/// Whether the spare database `db` is one the host was still making (its file missing, empty
/// or a prefix of the template): it holds nothing.
fn spare_in_the_making(db: &Path, data_dir: &Path) -> io::Result<bool> {
    match fs::metadata(db) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
        Ok(meta) if meta.len() == 0 => return Ok(true),
        Ok(_) => {}
    }
    let template = create::template(data_dir).map_err(io::Error::other)?;
    create::unfinished(db, template)
}

/// The ID (hex) of one object stored under `objects` (`<2 hex>/<64 hex>/`), if there is one.
pub fn some_object_id(objects: &Path) -> io::Result<Option<String>> {
    let shards = match fs::read_dir(objects) {
        Ok(shards) => shards,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let Ok(entries) = fs::read_dir(shard?.path()) else {
            continue; // not a shard directory (the layout marker)
        };
        for entry in entries.flatten() {
            if let Some(hex) = entry
                .file_name()
                .to_str()
                .filter(|h| dohost_wire::parse_id_hex(h).is_ok())
            {
                return Ok(Some(hex.to_string()));
            }
        }
    }
    Ok(None)
}

/// Marks a data directory whose object databases are in the current layout.
const LAYOUT_MARKER: &str = ".layout-2";

/// Moves databases of the first layout (`objects/<2 hex>/<64 hex>.sqlite3`, plus `-wal`) to
/// `objects/<2 hex>/<64 hex>/db.sqlite3`, once per data directory (then [`LAYOUT_MARKER`]
/// says it is done). Each WAL moves before its database, and the marker is written last, so
/// an interrupted migration simply runs again at the next start.
fn migrate_flat_layout(objects: &Path) -> io::Result<usize> {
    let marker = objects.join(LAYOUT_MARKER);
    if marker.exists() || !objects.is_dir() {
        return Ok(0);
    }
    let mut moved = 0;
    for shard in fs::read_dir(objects)? {
        let shard = shard?.path();
        if !shard.is_dir() {
            continue;
        }
        let mut changed = false;
        for file in fs::read_dir(&shard)? {
            let file = file?.path();
            let Some(hex) = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sqlite3"))
                .filter(|h| dohost_wire::parse_id_hex(h).is_ok())
            else {
                continue;
            };
            let dir = shard.join(hex);
            fs::create_dir_all(&dir)?;
            let wal = create::sidecar(&file, "-wal");
            if wal.exists() {
                fs::rename(&wal, create::sidecar(&dir.join(DB_FILE), "-wal"))?;
            }
            remove(fs::remove_file(create::sidecar(&file, "-shm")))?;
            fs::rename(&file, dir.join(DB_FILE))?;
            fs::File::open(&dir)?.sync_all()?;
            changed = true;
            moved += 1;
        }
        if changed {
            fs::File::open(&shard)?.sync_all()?;
        }
    }
    Ok(moved)
}

/// Makes the shard directories `objects/00` to `objects/ff` that are missing, and syncs the
/// entries it made, and marks the directory as in the current layout.
fn make_shards(objects: &Path) -> io::Result<()> {
    let mut new_dirs = create::create_dirs(objects)?;
    let mut made = false;
    for shard in 0..=255u8 {
        match fs::create_dir(objects.join(format!("{shard:02x}"))) {
            Ok(()) => made = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let marker = objects.join(LAYOUT_MARKER);
    if !marker.exists() {
        create::write_new_synced(&marker, b"objects/<2 hex>/<64 hex>/db.sqlite3\n")?;
        made = true;
    }
    if made {
        new_dirs.push(objects.to_path_buf());
    }
    for dir in new_dirs {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A removal's result, with "already gone" as success.
fn remove(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The object ID stored in a spare's database, if it was claimed.
fn claimed_by(db: &Path) -> Result<Option<String>, ClaimError> {
    match fs::symlink_metadata(db) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClaimError::Other(e.to_string())),
        Ok(_) => {}
    }
    super::configure_sqlite();
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    // As the host opens object databases: no shared-memory file to create first.
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")?;
    let hex: Option<String> = conn
        .query_row(
            "SELECT value FROM _do_meta WHERE key = ?1",
            [ID_KEY],
            |row| row.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match hex {
        Some(hex) => match dohost_wire::parse_id_hex(&hex) {
            Ok(_) => Ok(Some(hex)),
            Err(e) => Err(ClaimError::Damaged(format!(
                "malformed object ID {hex:?}: {e}"
            ))),
        },
        None => Ok(None),
    }
}

/// Why [`claimed_by`] could not tell whose a spare is.
#[derive(Debug)]
enum ClaimError {
    /// The file is not a sound database (or holds a malformed ID).
    Damaged(String),
    /// Anything else: it may well be readable later.
    Other(String),
}

impl From<rusqlite::Error> for ClaimError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                ClaimError::Damaged(e.to_string())
            }
            // No `_do_meta` table: not a database the host made.
            Some(rusqlite::ErrorCode::Unknown) if e.to_string().contains("no such table") => {
                ClaimError::Damaged(e.to_string())
            }
            _ => ClaimError::Other(e.to_string()),
        }
    }
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Damaged(e) | ClaimError::Other(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_work_waits_for_a_pause_in_new_objects_and_ends_before_the_next_is_due() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let t0 = Instant::now();
        let mut claims = Claims::default();
        assert_eq!(claims.busy_for(t0, ms(2)), None, "no new objects yet");
        claims.note(t0);
        assert_eq!(claims.first_syncs, 1, "a claim awaits its first sync");
        assert_eq!(
            claims.busy_for(t0 + ms(3), ms(2)),
            Some(ms(2)),
            "within QUIET, its first sync not done"
        );
        assert!(claims.awaited, "the first sync wakes the thread");
        claims.first_syncs = 0;
        assert_eq!(
            claims.busy_for(t0 + ms(3), ms(2)),
            None,
            "its first sync done"
        );
        claims.first_syncs = 1;
        assert_eq!(
            claims.busy_for(t0 + ms(6), ms(2)),
            None,
            "one, then a pause"
        );
        // New objects every 10 ms: work that would still run when the next is due waits.
        let t1 = t0 + ms(10);
        claims.note(t1);
        assert_eq!(claims.busy_for(t1 + ms(5), ms(2)), None);
        // Until the next is a quarter of the gap overdue (12.5 ms): it may just be late.
        assert_eq!(claims.busy_for(t1 + us(8_500), ms(2)), Some(ms(4)));
        assert_eq!(
            claims.busy_for(t1 + ms(11), ms(2)),
            Some(us(1_500)),
            "the next may just be late"
        );
        assert_eq!(
            claims.busy_for(t1 + ms(13), ms(2)),
            None,
            "the next is overdue: a pause"
        );
        // Every 8 ms: 2 ms of work fits from 5 to 6 ms after the last; sync of claims (1 ms)
        // to 7 ms.
        let t2 = t1 + ms(8);
        claims.note(t2);
        assert_eq!(claims.busy_for(t2 + us(5_500), ms(2)), None);
        assert_eq!(claims.busy_for(t2 + us(6_500), ms(2)), Some(us(3_500)));
        assert_eq!(claims.busy_for(t2 + us(6_500), ms(1)), None);
    }
}
