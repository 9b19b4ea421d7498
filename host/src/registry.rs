//! The object registry: at most one live actor per object ID, and the input gate.
//!
//! Each object that has events is served by one actor, a tokio task that owns the object's
//! database and live instance and takes its events one at a time, in arrival order, from an
//! unbounded queue. Events of different objects run in parallel, each on a thread that may
//! block (the actor task's own worker, given up to tokio with `block_in_place` while the batch
//! runs; see `run_blocking`). An event for an object with nothing queued or running skips the
//! queue: its dispatcher runs it on its own thread with the actor's state (see `Slot`), which
//! saves the actor task's wake-up per event.
//!
//! Invariant: an actor is in `actors` exactly while it accepts events. Dispatch (find or create
//! the actor, enqueue) and retirement (check the queue is empty, remove) both happen under the
//! `actors` lock, so no event is ever enqueued to an actor that has stopped.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot};

use crate::alarm::{AlarmConfig, AlarmIndex, now_ms};
use crate::engine::Class;
use crate::fetch::FetchPolicy;
use crate::id::{IdMinter, ObjectId};
use crate::limits::LimitHit;
use crate::limits::Limits;
use crate::metrics::{ActivationTimings, Eviction, LimitKind, Metrics};
use crate::object::{EventError, EventKind, HostParts, Identity, LiveObject, Reply};
use crate::prestart::{Prestart, StartParts};
use crate::storage::{Databases, NAME_KEY, SqlStore, StorageConfig, StorageError};

/// Settings of a registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Data directory; object databases live under `objects/`.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub limits: Limits,
    /// An idle actor retires (closing its database) after this long without events.
    pub idle_timeout: Duration,
    /// Most objects live at once; past it, the least recently used idle one is evicted.
    pub max_live: usize,
    pub alarms: AlarmConfig,
    pub fetch: Arc<FetchPolicy>,
    /// Instances kept started ahead of activations ([`crate::prestart`]); 0: none.
    pub prestart: usize,
}

/// Why an event could not be delivered or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("object {0} has too many queued requests; retry later")]
    Overloaded(ObjectId),
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("object {0} stopped before answering (an internal error; see the host log)")]
    Lost(ObjectId),
    #[error(transparent)]
    Event(#[from] EventError),
}

/// Most events whose responses wait for one group-commit sync.
const MAX_GROUP_COMMIT: usize = 256;
/// Most queued events run in one batch (one `run_blocking`).
const MAX_BATCH: usize = 64;
/// How often shutdown says what it is still waiting for.
const SHUTDOWN_REPORT: Duration = Duration::from_secs(5);
/// Wait before trying again an alarm attempt that failed on the host's side (storage, no
/// room for the instance): such attempts do not count against the handler's retries.
const HOST_RETRY_DELAY: Duration = Duration::from_secs(30);

type Reply_ = oneshot::Sender<Result<Reply, EventError>>;
type Outcome = Result<Reply, EventError>;

struct Envelope {
    name: Option<String>,
    event: EventKind,
    reply: oneshot::Sender<Result<Reply, EventError>>,
    /// Held until the event has run (or is dropped unrun): the request body's share of the
    /// ingress's budget for bodies in memory.
    _hold: Option<OwnedSemaphorePermit>,
}

struct ActorHandle {
    /// Boxed: the channel allocates room for a block of events when it is made, for every
    /// object, though most objects never queue one (see `Slot`).
    queue: mpsc::UnboundedSender<Box<Envelope>>,
    /// Events sent but not yet taken up by the actor.
    queued: Arc<AtomicUsize>,
    /// Set while an event of the object runs (by the actor task before `queued` drops, or by
    /// a dispatcher that runs one inline) and while responses wait for their sync, so that an
    /// actor with `queued == 0 && !busy` holds no event at all and may be evicted.
    busy: Arc<AtomicBool>,
    /// Registry tick of the actor's last event, for least-recently-used eviction.
    last_used: Arc<AtomicU64>,
    /// The actor's state while it is idle, for a dispatcher to run an event inline.
    slot: Arc<Slot>,
    task: tokio::task::JoinHandle<()>,
}

/// Where an idle actor leaves its state. A dispatcher that finds the object idle (nothing
/// queued, nothing running, no response held) takes the state from here and runs its event on
/// its own thread ([`tokio::task::block_in_place`]), then puts it back: no hand-off to the
/// actor task and a blocking thread, and none back. Each hand-off wakes a thread, and on an
/// idle machine (a VM's halted vCPU) a wake-up costs tens of microseconds: measured on this
/// project's 2-vCPU VM after 10 ms idle, `spawn_blocking` round trip 91 us at p50, the actor
/// task's round trip 154 us, `block_in_place` 2 us.
///
/// The actor task takes its state back from here before it runs queued events, waiting while
/// a dispatcher holds it, so events still run one at a time and in arrival order: a dispatcher
/// takes the state only when no event is queued, and every event that arrives meanwhile is
/// queued behind it. If some did, the dispatcher leaves its event's response held with the
/// state, and the task releases it with the sync it makes for those events (group commit).
struct Slot {
    state: Mutex<Option<Parked>>,
    /// When the state was last put back: the end of the object's last event, or of the
    /// task's last batch. The idle timeout counts from here.
    put_at: Mutex<Instant>,
    /// Signalled whenever the state is put back, and when a dispatcher cannot (`poisoned`).
    returned: Notify,
    /// Set when a dispatcher's event thread panicked: the state is gone; the actor ends.
    poisoned: AtomicBool,
}

/// An actor's state in its slot, with the responses that wait for its next sync (only ever
/// left by a dispatcher that saw events queued behind its own, and then `busy` stays set).
struct Parked {
    actor: Actor,
    held: Vec<(Reply_, Outcome)>,
}

impl Slot {
    fn put(&self, actor: Actor, held: Vec<(Reply_, Outcome)>) {
        self.touch();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(Parked { actor, held });
        self.returned.notify_one();
    }

    fn try_take(&self) -> Option<Parked> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The state, once a dispatcher that holds it puts it back; `None` if it never will.
    async fn take(&self) -> Option<Parked> {
        loop {
            if let Some(parked) = self.try_take() {
                return Some(parked);
            }
            if self.poisoned.load(Ordering::Acquire) {
                return None;
            }
            self.returned.notified().await;
        }
    }

    /// Marks the object used now, for the idle timeout.
    fn touch(&self) {
        *self.put_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long since the object was last used.
    fn idle_for(&self) -> Duration {
        self.put_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        self.returned.notify_one();
    }
}

struct Shared {
    class: Arc<Class>,
    class_name: Arc<str>,
    config: RegistryConfig,
    /// `None` once the registry has shut down: no new events are accepted.
    actors: Mutex<Option<HashMap<ObjectId, ActorHandle>>>,
    /// Running actor tasks, and a signal when one ends (for shutdown).
    running: AtomicUsize,
    actor_ended: Notify,
    /// Monotonic counter stamped on actors as they are used.
    tick: AtomicU64,
    alarms: Arc<AlarmIndex>,
    databases: Databases,
    metrics: Arc<Metrics>,
    rt: Handle,
    /// Actor tasks per object ID that have not ended (an ended task has closed the object's
    /// database), by the generation they were started in. Evicting an object takes it out of
    /// `actors` before its task has closed the database, so a new actor of the same ID may
    /// start meanwhile: its task waits (asynchronously, holding no thread) for the earlier
    /// generations to end before any event of it runs ([`Actor::run`]), so that one
    /// connection at a time has the files and the new one sees them as the close left them.
    /// (Only earlier ones: an earlier actor never waits for a later one.)
    tasks: Mutex<HashMap<ObjectId, BTreeSet<u64>>>,
    /// Signalled whenever an actor task ends (its generation leaves `tasks`).
    task_ended: Notify,
    /// Source of actor generations.
    generations: AtomicU64,
    /// Instances started ahead, bound to objects as they are activated.
    prestart: Option<Prestart>,
}

/// Keeps an actor task's generation in [`Shared::tasks`] until it is dropped (when the task
/// ends, also by a panic).
struct TaskGuard {
    shared: Arc<Shared>,
    id: ObjectId,
    generation: u64,
}

impl TaskGuard {
    /// A new generation for `id`, and whether an earlier actor of `id` has yet to end.
    fn new(shared: &Arc<Shared>, id: ObjectId) -> (Self, bool) {
        let generation = shared.generations.fetch_add(1, Ordering::Relaxed);
        let mut tasks = shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let live = tasks.entry(id).or_default();
        live.insert(generation);
        let earlier = live.first().is_some_and(|&first| first < generation);
        drop(tasks);
        let guard = Self {
            shared: shared.clone(),
            id,
            generation,
        };
        (guard, earlier)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = tasks.get_mut(&self.id) {
            live.remove(&self.generation);
            if live.is_empty() {
                tasks.remove(&self.id);
            }
        }
        drop(tasks);
        self.shared.task_ended.notify_waiters();
    }
}

impl Shared {
    /// Whether an actor of `id` started before `generation` has yet to end.
    fn earlier_actor_live(&self, id: &ObjectId, generation: u64) -> bool {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .and_then(|live| live.first())
            .is_some_and(|&first| first < generation)
    }

    /// Waits until every actor of `id` started before `generation` has ended (closed the
    /// database), for up to [`CLOSE_WAIT`]; whether they have.
    async fn earlier_actors_ended(&self, id: &ObjectId, generation: u64) -> bool {
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let ended = self.task_ended.notified();
            tokio::pin!(ended);
            // Registered before the check: an end between the check and the wait is not missed.
            ended.as_mut().enable();
            if !self.earlier_actor_live(id, generation) {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return !self.earlier_actor_live(id, generation);
            }
        }
    }
}

/// How long a new actor waits for an earlier actor of its object to close the database.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// An event refused because the object's previous (evicted) actor has not closed its
/// database within [`CLOSE_WAIT`].
fn still_closing() -> EventError {
    EventError::Busy(format!(
        "the object's previous instance is still closing its database after {CLOSE_WAIT:?}"
    ))
}

/// Routes events to objects of one class.
#[derive(Clone)]
pub struct ObjectRegistry {
    shared: Arc<Shared>,
    minter: IdMinter,
}

impl ObjectRegistry {
    /// A registry for `class`. Must be called inside a tokio runtime.
    pub fn new(
        class: Arc<Class>,
        minter: IdMinter,
        alarms: Arc<AlarmIndex>,
        databases: Databases,
        config: RegistryConfig,
    ) -> Self {
        let class_name: Arc<str> = class.name().into();
        let metrics = Arc::new(Metrics::default());
        let prestart = Prestart::start(
            config.prestart,
            StartParts {
                class: class.clone(),
                limits: config.limits.clone(),
                fetch: config.fetch.clone(),
                metrics: metrics.clone(),
                rt: Handle::current(),
            },
        );
        Self {
            shared: Arc::new(Shared {
                class,
                class_name,
                config,
                actors: Mutex::new(Some(HashMap::new())),
                running: AtomicUsize::new(0),
                actor_ended: Notify::new(),
                tick: AtomicU64::new(0),
                alarms,
                databases,
                metrics,
                rt: Handle::current(),
                tasks: Mutex::new(HashMap::new()),
                task_ended: Notify::new(),
                generations: AtomicU64::new(0),
                prestart,
            }),
            minter,
        }
    }

    /// Lets `ticker` wake the threads that start instances and make spare databases ahead,
    /// rather than the activations that take them (see [`crate::engine::EpochTicker`]).
    pub fn nudge_on(&self, ticker: &crate::engine::EpochTicker) {
        if let Some(prestart) = &self.shared.prestart {
            prestart.nudge_on(ticker);
        }
        self.shared.databases.nudge_on(ticker);
    }

    /// The metrics in Prometheus' text format: [`Metrics::render`] and what is ready ahead.
    pub fn render_metrics(&self) -> String {
        let instances = self.shared.prestart.as_ref().map_or(0, |p| p.ready());
        let databases = self.shared.databases.spares_open();
        self.shared.metrics.render(
            self.class().name(),
            &[
                (
                    "dohost_spare_instances_ready",
                    "Instances started ahead for new activations (--spare-instances).",
                    instances as u64,
                ),
                (
                    "dohost_spare_databases_ready",
                    "Spare databases open for new objects (--spare-databases).",
                    databases as u64,
                ),
            ],
        )
    }

    /// The class this registry serves.
    pub fn class(&self) -> &Class {
        &self.shared.class
    }

    /// The host's metrics for this class.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Alarm delivery settings.
    pub fn alarm_config(&self) -> &AlarmConfig {
        &self.shared.config.alarms
    }

    /// Mints and parses this class's IDs.
    pub fn ids(&self) -> &IdMinter {
        &self.minter
    }

    /// Number of objects with a running actor.
    pub fn live_objects(&self) -> usize {
        self.shared
            .actors
            .lock()
            .ok()
            .and_then(|a| a.as_ref().map(HashMap::len))
            .unwrap_or(0)
    }

    /// Evicts object `id` if it is live: it finishes the events already queued (and one a
    /// dispatcher may be running inline), then its instance is dropped and its database
    /// closed. Returns whether it was live, once it is gone.
    pub async fn evict(&self, id: ObjectId) -> bool {
        let handle = self
            .shared
            .actors
            .lock()
            .ok()
            .and_then(|mut actors| actors.as_mut()?.remove(&id));
        match handle {
            Some(ActorHandle { queue, task, .. }) => {
                drop(queue);
                let _ = task.await;
                true
            }
            None => false,
        }
    }

    /// Stops accepting events, lets every actor finish the events it has queued (committing
    /// them), closes every database and waits for all of that.
    pub async fn shutdown(&self) {
        let handles = self.shared.actors.lock().ok().and_then(|mut a| a.take());
        // Dropping the senders ends each actor once its queue is empty.
        drop(handles);
        let mut report = tokio::time::Instant::now() + SHUTDOWN_REPORT;
        loop {
            let ended = self.shared.actor_ended.notified();
            let running = self.shared.running.load(Ordering::Acquire);
            if running == 0 {
                break;
            }
            if tokio::time::timeout_at(report, ended).await.is_err() {
                tracing::info!("waiting for {running} object(s) to finish their queued events");
                report += SHUTDOWN_REPORT;
            }
        }
        if let Some(prestart) = &self.shared.prestart {
            prestart.stop();
        }
        // Stop the spare-database thread now, not whenever the last reference goes.
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.databases.close()).await;
    }

    /// Delivers `event` to object `id` and waits for its outcome. `name` is the name the ID was
    /// derived from, when the caller addressed the object by name.
    pub async fn dispatch(
        &self,
        id: ObjectId,
        name: Option<String>,
        event: EventKind,
    ) -> Result<Reply, DispatchError> {
        self.dispatch_holding(id, name, event, None).await
    }

    /// [`ObjectRegistry::dispatch`], keeping `hold` until the event has run, even if the
    /// caller stops waiting for it (its client hung up): the request body's share of the
    /// ingress's memory budget stays taken while the body is queued.
    pub async fn dispatch_holding(
        &self,
        id: ObjectId,
        name: Option<String>,
        event: EventKind,
        hold: Option<OwnedSemaphorePermit>,
    ) -> Result<Reply, DispatchError> {
        let (reply, outcome) = oneshot::channel();
        let mut envelope = Some(Envelope {
            name,
            event,
            reply,
            _hold: hold,
        });
        let lent = {
            let mut actors = self
                .shared
                .actors
                .lock()
                .map_err(|_| DispatchError::ShuttingDown)?;
            let actors = actors.as_mut().ok_or(DispatchError::ShuttingDown)?;
            // Over the cap (busy objects cannot be evicted, so the map may have grown past
            // it): evict idle objects, least recently used first, until a new one fits.
            if !actors.contains_key(&id) {
                while actors.len() >= self.shared.config.max_live
                    && evict_least_recently_used(actors)
                {
                    self.shared.metrics.record_eviction(Eviction::Capacity);
                }
            }
            let actor = actors
                .entry(id)
                .or_insert_with(|| spawn_actor(&self.shared, id));
            let queued = actor.queued.load(Ordering::Relaxed);
            // Idle: run the event here (see `Slot`). `busy` keeps capacity and idle evictions
            // off it meanwhile (an explicit `evict` or shutdown waits for it instead).
            let state = (queued == 0 && !actor.busy.load(Ordering::Acquire))
                .then(|| actor.slot.try_take())
                .flatten();
            match state {
                Some(Parked { actor: state, held }) => {
                    // Responses are held only while `busy` is set.
                    debug_assert!(held.is_empty());
                    actor.busy.store(true, Ordering::Release);
                    Some(Lent {
                        state,
                        queued: actor.queued.clone(),
                        back: GiveBack {
                            shared: self.shared.clone(),
                            id,
                            slot: actor.slot.clone(),
                            busy: actor.busy.clone(),
                            last_used: actor.last_used.clone(),
                        },
                    })
                }
                None => {
                    if queued >= self.shared.config.limits.max_queued_events {
                        return Err(DispatchError::Overloaded(id));
                    }
                    actor.queued.fetch_add(1, Ordering::Relaxed);
                    if let Some(envelope) = envelope.take()
                        && actor.queue.send(Box::new(envelope)).is_err()
                    {
                        return Err(DispatchError::ShuttingDown);
                    }
                    None
                }
            }
        };
        if let Some(lent) = lent {
            let envelope = envelope.expect("a lent state's event was not queued");
            self.run_lent(lent, envelope).await;
        }
        match outcome.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(DispatchError::Lost(id)),
        }
    }

    /// Runs `envelope` with an idle actor's state on this thread, syncs its writes, and puts
    /// the state back (or ends the actor if the event's thread panicked). Where tokio does not
    /// allow blocking this thread, the event runs on a blocking thread instead, still with the
    /// lent state (so still ahead of any event queued meanwhile).
    async fn run_lent(&self, lent: Lent, envelope: Envelope) {
        let Lent {
            state,
            queued,
            back,
        } = lent;
        let run = move |mut state: Actor, envelope: Envelope| {
            let mut pending = Vec::new();
            // Syncs here unless events were queued meanwhile: then the response waits, with
            // the state, for the sync the actor task makes after them.
            state.run_batch(vec![envelope], &mut pending, &queued);
            (state, pending)
        };
        let mut work = Some(move || run(state, envelope));
        if let Some(ran) = run_inline(&mut work) {
            return back.ran(ran);
        }
        let work = work.expect("not run inline");
        // Not `run_blocking`: the blocking thread gives the state back itself, since this
        // future may be dropped (its client gone) before the thread is done.
        let _ = tokio::task::spawn_blocking(move || back.ran(catch_panic(work))).await;
    }
}

/// Puts a lent state back where its actor finds it, once its event ran.
struct GiveBack {
    shared: Arc<Shared>,
    id: ObjectId,
    slot: Arc<Slot>,
    busy: Arc<AtomicBool>,
    last_used: Arc<AtomicU64>,
}

impl GiveBack {
    /// `ran`: the state and any response held for the actor's next sync, or the panic that
    /// took them.
    fn ran(self, ran: Result<(Actor, Vec<(Reply_, Outcome)>), String>) {
        let GiveBack {
            shared,
            id,
            slot,
            busy,
            last_used,
        } = self;
        match ran {
            Ok((state, held)) => {
                last_used.store(
                    shared.tick.fetch_add(1, Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                // The idle timeout counts from now; and not busy before the state is back:
                // once it is, the actor task may take it up (and set `busy` itself) for events
                // queued meanwhile. With a response held, it stays busy for the task.
                slot.touch();
                if held.is_empty() {
                    busy.store(false, Ordering::Release);
                }
                slot.put(state, held);
            }
            Err(panic) => {
                // As for a panic in the actor's batch: the state went down with it (the caller
                // sees the object lost).
                shared.metrics.events_failed.fetch_add(1, Ordering::Relaxed);
                retire_after_panic(&shared, id, &slot, &panic);
                slot.poison();
            }
        }
    }
}

/// An idle actor's state, taken by a dispatcher, with what it needs to hand it back.
struct Lent {
    state: Actor,
    /// The actor's queue count: events queued meanwhile share the event's sync.
    queued: Arc<AtomicUsize>,
    back: GiveBack,
}

thread_local! {
    /// Set on a thread where tokio refused `block_in_place` (see [`can_block_in_place`]).
    static INLINE_REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// After a panic on an event's thread took an actor's state: logs it and removes the actor
/// (if it is still the one registered for `id`), so the next event starts a fresh one.
fn retire_after_panic(shared: &Shared, id: ObjectId, slot: &Arc<Slot>, panic: &dyn fmt::Display) {
    tracing::error!(object = %id, "event thread panicked: {panic}");
    if let Ok(mut actors) = shared.actors.lock()
        && let Some(actors) = actors.as_mut()
        && actors.get(&id).is_some_and(|a| Arc::ptr_eq(&a.slot, slot))
    {
        actors.remove(&id);
    }
}

/// Runs `work`, and returns its result or the message of its panic.
fn catch_panic<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".into())
    })
}

/// Runs `work` (an actor's batch) where blocking is allowed, and returns its result or the
/// message of its panic. On a multi-threaded runtime it runs right here, with
/// [`tokio::task::block_in_place`]: tokio hands this worker's other tasks to another thread,
/// and the actor task carries on on this one when the batch is done, with no wake-up to come
/// back. [`tokio::task::spawn_blocking`] costs two thread switches per batch: on this
/// project's 2-vCPU VM the whole server's CPU per durable write on one busy object was 1-8%
/// lower this way (e2e `write-one-room`, pairs matched by the machine's steal, in
/// benches/README.md). Elsewhere (a current-thread runtime) it runs on a blocking thread.
async fn run_blocking<T, F>(work: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let mut work = Some(work);
    if let Some(done) = run_inline(&mut work) {
        return done;
    }
    let work = work.expect("not run inline");
    // Caught on the thread, so a panic reads the same either way.
    tokio::task::spawn_blocking(move || catch_panic(work))
        .await
        .unwrap_or_else(|e| Err(format!("blocking task ended: {e}")))
}

/// Runs `work` on this thread with [`tokio::task::block_in_place`] where tokio allows it
/// (see [`can_block_in_place`]): its result, or the message of its panic. `None`, with `work`
/// left in place, where it may not run here.
fn run_inline<T>(work: &mut Option<impl FnOnce() -> T>) -> Option<Result<T, String>> {
    if !can_block_in_place() {
        return None;
    }
    let inline = catch_panic(|| tokio::task::block_in_place(|| work.take().expect("taken once")()));
    match inline {
        Ok(done) => Some(Ok(done)),
        // It ran and panicked.
        Err(panic) if work.is_none() => Some(Err(panic)),
        // Tokio refused before running it (a `LocalSet`, say): not on this thread again.
        Err(_) => {
            INLINE_REFUSED.with(|refused| refused.set(true));
            tracing::debug!("events run on blocking threads: this thread may not block");
            None
        }
    }
}

/// Whether this thread may run an event with [`tokio::task::block_in_place`]: on a
/// multi-threaded runtime (or outside any runtime), unless tokio refused it on this thread
/// before (inside a `LocalSet`, which this cannot see ahead). Elsewhere (a current-thread
/// runtime, in tests or embedders) lent events run on a blocking thread.
fn can_block_in_place() -> bool {
    use tokio::runtime::RuntimeFlavor;
    !INLINE_REFUSED.with(|refused| refused.get())
        && Handle::try_current()
            .map_or(true, |rt| rt.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Removes the least recently used actor that holds no event. Its task then ends by itself,
/// dropping its instance and closing its database. Called with the `actors` lock held.
fn evict_least_recently_used(actors: &mut HashMap<ObjectId, ActorHandle>) -> bool {
    let victim = actors
        .iter()
        .filter(|(_, a)| a.queued.load(Ordering::Acquire) == 0 && !a.busy.load(Ordering::Acquire))
        .min_by_key(|(_, a)| a.last_used.load(Ordering::Relaxed))
        .map(|(id, _)| *id);
    if let Some(id) = victim {
        actors.remove(&id);
        tracing::debug!(object = %id, "evicted: live object cap reached");
    }
    victim.is_some()
}

fn spawn_actor(shared: &Arc<Shared>, id: ObjectId) -> ActorHandle {
    let (guard, after_earlier) = TaskGuard::new(shared, id);
    let generation = guard.generation;
    let (queue, inbox) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let queued_handle = queued.clone();
    let busy = Arc::new(AtomicBool::new(false));
    let last_used = Arc::new(AtomicU64::new(shared.tick.fetch_add(1, Ordering::Relaxed)));
    let state = Actor {
        shared: shared.clone(),
        id,
        generation,
        name: None,
        name_stored: false,
        database: None,
        live: None,
    };
    // After an earlier actor of the object: the task keeps the state until that one has
    // ended, so no dispatcher can run an event with it before (the events queue meanwhile).
    let (parked, first) = if after_earlier {
        (None, Some(state))
    } else {
        (
            Some(Parked {
                actor: state,
                held: Vec::new(),
            }),
            None,
        )
    };
    let slot = Arc::new(Slot {
        state: Mutex::new(parked),
        put_at: Mutex::new(Instant::now()),
        returned: Notify::new(),
        poisoned: AtomicBool::new(false),
    });
    shared.running.fetch_add(1, Ordering::AcqRel);
    shared.metrics.live_objects.fetch_add(1, Ordering::Relaxed);
    let ended = shared.clone();
    let (busy_flag, used, parked) = (busy.clone(), last_used.clone(), slot.clone());
    let task = shared.rt.spawn(async move {
        let _guard = guard;
        Actor::run(
            ended.clone(),
            id,
            parked,
            first,
            inbox,
            queued,
            busy_flag,
            used,
        )
        .await;
        ended.metrics.live_objects.fetch_sub(1, Ordering::Relaxed);
        ended.running.fetch_sub(1, Ordering::AcqRel);
        ended.actor_ended.notify_waiters();
    });
    ActorHandle {
        queue,
        queued: queued_handle,
        busy,
        last_used,
        slot,
        task,
    }
}

/// The state an actor keeps between events. Run where blocking is allowed for each batch of
/// queued events (`run_blocking`), or lent to a dispatcher for one event (see `Slot`).
struct Actor {
    shared: Arc<Shared>,
    id: ObjectId,
    /// When this actor was started, among the actors of all objects (see [`Shared::tasks`]).
    generation: u64,
    name: Option<String>,
    /// Whether `name` is known to be stored in the database.
    name_stored: bool,
    /// The open database while no instance is live (a live instance owns it).
    database: Option<SqlStore>,
    live: Option<LiveObject>,
}

impl Drop for Actor {
    /// The instance goes first, and frees its slot for an activation that may be waiting
    /// for one, before the database closes (a checkpoint and a sync, which can take a while).
    fn drop(&mut self) {
        self.drop_instance();
    }
}

impl Actor {
    /// The actor's loop: one event at a time, in arrival order.
    ///
    /// Group commit (the output gate): an event that committed writes, and every event after
    /// it, is *held* until one sync makes all of their commits durable. Events keep running
    /// while others wait in the queue; the sync happens when the queue is empty (or the batch
    /// is full), so concurrent writers to one object share one fsync and no response leaves
    /// before its writes are on disk.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        shared: Arc<Shared>,
        id: ObjectId,
        slot: Arc<Slot>,
        first: Option<Actor>,
        mut inbox: mpsc::UnboundedReceiver<Box<Envelope>>,
        queued: Arc<AtomicUsize>,
        busy: Arc<AtomicBool>,
        last_used: Arc<AtomicU64>,
    ) {
        // The state starts in the slot, or with the task (`first`) while an earlier actor of
        // the object closes its database; the task holds it (`actor`) from when it takes up
        // events until it is idle again.
        let mut actor: Option<Actor> = first;
        if let Some(generation) = actor.as_ref().map(|state| state.generation) {
            tracing::debug!(object = %id, "waiting for the object's previous instance to close its database");
            // The events that arrive meanwhile queue (the state is not in the slot to lend);
            // each waits for up to `CLOSE_WAIT`, then is refused unrun.
            while !shared.earlier_actors_ended(&id, generation).await {
                tracing::warn!(object = %id, "the object's previous instance is still closing its database after {CLOSE_WAIT:?}");
                while let Ok(envelope) = inbox.try_recv() {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    let _ = envelope.reply.send(Err(still_closing()));
                }
                if inbox.is_closed() {
                    // Removed (shutdown, `evict`): nothing left to run.
                    break;
                }
            }
        }
        let idle = shared.config.idle_timeout;
        let mut held: Vec<(Reply_, Outcome)> = Vec::new();
        let mut wait = idle;
        loop {
            let envelope = if held.is_empty() {
                // Idle: leave the state where a dispatcher can run an event with it.
                if let Some(state) = actor.take() {
                    slot.put(state, Vec::new());
                }
                match tokio::time::timeout(wait, inbox.recv()).await {
                    Ok(Some(envelope)) => {
                        wait = idle;
                        *envelope
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let Ok(mut actors) = shared.actors.lock() else {
                            break;
                        };
                        // Dispatchers may have run events with the state meanwhile (one may
                        // be running one now: `busy`); idle counts from the end of the last.
                        let quiet = slot.idle_for();
                        wait = idle;
                        if busy.load(Ordering::Acquire) || !inbox.is_empty() {
                            continue;
                        }
                        if quiet < idle {
                            wait = idle - quiet;
                            continue;
                        }
                        // Only if the entry is still this actor's: a capacity eviction may
                        // have taken it out meanwhile, and a new actor of the object taken
                        // its place.
                        if let Some(actors) = actors.as_mut()
                            && actors.get(&id).is_some_and(|a| Arc::ptr_eq(&a.slot, &slot))
                        {
                            actors.remove(&id);
                            shared.metrics.record_eviction(Eviction::Idle);
                            tracing::debug!(object = %id, "evicted after {idle:?} idle");
                        }
                        break;
                    }
                }
            } else {
                let next = if held.len() >= MAX_GROUP_COMMIT {
                    None
                } else {
                    inbox.try_recv().ok().map(|envelope| *envelope)
                };
                match next {
                    Some(envelope) => envelope,
                    None => {
                        let state = actor
                            .take()
                            .expect("held responses: the task holds the state");
                        actor = Some(state.flush(&mut held).await);
                        busy.store(false, Ordering::Release);
                        continue;
                    }
                }
            };
            // A dispatcher may be running an event with the state: the events queued since
            // come after it.
            let mut state = match actor.take() {
                Some(state) => state,
                None => match slot.take().await {
                    Some(parked) => {
                        // The dispatcher's response, if it left one to share this batch's sync.
                        held = parked.held;
                        parked.actor
                    }
                    // Its thread panicked; the callers of the queued events see the actor
                    // gone.
                    None => return,
                },
            };
            // Take what else is already queued too: one run where blocking is allowed takes the
            // whole batch, in order (thread switches dominate the cost of a small event).
            let mut batch = vec![envelope];
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(next) => batch.push(*next),
                    Err(_) => break,
                }
            }
            busy.store(true, Ordering::Release);
            queued.fetch_sub(batch.len(), Ordering::AcqRel);
            let mut pending = std::mem::take(&mut held);
            let waiting = queued.clone();
            let run = move || {
                state.run_batch(batch, &mut pending, &waiting);
                (state, pending)
            };
            let joined = run_blocking(run).await;
            match joined {
                Ok((state, pending)) => {
                    actor = Some(state);
                    held = pending;
                    last_used.store(
                        shared.tick.fetch_add(1, Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    if held.is_empty() {
                        busy.store(false, Ordering::Release);
                    }
                }
                Err(panic) => {
                    // A bug in the host, not the guest. The actor's state, the batch and the
                    // held responses went down with the panic (nothing of theirs was made
                    // durable; their callers see the actor gone).
                    retire_after_panic(&shared, id, &slot, &panic);
                    return;
                }
            }
        }
        // Retired: the state back from a dispatcher that may still hold it, and the sync of
        // any response it left held. Dropping the state closes the instance and the database.
        let state = match actor.take() {
            Some(state) => Some(state),
            None => slot.take().await.map(|parked| {
                held = parked.held;
                parked.actor
            }),
        };
        let state = match state {
            Some(state) if !held.is_empty() => Some(state.flush(&mut held).await),
            other => other,
        };
        // Closing the database checkpoints and syncs it: blocking work, kept off the async
        // workers that serve connections.
        if let Some(state) = state {
            let _ = tokio::task::spawn_blocking(move || drop(state)).await;
        }
    }

    /// Runs a batch of events in order on the current (blocking) thread. Group commit: after
    /// an event that committed writes, its response and every later one go to `pending`, to
    /// leave once a sync has made them durable; the sync runs here when no other event is
    /// `waiting` to share it.
    fn run_batch(
        &mut self,
        batch: Vec<Envelope>,
        pending: &mut Vec<(Reply_, Outcome)>,
        waiting: &AtomicUsize,
    ) {
        for envelope in batch {
            if envelope.name.is_some() && self.name.is_none() {
                self.name = envelope.name;
            }
            let outcome = self.handle(envelope.event);
            if self.needs_sync() || !pending.is_empty() {
                pending.push((envelope.reply, outcome));
            } else {
                let _ = envelope.reply.send(outcome);
            }
        }
        // Nothing else queued to share the sync: sync here, on this thread, rather than in a
        // hand-off of its own (two thread switches fewer: some 30 us less per durable event,
        // measured on new objects). Events that arrive meanwhile wait for the next batch.
        if !pending.is_empty() && waiting.load(Ordering::Acquire) == 0 {
            let result = self.store().map_or(Ok(()), SqlStore::sync);
            self.release(pending, result);
        }
    }

    /// Makes the held events' commits durable with one sync on a blocking thread, then
    /// releases their responses (see [`Actor::release`]).
    async fn flush(mut self, held: &mut Vec<(Reply_, Outcome)>) -> Self {
        let result = match self.store().and_then(SqlStore::take_sync) {
            None => Ok(()),
            Some(job) => {
                let runner = job.clone();
                let result = tokio::task::spawn_blocking(move || runner.run())
                    .await
                    .unwrap_or_else(|panic| {
                        Err(StorageError::Sync(format!("sync panicked: {panic}")))
                    });
                if let Err(e) = &result
                    && let Some(store) = self.store()
                {
                    store.sync_failed(&job, e);
                }
                result
            }
        };
        self.release(held, result);
        self
    }

    /// Releases the held responses once their sync has run: all of them if it succeeded. If it
    /// failed, their writes may not survive a crash: each gets a storage error, and the object
    /// is reset (instance and database handle dropped).
    fn release(&mut self, held: &mut Vec<(Reply_, Outcome)>, result: Result<(), StorageError>) {
        match result {
            Ok(()) => {
                for (reply, outcome) in held.drain(..) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(object = %self.id, "sync failed, {} response(s) failed: {e}", held.len());
                let message = e.to_string();
                for (reply, _) in held.drain(..) {
                    let _ = reply.send(Err(EventError::Storage(StorageError::Sync(
                        message.clone(),
                    ))));
                }
                self.live = None;
                self.database = None;
            }
        }
    }

    /// The object's open database, wherever it is held.
    fn store(&mut self) -> Option<&mut SqlStore> {
        match (&mut self.live, &mut self.database) {
            (Some(live), _) => Some(live.database_mut()),
            (None, db) => db.as_mut(),
        }
    }

    /// Whether committed writes await a sync.
    fn needs_sync(&mut self) -> bool {
        self.store().is_some_and(|db| db.needs_sync())
    }

    /// Runs one event on the current (blocking) thread.
    fn handle(&mut self, event: EventKind) -> Result<Reply, EventError> {
        // The retry count as the index has it now, not as the scheduler read it: an event
        // queued ahead of this one may have set a new alarm (count 0) since.
        let (event, alarm_retry) = match event {
            EventKind::AlarmDue { retry } => {
                let retry = match self.shared.alarms.get(&self.id) {
                    Ok(Some((_, now))) => now,
                    _ => retry,
                };
                (EventKind::AlarmDue { retry }, Some(retry))
            }
            request => (request, None),
        };
        let outcome = self.run_event(event);
        if let (Some(retry), Err(err)) = (alarm_retry, &outcome) {
            self.alarm_failed(retry, err);
        }
        outcome
    }

    fn run_event(&mut self, event: EventKind) -> Result<Reply, EventError> {
        if matches!(event, EventKind::AlarmDue { .. })
            && self.live.is_none()
            && let Some(reply) = self.alarm_not_due()?
        {
            return Ok(reply);
        }
        let rt = self.shared.rt.clone();
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        let (mut live, cold) = match self.live.take() {
            Some(live) => (live, None),
            None => {
                let (live, timings) = self.activate(&rt).inspect_err(|_| {
                    metrics.events_failed.fetch_add(1, Ordering::Relaxed);
                })?;
                (live, Some(timings))
            }
        };
        let started = Instant::now();
        let (outcome, keep) = live.run(&rt, event, &shared.alarms);
        let elapsed = started.elapsed();
        match cold {
            Some(timings) => metrics.record_activation(ActivationTimings {
                first_event: elapsed,
                ..timings
            }),
            None => metrics.warm_event.observe(elapsed),
        }
        let counts = live.metrics();
        metrics
            .rows_read
            .fetch_add(counts.rows_read, Ordering::Relaxed);
        metrics
            .rows_written
            .fetch_add(counts.rows_written, Ordering::Relaxed);
        if counts.database_full {
            metrics.record_limit(LimitKind::Database);
        }
        match &outcome {
            Ok(reply) => {
                metrics.events_ok.fetch_add(1, Ordering::Relaxed);
                if matches!(reply, Reply::AlarmDone) {
                    metrics.alarms_run.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                metrics.events_failed.fetch_add(1, Ordering::Relaxed);
                match e {
                    EventError::Limit(LimitHit::Memory { .. }) => {
                        metrics.record_limit(LimitKind::Memory)
                    }
                    EventError::Limit(LimitHit::Cpu(_)) => metrics.record_limit(LimitKind::Cpu),
                    _ => {}
                }
            }
        }
        if keep {
            self.live = Some(live);
        } else {
            if let Err(e) = &outcome {
                let e = crate::logs::log_safe(&e.to_string());
                tracing::warn!(object = %self.id, "event failed, instance discarded: {e}");
            }
            metrics.record_eviction(Eviction::Failure);
            self.database = Some(live.into_database());
        }
        outcome
    }

    /// After a failed alarm attempt (the event was rolled back, so the alarm is still set):
    /// schedule the next retry with exponential backoff, or give up after `max_retries` if the
    /// handler itself failed (returned an error, trapped, hit a limit, or its writes were
    /// rolled back). A failure of the host's own ([`EventError::is_host_side`]: its storage,
    /// no room for the instance) never drops the alarm nor counts as an attempt: it is tried
    /// again [`HOST_RETRY_DELAY`] later, until the handler runs.
    fn alarm_failed(&mut self, retry: u32, err: &EventError) {
        let shared = self.shared.clone();
        let config = &shared.config.alarms;
        let alarms = &shared.alarms;
        let now = now_ms();
        let after = |delay: Duration| now.saturating_add(delay.as_millis() as i64);
        // The handler's own error text: fit for a log line.
        let err_text = crate::logs::log_safe(&err.to_string());
        let (at, retry) = if err.is_host_side() {
            // Not the handler's failure: the same attempt again later, its count unchanged;
            // but never later than the alarm the database holds, if the entry was early.
            match self.store().and_then(|db| db.alarm().ok().flatten()) {
                Some(at) if at > now && at < after(HOST_RETRY_DELAY) => (at, 0),
                _ => {
                    tracing::warn!(object = %self.id, "alarm could not run, trying again in {HOST_RETRY_DELAY:?}: {err_text}");
                    (after(HOST_RETRY_DELAY), retry)
                }
            }
        } else {
            let attempt = retry.saturating_add(1);
            if attempt > config.max_retries {
                tracing::error!(object = %self.id, "alarm dropped after {attempt} failed attempts; last error: {err_text}");
                match self.clear_alarm() {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(object = %self.id, "cannot clear the failed alarm (trying again in {HOST_RETRY_DELAY:?}): {e}");
                        (after(HOST_RETRY_DELAY), retry)
                    }
                }
            } else {
                let delay = config.backoff(attempt);
                tracing::warn!(object = %self.id, "alarm attempt {attempt} failed, retrying in {delay:?}: {err_text}");
                (after(delay), attempt)
            }
        };
        if let Err(e) = alarms.upsert(&self.id, self.name.as_deref(), at, retry) {
            tracing::error!(object = %self.id, "cannot schedule the alarm retry: {e}");
        }
    }

    /// Opens the object's database into `self.database` unless the actor holds it already,
    /// if no earlier actor of the object still has it (see [`Shared::tasks`]: the actor's
    /// task has waited for those before it ran any event).
    fn open_database(&mut self) -> Result<(), EventError> {
        if self.database.is_none() {
            if self.shared.earlier_actor_live(&self.id, self.generation) {
                return Err(still_closing());
            }
            self.database = Some(self.shared.databases.open(&self.id, self.name.as_deref())?);
        }
        Ok(())
    }

    /// For an alarm sent to an object without a live instance: if the database holds no due
    /// alarm (the index was early: the alarm was moved or deleted), moves the index entry to
    /// it and answers [`Reply::AlarmNotDue`] without starting an instance, whose failure to
    /// start would otherwise count as a failed attempt of an alarm that is not due.
    fn alarm_not_due(&mut self) -> Result<Option<Reply>, EventError> {
        self.open_database()?;
        let database = self.database.as_mut().expect("opened above");
        let next = database.alarm()?;
        if next.is_some_and(|at| at <= now_ms()) {
            return Ok(None);
        }
        crate::object::reindex_alarm(
            database,
            &self.shared.alarms,
            &self.id,
            self.name.as_deref(),
            next,
        )?;
        Ok(Some(Reply::AlarmNotDue))
    }

    /// Drops the live instance, if any, keeping its database with the actor.
    fn drop_instance(&mut self) {
        if let Some(live) = self.live.take() {
            self.database = Some(live.into_database());
        }
    }

    /// Deletes the object's alarm in a transaction of its own, then its index entry.
    fn clear_alarm(&mut self) -> Result<(), EventError> {
        self.drop_instance();
        self.open_database()?;
        let database = self.database.as_mut().expect("opened above");
        database.begin_event(None)?;
        if let Err(e) = database.set_alarm(None) {
            let _ = database.finish_event(false);
            return Err(e.into());
        }
        database.finish_event(true)?;
        // Durable before the entry goes: otherwise a crash could bring the alarm back in the
        // database with nothing left to fire it.
        database.make_durable()?;
        self.shared.alarms.remove(&self.id)?;
        Ok(())
    }

    fn activate(&mut self, rt: &Handle) -> Result<(LiveObject, ActivationTimings), EventError> {
        let started = Instant::now();
        // The database stays with the actor if activation fails: it may hold commits of
        // earlier events whose responses wait for their sync.
        self.open_database()?;
        let database = self.database.as_mut().expect("opened above");
        match (&self.name, self.name_stored) {
            (Some(name), false) => {
                if database.meta(NAME_KEY)?.as_deref() != Some(name) {
                    database.set_meta(NAME_KEY, name)?;
                }
                self.name_stored = true;
            }
            (None, _) => {
                self.name = database.meta(NAME_KEY)?;
                self.name_stored = self.name.is_some();
            }
            _ => {}
        }
        let database = self.database.take().expect("opened above");
        let config = &self.shared.config;
        let identity = Identity {
            class: self.shared.class_name.clone(),
            id: self.id,
            name: self.name.clone(),
        };
        let open_database = started.elapsed();
        let started = Instant::now();
        let host = HostParts {
            class: &self.shared.class,
            limits: &config.limits,
            fetch: &config.fetch,
            metrics: &self.shared.metrics,
            prestarted: self.shared.prestart.as_ref(),
        };
        let live = match LiveObject::activate(rt, &host, identity, database) {
            Ok(live) => live,
            Err(failed) => {
                let (e, database) = *failed;
                self.database = Some(database);
                return Err(e);
            }
        };
        let timings = ActivationTimings {
            open_database,
            instantiate: started.elapsed(),
            first_event: Duration::ZERO,
        };
        Ok((live, timings))
    }
}

#[cfg(test)]
mod tests {
    use super::run_blocking;
    use std::thread;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_runs_on_the_actor_tasks_own_thread() {
        let on_its_thread = tokio::spawn(async {
            let task_thread = thread::current().id();
            run_blocking(move || thread::current().id() == task_thread).await
        })
        .await
        .unwrap();
        assert_eq!(on_its_thread, Ok(true));
        let panicked = tokio::spawn(run_blocking(|| -> u32 { panic!("boom") }))
            .await
            .unwrap();
        assert_eq!(panicked, Err("boom".to_string()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_workers_a_batch_runs_on_a_blocking_thread() {
        let task_thread = thread::current().id();
        let elsewhere = run_blocking(move || thread::current().id() != task_thread).await;
        assert_eq!(elsewhere, Ok(true));
        let panicked = run_blocking(|| -> u32 { panic!("{}", "boom".to_string()) }).await;
        assert_eq!(panicked, Err("boom".to_string()));
    }
}
