//! Micro-benchmarks of the host's hot paths, through the `dohost` library, each next to a
//! baseline measured in the same run:
//!
//! | group | ours | baseline |
//! | --- | --- | --- |
//! | `instantiate` | `LiveObject::activate`: a store and an instance from the pre-linked component (`InstancePre`) over an open database | (related to `activation`) |
//! | `sql_exec` | one `sql.exec("SELECT ?")` round trip from inside a guest | the host's `SqlStore::exec` (no wasm) and raw rusqlite `prepare_cached` + `query_row` |
//! | `warm_request` | `ObjectRegistry::dispatch` of `GET /count` to a live game room | rusqlite: `BEGIN; SELECT count(*); COMMIT` + the JSON answer |
//! | `activation` | `dispatch` of `GET /count` to an existing, evicted game room (open database, instantiate, first event) | rusqlite: open the room's file, same SQL |
//! | `durable_write` | `dispatch` of `POST /join` (commit fsynced, `--sync full`) | rusqlite: same SQL and commit, `synchronous=FULL` |
//!
//! Run with `cargo bench -p dohost-benches` (add `-- --quick` for a short run, or a filter
//! such as `-- warm_request`). After criterion's own report, a table prints every figure and
//! its ratio to the baseline. The JS game room is included when it builds
//! (`DOHOST_BENCH_JS=0` leaves it out).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use criterion::Criterion;
use dohost::bindings::http_types::{Request, Response};
use dohost::fetch::FetchPolicy;
use dohost::id::ObjectId;
use dohost::metrics::{ActivationTimings, Metrics};
use dohost::object::{EventKind, HostParts, Identity, LiveObject, Reply};
use dohost::server::Runtime;
use dohost::storage::{SqlStore, StorageConfig};
use dohost::{Limits, ObjectRegistry, Server, ServerConfig};
use dohost_benches::floor::open_room;
use dohost_benches::stats::fmt_duration;
use dohost_benches::workspace::Workspace;
use rusqlite::Connection;

/// `sql.exec` calls per event in the round-trip benchmark.
const EXECS: u64 = 64;

fn main() {
    if let Err(e) = run() {
        eprintln!("micro: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let fixture = Fixture::new()?;
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    instantiate(&mut c, &fixture);
    sql_exec(&mut c, &fixture);
    warm_request(&mut c, &fixture);
    activation(&mut c, &fixture);
    durable_write(&mut c, &fixture);
    c.final_summary();
    print_ratios(&fixture);
    fixture.shutdown();
    Ok(())
}

/// One class served by an in-process host (no HTTP listener is served; events go straight to
/// the registry).
struct Host {
    label: &'static str,
    runtime: Runtime,
    registry: ObjectRegistry,
    _server: Server,
    /// A named object of this class, kept live by the benchmarks that need it.
    id: ObjectId,
    name: String,
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    work: tempfile::TempDir,
    rust: Host,
    js: Option<Host>,
    sql: Host,
}

impl Fixture {
    fn new() -> anyhow::Result<Self> {
        let workspace = Workspace::locate();
        let rust = workspace.build_guest("guest-examples/rust/game-room")?;
        let sql = workspace.build_guest("benches/sql-guest")?;
        let js = if std::env::var("DOHOST_BENCH_JS").as_deref() == Ok("0") {
            None
        } else {
            match workspace.build_guest("guest-examples/js/game-room") {
                Ok(path) => Some(path),
                Err(e) => {
                    eprintln!("micro: skipping the JS game room: {e:#}");
                    None
                }
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let work = tempfile::Builder::new()
            .prefix("micro-")
            .tempdir_in(workspace.root.join("target"))?;
        let cache = workspace.component_cache();
        let start = |label, component: &Path| -> anyhow::Result<Host> {
            rt.block_on(Host::start(
                label,
                component,
                &work.path().join(label),
                &cache,
            ))
        };
        let rust = start("rust", &rust)?;
        let sql = start("sql", &sql)?;
        let js = js.map(|path| start("js", &path)).transpose()?;
        Ok(Self {
            rt,
            work,
            rust,
            js,
            sql,
        })
    }

    /// The game rooms to measure: Rust, and JS when it built.
    fn rooms(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.rust).chain(self.js.as_ref())
    }

    fn shutdown(self) {
        for host in [Some(&self.rust), self.js.as_ref(), Some(&self.sql)]
            .into_iter()
            .flatten()
        {
            self.rt.block_on(host.registry.shutdown());
        }
    }
}

impl Host {
    async fn start(
        label: &'static str,
        component: &Path,
        data: &Path,
        cache: &Path,
    ) -> anyhow::Result<Host> {
        let mut config = ServerConfig::new(component.to_path_buf());
        config.class = Some("game-room".into());
        config.listen = "127.0.0.1:0".parse()?;
        config.data_dir = data.to_path_buf();
        config.idle_timeout = Duration::from_secs(3600);
        config.max_instances = 64;
        std::fs::create_dir_all(data)?;
        let runtime = Runtime::load(&config, cache.to_path_buf())
            .await
            .with_context(|| format!("loading {}", component.display()))?;
        let server = Server::bind_with(&runtime, config).await?;
        let registry = server.registry().clone();
        let name = format!("bench-{label}");
        let id = registry.ids().from_name("game-room", &name)?;
        let host = Host {
            label,
            runtime,
            registry,
            _server: server,
            id,
            name,
        };
        if label != "sql" {
            host.dispatch(post_join(0)).await?;
        }
        Ok(host)
    }

    async fn dispatch(&self, request: Request) -> anyhow::Result<Response> {
        match self
            .registry
            .dispatch(
                self.id,
                Some(self.name.clone()),
                EventKind::Request(request),
            )
            .await?
        {
            Reply::Response(r) if r.status < 400 => Ok(r),
            Reply::Response(r) => anyhow::bail!(
                "{} answered {}: {}",
                self.label,
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            other => anyhow::bail!("{}: unexpected reply {other:?}", self.label),
        }
    }

    /// Dispatches `request` `n` times; panics (failing the benchmark) if one fails.
    async fn dispatch_n(&self, n: u64, mut request: impl FnMut() -> Request) -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            if let Err(e) = self.dispatch(request()).await {
                panic!("{}: {e:#}", self.label);
            }
        }
        started.elapsed()
    }
}

fn request(method: &str, path: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        url: format!("http://localhost{path}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
    }
}

fn get_count() -> Request {
    request("GET", "/count", b"")
}

fn post_join(player: u64) -> Request {
    let body = format!("{{\"playerId\":\"p{player}\",\"name\":\"player {player}\"}}");
    request("POST", "/join", body.as_bytes())
}

// ---------------------------------------------------------------------------------------
// The benchmarks

fn instantiate(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("instantiate");
    for host in f.rooms() {
        let path = f
            .work
            .path()
            .join(format!("instantiate-{}.sqlite3", host.label));
        let identity = Identity {
            class: "game-room".into(),
            id: host.id,
            name: Some("instantiate".into()),
        };
        let limits = Limits::default();
        let fetch = Arc::new(FetchPolicy::default());
        let metrics = Arc::new(Metrics::default());
        let mut database = Some(must(
            SqlStore::open(&path, &StorageConfig::default()).map_err(Into::into),
        ));
        let key = leak(format!("instantiate/{}", host.label));
        group.bench_function(host.label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let Some(db) = database.take() else {
                        panic!("the database was lost by a failed activation");
                    };
                    let started = Instant::now();
                    let parts = HostParts {
                        class: host.runtime.class(),
                        limits: &limits,
                        fetch: &fetch,
                        metrics: &metrics,
                        prestarted: None,
                    };
                    let live = LiveObject::activate(f.rt.handle(), &parts, identity.clone(), db);
                    total += started.elapsed();
                    // Tearing the instance down (returning its pool slot) is not timed.
                    match live {
                        Ok(live) => database = Some(live.into_database()),
                        Err(failed) => panic!("{}: {}", host.label, failed.0),
                    }
                }
                record(key, total, iters);
                total
            })
        });
    }
    group.finish();
}

fn sql_exec(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("sql_exec");
    let many = || request("GET", &format!("/exec?n={EXECS}"), b"");
    let none = || request("GET", "/exec?n=0", b"");
    group.bench_function("guest round trip", |b| {
        b.iter_custom(|iters| {
            // The same events with and without the calls: the difference is the calls alone.
            let (with, without) = f.rt.block_on(async {
                let with = f.sql.dispatch_n(iters, many).await;
                let without = f.sql.dispatch_n(iters, none).await;
                (with, without)
            });
            let total = with.saturating_sub(without) / EXECS as u32;
            record("sql_exec/guest", total, iters);
            total
        })
    });
    let mut store = must(
        SqlStore::open(
            &f.work.path().join("exec-host.sqlite3"),
            &StorageConfig::default(),
        )
        .map_err(Into::into),
    );
    group.bench_function("host SqlStore::exec (no wasm)", |b| {
        b.iter_custom(|iters| {
            must(store.begin_event(None).map_err(Into::into));
            let started = Instant::now();
            for i in 0..iters {
                let params = [dohost::bindings::sql::Value::Integer(i as i64)];
                match store.exec("SELECT ?", &params) {
                    Ok(out) => {
                        black_box(out);
                    }
                    Err(e) => panic!("SqlStore::exec: {e:?}"),
                }
            }
            let total = started.elapsed();
            must(store.finish_event(false).map(drop).map_err(Into::into));
            record("sql_exec/host", total, iters);
            total
        })
    });
    let mut conn = must(open_room(&f.work.path().join("exec-raw.sqlite3")));
    group.bench_function("rusqlite", |b| {
        b.iter_custom(|iters| {
            let tx = must(conn.transaction().map_err(Into::into));
            let started = Instant::now();
            for i in 0..iters {
                let value: rusqlite::Result<i64> = tx
                    .prepare_cached("SELECT ?1")
                    .and_then(|mut s| s.query_row([i as i64], |r| r.get(0)));
                black_box(must(value.map_err(Into::into)));
            }
            let total = started.elapsed();
            drop(tx);
            record("sql_exec/rusqlite", total, iters);
            total
        })
    });
    group.finish();
}

fn warm_request(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("warm_request");
    for host in f.rooms() {
        let key = leak(format!("warm_request/{}", host.label));
        group.bench_function(format!("{} dispatch GET /count", host.label), |b| {
            b.iter_custom(|iters| {
                let total = f.rt.block_on(host.dispatch_n(iters, get_count));
                record(key, total, iters);
                total
            })
        });
    }
    let mut conn = must(open_room(&f.work.path().join("warm-floor.sqlite3")));
    must(join_floor(&mut conn, 0));
    group.bench_function("rusqlite (floor)", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(must(count_floor(&mut conn)));
            }
            let total = started.elapsed();
            record("warm_request/floor", total, iters);
            total
        })
    });
    group.finish();
}

fn activation(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("activation");
    for host in f.rooms() {
        let key = leak(format!("activation/{}", host.label));
        host.registry.metrics().keep_samples();
        host.registry.metrics().take_samples();
        group.bench_function(format!("{} existing object", host.label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Evicting (dropping the instance, closing the database) is not timed.
                    f.rt.block_on(host.registry.evict(host.id));
                    total += f.rt.block_on(host.dispatch_n(1, get_count));
                }
                record(key, total, iters);
                total
            })
        });
        phases()
            .lock()
            .map(|mut p| {
                p.insert(host.label, host.registry.metrics().take_samples());
            })
            .ok();
    }
    let path = f.work.path().join("activation-floor.sqlite3");
    {
        let mut conn = must(open_room(&path));
        must(join_floor(&mut conn, 0));
    }
    group.bench_function("rusqlite (floor) open + same SQL", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let mut conn = must(open_room(&path));
                black_box(must(count_floor(&mut conn)));
                total += started.elapsed();
                // Closing is not timed (dohost's eviction is not either).
                drop(conn);
            }
            record("activation/floor", total, iters);
            total
        })
    });
    group.finish();
}

fn durable_write(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("durable_write");
    group.sample_size(10);
    let key = leak(format!("durable_write/{}", f.rust.label));
    group.bench_function("rust dispatch POST /join", |b| {
        b.iter_custom(|iters| {
            let mut n = 0;
            let total = f.rt.block_on(f.rust.dispatch_n(iters, || {
                n += 1;
                post_join(n % 100)
            }));
            record(key, total, iters);
            total
        })
    });
    let mut conn = must(open_room(&f.work.path().join("write-floor.sqlite3")));
    group.bench_function("rusqlite (floor), synchronous=FULL", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for i in 0..iters {
                black_box(must(join_floor(&mut conn, i % 100)));
            }
            let total = started.elapsed();
            record("durable_write/floor", total, iters);
            total
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// The floor's SQL (the same statements as `dohost_benches::floor`)

fn count_floor(conn: &mut Connection) -> anyhow::Result<Vec<u8>> {
    let tx = conn.transaction()?;
    let players: i64 = tx
        .prepare_cached("SELECT count(*) FROM players")?
        .query_row([], |r| r.get(0))?;
    tx.commit()?;
    Ok(serde_json::to_vec(
        &serde_json::json!({ "players": players }),
    )?)
}

fn join_floor(conn: &mut Connection, player: u64) -> anyhow::Result<Vec<u8>> {
    let tx = conn.transaction()?;
    tx.prepare_cached("INSERT OR REPLACE INTO players (id, name) VALUES (?1, ?2)")?
        .execute((format!("p{player}"), format!("player {player}")))?;
    let players: i64 = tx
        .prepare_cached("SELECT count(*) FROM players")?
        .query_row([], |r| r.get(0))?;
    tx.commit()?;
    Ok(serde_json::to_vec(
        &serde_json::json!({ "players": players }),
    )?)
}

// ---------------------------------------------------------------------------------------
// Ratios: criterion reports each benchmark alone; this keeps every timed call's total time and
// iteration count, so the ratios to the baselines can be printed at the end.

/// Per benchmark: total time and iterations of every `iter_custom` call.
type Totals = BTreeMap<&'static str, (Duration, u64)>;

fn totals() -> &'static Mutex<Totals> {
    static TOTALS: OnceLock<Mutex<Totals>> = OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

fn phases() -> &'static Mutex<BTreeMap<&'static str, Vec<ActivationTimings>>> {
    static PHASES: OnceLock<Mutex<BTreeMap<&'static str, Vec<ActivationTimings>>>> =
        OnceLock::new();
    PHASES.get_or_init(Default::default)
}

fn record(key: &'static str, total: Duration, iters: u64) {
    if let Ok(mut totals) = totals().lock() {
        let entry = totals.entry(key).or_default();
        entry.0 += total;
        entry.1 += iters;
    }
}

/// Mean time per iteration over every call (criterion's warm-up included: same code, and its
/// calls are short next to the measurement's).
fn mean(key: &str) -> Option<Duration> {
    let totals = totals().lock().ok()?;
    let (total, iters) = totals.get(key)?;
    (*iters > 0).then(|| total.div_f64(*iters as f64))
}

fn print_ratios(f: &Fixture) {
    /// How a row relates ours to the baseline.
    enum Relation {
        /// `ours / baseline`, as `12.3×`.
        Ratio,
        /// `ours / baseline`, as a percentage (a part of a whole).
        Share,
    }
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |what: String, ours: &str, baseline: &str, relation: Relation| {
        let Some(a) = mean(ours) else { return };
        let b = mean(baseline);
        let related = match (b, relation) {
            (Some(b), Relation::Ratio) if !b.is_zero() => {
                format!("= {:.1}×", a.as_secs_f64() / b.as_secs_f64())
            }
            (Some(b), Relation::Share) if !b.is_zero() => {
                format!("= {:.1} %", 100.0 * a.as_secs_f64() / b.as_secs_f64())
            }
            _ => "-".into(),
        };
        rows.push([
            what,
            fmt_duration(a),
            b.map(fmt_duration).unwrap_or_else(|| "-".into()),
            related,
        ]);
    };
    row(
        "sql.exec round trip from a guest vs rusqlite".into(),
        "sql_exec/guest",
        "sql_exec/rusqlite",
        Relation::Ratio,
    );
    row(
        "host SqlStore::exec (no wasm) vs rusqlite".into(),
        "sql_exec/host",
        "sql_exec/rusqlite",
        Relation::Ratio,
    );
    for host in f.rooms() {
        let l = host.label;
        row(
            format!("{l}: warm request (dispatch) vs rusqlite, same SQL"),
            leak(format!("warm_request/{l}")),
            "warm_request/floor",
            Relation::Ratio,
        );
        row(
            format!("{l}: activation of an existing object vs rusqlite open + SQL"),
            leak(format!("activation/{l}")),
            "activation/floor",
            Relation::Ratio,
        );
        row(
            format!("{l}: instantiate from InstancePre, share of that activation"),
            leak(format!("instantiate/{l}")),
            leak(format!("activation/{l}")),
            Relation::Share,
        );
    }
    row(
        "rust: durable write, one at a time (dispatch) vs rusqlite synchronous=FULL".into(),
        "durable_write/rust",
        "durable_write/floor",
        Relation::Ratio,
    );
    if rows.is_empty() {
        return;
    }
    println!("\nratios (mean time per iteration, this run):");
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        println!(
            "  {:<w0$}  {:>w1$}  vs {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
    }
    if let Ok(phases) = phases().lock() {
        for (label, samples) in phases.iter() {
            if samples.is_empty() {
                continue;
            }
            let median_of = |get: fn(&ActivationTimings) -> Duration| {
                let mut v: Vec<Duration> = samples.iter().map(get).collect();
                v.sort();
                fmt_duration(v[v.len() / 2])
            };
            println!(
                "  {label}: activation phases as the host records them (median of {}): \
                 open database {}, instantiate {}, first event {}",
                samples.len(),
                median_of(|t| t.open_database),
                median_of(|t| t.instantiate),
                median_of(|t| t.first_event),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

/// Set-up failures end the benchmark with the error (there is nothing to measure without).
fn must<T>(result: anyhow::Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{e:#}"),
    }
}

/// A `'static` key for the sample table (a handful per run).
fn leak(s: String) -> &'static str {
    static KEYS: OnceLock<Mutex<BTreeMap<String, &'static str>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let mut keys = match keys.lock() {
        Ok(k) => k,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(k) = keys.get(&s) {
        return k;
    }
    let k: &'static str = Box::leak(s.clone().into_boxed_str());
    keys.insert(s, k);
    k
}
