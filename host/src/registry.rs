//! The object registry: at most one live actor per object ID, and the input gate.
//!
//! Each object that has events is served by one actor, a tokio task that owns the object's
//! database and live instance and takes its events one at a time, in arrival order, from an
//! unbounded queue. Events of different objects run in parallel (each event runs on a blocking
//! thread, see `object`).
//!
//! Invariant: an actor is in `actors` exactly while it accepts events. Dispatch (find or create
//! the actor, enqueue) and retirement (check the queue is empty, remove) both happen under the
//! `actors` lock, so no event is ever enqueued to an actor that has stopped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::engine::Class;
use crate::id::{IdMinter, ObjectId};
use crate::limits::Limits;
use crate::object::{EventError, EventKind, Identity, LiveObject, Reply};
use crate::storage::{SqlStore, StorageConfig, database_path};

/// Metadata key under which an object's name is kept in its database.
const NAME_KEY: &str = "name";

/// Settings of a registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Data directory; object databases live under `objects/`.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub limits: Limits,
    /// An idle actor retires (closing its database) after this long without events.
    pub idle_timeout: Duration,
}

/// Why an event could not be delivered or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("object {0} has too many queued requests; retry later")]
    Overloaded(ObjectId),
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Event(#[from] EventError),
}

struct Envelope {
    name: Option<String>,
    event: EventKind,
    reply: oneshot::Sender<Result<Reply, EventError>>,
}

struct ActorHandle {
    queue: mpsc::UnboundedSender<Envelope>,
    queued: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
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
    rt: Handle,
}

/// Routes events to objects of one class.
#[derive(Clone)]
pub struct ObjectRegistry {
    shared: Arc<Shared>,
    minter: IdMinter,
}

impl ObjectRegistry {
    /// A registry for `class`. Must be called inside a tokio runtime.
    pub fn new(class: Arc<Class>, minter: IdMinter, config: RegistryConfig) -> Self {
        let class_name: Arc<str> = class.name().into();
        Self {
            shared: Arc::new(Shared {
                class,
                class_name,
                config,
                actors: Mutex::new(Some(HashMap::new())),
                running: AtomicUsize::new(0),
                actor_ended: Notify::new(),
                rt: Handle::current(),
            }),
            minter,
        }
    }

    /// The class this registry serves.
    pub fn class(&self) -> &Class {
        &self.shared.class
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

    /// Evicts object `id` if it is live: it finishes the events already queued, then its
    /// instance is dropped and its database closed. Returns whether it was live, once it is gone.
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
        loop {
            let ended = self.shared.actor_ended.notified();
            if self.shared.running.load(Ordering::Acquire) == 0 {
                break;
            }
            ended.await;
        }
    }

    /// Delivers `event` to object `id` and waits for its outcome. `name` is the name the ID was
    /// derived from, when the caller addressed the object by name.
    pub async fn dispatch(
        &self,
        id: ObjectId,
        name: Option<String>,
        event: EventKind,
    ) -> Result<Reply, DispatchError> {
        let (reply, outcome) = oneshot::channel();
        let envelope = Envelope { name, event, reply };
        {
            let mut actors = self
                .shared
                .actors
                .lock()
                .map_err(|_| DispatchError::ShuttingDown)?;
            let actors = actors.as_mut().ok_or(DispatchError::ShuttingDown)?;
            let actor = actors
                .entry(id)
                .or_insert_with(|| spawn_actor(&self.shared, id));
            if actor.queued.load(Ordering::Relaxed) >= self.shared.config.limits.max_queued_events {
                return Err(DispatchError::Overloaded(id));
            }
            actor.queued.fetch_add(1, Ordering::Relaxed);
            if actor.queue.send(envelope).is_err() {
                return Err(DispatchError::ShuttingDown);
            }
        }
        match outcome.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(DispatchError::ShuttingDown),
        }
    }
}

fn spawn_actor(shared: &Arc<Shared>, id: ObjectId) -> ActorHandle {
    let (queue, inbox) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let queued_handle = queued.clone();
    let actor = Actor {
        shared: shared.clone(),
        id,
        name: None,
        name_stored: false,
        database: None,
        live: None,
    };
    shared.running.fetch_add(1, Ordering::AcqRel);
    let ended = shared.clone();
    let task = shared.rt.spawn(async move {
        actor.run(inbox, queued).await;
        ended.running.fetch_sub(1, Ordering::AcqRel);
        ended.actor_ended.notify_waiters();
    });
    ActorHandle {
        queue,
        queued: queued_handle,
        task,
    }
}

/// The state an actor keeps between events. Moved to a blocking thread for each event.
struct Actor {
    shared: Arc<Shared>,
    id: ObjectId,
    name: Option<String>,
    /// Whether `name` is known to be stored in the database.
    name_stored: bool,
    /// The open database while no instance is live (a live instance owns it).
    database: Option<SqlStore>,
    live: Option<LiveObject>,
}

impl Actor {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Envelope>, queued: Arc<AtomicUsize>) {
        let idle = self.shared.config.idle_timeout;
        let shared = self.shared.clone();
        let id = self.id;
        loop {
            let envelope = match tokio::time::timeout(idle, inbox.recv()).await {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(_) => {
                    let Ok(mut actors) = shared.actors.lock() else {
                        break;
                    };
                    if inbox.is_empty() {
                        if let Some(actors) = actors.as_mut() {
                            actors.remove(&id);
                        }
                        tracing::debug!(object = %id, "evicted after {idle:?} idle");
                        break;
                    }
                    continue;
                }
            };
            queued.fetch_sub(1, Ordering::Relaxed);
            if envelope.name.is_some() && self.name.is_none() {
                self.name = envelope.name;
            }
            let event = envelope.event;
            let joined = tokio::task::spawn_blocking(move || {
                let outcome = self.handle(event);
                (self, outcome)
            })
            .await;
            match joined {
                Ok((actor, outcome)) => {
                    self = actor;
                    let _ = envelope.reply.send(outcome);
                }
                Err(panic) => {
                    // A bug in the host, not the guest. The actor's state is gone with the
                    // panicking thread (its transaction was never committed); retire so the
                    // next event starts a fresh actor.
                    tracing::error!(object = %id, "event thread panicked: {panic}");
                    let _ = envelope.reply.send(Err(EventError::Activation(
                        "internal error in the host; see its log".into(),
                    )));
                    if let Ok(mut actors) = shared.actors.lock()
                        && let Some(actors) = actors.as_mut()
                    {
                        actors.remove(&id);
                    }
                    return;
                }
            }
        }
    }

    /// Runs one event on the current (blocking) thread.
    fn handle(&mut self, event: EventKind) -> Result<Reply, EventError> {
        let rt = self.shared.rt.clone();
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.activate(&rt)?,
        };
        let (outcome, keep) = live.run(&rt, event);
        if keep {
            self.live = Some(live);
        } else {
            if let Err(e) = &outcome {
                tracing::warn!(object = %self.id, "event failed, instance discarded: {e}");
            }
            self.database = Some(live.into_database());
        }
        outcome
    }

    fn activate(&mut self, rt: &Handle) -> Result<LiveObject, EventError> {
        let config = &self.shared.config;
        let mut database = match self.database.take() {
            Some(db) => db,
            None => SqlStore::open(&database_path(&config.data_dir, &self.id), &config.storage)?,
        };
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
        let identity = Identity {
            class: self.shared.class_name.clone(),
            id: self.id,
            name: self.name.clone(),
        };
        LiveObject::activate(rt, &self.shared.class, identity, database, &config.limits)
    }
}
