//! Instances started ahead.
//!
//! A background thread keeps a few instances of the class instantiated (the component's start
//! code run) before any object needs them. Activating an object then binds one of them to the
//! object (its identity and database) instead of instantiating on the event's path: about
//! 50-150 us less per activation on the development machine, most of it on a new object's
//! first request.
//!
//! An instance started ahead runs exactly the start code any instance runs, only earlier and
//! with no object bound: clock readings taken by the start code, and the origin of the WASI
//! monotonic clock, date from when it started. If that code needs the object (it calls a
//! dohost import, such as `identity.id` or `sql.exec`, writes to stdout or stderr, or makes
//! an outbound request, which is refused unsent), the instance is discarded and the class is
//! no longer started ahead; its objects are then instantiated when they are activated, with
//! the object bound during the start code, as without this module. A start that fails
//! otherwise is tried again a few times, further apart each time ([`START_ATTEMPTS`]), before
//! the class is no longer started ahead.
//!
//! Instances started ahead hold instance slots of the pooling allocator (which has headroom
//! over the live-object cap) but do not count as live objects.
//!
//! The replacement for a taken instance is started once activations pause for [`QUIET`], not
//! at once, unless half the instances are gone: instantiating on the other core while the
//! activated object runs its first event slowed that event (on the project's 2-vCPU VM, new
//! objects at 100/s: p99 of the first request about 4 ms with the replacement started at once,
//! under 2 ms once it waited, the spare databases' refill waiting the same way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::engine::{Class, EpochTicker, Nudge};
use crate::fetch::FetchPolicy;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::object::{HostParts, StartedUnbound, Unbound, pool_exhausted};

/// How long the thread waits before trying again when the instance pool is full.
const FULL_POOL_RETRY: Duration = Duration::from_millis(100);

/// How many times a failed start (other than for a full pool, or a class that needs its
/// object) is tried again before the class is no longer started ahead, and the wait before the
/// first retry (doubled for each next one).
const START_ATTEMPTS: u32 = 3;
const START_RETRY: Duration = Duration::from_secs(1);

/// How long activations must pause before a taken instance is replaced, while at least half
/// the instances are ready: long enough for the activated object's first event to be done.
const QUIET: Duration = Duration::from_millis(5);

/// What the starting thread needs to instantiate the class.
pub struct StartParts {
    pub class: Arc<Class>,
    pub limits: Limits,
    pub fetch: Arc<FetchPolicy>,
    pub metrics: Arc<Metrics>,
    pub rt: Handle,
}

/// Instances of one class started ahead, and the thread that starts them.
pub struct Prestart {
    shared: Arc<Shared>,
}

struct Shared {
    ready: Mutex<Ready>,
    /// Signalled when an instance is taken, and on stop.
    taken: Condvar,
    /// How many to keep ready.
    target: usize,
    /// Set on stop, or once the class turned out not to start without its object.
    stopped: AtomicBool,
    /// Wakes the thread after a take (see [`Prestart::nudge_on`]).
    nudge: Nudge,
}

impl Prestart {
    /// Starts the thread that keeps `target` instances ready. `None` if `target` is 0 or the
    /// thread cannot be spawned (activations then instantiate, as without it).
    pub fn start(target: usize, parts: StartParts) -> Option<Self> {
        if target == 0 {
            return None;
        }
        let shared = Arc::new(Shared {
            ready: Mutex::new(Ready {
                instances: Vec::with_capacity(target),
                last_taken: None,
            }),
            taken: Condvar::new(),
            target,
            stopped: AtomicBool::new(false),
            nudge: Nudge::default(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dohost-prestart".into())
                .spawn(move || shared.run(&parts))
        };
        match thread {
            Ok(_) => Some(Self { shared }),
            Err(e) => {
                tracing::warn!("cannot start the thread that starts instances ahead: {e}");
                None
            }
        }
    }

    /// An instance started ahead, if one is ready. Output its start code wrote without
    /// flushing may reach the host after the check at its start: checked again here.
    pub fn take(&self) -> Option<Unbound> {
        let (taken, left) = {
            let mut ready = self.shared.ready.lock().ok()?;
            let taken = ready.instances.pop()?;
            ready.last_taken = Some(Instant::now());
            (taken, ready.instances.len())
        };
        if taken.used_while_unbound() {
            tracing::info!("instances of this class are not started ahead: {StartedUnbound}");
            self.shared.stop();
            return None;
        }
        // The replacement waits for a pause anyway (`QUIET`), unless half are gone: then the
        // thread is woken now; otherwise by the ticker, off this activation's path.
        let shared = &self.shared;
        shared
            .nudge
            .wake(left * 2 <= shared.target, || shared.taken.notify_one());
        Some(taken)
    }

    /// Lets `ticker` wake the starting thread after takes that need no instance at once,
    /// instead of the take itself (see [`EpochTicker`]).
    pub fn nudge_on(&self, ticker: &EpochTicker) {
        ticker.take_over(
            &self.shared,
            |s| &s.nudge,
            |s| s.taken.notify_one(),
            |s| s.stopped.load(Ordering::Acquire),
        );
    }

    /// Instances ready now.
    pub fn ready(&self) -> usize {
        self.shared.ready.lock().map_or(0, |r| r.instances.len())
    }

    /// Stops the thread and drops the instances it started (their slots go back to the pool).
    pub fn stop(&self) {
        self.shared.stop();
    }
}

impl Drop for Prestart {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// The instances ready to take, and when one was last taken.
struct Ready {
    instances: Vec<Unbound>,
    last_taken: Option<Instant>,
}

impl Shared {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let ready = self
            .ready
            .lock()
            .map(|mut r| std::mem::take(&mut r.instances));
        self.taken.notify_all();
        drop(ready);
    }

    fn run(&self, parts: &StartParts) {
        let host = HostParts {
            class: &parts.class,
            limits: &parts.limits,
            fetch: &parts.fetch,
            metrics: &parts.metrics,
            prestarted: None,
        };
        // Starts that failed in a row (not for want of a slot).
        let mut failures = 0u32;
        loop {
            // Wait until one is wanted, and activations pause (see `QUIET`).
            {
                let Ok(mut ready) = self.ready.lock() else {
                    return;
                };
                loop {
                    if self.stopped.load(Ordering::Acquire) {
                        break;
                    }
                    let count = ready.instances.len();
                    let pause = ready.last_taken.map_or(QUIET, |t| t.elapsed());
                    ready = if count >= self.target {
                        match self.taken.wait(ready) {
                            Ok(ready) => ready,
                            Err(_) => return,
                        }
                    } else if count * 2 > self.target && pause < QUIET {
                        match self.taken.wait_timeout(ready, QUIET - pause) {
                            Ok((ready, _)) => ready,
                            Err(_) => return,
                        }
                    } else {
                        break;
                    };
                }
            }
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            match Unbound::start(&parts.rt, &host) {
                Ok(instance) => {
                    failures = 0;
                    let Ok(mut ready) = self.ready.lock() else {
                        return;
                    };
                    if self.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    ready.instances.push(instance);
                }
                // Every slot is taken (live objects, and those being freed): try again later.
                Err(e) if pool_exhausted(&e) => {
                    let Ok(ready) = self.ready.lock() else {
                        return;
                    };
                    let _ = self.taken.wait_timeout(ready, FULL_POOL_RETRY);
                }
                Err(e) if e.is::<StartedUnbound>() => {
                    tracing::info!(
                        "instances of this class are not started ahead: {e}; each object is \
                         instantiated when it is activated"
                    );
                    self.stopped.store(true, Ordering::Release);
                    return;
                }
                // Perhaps passing (out of memory, say): tried again a few times, further apart,
                // before the class is instantiated at activation only.
                Err(e) if failures < START_ATTEMPTS => {
                    failures += 1;
                    let wait = START_RETRY * 2u32.pow(failures - 1);
                    tracing::warn!(
                        "starting an instance ahead failed ({e:#}); trying again in {wait:?} \
                         (retry {failures} of {START_ATTEMPTS})"
                    );
                    let Ok(ready) = self.ready.lock() else {
                        return;
                    };
                    // Cut short only by a stop (a take waits out the rest).
                    let _ = self
                        .taken
                        .wait_timeout_while(ready, wait, |_| !self.stopped.load(Ordering::Acquire));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        "instances of this class are not started ahead: starting one failed \
                         {} times in a row, the last time: {e:#}; each object is instantiated \
                         when it is activated",
                        failures + 1
                    );
                    self.stopped.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}
