//! Creating an object's database file, and setting aside one whose creation never finished.
//!
//! A new object's file is written in one `write` from a template: an empty database already in
//! WAL mode with the host's tables, made once per process by SQLite itself. That spares the
//! first request of every new object SQLite's rollback journal (created, written and unlinked
//! just to switch to WAL) and the schema transaction. The object's first group sync then makes
//! the file, its WAL and every new directory entry durable before any response leaves.
//!
//! If the machine loses power before that first sync, the file may survive with only part of
//! the template on disk (the rest zeros, or cut short). SQLite cannot open such a file, and
//! nothing in it was ever acknowledged: a synced file always holds the whole template, and
//! SQLite never writes zero pages over it afterwards. [`unfinished`] recognises exactly that
//! shape, and [`set_aside`] moves the file and its WAL out of the way so the object starts
//! afresh. Any other damage is left alone and reported, never silently replaced.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;

use super::{StorageError, host_schema};

/// SQLite page size of the template (SQLite's default, which every object database uses).
const TEMPLATE_PAGE: usize = 4096;

static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();

/// The template's bytes, made on first use in `dir` (any directory on the data disk).
pub(super) fn template(dir: &Path) -> Result<&'static [u8], StorageError> {
    if let Some(bytes) = TEMPLATE.get() {
        return Ok(bytes);
    }
    let bytes = make_template(dir).map_err(|e| StorageError::Template {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(TEMPLATE.get_or_init(|| bytes))
}

fn make_template(dir: &Path) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".template-{}-{}.sqlite3",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let wal = sidecar(&path, "-wal");
    let result = (|| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        {
            super::configure_sqlite();
            let conn = Connection::open(&path)?;
            conn.execute_batch(&format!(
                "PRAGMA synchronous = OFF;
                 PRAGMA journal_mode = WAL;
                 BEGIN; {} COMMIT;",
                host_schema()
            ))?;
            // Closing the last connection checkpoints the WAL into the file and deletes it.
        }
        let bytes = fs::read(&path)?;
        if wal.exists() || !bytes.starts_with(b"SQLite format 3\0") || bytes[18..20] != [2, 2] {
            return Err("SQLite left an unexpected file (not a checkpointed WAL database)".into());
        }
        if bytes.len() % TEMPLATE_PAGE != 0 {
            return Err(format!("template of {} bytes is not whole pages", bytes.len()).into());
        }
        Ok(bytes)
    })();
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(&wal);
    result
}

/// Writes the template to `path` if no file is there. Returns the written file's descriptor
/// (kept by the store to sync the file with its first sync: see `SyncFile`), or `None` if a
/// file was there.
pub(super) fn write_new(path: &Path, template: &[u8]) -> io::Result<Option<fs::File>> {
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Err(e) = file.write_all(template) {
        // Nothing was acknowledged; leave no half-written file behind.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(Some(file))
}

/// Creates or replaces the file at `path` with `bytes` (private to the host's user) so that a
/// crash leaves either the old file or the whole new one: written to a temporary file and
/// synced, renamed into place, and the directory synced.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    write_new_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| drop(fs::remove_file(&tmp)))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new file at `path` (private to the host's user) and syncs it.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether the file at `path` is a template write that never fully reached the disk: shorter
/// than the template, or with some of the template's pages zeros, and otherwise the template.
/// An empty file is not unfinished (SQLite opens it as a new database).
pub(super) fn unfinished(path: &Path, template: &[u8]) -> io::Result<bool> {
    let len = fs::metadata(path)?.len();
    if len == 0 || len > template.len() as u64 {
        return Ok(false);
    }
    let bytes = fs::read(path)?;
    let mut missing = bytes.len() < template.len();
    for (have, want) in bytes
        .chunks(TEMPLATE_PAGE)
        .zip(template.chunks(TEMPLATE_PAGE))
    {
        if have == &want[..have.len()] {
            continue;
        }
        if have.iter().all(|&b| b == 0) {
            missing = true;
        } else {
            return Ok(false);
        }
    }
    Ok(missing)
}

/// Moves an unfinished file and its WAL to `<file>.unfinished-<unix seconds>[-wal]`, and returns
/// the new name of the file.
pub(super) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = sidecar(path, &format!(".unfinished-{secs}"));
    fs::rename(path, &aside)?;
    let wal = sidecar(path, "-wal");
    if wal.exists() {
        fs::rename(&wal, sidecar(&aside, "-wal"))?;
    }
    Ok(aside)
}

/// `path` with `suffix` appended to its file name.
pub(super) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `dir` and any missing ancestors. Returns the directories whose entries are new, each
/// with the parent that must be synced to make the entry durable.
pub(super) fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cursor = d.parent();
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(dir)?;
    Ok(missing
        .iter()
        .filter_map(|d| d.parent())
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .collect())
}
