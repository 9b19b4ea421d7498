//! Command-line interface of `dohost`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dohost::{IdMinter, ServerConfig, SyncMode};

/// dohost runs durable objects: WebAssembly components with a unique ID, their own SQLite
/// database and one event at a time.
#[derive(Parser)]
#[command(name = "dohost", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    dohost run game-room.wasm\n  \
    curl -X POST localhost:8787/lobby/join -d '{\"playerId\":\"p1\",\"name\":\"Ann\"}'\n  \
    dohost id --class game-room lobby\n\n\
    Logs go to stderr; set RUST_LOG=debug for one line per request.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the objects of one component over HTTP.
    ///
    /// POST /<name>/<path> reaches the object created from <name>, which sees /<path>;
    /// /_id/<hex>/<path> reaches an object by ID; POST /_new mints a unique ID.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Print the ID (and database file) of the object created from a name.
    Id(IdArgs),
    /// Check an SDK: run the conformance suite against its conformance object.
    ///
    /// Starts a host for each case on a free port with a temporary data directory, prints
    /// one line per case (pass / FAIL with the difference / skip) and a summary, and exits
    /// non-zero on any unexpected result. See tests/conformance/README.md.
    Conformance(ConformanceArgs),
    /// Measure cold starts of a component's objects: N new objects (database created), the
    /// same N again after eviction (database exists), and warm requests. Prints min, p50,
    /// p99 and max per phase.
    Coldstart(ColdstartArgs),
}

#[derive(Args)]
struct ColdstartArgs {
    /// The object component (.wasm).
    component: PathBuf,
    /// Number of objects to activate.
    #[arg(short = 'n', long, default_value_t = 200)]
    objects: usize,
    /// Request each activation serves: method and path (e.g. "GET /count").
    #[arg(long, default_value = "GET /")]
    request: String,
    /// Request body.
    #[arg(long, default_value = "")]
    body: String,
}

#[derive(Args)]
struct ConformanceArgs {
    /// The conformance object (.wasm) built with the SDK under test.
    component: PathBuf,
    /// Known failures and skips: lines of `fail <case> <reason>` or `skip <case> <reason>`.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Read the cases from this directory instead of the ones built into dohost.
    #[arg(long)]
    cases: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// The object component (.wasm) to serve.
    component: PathBuf,
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, default_value = "127.0.0.1:8787", env = "DOHOST_LISTEN")]
    listen: SocketAddr,
    /// Data directory: object databases, the ID key and the compiled-component cache.
    #[arg(long, default_value = ".dohost", env = "DOHOST_DATA")]
    data: PathBuf,
    /// Directory for compiled components [default: <data>/cache]. Several hosts may share one.
    #[arg(long, env = "DOHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Class name, part of every object ID [default: the component's file name].
    #[arg(long)]
    class: Option<String>,
    /// Commit durability: full (fsync before every response), normal (survives a dohost
    /// crash, not power loss) or off (tests only).
    #[arg(long, default_value = "full")]
    sync: SyncMode,
    /// Linear memory limit per object instance (e.g. 128MiB).
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    memory_limit: u64,
    /// Database size limit per object (e.g. 10GiB).
    #[arg(long, default_value = "10GiB", value_parser = parse_size)]
    max_db_size: u64,
    /// Empty object databases kept ready (made, synced and opened in the background, under
    /// <data>/spare; refilled once a quarter are taken), so a new object's first request
    /// creates and opens nothing; 0 = off (and no reserve). Each costs about 90 KiB of disk
    /// and three open files.
    #[arg(long, default_value_t = 32)]
    spare_databases: usize,
    /// Most spare databases kept made on disk (not open) behind the ready ones, so that a
    /// burst of new objects causes no file creation or sync while it lasts. The reserve grows
    /// with use: up to as many as new objects were made since the start, made in pauses of new
    /// objects (once the last one's first sync is done), and kept across restarts. About
    /// 90 KiB of disk each, no open files; 0 = none.
    #[arg(long, default_value_t = 1024)]
    spare_reserve: usize,
    /// CPU time limit per event (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    cpu_limit: Duration,
    /// Largest accepted request body (larger ones get 413).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    max_body: u64,
    /// Time a client may take to send a request body once its head arrived (then 408), and
    /// to take any of a response's bytes (then the connection is closed).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    body_timeout: Duration,
    /// Request bodies held in memory at once across the host, being read or queued with
    /// their events (a body counts with the bytes received, until its event has run); a
    /// request whose body does not fit gets 503.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_buffered_bodies: u64,
    /// Client connections open at once; past it new ones wait in the listen backlog.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Evict an object's instance after this long without events.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    idle_timeout: Duration,
    /// Most object instances live at once (sizes the instance pool); past it the least
    /// recently used idle object is evicted.
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Instances of the class kept started ahead (their start code run, no object bound yet),
    /// so that activating an object binds one instead of instantiating the component on the
    /// request's path. A class whose start code needs its object (calls dohost imports,
    /// writes output or makes requests) is not started ahead. Each holds an instance slot and its memory;
    /// 0 = none.
    #[arg(long, default_value_t = dohost::server::DEFAULT_SPARE_INSTANCES as u16, value_parser = clap::value_parser!(u16).range(0..=256))]
    spare_instances: u16,
    /// Hosts objects may fetch from: `host`, `host:port` or `*.domain` (repeat or separate with
    /// commas) [default: any public host].
    #[arg(long = "fetch-allow", value_delimiter = ',', value_parser = dohost::fetch::check_allow_entry)]
    fetch_allow: Vec<String>,
    /// Let objects fetch from loopback, private and link-local addresses (off by default to
    /// prevent server-side request forgery; checked after DNS resolution).
    #[arg(long)]
    fetch_allow_private: bool,
    /// Disable outbound fetch entirely (fetch returns the typed not-enabled error).
    #[arg(long)]
    no_fetch: bool,
    /// Timeout of one outbound fetch (connect, send, response and body).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    fetch_timeout: Duration,
    /// Largest outbound fetch response body.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    fetch_max_response: u64,
    /// Outbound fetches one object may have in flight at once.
    #[arg(long, default_value_t = 6)]
    fetch_max_concurrent: usize,
    /// Serve Prometheus metrics (GET /metrics) and GET /healthz on this address.
    #[arg(long, env = "DOHOST_ADMIN")]
    admin: Option<SocketAddr>,
    /// Delay before the first retry of a failed alarm handler; it doubles on each further
    /// retry, up to 5 minutes.
    #[arg(long, default_value = "2s", value_parser = parse_positive_duration)]
    alarm_retry_base: Duration,
    /// Retries of a failed alarm before it is dropped.
    #[arg(long, default_value_t = 6)]
    alarm_max_retries: u32,
}

#[derive(Args)]
struct IdArgs {
    /// The object's name.
    name: String,
    /// The class (the component's file name without .wasm, unless `run --class` was used).
    #[arg(long)]
    class: String,
    /// Data directory holding the host key.
    #[arg(long, default_value = ".dohost", env = "DOHOST_DATA")]
    data: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The conformance runner prints its own report; only problems should interleave with it.
    init_logging(match cli.command {
        Command::Conformance(_) | Command::Coldstart(_) => {
            "warn,guest=off,dohost::registry=off,dohost::ingress=error"
        }
        _ => "info,wasmtime=warn,cranelift=warn",
    });
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Id(args) => id(args),
        Command::Conformance(args) => conformance(args),
        Command::Coldstart(args) => coldstart(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dohost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.component);
    config.class = args.class;
    config.listen = args.listen;
    config.data_dir = args.data;
    config.cache_dir = args.cache_dir;
    config.storage.sync = args.sync;
    config.storage.max_database_bytes = args.max_db_size;
    config.storage.spare_databases = args.spare_databases;
    config.storage.spare_reserve = args.spare_reserve;
    config.limits.memory_bytes = usize::try_from(args.memory_limit).context("--memory-limit")?;
    config.limits.cpu_per_event = args.cpu_limit;
    config.limits.max_body_bytes = usize::try_from(args.max_body).context("--max-body")?;
    config.limits.body_timeout = args.body_timeout;
    config.limits.max_buffered_body_bytes =
        usize::try_from(args.max_buffered_bodies).context("--max-buffered-bodies")?;
    config.limits.max_connections = args.max_connections;
    anyhow::ensure!(
        args.max_buffered_bodies >= args.max_body,
        "--max-buffered-bodies ({}) must be at least --max-body ({}): a body that does not fit \
         would always be refused",
        args.max_buffered_bodies,
        args.max_body
    );
    config.idle_timeout = args.idle_timeout;
    config.max_instances = args.max_instances;
    config.spare_instances = usize::from(args.spare_instances);
    config.alarms.retry_base = args.alarm_retry_base;
    config.admin = args.admin;
    config.fetch = dohost::fetch::FetchPolicy {
        enabled: !args.no_fetch,
        allow: args.fetch_allow,
        allow_private: args.fetch_allow_private,
        timeout: args.fetch_timeout,
        max_response_bytes: usize::try_from(args.fetch_max_response)
            .context("--fetch-max-response")?,
        max_concurrent: args.fetch_max_concurrent,
    };
    config.alarms.max_retries = args.alarm_max_retries;
    raise_open_file_limit(&config);
    // An event holds a blocking thread while it runs, network waits included (an object
    // fetching from a slow upstream): room for every live object at once, so slow objects
    // never hold up the others (tokio's default is 512).
    let blocking = (config.max_instances as usize).saturating_add(64).max(512);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()?;
    runtime.block_on(async move {
        let class = config.class_name();
        let component = config.component.display().to_string();
        let data = config.data_dir.display().to_string();
        let sync = config.storage.sync;
        let server = dohost::Server::bind(config).await?;
        let addr = server.local_addr()?;
        tracing::info!(
            "serving class {class} ({component}) on http://{addr} | data: {data} | sync: {sync}"
        );
        if let Some(admin) = server.admin_addr() {
            tracing::info!("metrics on http://{admin}/metrics");
        }
        tracing::info!("try: curl -X POST http://{addr}/<name>/<path>");
        server.serve(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard limit (a common default soft limit, 1,024,
/// is far below what a host may need), and warns if even that is below what the settings may
/// use: a descriptor per client connection, up to four per live object (its database and WAL
/// for SQLite, and the host's own for syncing them) plus its outbound fetches' sockets, three
/// per spare database, and some for the rest.
fn raise_open_file_limit(config: &ServerConfig) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                "raised the open-file limit from {} to {}",
                limit.rlim_cur,
                raised.rlim_cur
            );
            limit = raised;
        }
    }
    // Outbound fetches: a socket each, up to --fetch-max-concurrent per live object.
    let per_object = 4 + if config.fetch.enabled {
        config.fetch.max_concurrent as u64
    } else {
        0
    };
    let need = (config.limits.max_connections as u64)
        .saturating_add(per_object.saturating_mul(u64::from(config.max_instances)))
        .saturating_add(3 * config.storage.spare_databases as u64)
        .saturating_add(256);
    if limit.rlim_cur < need {
        tracing::warn!(
            "the open-file limit is {}, and these settings may need up to {need} (--max-connections \
             + (4 + --fetch-max-concurrent) x --max-instances + 3 x --spare-databases + 256): \
             past it, connections, objects and fetches fail to open; raise the limit (ulimit -n, \
             or LimitNOFILE= in a systemd unit) or lower those options",
            limit.rlim_cur
        );
    }
}

fn id(args: IdArgs) -> anyhow::Result<()> {
    let key = args.data.join("id.key");
    anyhow::ensure!(
        key.exists(),
        "{} does not exist: run `dohost run --data {}` once first",
        key.display(),
        args.data.display()
    );
    let minter = IdMinter::load_or_create(&key)?;
    let id = minter.from_name(&args.class, &args.name)?;
    println!("{id}");
    println!(
        "{}",
        dohost::storage::database_path(&args.data, &id).display()
    );
    Ok(())
}

fn conformance(args: ConformanceArgs) -> anyhow::Result<()> {
    let expectations = match &args.expect {
        Some(path) => dohost::conformance::Expectations::load(path)?,
        None => Default::default(),
    };
    let options = dohost::conformance::RunOptions {
        component: args.component,
        expectations,
        filter: args.filter,
        cases_dir: args.cases,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(dohost::conformance::run(options))?;
    anyhow::ensure!(
        summary.ok(),
        "{} case(s) did not behave as expected",
        summary.failed
    );
    Ok(())
}

fn coldstart(args: ColdstartArgs) -> anyhow::Result<()> {
    let (method, path) = args
        .request
        .split_once(' ')
        .map(|(m, p)| (m.to_ascii_uppercase(), p.to_string()))
        .unwrap_or_else(|| ("GET".into(), args.request.clone()));
    anyhow::ensure!(
        path.starts_with('/'),
        "--request takes a method and a path, like \"GET /count\""
    );
    anyhow::ensure!(args.objects > 0, "-n must be at least 1");
    let options = dohost::coldstart::ColdstartOptions {
        component: args.component.clone(),
        objects: args.objects,
        method,
        path,
        body: args.body.into_bytes(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(dohost::coldstart::measure(&options))?;
    println!(
        "dohost coldstart: {} ({} objects, {} request, {} CPUs)",
        args.component.display(),
        args.objects,
        args.request,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", report.render());
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. From then on a second one ends the process at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!(
        "stopping: finishing in-flight requests and queued events (signal again to exit now)"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        // Like a crash for the objects, which they survive: every acknowledged write is
        // durable, and unfinished events are rolled back when their databases next open.
        tracing::warn!("second signal: exiting without waiting for events still running");
        std::process::exit(1);
    });
}

/// Parses sizes such as `4096`, `64KiB`, `128MiB`, `10GiB` (also KB/MB/GB as powers of 1000).
fn parse_size(text: &str) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("b", 1),
        ("k", 1 << 10),
        ("kib", 1 << 10),
        ("m", 1 << 20),
        ("mib", 1 << 20),
        ("g", 1 << 30),
        ("gib", 1 << 30),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
    ];
    parse_with_unit(text, UNITS, "a size like 128MiB", "B, KiB, MiB or GiB")
}

/// A duration above zero: every duration option is a limit or a delay, which zero would turn
/// into "fail at once" or "retry in a tight loop".
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than 0 (e.g. 500ms, 30s)".into());
    }
    Ok(duration)
}

/// Parses durations such as `500ms`, `30s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: &[(&str, u64)] = &[("ms", 1), ("", 1000), ("s", 1000), ("m", 60_000)];
    parse_with_unit(text, UNITS, "a duration like 30s", "ms, s or m").map(Duration::from_millis)
}

/// `<digits><unit>`, the unit (case-insensitive) one of `units`, scaled by its factor.
fn parse_with_unit(
    text: &str,
    units: &[(&str, u64)],
    what: &str,
    names: &str,
) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not {what}"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor = units
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, factor)| *factor)
        .ok_or_else(|| format!("unknown unit in {text:?}: use {names}"))?;
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1h").is_err());
    }
}
