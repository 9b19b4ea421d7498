//! `e2e`: the end-to-end benchmark of dohost against workerd and the floor.
//!
//! ```text
//! cargo run --release -p dohost-benches --bin e2e -- --quick      # ~3-5 minutes on 2 cores
//! cargo run --release -p dohost-benches --bin e2e                 # the full run, ~6-7 minutes
//! ```
//!
//! Builds what it needs (release dohost, the game-room components, workerd via `npm ci`),
//! then for each scenario starts each peer on 127.0.0.1, loads it, stops it, and finally
//! prints one table. `e2e floor ...` serves the floor (the harness starts itself that way).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dohost_benches::floor::{self, FloorConfig};
use dohost_benches::machine::Machine;
use dohost_benches::peers::{Binaries, PeerKind};
use dohost_benches::report::{Outcome, Results, durability_notes, steal_summary};
use dohost_benches::scenarios::{Metric, Options, Runner, Scenario};
use dohost_benches::workspace::{Workspace, version_line};

#[derive(Parser)]
#[command(name = "e2e", args_conflicts_with_subcommands = true)]
/// End-to-end benchmarks: dohost (Rust and JS game room) against workerd and a plain
/// hyper + rusqlite floor, all on 127.0.0.1, in one run, with ratios.
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the floor (the harness starts itself this way).
    #[command(hide = true)]
    Floor(FloorArgs),
}

#[derive(Args)]
struct FloorArgs {
    #[arg(long)]
    listen: std::net::SocketAddr,
    #[arg(long)]
    data: PathBuf,
    /// Most room databases open at once.
    #[arg(long)]
    max_open: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    /// Short run for iteration: 1 s warm-up and 3 s per measurement, 200 rooms and objects.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated [default: all]: warm-read, write-one-room,
    /// write-spread, cold-start, reactivation, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Peers to run, comma-separated [default: all]: rust, js, workerd, floor.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Connections of the throughput scenarios.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Warm-up before each timed measurement, in seconds [default: 2, quick: 1].
    #[arg(long)]
    warmup: Option<f64>,
    /// Length of each timed measurement, in seconds [default: 10, quick: 3].
    #[arg(long)]
    duration: Option<f64>,
    /// Request rate of the fixed-rate warm read (requests per second, all connections).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Rooms the spread writes go to.
    #[arg(long, default_value_t = 1000)]
    spread_rooms: u64,
    /// New rooms (cold start) and evicted rooms (re-activation) [default: 1000, quick: 200].
    #[arg(long)]
    rooms: Option<u64>,
    /// New rooms per second of the cold-start scenario's paced measurement (open loop, as
    /// many rooms as --rooms); its other measurement sends them back to back.
    #[arg(long, default_value_t = 100.0)]
    cold_rate: f64,
    /// Objects touched for the memory figure [default: 1000, quick: 200].
    #[arg(long)]
    objects: Option<u64>,
    /// Objects touched for the JS object's memory figure (each instance carries a JS engine,
    /// some MiB) [default: as --objects].
    #[arg(long)]
    js_objects: Option<u64>,
    /// Live-object cap that evicts objects in the re-activation scenario.
    #[arg(long, default_value_t = 64)]
    eviction_cap: u32,
    /// Re-activate by restarting every peer, not only workerd.
    #[arg(long)]
    restart_all: bool,
    /// Count each peer's file syncs (fsync, fdatasync) per request in the write and cold-start
    /// scenarios, with `perf stat` (needs perf and root).
    #[arg(long)]
    count_syncs: bool,
    /// Use what is built already (target/release/dohost, target/guests/...) and build nothing.
    #[arg(long)]
    no_build: bool,
    /// Threads of the load generator (it shares the machine with the server under test).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Also write the results (machine, settings, table) as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Floor(args)) => serve_floor(args),
        None => run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("e2e: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_floor(args: FloorArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(floor::serve(FloorConfig {
        listen: args.listen,
        data_dir: args.data,
        max_open: args.max_open,
    }))?;
    // Without waiting for the connection tasks and open databases (see `floor::serve`).
    std::process::exit(0)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenarios = select(&args.only, Scenario::parse, &Scenario::ALL, "scenario")?;
    let peers = select(&args.peers, PeerKind::parse, &PeerKind::ALL, "peer")?;
    let options = options(&args);
    let workspace = Workspace::locate();
    if let Some(waited) = workspace.settle_scratch()? {
        eprintln!(
            "e2e: waited {:.0} s before measuring: files were deleted in {} less than {} s ago, \
             and ext4 without a journal creates files slowly while it keeps freed inodes from \
             reuse",
            waited.as_secs_f64(),
            workspace.scratch().display(),
            dohost_benches::workspace::INODE_QUARANTINE.as_secs()
        );
    }
    let scratch = workspace
        .scratch()
        .join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let machine = Machine::describe(&scratch);

    let mut results = Results::default();
    let mut notes = Vec::new();
    let (binaries, available) = prepare(&workspace, &args, &peers, &mut notes)?;
    for peer in &peers {
        if let Some(why) = available
            .iter()
            .find(|(p, _)| p == peer)
            .and_then(|(_, w)| w.clone())
        {
            for metric in Metric::ALL {
                results.set(metric, *peer, Outcome::Skipped(why.clone()));
            }
        }
    }
    let runnable: Vec<PeerKind> = peers
        .iter()
        .copied()
        .filter(|p| available.iter().any(|(q, why)| q == p && why.is_none()))
        .collect();

    println!("{}", machine.render());
    for line in &notes {
        println!("{line}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    let runner = Runner {
        binaries: &binaries,
        options: &options,
        scratch: scratch.clone(),
    };
    let started = std::time::Instant::now();
    let mut steal = Vec::new();
    for scenario in &scenarios {
        println!("\n== {}", scenario.name());
        for peer in &runnable {
            let outcome = runtime.block_on(runner.run(*scenario, *peer));
            match outcome {
                Ok(result) => {
                    println!("  {:<12} {}", peer.label(), result.detail);
                    if let Some((what, share)) = result.steal {
                        steal.push((format!("{} in {what}", peer.label()), share));
                    }
                    for (metric, value) in result.values {
                        results.set(metric, *peer, Outcome::Measured(value));
                    }
                }
                Err(e) => {
                    println!("  {:<12} FAILED: {e:#}", peer.label());
                    for metric in scenario.metrics() {
                        results.set(metric, *peer, Outcome::Failed(format!("{e:#}")));
                    }
                }
            }
        }
    }
    drop(runtime);
    workspace.finish_scratch(&scratch);

    let settings = format!(
        "settings: {} connections, {:.0} s warm-up + {:.0} s per timed measurement, fixed rate {}/s, \
         {} spread rooms, {} new / re-activated rooms, {} live objects ({} for JS), eviction cap {}{}; \
         load generator: {} thread(s) on the same machine; took {:.0} s",
        options.connections,
        options.warmup.as_secs_f64(),
        options.measure.as_secs_f64(),
        options.rate,
        options.spread_rooms,
        options.new_rooms,
        options.live_objects,
        options.js_live_objects,
        options.eviction_cap,
        if options.restart_all {
            ", re-activation by restart"
        } else {
            ""
        },
        args.client_threads.max(1),
        started.elapsed().as_secs_f64(),
    );
    println!("\n{}\n{settings}", machine.render());
    println!("durability:");
    for (who, what) in durability_notes() {
        println!("  {who}: {what}");
    }
    println!("\n{}", results.table(&options, false));
    let steal = steal_summary(&steal);
    if let Some(line) = &steal {
        println!("{line}");
    }
    for problem in results.problems() {
        println!("{problem}");
    }
    if let Some(path) = &args.markdown {
        let mut md = format!(
            "Measured {} (UTC) with `e2e{}`.\n\n- {}\n- {}\n",
            utc_date(),
            if args.quick { " --quick" } else { "" },
            machine.render(),
            settings
        );
        for line in &notes {
            md.push_str(&format!("- {line}\n"));
        }
        md.push('\n');
        md.push_str(&results.table(&options, true));
        if let Some(line) = &steal {
            md.push_str(&format!("\n{line}\n"));
        }
        std::fs::write(path, md).with_context(|| format!("cannot write {}", path.display()))?;
        println!("(also written to {})", path.display());
    }
    let failed = results.problems().iter().any(|p| p.contains(": FAILED: "));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Per peer: `None` if it can run, or why it cannot.
type Availability = Vec<(PeerKind, Option<String>)>;

/// Builds and installs what the selected peers need. Returns the binaries and, per peer,
/// `None` if it can run or the reason it cannot.
fn prepare(
    workspace: &Workspace,
    args: &RunArgs,
    peers: &[PeerKind],
    notes: &mut Vec<String>,
) -> anyhow::Result<(Binaries, Availability)> {
    let mut available = Vec::new();
    let dohost = if args.no_build {
        workspace.dohost_binary()
    } else {
        workspace.build_dohost()?
    };
    anyhow::ensure!(
        dohost.exists(),
        "{} is missing: run without --no-build",
        dohost.display()
    );
    notes.push(format!(
        "ours: {} ({})",
        version_line(&dohost, "--version"),
        dohost.display()
    ));
    let guest = |dir: &str, lang: &str| -> anyhow::Result<PathBuf> {
        if args.no_build {
            let path = workspace
                .root
                .join(format!("target/guests/{lang}/game-room.wasm"));
            anyhow::ensure!(path.exists(), "{} is missing", path.display());
            Ok(path)
        } else {
            workspace.build_guest(dir)
        }
    };
    let rust_component = guest("guest-examples/rust/game-room", "rust")?;
    let js_component = if peers.contains(&PeerKind::DohostJs) {
        match guest("guest-examples/js/game-room", "js") {
            Ok(path) => {
                available.push((PeerKind::DohostJs, None));
                Some(path)
            }
            Err(e) => {
                let why = format!("the JS game room did not build: {e:#}");
                eprintln!("e2e: {why}; skipping ours (JS)");
                available.push((PeerKind::DohostJs, Some(why)));
                None
            }
        }
    } else {
        None
    };
    let workerd = if peers.contains(&PeerKind::Workerd) {
        match workspace.install_workerd() {
            Ok(path) => {
                notes.push(format!(
                    "peer: {} (npm package workerd, {})",
                    version_line(&path, "--version"),
                    path.display()
                ));
                available.push((PeerKind::Workerd, None));
                Some(path)
            }
            Err(e) => {
                let why = format!("workerd is not available: {e:#}");
                eprintln!("e2e: {why}; skipping workerd");
                available.push((PeerKind::Workerd, Some(why)));
                None
            }
        }
    } else {
        None
    };
    available.push((PeerKind::DohostRust, None));
    available.push((PeerKind::Floor, None));
    let binaries = Binaries {
        dohost,
        rust_component,
        js_component,
        workerd,
        workerd_dir: workspace.benches().join("workerd"),
        harness: std::env::current_exe().context("cannot find the harness's own executable")?,
        component_cache: workspace.component_cache(),
    };
    Ok((binaries, available))
}

fn options(args: &RunArgs) -> Options {
    let (warmup, measure, rooms) = if args.quick {
        (1.0, 3.0, 200)
    } else {
        (2.0, 10.0, 1000)
    };
    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
    Options {
        connections: args.connections.max(1),
        warmup: secs(args.warmup.unwrap_or(warmup)),
        measure: secs(args.duration.unwrap_or(measure)),
        rate: args.rate.max(1.0),
        spread_rooms: args.spread_rooms.max(1),
        new_rooms: args.rooms.unwrap_or(rooms),
        cold_rate: args.cold_rate.max(1.0),
        reactivated_rooms: args.rooms.unwrap_or(rooms),
        eviction_cap: args.eviction_cap,
        restart_all: args.restart_all,
        live_objects: args.objects.unwrap_or(rooms),
        js_live_objects: args
            .js_objects
            .unwrap_or(args.objects.unwrap_or(rooms))
            .max(1),
        count_syncs: args.count_syncs,
    }
}

/// Parses a comma-separated selection, or everything when empty.
fn select<T: Copy>(
    names: &[String],
    parse: fn(&str) -> Option<T>,
    all: &[T],
    what: &str,
) -> anyhow::Result<Vec<T>> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    names
        .iter()
        .map(|n| parse(n.trim()).with_context(|| format!("unknown {what} {n:?}")))
        .collect()
}

/// Today's date in UTC, `YYYY-MM-DD` (civil-from-days, no calendar crate needed).
fn utc_date() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
