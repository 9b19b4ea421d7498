//! The end-to-end scenarios: what each one sets up, what load it applies, and which figures
//! it reports.
//!
//! Every scenario starts each peer afresh on its own empty data directory, so no scenario
//! inherits objects, caches or memory from another, and stops it at the end. The same HTTP
//! requests go to every peer: the game room's `POST /<room>/join` and `GET /<room>/count`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::loadgen::{self, Amount, Load, LoadReport, Pacing, PlannedRequest, RequestPlan};
use crate::peers::{Binaries, Peer, PeerKind, PeerSettings};
use crate::server_latency::{self, Buckets, Estimate};
use crate::stats::{fmt_duration, fmt_rate};
use crate::syncs::SyncCounter;
use crate::usage::{Usage, UsageProbe};

/// The knobs of a run (see `e2e --help` for their defaults).
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections of the throughput scenarios.
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Total request rate of the fixed-rate warm read.
    pub rate: f64,
    /// Rooms the spread writes go to.
    pub spread_rooms: u64,
    /// New rooms of the cold-start scenario (each of its two measurements).
    pub new_rooms: u64,
    /// New rooms per second of the cold-start scenario's paced measurement.
    pub cold_rate: f64,
    /// Rooms activated, evicted and re-activated.
    pub reactivated_rooms: u64,
    /// Live-object cap that evicts them (dohost `--max-instances`, floor `--max-open`).
    pub eviction_cap: u32,
    /// Re-activate by restarting every peer (workerd always is).
    pub restart_all: bool,
    /// Objects touched for the memory figure.
    pub live_objects: u64,
    /// The same for the JavaScript object (each instance carries a whole JS engine).
    pub js_live_objects: u64,
    /// Count each peer's file syncs during the write and cold-start measurements.
    pub count_syncs: bool,
}

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    WarmRead,
    WriteOneRoom,
    WriteSpread,
    ColdStart,
    Reactivation,
    Memory,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::WarmRead,
        Scenario::WriteOneRoom,
        Scenario::WriteSpread,
        Scenario::ColdStart,
        Scenario::Reactivation,
        Scenario::Memory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::WarmRead => "warm-read",
            Scenario::WriteOneRoom => "write-one-room",
            Scenario::WriteSpread => "write-spread",
            Scenario::ColdStart => "cold-start",
            Scenario::Reactivation => "reactivation",
            Scenario::Memory => "memory",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The rows this scenario fills.
    pub fn metrics(self) -> impl Iterator<Item = Metric> {
        Metric::ALL
            .into_iter()
            .filter(move |m| m.scenario() == self)
    }
}

/// Whether more or less of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// How a figure is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Requests (or objects) per second.
    Rate,
    /// Seconds.
    Latency,
    /// KiB.
    Kib,
    /// A plain number (syncs per request).
    Count,
    /// CPU seconds (per request).
    Cpu,
}

/// One row of the results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    WarmReadThroughput,
    WarmReadCpu,
    WarmReadP50,
    WarmReadServerP50,
    WarmReadP99,
    WarmReadP999,
    WriteOneThroughput,
    WriteOneP50,
    WriteOneP99,
    WriteOneCpu,
    WriteOneSyncs,
    SpreadThroughput,
    SpreadP99,
    SpreadCpu,
    SpreadSyncs,
    ColdPacedP50,
    ColdPacedP99,
    ColdP50,
    ColdP99,
    ColdCpu,
    ColdSyncs,
    ReactivationP50,
    ReactivationP99,
    MemoryPerObject,
}

impl Metric {
    pub const ALL: [Metric; 24] = [
        Metric::WarmReadThroughput,
        Metric::WarmReadCpu,
        Metric::WarmReadP50,
        Metric::WarmReadServerP50,
        Metric::WarmReadP99,
        Metric::WarmReadP999,
        Metric::WriteOneThroughput,
        Metric::WriteOneP50,
        Metric::WriteOneP99,
        Metric::WriteOneCpu,
        Metric::WriteOneSyncs,
        Metric::SpreadThroughput,
        Metric::SpreadP99,
        Metric::SpreadCpu,
        Metric::SpreadSyncs,
        Metric::ColdPacedP50,
        Metric::ColdPacedP99,
        Metric::ColdP50,
        Metric::ColdP99,
        Metric::ColdCpu,
        Metric::ColdSyncs,
        Metric::ReactivationP50,
        Metric::ReactivationP99,
        Metric::MemoryPerObject,
    ];

    /// The scenario that fills this row.
    pub fn scenario(self) -> Scenario {
        use Metric::*;
        match self {
            WarmReadThroughput | WarmReadCpu | WarmReadP50 | WarmReadServerP50 | WarmReadP99
            | WarmReadP999 => Scenario::WarmRead,
            WriteOneThroughput | WriteOneP50 | WriteOneP99 | WriteOneCpu | WriteOneSyncs => {
                Scenario::WriteOneRoom
            }
            SpreadThroughput | SpreadP99 | SpreadCpu | SpreadSyncs => Scenario::WriteSpread,
            ColdPacedP50 | ColdPacedP99 | ColdP50 | ColdP99 | ColdCpu | ColdSyncs => {
                Scenario::ColdStart
            }
            ReactivationP50 | ReactivationP99 => Scenario::Reactivation,
            MemoryPerObject => Scenario::Memory,
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::WarmReadThroughput | Metric::WriteOneThroughput | Metric::SpreadThroughput => {
                Unit::Rate
            }
            Metric::MemoryPerObject => Unit::Kib,
            Metric::WriteOneSyncs | Metric::SpreadSyncs | Metric::ColdSyncs => Unit::Count,
            Metric::WarmReadCpu | Metric::WriteOneCpu | Metric::SpreadCpu | Metric::ColdCpu => {
                Unit::Cpu
            }
            _ => Unit::Latency,
        }
    }

    pub fn better(self) -> Better {
        match self.unit() {
            Unit::Rate => Better::Higher,
            Unit::Latency | Unit::Kib | Unit::Count | Unit::Cpu => Better::Lower,
        }
    }

    /// The row's title, with the parameters that shape it.
    pub fn title(self, o: &Options) -> String {
        let c = o.connections;
        let rate = fmt_rate(o.rate);
        match self {
            Metric::WarmReadThroughput => format!("warm read, {c} conns closed loop: req/s"),
            Metric::WarmReadCpu => "warm read, closed loop: server CPU per request".into(),
            Metric::WarmReadP50 => format!("warm read at {rate} (CO-corrected): p50"),
            Metric::WarmReadServerP50 => {
                format!("warm read at {rate}: p50 at the server (dohost's histogram)")
            }
            Metric::WarmReadP99 => format!("warm read at {rate} (CO-corrected): p99"),
            Metric::WarmReadP999 => format!("warm read at {rate} (CO-corrected): p99.9"),
            Metric::WriteOneThroughput => format!("durable write, 1 room, {c} conns: req/s"),
            Metric::WriteOneP50 => format!("durable write, 1 room, {c} conns: p50"),
            Metric::WriteOneP99 => format!("durable write, 1 room, {c} conns: p99"),
            Metric::WriteOneCpu => "durable write, 1 room: server CPU per request".into(),
            Metric::WriteOneSyncs => "durable write, 1 room: file syncs per request".into(),
            Metric::SpreadThroughput => {
                format!("writes over {} rooms, {c} conns: req/s", o.spread_rooms)
            }
            Metric::SpreadP99 => format!("writes over {} rooms, {c} conns: p99", o.spread_rooms),
            Metric::SpreadCpu => format!(
                "writes over {} rooms: server CPU per request",
                o.spread_rooms
            ),
            Metric::SpreadSyncs => {
                format!(
                    "writes over {} rooms: file syncs per request",
                    o.spread_rooms
                )
            }
            Metric::ColdPacedP50 => {
                format!(
                    "first request, new rooms at {} (CO-corrected): p50",
                    fmt_rate(o.cold_rate)
                )
            }
            Metric::ColdPacedP99 => {
                format!(
                    "first request, new rooms at {} (CO-corrected): p99",
                    fmt_rate(o.cold_rate)
                )
            }
            Metric::ColdP50 => {
                format!("first request, {} new rooms back to back: p50", o.new_rooms)
            }
            Metric::ColdP99 => {
                format!("first request, {} new rooms back to back: p99", o.new_rooms)
            }
            Metric::ColdCpu => "first request to a new room: server CPU".into(),
            Metric::ColdSyncs => "first request to a new room: file syncs".into(),
            Metric::ReactivationP50 => {
                format!("re-activation, {} evicted rooms: p50", o.reactivated_rooms)
            }
            Metric::ReactivationP99 => {
                format!("re-activation, {} evicted rooms: p99", o.reactivated_rooms)
            }
            Metric::MemoryPerObject => "memory per live object (VmRSS)".into(),
        }
    }

    /// `12,345/s`, `1.23ms`, `456 KiB`.
    pub fn format(self, value: f64) -> String {
        match self.unit() {
            Unit::Rate => fmt_rate(value),
            Unit::Latency => fmt_duration(Duration::from_secs_f64(value.max(0.0))),
            Unit::Kib => format!("{value:.0} KiB"),
            Unit::Count => format!("{value:.2}"),
            Unit::Cpu => fmt_duration(Duration::from_secs_f64(value.max(0.0))),
        }
    }
}

/// What one peer produced in one scenario.
#[derive(Debug, Default)]
pub struct PeerResult {
    pub values: Vec<(Metric, f64)>,
    /// One or more human-readable lines with everything measured.
    pub detail: String,
    /// The machine's stolen CPU time (share) during the scenario's watched measurement, and
    /// which measurement that was.
    pub steal: Option<(&'static str, f64)>,
}

/// Runs scenarios against peers.
pub struct Runner<'a> {
    pub binaries: &'a Binaries,
    pub options: &'a Options,
    /// This run's scratch directory.
    pub scratch: PathBuf,
}

impl Runner<'_> {
    /// Runs `scenario` against `peer` in a new work directory of the run's scratch.
    ///
    /// Nothing is deleted until the whole run is over (see
    /// [`crate::workspace::Workspace::finish_scratch`]): ext4 without a journal does not reuse
    /// an inode freed in the last ~30 s (`dirty_expire_centisecs`), and after thousands of
    /// deletions every file created scans past them, which made whichever peer ran right after
    /// another's clean-up create files several times slower.
    pub async fn run(&self, scenario: Scenario, peer: PeerKind) -> anyhow::Result<PeerResult> {
        let base = self.scratch.join(scenario.name()).join(peer.name());
        // A scenario named twice gets a directory of its own each time.
        let work = (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => base.with_file_name(format!("{}-{n}", peer.name())),
            })
            .find(|dir| !dir.exists())
            .expect("some directory name is free");
        std::fs::create_dir_all(&work)?;
        match scenario {
            Scenario::WarmRead => self.warm_read(peer, &work).await,
            Scenario::WriteOneRoom => self.write_one_room(peer, &work).await,
            Scenario::WriteSpread => self.write_spread(peer, &work).await,
            Scenario::ColdStart => self.cold_start(peer, &work).await,
            Scenario::Reactivation => self.reactivation(peer, &work).await,
            Scenario::Memory => self.memory(peer, &work).await,
        }
    }

    async fn start(
        &self,
        peer: PeerKind,
        settings: PeerSettings,
        work: &std::path::Path,
    ) -> anyhow::Result<Peer> {
        // Writes the scratch file system's dirty data out first (what earlier peers and
        // scenarios left for the kernel to write back), so that no peer's figures include
        // another's write-back.
        let dir = work.to_path_buf();
        let flushed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            let dir = std::fs::File::open(&dir)?;
            // SAFETY: syncfs only takes a descriptor, which `dir` keeps open for the call.
            match unsafe { libc::syncfs(dir.as_raw_fd()) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        })
        .await?;
        if let Err(e) = flushed {
            eprintln!(
                "warning: cannot flush {} ({e}); figures may include write-back of earlier runs",
                work.display()
            );
        }
        Peer::start(peer, self.binaries, settings, &work.join("data"), work).await
    }

    fn timed(&self, connections: usize, pacing: Pacing) -> Load {
        Load {
            connections,
            pacing,
            amount: Amount::Timed {
                warmup: self.options.warmup,
                measure: self.options.measure,
            },
        }
    }

    /// A timed closed-loop load of `plan` on all connections, which must succeed throughout,
    /// with what the peer spent on it (see [`Runner::watch_timed`]).
    async fn closed_loop(
        &self,
        peer: &Peer,
        work: &std::path::Path,
        plan: RequestPlan,
        what: &str,
    ) -> anyhow::Result<(LoadReport, Costs)> {
        let syncs_in = self.options.count_syncs.then_some(work);
        let watching = self.watch_timed(peer, syncs_in, false);
        let load = self.timed(self.options.connections, Pacing::ClosedLoop);
        let report = loadgen::run(peer.addr, load, plan).await?;
        let watched = watching.await.unwrap_or_default();
        report.require_clean(what)?;
        let costs = Costs::of(watched, &report);
        Ok((report, costs))
    }

    /// Watches `peer` during the measured window of a timed load that starts now (see
    /// [`Watch`]): file syncs only with `syncs_in`, dohost's request histogram only
    /// `at_server`.
    fn watch_timed(
        &self,
        peer: &Peer,
        syncs_in: Option<&std::path::Path>,
        at_server: bool,
    ) -> tokio::task::JoinHandle<Watched> {
        let pid = peer.pid();
        let admin = peer.admin.filter(|_| at_server);
        let syncs_in = syncs_in.map(std::path::Path::to_path_buf);
        let (warmup, measure) = (self.options.warmup, self.options.measure);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let watch = Watch::start(pid, syncs_in.as_deref(), admin).await;
            tokio::time::sleep(measure).await;
            watch.finish().await
        })
    }

    /// Settings for a scenario that keeps `wanted` objects live: a cap above it, so nothing
    /// is evicted while it is measured.
    fn live_cap(&self, wanted: u64) -> PeerSettings {
        PeerSettings {
            max_live: u32::try_from(wanted.saturating_add(100)).unwrap_or(u32::MAX),
            ..PeerSettings::default()
        }
    }

    async fn warm_read(
        &self,
        kind: PeerKind,
        work: &std::path::Path,
    ) -> anyhow::Result<PeerResult> {
        let peer = self.start(kind, PeerSettings::default(), work).await?;
        setup(&peer, join("bench", 0)).await?;
        let plan: RequestPlan = Arc::new(|_| PlannedRequest::get("/bench/count"));
        let (mut closed, costs) = self
            .closed_loop(&peer, work, plan.clone(), "warm read, closed loop")
            .await?;
        let watching = self.watch_timed(&peer, None, true);
        let mut fixed = loadgen::run(
            peer.addr,
            self.timed(
                self.options.connections,
                Pacing::FixedRate(self.options.rate),
            ),
            plan,
        )
        .await?;
        let server_p50 = watching.await.unwrap_or_default().server_p50();
        fixed.require_clean("warm read, fixed rate")?;
        peer.stop().await?;
        let detail = format!(
            "closed loop: {} ({}){}; at {}: {}, unsent {}{}",
            fmt_rate(closed.throughput()),
            closed.latencies.summary(),
            costs.describe(),
            fmt_rate(self.options.rate),
            fixed.latencies.summary(),
            fixed.unsent,
            server_p50.map_or(String::new(), |p50| format!(
                "; at the server (dohost_request_seconds): p50 {} (in its bucket {}-{})",
                fmt_duration(Duration::from_secs_f64(p50.seconds)),
                fmt_duration(Duration::from_secs_f64(p50.lower)),
                fmt_duration(Duration::from_secs_f64(p50.upper)),
            )),
        );
        let mut values = vec![(Metric::WarmReadThroughput, closed.throughput())];
        values.extend(costs.cpu_value(Metric::WarmReadCpu));
        push_quantile(&mut values, Metric::WarmReadP50, &mut fixed, 0.5);
        values.extend(server_p50.map(|p50| (Metric::WarmReadServerP50, p50.seconds)));
        push_quantile(&mut values, Metric::WarmReadP99, &mut fixed, 0.99);
        push_quantile(&mut values, Metric::WarmReadP999, &mut fixed, 0.999);
        Ok(PeerResult {
            values,
            detail,
            steal: costs.steal_of("warm read, closed loop"),
        })
    }

    async fn write_one_room(
        &self,
        kind: PeerKind,
        work: &std::path::Path,
    ) -> anyhow::Result<PeerResult> {
        let peer = self.start(kind, PeerSettings::default(), work).await?;
        setup(&peer, join("bench", 0)).await?;
        // 1,000 distinct players: the table stays small, most joins replace a row.
        let plan: RequestPlan = Arc::new(|i| join("bench", i % 1000));
        let (mut report, costs) = self
            .closed_loop(&peer, work, plan, "durable write, one room")
            .await?;
        peer.stop().await?;
        let detail = format!(
            "{} ({}){}",
            fmt_rate(report.throughput()),
            report.latencies.summary(),
            costs.describe()
        );
        let mut values = vec![(Metric::WriteOneThroughput, report.throughput())];
        push_quantile(&mut values, Metric::WriteOneP50, &mut report, 0.5);
        push_quantile(&mut values, Metric::WriteOneP99, &mut report, 0.99);
        values.extend(costs.cpu_value(Metric::WriteOneCpu));
        values.extend(costs.syncs.map(|s| (Metric::WriteOneSyncs, s)));
        Ok(PeerResult {
            values,
            detail,
            steal: costs.steal_of("durable write, one room"),
        })
    }

    async fn write_spread(
        &self,
        kind: PeerKind,
        work: &std::path::Path,
    ) -> anyhow::Result<PeerResult> {
        let rooms = self.options.spread_rooms.max(1);
        let peer = self.start(kind, self.live_cap(rooms), work).await?;
        // Create every room first (not measured): the measurement is of warm objects.
        let create: RequestPlan = Arc::new(|i| join(&format!("room-{i}"), 0));
        let created = batch(&peer, rooms, self.options.connections, create).await?;
        created.require_clean("creating the rooms")?;
        // Consecutive requests go to rooms far apart, so the connections rarely share one.
        let plan: RequestPlan =
            Arc::new(move |i| join(&format!("room-{}", i.wrapping_mul(7919) % rooms), i % 100));
        let (mut report, costs) = self
            .closed_loop(&peer, work, plan, "writes over many rooms")
            .await?;
        peer.stop().await?;
        let detail = format!(
            "{} ({}){}; creating the {rooms} rooms first took {}",
            fmt_rate(report.throughput()),
            report.latencies.summary(),
            costs.describe(),
            fmt_duration(created.elapsed)
        );
        let mut values = vec![(Metric::SpreadThroughput, report.throughput())];
        push_quantile(&mut values, Metric::SpreadP99, &mut report, 0.99);
        values.extend(costs.cpu_value(Metric::SpreadCpu));
        values.extend(costs.syncs.map(|s| (Metric::SpreadSyncs, s)));
        Ok(PeerResult {
            values,
            detail,
            steal: costs.steal_of("writes over many rooms"),
        })
    }

    async fn cold_start(
        &self,
        kind: PeerKind,
        work: &std::path::Path,
    ) -> anyhow::Result<PeerResult> {
        // Peers delete files when they stop (SQLite removes each WAL at close); creating
        // files within ~30 s of mass deletions is several times slower on ext4 without a
        // journal (see `workspace::INODE_QUARANTINE`), and this scenario creates files on
        // the measured path. One run had stalls of up to 0.7 s for the first peer after
        // write-spread. So every peer starts here once the window after the last stop is over.
        if let Some(wait) = crate::peers::since_last_stop()
            .map(|since| crate::workspace::INODE_QUARANTINE.saturating_sub(since))
            .filter(|wait| !wait.is_zero())
        {
            eprintln!(
                "  (waiting {:.0} s: the previous peer deleted its files when it stopped)",
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
        let rooms = self.options.new_rooms.max(1);
        // Room for both measurements' rooms: an eviction would add its close to the figures.
        let peer = self.start(kind, self.live_cap(2 * rooms), work).await?;
        // Loads the code (component instance pool, JS isolate) with an object of its own, so
        // the figures are of objects, not of the first request a process ever serves.
        setup(&peer, join("warmup", 0)).await?;
        // Paced: new rooms at a fixed rate, open loop (a late response delays no later
        // request), so each figure is one activation as a client sees it, whatever a peer does
        // in the background between them. After a second's rest from start-up, for every peer.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rate = self.options.cold_rate;
        let paced_plan: RequestPlan = Arc::new(|i| join(&format!("paced-{i}"), 0));
        let paced_load = Load {
            connections: 4,
            pacing: Pacing::FixedRate(rate),
            amount: Amount::Timed {
                warmup: Duration::ZERO,
                measure: Duration::from_secs_f64(rooms as f64 / rate),
            },
        };
        let mut paced = loadgen::run(peer.addr, paced_load, paced_plan).await?;
        paced.require_clean("first requests to new rooms at a fixed rate")?;
        // Back to back: the next new room as soon as the last one answered, a burst that
        // also measures how fast a peer can create objects.
        let plan: RequestPlan = Arc::new(|i| join(&format!("new-{i}"), 0));
        let syncs_in = self.options.count_syncs.then_some(work);
        let mut watch = Watch::start(peer.pid(), syncs_in, None).await;
        if watch.syncs.is_some() {
            // perf needs a moment to attach; the CPU is counted from the end of that moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            watch.usage = UsageProbe::start(peer.pid());
        }
        // One connection: each figure is one activation alone, as a client sees it.
        let mut report = batch(&peer, rooms, 1, plan).await?;
        let costs = Costs::of(watch.finish().await, &report);
        report.require_clean("first requests to new rooms")?;
        peer.stop().await?;
        let detail = format!(
            "new rooms at {}: {}, unsent {}; {rooms} new rooms back to back: {} ({}){}",
            fmt_rate(rate),
            paced.latencies.summary(),
            paced.unsent,
            fmt_rate(report.throughput()),
            report.latencies.summary(),
            costs.describe()
        );
        let mut values = Vec::new();
        push_quantile(&mut values, Metric::ColdPacedP50, &mut paced, 0.5);
        push_quantile(&mut values, Metric::ColdPacedP99, &mut paced, 0.99);
        push_quantile(&mut values, Metric::ColdP50, &mut report, 0.5);
        push_quantile(&mut values, Metric::ColdP99, &mut report, 0.99);
        values.extend(costs.cpu_value(Metric::ColdCpu));
        values.extend(costs.syncs.map(|s| (Metric::ColdSyncs, s)));
        Ok(PeerResult {
            values,
            detail,
            steal: costs.steal_of("new rooms back to back"),
        })
    }

    async fn reactivation(
        &self,
        kind: PeerKind,
        work: &std::path::Path,
    ) -> anyhow::Result<PeerResult> {
        let rooms = self.options.reactivated_rooms.max(1);
        let cap = self.options.eviction_cap.max(1);
        // workerd evicts an idle object only after seconds of inactivity and has no setting
        // for it, so its objects are evicted by restarting the process.
        let by_restart = kind == PeerKind::Workerd || self.options.restart_all;
        anyhow::ensure!(
            by_restart || rooms >= 2 * u64::from(cap),
            "--reactivated-rooms must be at least twice --eviction-cap"
        );
        let settings = if by_restart {
            self.live_cap(rooms)
        } else {
            PeerSettings {
                max_live: cap,
                ..PeerSettings::default()
            }
        };
        let mut peer = self.start(kind, settings, work).await?;
        let create: RequestPlan = Arc::new(|i| join(&format!("re-{i}"), 0));
        // Few connections: each new room evicts one, and dohost frees an evicted instance
        // asynchronously; many concurrent activations over a small cap can briefly exhaust
        // its instance pool (see benches/README.md).
        batch(&peer, rooms, self.options.connections.min(4), create)
            .await?
            .require_clean("creating the rooms")?;
        let how = if by_restart {
            peer.stop().await?;
            peer = self.start(kind, settings, work).await?;
            setup(&peer, join("warmup", 0)).await?;
            "process restarted".to_string()
        } else {
            // Room i was evicted when room i + cap arrived; touching them again in the same
            // order finds each one evicted (least recently used first).
            format!("evicted by a live cap of {cap}")
        };
        let plan: RequestPlan = Arc::new(|i| PlannedRequest::get(format!("/re-{i}/count")));
        let watch = Watch::start(peer.pid(), None, None).await;
        let mut report = batch(&peer, rooms, 1, plan).await?;
        let costs = Costs::of(watch.finish().await, &report);
        report.require_clean("re-activating rooms")?;
        peer.stop().await?;
        let detail = format!(
            "{rooms} rooms ({how}), one at a time: {} ({}){}",
            fmt_rate(report.throughput()),
            report.latencies.summary(),
            costs.describe()
        );
        let mut values = Vec::new();
        push_quantile(&mut values, Metric::ReactivationP50, &mut report, 0.5);
        push_quantile(&mut values, Metric::ReactivationP99, &mut report, 0.99);
        Ok(PeerResult {
            values,
            detail,
            steal: costs.steal_of("re-activation"),
        })
    }

    async fn memory(&self, kind: PeerKind, work: &std::path::Path) -> anyhow::Result<PeerResult> {
        let objects = match kind {
            PeerKind::DohostJs => self.options.js_live_objects,
            _ => self.options.live_objects,
        }
        .max(1);
        let peer = self.start(kind, self.live_cap(objects), work).await?;
        setup(&peer, join("warmup", 0)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = peer.rss_kib()?;
        let plan: RequestPlan = Arc::new(|i| join(&format!("mem-{i}"), 0));
        let report = batch(&peer, objects, 8, plan).await?;
        report.require_clean("touching the objects")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = peer.rss_kib()?;
        peer.stop().await?;
        let per_object = after.saturating_sub(before) as f64 / objects as f64;
        let detail = format!(
            "VmRSS {} MiB with 1 object, {} MiB with {} live: {per_object:.0} KiB per object \
             (touched in {})",
            before / 1024,
            after / 1024,
            objects + 1,
            fmt_duration(report.elapsed)
        );
        Ok(PeerResult {
            values: vec![(Metric::MemoryPerObject, per_object)],
            detail,
            steal: None,
        })
    }
}

/// `POST /<room>/join` for player `p<player>`.
fn join(room: &str, player: u64) -> PlannedRequest {
    PlannedRequest::post_json(
        format!("/{room}/join"),
        format!("{{\"playerId\":\"p{player}\",\"name\":\"player {player}\"}}"),
    )
}

/// Sends one set-up request and checks it got `{"players": ...}` back.
async fn setup(peer: &Peer, request: PlannedRequest) -> anyhow::Result<()> {
    let what = format!("{} {}", request.method, request.path);
    let (status, body) = loadgen::request_once(peer.addr, request)
        .await
        .with_context(|| format!("{}: {what}", peer.kind.label()))?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(
        status == 200 && text.contains("\"players\""),
        "{}: {what} answered {status}: {text}",
        peer.kind.label()
    );
    Ok(())
}

async fn batch(
    peer: &Peer,
    requests: u64,
    connections: usize,
    plan: RequestPlan,
) -> anyhow::Result<LoadReport> {
    loadgen::run(
        peer.addr,
        Load {
            connections,
            pacing: Pacing::ClosedLoop,
            amount: Amount::Batch(requests),
        },
        plan,
    )
    .await
}

/// Watches a peer during a measurement: its CPU time and the machine's steal (see
/// [`crate::usage`]), its file syncs (`perf` output kept in a work directory), and dohost's
/// request histogram (from its admin listener, see [`crate::server_latency`]).
struct Watch {
    usage: Option<UsageProbe>,
    syncs: Option<SyncCounter>,
    /// The admin listener and the histogram at the start.
    server: Option<(SocketAddr, Buckets)>,
}

impl Watch {
    /// Starts watching process `pid`; its syncs only with `syncs_in`, the histogram only with
    /// `admin`.
    async fn start(
        pid: u32,
        syncs_in: Option<&std::path::Path>,
        admin: Option<SocketAddr>,
    ) -> Self {
        let server = match admin {
            Some(admin) => server_latency::scrape(admin).await.map(|b| (admin, b)),
            None => None,
        };
        Self {
            syncs: syncs_in.and_then(|work| SyncCounter::start(pid, work)),
            usage: UsageProbe::start(pid),
            server,
        }
    }

    async fn finish(self) -> Watched {
        let usage = self.usage.and_then(UsageProbe::finish);
        let syncs = match self.syncs {
            Some(counter) => counter.finish().await,
            None => None,
        };
        let server = match self.server {
            Some((admin, before)) => server_latency::scrape(admin)
                .await
                .map(|after| (before, after)),
            None => None,
        };
        Watched {
            usage,
            syncs,
            server,
        }
    }
}

/// What a [`Watch`] saw.
#[derive(Default)]
struct Watched {
    usage: Option<Usage>,
    syncs: Option<u64>,
    /// dohost's request histogram at the start and at the end.
    server: Option<(Buckets, Buckets)>,
}

impl Watched {
    /// The p50 of the requests dohost's histogram counted in the window.
    fn server_p50(&self) -> Option<Estimate> {
        let (before, after) = self.server.as_ref()?;
        after.quantile_since(before, 0.5)
    }
}

/// A measurement's costs, per request answered.
#[derive(Clone, Copy, Debug, Default)]
struct Costs {
    syncs: Option<f64>,
    cpu: Option<Duration>,
    /// The peer's CPU time over wall time (cores busy).
    cores: Option<f64>,
    steal: Option<f64>,
}

impl Costs {
    fn of(watched: Watched, report: &LoadReport) -> Self {
        let requests = report.ok;
        Self {
            syncs: watched
                .syncs
                .filter(|_| requests > 0)
                .map(|s| s as f64 / requests as f64),
            cpu: watched.usage.and_then(|u| u.per_request(requests)),
            cores: watched.usage.map(|u| u.cores),
            steal: watched.usage.and_then(|u| u.steal),
        }
    }

    fn cpu_value(&self, metric: Metric) -> Option<(Metric, f64)> {
        self.cpu.map(|cpu| (metric, cpu.as_secs_f64()))
    }

    fn steal_of(&self, what: &'static str) -> Option<(&'static str, f64)> {
        self.steal.map(|s| (what, s))
    }

    /// `, server CPU 123us per request (0.91 cores), machine steal 2%, 0.06 file syncs per
    /// request`.
    fn describe(&self) -> String {
        let mut text = String::new();
        if let (Some(cpu), Some(cores)) = (self.cpu, self.cores) {
            text.push_str(&format!(
                ", server CPU {} per request ({cores:.2} cores)",
                fmt_duration(cpu)
            ));
        }
        if let Some(steal) = self.steal {
            text.push_str(&format!(", machine steal {:.0}%", steal * 100.0));
        }
        if let Some(syncs) = self.syncs {
            text.push_str(&format!(", {syncs:.2} file syncs per request"));
        }
        text
    }
}

fn push_quantile(values: &mut Vec<(Metric, f64)>, metric: Metric, report: &mut LoadReport, q: f64) {
    if let Some(d) = report.latencies.quantile(q) {
        values.push((metric, d.as_secs_f64()));
    }
}
