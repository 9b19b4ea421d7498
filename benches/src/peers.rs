//! The servers under test, each a child process on 127.0.0.1 that the harness starts and
//! stops itself.
//!
//! - **dohost** (`target/release/dohost run`) serving the game room built from Rust or from
//!   JavaScript;
//! - **workerd** (the npm package's native binary) serving `benches/workerd/game-room.js` as a
//!   SQLite-backed Durable Object stored on local disk;
//! - **floor**: this crate's own plain hyper + rusqlite server (`e2e floor`), see [`floor`].
//!
//! A peer is stopped with SIGTERM (graceful: in-flight requests finish) and killed if it has
//! not exited within [`STOP_GRACE`]. Its stdout and stderr go to `<peer>.log` in the scenario's
//! work directory, quoted when it fails to start.
//!
//! [`floor`]: crate::floor

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::loadgen::{PlannedRequest, request_once};

/// How long a peer may take to start (a cold compile of a large component on a busy machine
/// can take minutes; later starts reuse the compiled-component cache).
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a peer may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// dohost serving `guest-examples/rust/game-room`.
    DohostRust,
    /// dohost serving `guest-examples/js/game-room`.
    DohostJs,
    Workerd,
    Floor,
}

impl PeerKind {
    pub const ALL: [PeerKind; 4] = [
        PeerKind::DohostRust,
        PeerKind::DohostJs,
        PeerKind::Workerd,
        PeerKind::Floor,
    ];

    /// Short name, as used on the command line (`--peers`).
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::DohostRust => "rust",
            PeerKind::DohostJs => "js",
            PeerKind::Workerd => "workerd",
            PeerKind::Floor => "floor",
        }
    }

    /// Column heading.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::DohostRust => "ours (Rust)",
            PeerKind::DohostJs => "ours (JS)",
            PeerKind::Workerd => "workerd",
            PeerKind::Floor => "floor",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn is_dohost(self) -> bool {
        matches!(self, PeerKind::DohostRust | PeerKind::DohostJs)
    }
}

/// What every peer needs to start: binaries and components, resolved once per run.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub dohost: PathBuf,
    pub rust_component: PathBuf,
    pub js_component: Option<PathBuf>,
    pub workerd: Option<PathBuf>,
    /// `benches/workerd/` (the Durable Object's source and the config template).
    pub workerd_dir: PathBuf,
    /// This harness's own executable, which serves the floor with `e2e floor`.
    pub harness: PathBuf,
    pub component_cache: PathBuf,
}

/// Per-scenario settings of a peer.
#[derive(Clone, Copy, Debug)]
pub struct PeerSettings {
    /// Most objects live at once: dohost `--max-instances`, floor `--max-open`. workerd has
    /// no such setting.
    pub max_live: u32,
    /// dohost `--idle-timeout`. Long by default, so nothing is evicted mid-measurement.
    pub idle_timeout: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            max_live: 1100,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// A running peer.
pub struct Peer {
    pub kind: PeerKind,
    pub addr: SocketAddr,
    /// dohost's admin listener (`--admin`: `/metrics`); the other peers have none.
    pub admin: Option<SocketAddr>,
    child: Child,
    log: PathBuf,
}

impl Peer {
    /// Starts `kind` over `data` (kept between starts, so a restart finds its objects) and
    /// waits until it answers HTTP.
    pub async fn start(
        kind: PeerKind,
        binaries: &Binaries,
        settings: PeerSettings,
        data: &Path,
        work: &Path,
    ) -> anyhow::Result<Peer> {
        std::fs::create_dir_all(data)?;
        let addr = free_port()?;
        let log = work.join(format!("{}.log", kind.name()));
        let mut admin = None;
        let mut command = match kind {
            PeerKind::DohostRust | PeerKind::DohostJs => {
                let component = match kind {
                    PeerKind::DohostJs => binaries
                        .js_component
                        .as_ref()
                        .context("the JS component was not built")?,
                    _ => &binaries.rust_component,
                };
                let metrics = free_port()?;
                admin = Some(metrics);
                let mut c = Command::new(&binaries.dohost);
                c.arg("run")
                    .arg(component)
                    .arg("--class")
                    .arg("game-room")
                    .arg("--listen")
                    .arg(addr.to_string())
                    .arg("--data")
                    .arg(data)
                    .arg("--cache-dir")
                    .arg(&binaries.component_cache)
                    .arg("--max-instances")
                    .arg(settings.max_live.to_string())
                    .arg("--idle-timeout")
                    .arg(format!("{}ms", settings.idle_timeout.as_millis()))
                    .arg("--no-fetch")
                    .arg("--admin")
                    .arg(metrics.to_string())
                    .env("RUST_LOG", "warn");
                c
            }
            PeerKind::Workerd => {
                let binary = binaries
                    .workerd
                    .as_ref()
                    .context("workerd is not installed")?;
                let config = write_workerd_config(&binaries.workerd_dir, data, addr)?;
                let mut c = Command::new(binary);
                c.arg("serve").arg(config);
                c
            }
            PeerKind::Floor => {
                let mut c = Command::new(&binaries.harness);
                c.arg("floor")
                    .arg("--listen")
                    .arg(addr.to_string())
                    .arg("--data")
                    .arg(data)
                    .arg("--max-open")
                    .arg(settings.max_live.to_string());
                c
            }
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", kind.label()))?;
        let mut peer = Peer {
            kind,
            addr,
            admin,
            child,
            log,
        };
        peer.wait_ready().await?;
        Ok(peer)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "{} exited during start-up ({status}); its log ({}):\n{}",
                    self.kind.label(),
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            // Any HTTP answer to `/` (a 4xx: it names no room) means the peer is serving;
            // it touches no object.
            if let Ok(Ok((status, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                request_once(self.addr, PlannedRequest::get("/")),
            )
            .await
                && status < 500
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                anyhow::bail!(
                    "{} did not answer on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.kind.label(),
                    self.addr,
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (`VmRSS`) of the peer's process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Stops the peer: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own child, which
        // has not been reaped (we hold its `Child`), so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "e2e: {} did not stop within {STOP_GRACE:?}; killing it",
            self.kind.label()
        );
        self.kill();
        Ok(())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    /// A peer never outlives the harness, even when a scenario fails half-way.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
        *LAST_STOP.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// When a peer last exited (stopped or killed; it most likely deleted files on the way).
static LAST_STOP: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// Time since a peer was last stopped, if one was.
pub fn since_last_stop() -> Option<Duration> {
    LAST_STOP
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map(|at| at.elapsed())
}

/// A free port on 127.0.0.1 (bound and released; the peer binds it right after).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Writes the workerd config (and the module it embeds) into `data`, returning its path.
fn write_workerd_config(
    workerd_dir: &Path,
    data: &Path,
    addr: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let storage = data.join("storage");
    std::fs::create_dir_all(&storage)?;
    let storage = storage
        .canonicalize()?
        .to_str()
        .context("the data directory must be valid UTF-8")?
        .to_string();
    anyhow::ensure!(
        !storage.contains('"') && !storage.contains('\\'),
        "unsupported characters in {storage}"
    );
    let template = std::fs::read_to_string(workerd_dir.join("config.capnp.in"))?;
    let config = template
        .replace("@LISTEN@", &addr.to_string())
        .replace("@STORAGE@", &storage);
    std::fs::copy(workerd_dir.join("game-room.js"), data.join("game-room.js"))?;
    let path = data.join("config.capnp");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
