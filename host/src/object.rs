//! One live object: its wasmtime store, its database, and how one event runs through them.
//!
//! Everything here runs on the object's event thread (a tokio blocking-pool thread the actor
//! hands the object to for one event), so SQLite calls block only that thread. The actor in
//! `registry` guarantees that events of one object never overlap.
//!
//! Event rules (the output gate):
//! - the event's SQL runs in one transaction, begun before the guest is called;
//! - `ok(response)`: the transaction commits (synced per the sync mode) before the response
//!   is returned, so no client sees a response whose writes are not durable;
//! - `err`, a trap, or a limit: the transaction rolls back and the instance is discarded, so
//!   the guest's memory can never disagree with its database; the next event gets a fresh
//!   instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::alarm::{AlarmIndex, now_ms};
use crate::bindings::http_types::{Request, Response};
use crate::bindings::{AlarmInfo, Object, identity};
use crate::engine::{Class, EPOCH_TICK};
use crate::fetch::{FetchPolicy, OutboundHttp};
use crate::id::ObjectId;
use crate::limits::{LimitHit, Limits, MemoryLimiter, thread_cpu_time};
use crate::logs::{GuestLog, LogOwner, Stream};
use crate::metrics::Metrics;
use crate::prestart::Prestart;
use crate::storage::{EventEnd, SqlStore, StorageError};

/// Who an object is, as its guest sees it through the `identity` interface.
#[derive(Clone, Debug)]
pub struct Identity {
    pub class: Arc<str>,
    pub id: ObjectId,
    pub name: Option<String>,
}

/// Counters of one event, read by the host after it ends.
#[derive(Default, Debug, Clone, Copy)]
pub struct EventMetrics {
    pub rows_read: u64,
    pub rows_written: u64,
    /// The event was rolled back because the database reached its size limit.
    pub database_full: bool,
}

/// The data of an object's wasmtime store.
pub struct ObjectState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: OutboundHttp,
    pub(crate) table: ResourceTable,
    /// The object's database and identity: `None` only in an instance started ahead
    /// ([`crate::prestart`]) until it is bound to an object.
    sql: Option<SqlStore>,
    identity: Option<Identity>,
    /// Also notes what needed the object before the instance was bound (such an instance is
    /// discarded).
    log_owner: Arc<LogOwner>,
    limiter: MemoryLimiter,
    pub(crate) metrics: EventMetrics,
    /// Whether the guest called `alarm.set` or `alarm.delete` in the current event.
    pub(crate) alarm_changed: bool,
    /// Thread CPU time when the current event started, and the event's budget.
    cpu_start: Duration,
    cpu_limit: Duration,
}

impl ObjectState {
    /// The object's database, for the guest's imports. Fails (a trap) in an instance started
    /// ahead whose start code calls in before it is bound to an object; the call is noted and
    /// the instance discarded (see [`crate::prestart`]).
    pub(crate) fn sql(&mut self) -> wasmtime::Result<&mut SqlStore> {
        match self.sql {
            Some(ref mut sql) => Ok(sql),
            None => Err(self.used_unbound()),
        }
    }

    /// The database, for the host's own work during an event (an instance is always bound
    /// by then).
    fn db(&mut self) -> &mut SqlStore {
        self.sql
            .as_mut()
            .expect("an instance is bound to its object before any event")
    }

    fn identity(&mut self) -> wasmtime::Result<&Identity> {
        match self.identity {
            Some(ref identity) => Ok(identity),
            None => Err(self.used_unbound()),
        }
    }

    fn used_unbound(&mut self) -> wasmtime::Error {
        self.log_owner.note_unbound_use();
        wasmtime::format_err!(
            "the object is not available to code run while an instance starts ahead"
        )
    }

    /// Whether the guest's start code needed the object (an import, output, a request)
    /// before the instance was bound to one.
    pub(crate) fn used_while_unbound(&self) -> bool {
        self.log_owner.used_unbound()
    }

    pub(crate) fn outbound(&self) -> &OutboundHttp {
        &self.http_hooks
    }

    /// Before committing an event that touched the alarm: indexes the alarm it leaves set
    /// (durably, so a crash after the commit cannot lose it) and returns it. The entry only
    /// moves earlier here: if the commit does not happen or does not survive a crash, the
    /// database keeps its earlier alarm, which must not fire late. An entry left early makes
    /// the object wake, find its alarm not due and re-index it ([`LiveObject::prepare_alarm`]).
    fn index_alarm_before_commit(
        &mut self,
        alarms: &AlarmIndex,
    ) -> Result<Option<i64>, StorageError> {
        let next = self.db().alarm()?;
        if let Some(at) = next {
            let identity = self.identity.as_ref().expect("bound before events");
            alarms.upsert_earliest(&identity.id, identity.name.as_deref(), at)?;
        }
        Ok(next)
    }

    /// See [`reindex_alarm`].
    fn reindex_alarm(
        &mut self,
        alarms: &AlarmIndex,
        next: Option<i64>,
    ) -> Result<(), StorageError> {
        let identity = self.identity.as_ref().expect("bound before events");
        let sql = self.sql.as_mut().expect("bound before events");
        reindex_alarm(sql, alarms, &identity.id, identity.name.as_deref(), next)
    }
}

/// Once object `id`'s database (`sql`) says its alarm is `next` (after a commit that touched
/// it, or on waking to find it not due): makes what the database says durable, then sets the
/// index entry to exactly that alarm, or drops it. Before that the entry may only move
/// earlier: moved later or dropped first, a crash could bring an earlier alarm back in the
/// database with no entry to fire it in time. If this fails, the entry stays as it is (early
/// or stale, never late), and is resolved when it comes due.
pub(crate) fn reindex_alarm(
    sql: &mut SqlStore,
    alarms: &AlarmIndex,
    id: &ObjectId,
    name: Option<&str>,
    next: Option<i64>,
) -> Result<(), StorageError> {
    sql.make_durable()?;
    match next {
        Some(at) => alarms.upsert(id, name, at, 0),
        None => alarms.remove(id),
    }
}

impl WasiView for ObjectState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ObjectState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// `http-types` only defines types.
impl crate::bindings::http_types::Host for ObjectState {}

impl identity::Host for ObjectState {
    fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.identity()?.id.to_hex())
    }

    fn name(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.identity()?.name.clone())
    }
}

/// An event delivered to an object.
#[derive(Debug)]
pub enum EventKind {
    Request(Request),
    /// The scheduler found the object's alarm due; `retry` attempts have failed before.
    AlarmDue {
        retry: u32,
    },
}

/// What a successful event returns.
#[derive(Debug)]
pub enum Reply {
    Response(Response),
    /// The alarm handler ran and committed.
    AlarmDone,
    /// No handler ran: the alarm was deleted or moved to a later time since it was indexed.
    AlarmNotDue,
}

/// Why an event failed. Every variant means the event's writes were rolled back.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the object returned an error: {0}")]
    Guest(String),
    #[error("the object trapped: {0}")]
    Trap(String),
    #[error("{0}")]
    Limit(LimitHit),
    #[error("the object could not be started: {0}")]
    Activation(String),
    /// The event did not run and may be sent again: no instance slot came free in time
    /// (`--max-instances` live objects, none idle), or the object's previous instance is
    /// still closing its database.
    #[error("{0}; try again")]
    Busy(String),
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
}

impl EventError {
    /// Whether the host, not the object's code, is why the event failed (its storage, or
    /// no room for the instance): such failures do not count against an alarm's retries.
    /// A commit refused by a constraint (a deferred foreign key the handler left broken) is
    /// the object's doing.
    pub fn is_host_side(&self) -> bool {
        match self {
            EventError::Busy(_) => true,
            EventError::Storage(StorageError::Commit(e)) => {
                e.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation)
            }
            EventError::Storage(_) => true,
            EventError::Guest(_)
            | EventError::Trap(_)
            | EventError::Limit(_)
            | EventError::Activation(_) => false,
        }
    }
}

/// What every instance of a class gets from its host: the compiled class, the limits, the
/// fetch policy and the metrics.
pub struct HostParts<'a> {
    pub class: &'a Class,
    pub limits: &'a Limits,
    pub fetch: &'a Arc<FetchPolicy>,
    pub metrics: &'a Arc<Metrics>,
    /// Instances started ahead, taken before instantiating one.
    pub prestarted: Option<&'a Prestart>,
}

/// An instance of the class not (yet) bound to an object: its start code has run, and it has
/// no identity and no database. See [`crate::prestart`].
pub struct Unbound {
    store: Store<ObjectState>,
    bindings: Object,
}

impl Unbound {
    /// Instantiates the class, running the component's start code with no object bound. Fails
    /// if the start code needed the object (an import or output): an instance started this
    /// way would differ from one started for its object.
    pub fn start(rt: &Handle, host: &HostParts<'_>) -> wasmtime::Result<Self> {
        let mut store = new_store(host);
        let started = rt.block_on(host.class.pre().instantiate_async(&mut store));
        // Checked first: the start code may have trapped on an import that needed the object.
        if store.data().used_while_unbound() {
            return Err(wasmtime::Error::new(StartedUnbound));
        }
        Ok(Self {
            bindings: started?,
            store,
        })
    }

    /// Whether its start code needed the object (see [`ObjectState::used_while_unbound`]).
    pub fn used_while_unbound(&self) -> bool {
        self.store.data().used_while_unbound()
    }

    /// Binds the instance to the object `identity` with its database.
    pub fn bind(mut self, identity: Identity, sql: SqlStore) -> LiveObject {
        bind_state(self.store.data_mut(), identity, sql);
        LiveObject {
            store: self.store,
            bindings: self.bindings,
        }
    }
}

/// Why an instance could not be started ahead: its start code needed the object.
#[derive(Debug, thiserror::Error)]
#[error(
    "its start code calls dohost imports, writes output or makes requests, which need the object it starts for"
)]
pub struct StartedUnbound;

/// A live instance of an object.
pub struct LiveObject {
    store: Store<ObjectState>,
    bindings: Object,
}

impl LiveObject {
    /// Binds an instance started ahead to `identity` and its open database, if one is ready;
    /// otherwise instantiates the class for them. On failure the database comes back with the
    /// error: it may hold commits that still await their sync.
    pub fn activate(
        rt: &Handle,
        host: &HostParts<'_>,
        identity: Identity,
        sql: SqlStore,
    ) -> Result<Self, Box<(EventError, SqlStore)>> {
        if let Some(unbound) = host.prestarted.and_then(Prestart::take) {
            return Ok(unbound.bind(identity, sql));
        }
        let mut sql = sql;
        let deadline = Instant::now() + POOL_WAIT;
        loop {
            let mut store = new_store(host);
            bind_state(store.data_mut(), identity.clone(), sql);
            match rt.block_on(host.class.pre().instantiate_async(&mut store)) {
                Ok(bindings) => return Ok(Self { store, bindings }),
                // The pool is full for a moment: evicted instances are freed by their actors
                // shortly after the eviction. Wait for a slot rather than fail the event.
                Err(e) if pool_exhausted(&e) && Instant::now() < deadline => {
                    sql = take_database(store);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    let sql = take_database(store);
                    let err = if pool_exhausted(&e) {
                        EventError::Busy(format!(
                            "the host is at its live-object limit: {}",
                            describe_trap(&e)
                        ))
                    } else {
                        EventError::Activation(describe_trap(&e))
                    };
                    return Err(Box::new((err, sql)));
                }
            }
        }
    }

    /// Runs one event to completion: guest call, then commit or rollback.
    ///
    /// Keeps `alarms` from ever waking the object later than its alarm: before the commit an
    /// entry only moves earlier; once the commit is durable it is set to the alarm exactly.
    /// Returns the outcome and whether the instance may be kept for the next event.
    pub fn run(
        &mut self,
        rt: &Handle,
        event: EventKind,
        alarms: &AlarmIndex,
    ) -> (Result<Reply, EventError>, bool) {
        let state = self.store.data_mut();
        state.metrics = EventMetrics::default();
        state.alarm_changed = false;
        state.cpu_start = thread_cpu_time();
        // Statements stop a tick before the guest's own limit, so the guest sees the
        // interruption (`sql-error::other`) and may still answer; if it keeps going, it is
        // stopped at its limit.
        let grace = EPOCH_TICK.min(state.cpu_limit / 2);
        let sql_deadline = state.cpu_start + state.cpu_limit - grace;
        if let Err(e) = state.db().begin_event(Some(sql_deadline)) {
            return (Err(e.into()), false);
        }
        let alarm_info = match event {
            EventKind::Request(_) => None,
            EventKind::AlarmDue { retry } => match self.prepare_alarm(retry, alarms) {
                Ok(Some(info)) => Some(info),
                Ok(None) => return (Ok(Reply::AlarmNotDue), true),
                Err(e) => {
                    // Ends the event transaction if the failure left it open.
                    let _ = self.store.data_mut().db().finish_event(false);
                    return (Err(e), false);
                }
            },
        };
        self.store.set_epoch_deadline(1);
        let store = &mut self.store;
        let bindings = &self.bindings;
        let outcome = rt.block_on(async {
            match (&event, alarm_info) {
                (EventKind::Request(request), _) => bindings
                    .dohost_object_handler()
                    .call_handle_request(&mut *store, request)
                    .await
                    .map(|r| r.map(Reply::Response)),
                (_, Some(info)) => bindings
                    .dohost_object_alarm_handler()
                    .call_on_alarm(&mut *store, info)
                    .await
                    .map(|r| r.map(|()| Reply::AlarmDone)),
                (_, None) => Ok(Ok(Reply::AlarmNotDue)),
            }
        });
        let alarm_touched = alarm_info.is_some() || self.store.data().alarm_changed;
        let state = self.store.data_mut();
        match outcome {
            Ok(Ok(reply)) => {
                let next_alarm = if alarm_touched {
                    match state.index_alarm_before_commit(alarms) {
                        Ok(next) => next,
                        Err(e) => {
                            let _ = state.db().finish_event(false);
                            return (Err(e.into()), false);
                        }
                    }
                } else {
                    None
                };
                // An alarm handler whose writes are rolled back did not clear its alarm: that
                // is a failed attempt, to retry later (not at once, forever).
                let undone = |reply: Reply, why: &str| match alarm_info {
                    Some(_) => Err(EventError::Guest(format!(
                        "the alarm handler returned, but its writes were rolled back: {why}"
                    ))),
                    None => Ok(reply),
                };
                match state.db().finish_event(true) {
                    Ok(EventEnd::Committed) => {
                        if alarm_touched && let Err(e) = state.reindex_alarm(alarms, next_alarm) {
                            tracing::warn!(object = ?state.identity.as_ref().map(|i| i.id), "cannot update the alarm index entry: {e}");
                        }
                        (Ok(reply), true)
                    }
                    Ok(EventEnd::RolledBackFull) => {
                        state.metrics.database_full = true;
                        // The guest saw `database-full` and answered anyway: its response goes
                        // out, its writes do not. Its memory may assume they did, so discard it.
                        tracing::info!("event rolled back: the database reached its size limit");
                        (undone(reply, "the database reached its size limit"), false)
                    }
                    Ok(EventEnd::RolledBackDiskFull) => (
                        undone(reply, "the disk holding its database is full"),
                        false,
                    ),
                    Ok(EventEnd::RolledBack) => (
                        undone(reply, "its transaction was rolled back under it"),
                        false,
                    ),
                    Err(e) => (Err(e.into()), false),
                }
            }
            Ok(Err(message)) => {
                let _ = state.db().finish_event(false);
                (Err(EventError::Guest(message)), false)
            }
            Err(trap) => {
                let _ = state.db().finish_event(false);
                let err = match trap.downcast_ref::<LimitHit>() {
                    Some(hit) => EventError::Limit(hit.clone()),
                    None => EventError::Trap(describe_trap(&trap)),
                };
                (Err(err), false)
            }
        }
    }

    /// For an `AlarmDue` event, inside the event transaction: re-reads the object's alarm.
    /// If it is due, clears it (a handler that wants another sets a new one) and returns the
    /// handler's info. Otherwise ends the event without running the guest and fixes the index.
    fn prepare_alarm(
        &mut self,
        retry: u32,
        alarms: &AlarmIndex,
    ) -> Result<Option<AlarmInfo>, EventError> {
        let state = self.store.data_mut();
        let now = now_ms();
        match state.db().alarm()? {
            Some(at) if at <= now => {
                state.db().set_alarm(None)?;
                Ok(Some(AlarmInfo {
                    scheduled_at: at,
                    retry_count: retry,
                }))
            }
            // Not due (moved or deleted since it was indexed; an earlier event of a batch may
            // have committed that without its sync yet): the entry follows, once durable.
            next => {
                state.db().finish_event(false)?;
                state.reindex_alarm(alarms, next)?;
                Ok(None)
            }
        }
    }

    /// Counters of the last event.
    pub fn metrics(&self) -> EventMetrics {
        self.store.data().metrics
    }

    /// The instance's database.
    pub fn database_mut(&mut self) -> &mut SqlStore {
        self.store.data_mut().db()
    }

    /// Tears the instance down and returns its database handle for reuse.
    pub fn into_database(self) -> SqlStore {
        take_database(self.store)
    }
}

/// Binds a store's state to object `identity` and its database.
fn bind_state(state: &mut ObjectState, identity: Identity, sql: SqlStore) {
    state.log_owner.bind(identity.id.to_hex().into());
    state.identity = Some(identity);
    state.sql = Some(sql);
}

/// The database of a bound store.
fn take_database(store: Store<ObjectState>) -> SqlStore {
    store
        .into_data()
        .sql
        .expect("a bound store has its database")
}

/// Whether instantiation failed only because the pooling allocator is full right now.
pub(crate) fn pool_exhausted(err: &wasmtime::Error) -> bool {
    err.chain()
        .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
        || err.to_string().contains("maximum concurrent limit")
}

/// How long an activation waits for a free instance slot.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// A store for a new instance, not yet bound to an object.
fn new_store(host: &HostParts<'_>) -> Store<ObjectState> {
    let limits = host.limits;
    // No filesystem, environment, arguments or sockets: the WASI defaults deny them.
    let log_owner = Arc::new(LogOwner::default());
    let wasi = WasiCtx::builder()
        .stdout(GuestLog::new(log_owner.clone(), Stream::Stdout))
        .stderr(GuestLog::new(log_owner.clone(), Stream::Stderr))
        .build();
    let state = ObjectState {
        wasi,
        http: WasiHttpCtx::new(),
        http_hooks: OutboundHttp::new(host.fetch.clone(), host.metrics.clone())
            .owned_by(log_owner.clone()),
        table: ResourceTable::new(),
        sql: None,
        identity: None,
        log_owner,
        limiter: MemoryLimiter::new(limits.memory_bytes),
        metrics: EventMetrics::default(),
        alarm_changed: false,
        cpu_start: Duration::ZERO,
        cpu_limit: limits.cpu_per_event,
    };
    let mut store = Store::new(host.class.pre().engine(), state);
    store.limiter(|s| &mut s.limiter);
    // Checked every epoch tick while the guest runs: stop it once the event has used its
    // CPU budget. Measured with the thread's CPU clock, so time spent waiting does not count.
    store.epoch_deadline_callback(|ctx| {
        let state = ctx.data();
        let used = thread_cpu_time().saturating_sub(state.cpu_start);
        if used > state.cpu_limit {
            Err(wasmtime::Error::new(LimitHit::Cpu(state.cpu_limit)))
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store.set_epoch_deadline(1);
    store.data_mut().cpu_start = thread_cpu_time();
    store
}

/// A one-line description of a trap or instantiation error, without the backtrace.
fn describe_trap(err: &wasmtime::Error) -> String {
    let mut message = err.to_string();
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        message = format!("{trap}");
    }
    let root = err.root_cause().to_string();
    if root != message {
        message = format!("{message}: {root}");
    }
    message
}
