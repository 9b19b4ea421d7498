//! Where things are, and the builds and installs the harness runs before it measures.
//!
//! Everything is built from source by the harness, as the tests do: the release `dohost`
//! binary (`cargo build --release -p dohost`), the game-room components
//! (`scripts/build-guest`), and workerd from the npm package pinned by
//! `benches/package-lock.json` (`npm ci`, on first use). A peer that cannot be built or
//! installed is skipped with the reason, not a failed run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// How long after deleting files the harness lets the file system be before measuring: the
/// 30 s window in which ext4 without a journal avoids reusing freed inodes, and a margin.
pub const INODE_QUARANTINE: Duration = Duration::from_secs(35);

/// File in the scratch space whose modification time says when files were last deleted there.
const CLEANUP_MARKER: &str = ".last-cleanup";

/// Paths of the workspace.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    /// The workspace this crate was built in.
    pub fn locate() -> Self {
        let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
        Self {
            root: benches.parent().unwrap_or(benches).to_path_buf(),
        }
    }

    pub fn benches(&self) -> PathBuf {
        self.root.join("benches")
    }

    /// The release `dohost` binary.
    pub fn dohost_binary(&self) -> PathBuf {
        self.root.join("target/release/dohost")
    }

    /// Compiled-component cache shared by every dohost the harness starts (a component is
    /// compiled once, not once per scenario).
    pub fn component_cache(&self) -> PathBuf {
        self.root.join("target/bench-cache")
    }

    /// Scratch space for data directories and logs: on the same disk as `target/`, never on a
    /// tmpfs, so fsync means what it means in production.
    pub fn scratch(&self) -> PathBuf {
        self.root.join("target/e2e-work")
    }

    /// Makes the scratch space ready for a run: removes what an interrupted run left, then, if
    /// files were deleted there less than [`INODE_QUARANTINE`] ago (by this or an earlier
    /// run), waits out the rest and returns how long it waited.
    ///
    /// ext4 without a journal (as on the machine these benchmarks were first run on) does not
    /// hand out an inode freed within the last `dirty_expire_centisecs` (30 s by default) while
    /// others are free; after thousands of deletions, each new file scans past them, and
    /// creating files (what the cold-start scenario measures) slows several times. Other file
    /// systems just wait a little. Do not run two `e2e` at once: each clears the scratch.
    pub fn settle_scratch(&self) -> anyhow::Result<Option<Duration>> {
        let scratch = self.scratch();
        let marker = scratch.join(CLEANUP_MARKER);
        if let Ok(entries) = std::fs::read_dir(&scratch) {
            let mut removed = false;
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    removed = true;
                }
            }
            if removed {
                std::fs::write(&marker, b"")?;
            }
        }
        let Ok(cleaned) = std::fs::metadata(&marker).and_then(|m| m.modified()) else {
            return Ok(None);
        };
        let since = SystemTime::now()
            .duration_since(cleaned)
            .unwrap_or_default();
        if since >= INODE_QUARANTINE {
            return Ok(None);
        }
        let wait = INODE_QUARANTINE - since;
        std::thread::sleep(wait);
        Ok(Some(wait))
    }

    /// Removes a run's scratch directory once every measurement is over, and notes when, for
    /// the next run's [`Workspace::settle_scratch`].
    pub fn finish_scratch(&self, run: &Path) {
        let _ = std::fs::remove_dir_all(run);
        let _ = std::fs::write(self.scratch().join(CLEANUP_MARKER), b"");
    }

    /// The workerd binary from the npm package: the platform package's native executable,
    /// not `workerd/bin/workerd` (a Node.js launcher unless the package's postinstall step
    /// replaced it), so that the process we measure is the server itself.
    pub fn workerd_binary(&self) -> PathBuf {
        let modules = self.benches().join("node_modules");
        let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
            ("linux", "x86_64") => Some("linux-64"),
            ("linux", "aarch64") => Some("linux-arm64"),
            ("macos", "x86_64") => Some("darwin-64"),
            ("macos", "aarch64") => Some("darwin-arm64"),
            _ => None,
        };
        platform
            .map(|p| modules.join(format!("@cloudflare/workerd-{p}/bin/workerd")))
            .filter(|native| native.exists())
            .unwrap_or_else(|| modules.join("workerd/bin/workerd"))
    }

    /// `cargo build --release -p dohost`.
    pub fn build_dohost(&self) -> anyhow::Result<PathBuf> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&self.root)
            .args(["build", "--release", "-p", "dohost"])
            .status()
            .context("cannot run cargo")?;
        anyhow::ensure!(status.success(), "cargo build --release -p dohost failed");
        Ok(self.dohost_binary())
    }

    /// `scripts/build-guest DIR`: returns the component path it prints last.
    pub fn build_guest(&self, dir: &str) -> anyhow::Result<PathBuf> {
        let output = Command::new(self.root.join("scripts/build-guest"))
            .current_dir(&self.root)
            .arg(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run scripts/build-guest {dir}"))?;
        anyhow::ensure!(
            output.status.success(),
            "scripts/build-guest {dir} failed ({})",
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .context("scripts/build-guest printed no path")?;
        anyhow::ensure!(path.exists(), "{} was not built", path.display());
        Ok(path)
    }

    /// Installs workerd with `npm ci` in `benches/` unless it is already there.
    pub fn install_workerd(&self) -> anyhow::Result<PathBuf> {
        let binary = self.workerd_binary();
        if !binary.exists() {
            eprintln!("e2e: installing workerd (npm ci in benches/)");
            let status = Command::new("npm")
                .current_dir(self.benches())
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .stdin(Stdio::null())
                .status()
                .context("cannot run npm (Node.js and npm are needed for the workerd peer)")?;
            anyhow::ensure!(status.success(), "npm ci in benches/ failed");
        }
        anyhow::ensure!(
            binary.exists(),
            "{} is missing after npm ci",
            binary.display()
        );
        let output = Command::new(&binary).arg("--version").output()?;
        anyhow::ensure!(
            output.status.success(),
            "{} --version failed",
            binary.display()
        );
        Ok(binary)
    }
}

/// `workerd 2026-11-17` -> the version line of a binary.
pub fn version_line(binary: &Path, arg: &str) -> String {
    Command::new(binary)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}
