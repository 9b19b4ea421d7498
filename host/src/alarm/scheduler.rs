//! The alarm scheduler: wakes objects whose alarm is due.
//!
//! One task per host. It reads due entries from the [`AlarmIndex`], dispatches an
//! `AlarmDue` event to each object (at most `max_concurrent` at a time, never two for one
//! object), and sleeps until the next entry is due or the index changes. Everything about
//! firing, retrying and clearing happens in the object's actor, serialized with its requests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use super::index::AlarmIndex;
use crate::object::EventKind;
use crate::registry::{DispatchError, ObjectRegistry};

/// Longest the scheduler sleeps without looking at the index.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Alarm delivery settings.
#[derive(Clone, Debug)]
pub struct AlarmConfig {
    /// Delay before the first retry of a failed alarm; doubles on each further retry.
    pub retry_base: Duration,
    /// Retries after the first attempt before the alarm is dropped.
    pub max_retries: u32,
    /// Alarm handlers running at once across the host.
    pub max_concurrent: usize,
}

impl Default for AlarmConfig {
    /// Modelled on Durable Objects: first retry after 2 s, at most 6 retries.
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(2),
            max_retries: 6,
            max_concurrent: 64,
        }
    }
}

/// Longest wait between two attempts of a failing alarm handler, and between two attempts to
/// deliver an alarm that could not reach its object.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

impl AlarmConfig {
    /// Delay before retry number `retry` (1-based): base, 2 x base, 4 x base, ..., at most
    /// [`MAX_RETRY_DELAY`].
    pub fn backoff(&self, retry: u32) -> Duration {
        self.retry_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(MAX_RETRY_DELAY)
    }
}

/// How long a stalled alarm's count of failed attempts is kept without a new attempt: twice
/// the longest push-back, so only the count of an alarm deleted or moved meanwhile goes.
const STALL_FORGOTTEN_MS: i64 = 2 * MAX_RETRY_DELAY.as_millis() as i64;

/// Drops the counts of failed attempts not set for [`STALL_FORGOTTEN_MS`] (at `now`), except
/// those of alarms being attempted now (waiting for a permit, say, under overload).
fn forget_old_stalls(
    stalled: &mut HashMap<String, (u32, i64)>,
    in_flight: &HashSet<String>,
    now: i64,
) {
    stalled.retain(|id, (_, set)| {
        in_flight.contains(id) || now.saturating_sub(*set) < STALL_FORGOTTEN_MS
    });
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs until the task is aborted.
pub async fn run(registry: ObjectRegistry, index: Arc<AlarmIndex>, max_concurrent: usize) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Consecutive attempts per object that failed before reaching its handler (the object
    // overloaded, the host shutting down, ...): they push the entry back, doubling each time.
    // With when the count was last set: an alarm deleted or moved meanwhile is never
    // attempted again, and its count goes after STALL_FORGOTTEN_MS.
    let stalled: Arc<Mutex<HashMap<String, (u32, i64)>>> = Arc::default();
    // Entries that are still as they were dispatched after their attempt, because no write to
    // the index took (a full disk, say): not sent again before the time held here, so that a
    // handler does not run again and again at once (see `hold_if_unchanged`).
    let held: Arc<Mutex<HashMap<String, Held>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    loop {
        let now = now_ms();
        // Held entries are still due and come first: read past them, so that they do not
        // hide the others.
        let held_now = {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            held.retain(|_, h| h.until > now);
            held.len()
        };
        forget_old_stalls(
            &mut stalled.lock().unwrap_or_else(|e| e.into_inner()),
            &in_flight.lock().unwrap_or_else(|e| e.into_inner()),
            now,
        );
        match index.due(now, 1024 + held_now) {
            Ok(due) => {
                for alarm in due {
                    let is_held = held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&alarm.id)
                        .is_some_and(|h| h.at == alarm.at && h.retry == alarm.retry);
                    if is_held {
                        continue;
                    }
                    if !in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(alarm.id.clone())
                    {
                        continue;
                    }
                    let (registry, index, in_flight, permits, stalled, held) = (
                        registry.clone(),
                        index.clone(),
                        in_flight.clone(),
                        permits.clone(),
                        stalled.clone(),
                        held.clone(),
                    );
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let class = registry.class().name().to_string();
                        match registry.ids().parse(&class, &alarm.id) {
                            Ok(id) => {
                                let failures_before = index.failed_writes();
                                let event = EventKind::AlarmDue { retry: alarm.retry };
                                let result = registry.dispatch(id, alarm.name.clone(), event).await;
                                if let Err(e) = &result {
                                    let e = crate::logs::log_safe(&e.to_string());
                                    tracing::debug!(object = %alarm.id, "alarm attempt failed: {e}");
                                }
                                // The actor reschedules every failed attempt that reached it.
                                // One that did not (the object overloaded or lost), or whose
                                // rescheduling failed (the index cannot be written), would be
                                // sent again at once, and again: it is pushed back here if the
                                // entry is still the one dispatched.
                                let failed = matches!(
                                    &result,
                                    Err(e) if !matches!(e, DispatchError::ShuttingDown)
                                );
                                let stalls = stalled
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&alarm.id)
                                    .map_or(0, |(stalls, _)| stalls)
                                    .saturating_add(1);
                                let config = registry.alarm_config().clone();
                                let (index, entry) = (index.clone(), alarm.clone());
                                let (moved, hold) = tokio::task::spawn_blocking(move || {
                                    let moved = failed
                                        && push_back_if_unchanged(
                                            &index, &id, &entry, &config, stalls,
                                        );
                                    let hold = hold_if_unchanged(
                                        &index,
                                        &id,
                                        &entry,
                                        &config,
                                        stalls,
                                        failures_before,
                                    );
                                    (moved, hold)
                                })
                                .await
                                .unwrap_or((false, None));
                                if moved || hold.is_some() {
                                    stalled
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .insert(alarm.id.clone(), (stalls, now_ms()));
                                }
                                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                                match hold {
                                    Some(hold) => held.insert(alarm.id.clone(), hold),
                                    None => held.remove(&alarm.id),
                                };
                            }
                            Err(e) => {
                                tracing::warn!(object = %alarm.id, "dropping alarm of an unknown object: {e}");
                                let _ = index.remove_hex(&alarm.id);
                            }
                        }
                        in_flight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&alarm.id);
                        index.changed.notify_one();
                    });
                }
            }
            Err(e) => tracing::warn!("cannot read the alarm index: {e}"),
        }
        let wait = match index.next_after(now) {
            Ok(Some(at)) => Duration::from_millis((at - now).max(1) as u64).min(MAX_SLEEP),
            _ => MAX_SLEEP,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = index.changed.notified() => {}
        }
    }
}

/// An index entry the scheduler does not send before `until` (ms since the epoch) while it
/// is still `(at, retry)`.
struct Held {
    at: i64,
    retry: u32,
    until: i64,
}

/// After an attempt (whatever its outcome): if writes to the index failed meanwhile (more
/// than `failures_before`) and the entry is still exactly the one dispatched, neither the
/// object's actor (which removes or reschedules it) nor [`push_back_if_unchanged`] could
/// write it (a full disk, say), and it would be sent again at once, and again, its handler
/// running each time. Then it is held back in memory for [`AlarmConfig::backoff`]`(stalls)`.
/// (Without failed writes, an unchanged entry is one the handler set again to the very time
/// it fired at: it fires again at once.)
fn hold_if_unchanged(
    index: &AlarmIndex,
    id: &crate::id::ObjectId,
    alarm: &super::index::DueAlarm,
    config: &AlarmConfig,
    stalls: u32,
    failures_before: u64,
) -> Option<Held> {
    if index.failed_writes() <= failures_before
        || index.get(id).ok().flatten() != Some((alarm.at, alarm.retry))
    {
        return None;
    }
    let delay = config.backoff(stalls).max(Duration::from_secs(1));
    tracing::warn!(object = %alarm.id, "the alarm index could not be updated after the alarm's attempt; not sending it again for {delay:?}");
    Some(Held {
        at: alarm.at,
        retry: alarm.retry,
        until: now_ms().saturating_add(delay.as_millis() as i64),
    })
}

/// After a failed attempt that the object's actor did not reschedule (it never reached the
/// actor, or the index could not be written): if the entry is still the one dispatched, moves
/// it [`AlarmConfig::backoff`]`(stalls)` ahead, so the scheduler does not
/// dispatch it again at once, forever. The move is conditional on the entry being unchanged,
/// in one statement: an alarm the object set meanwhile is never postponed. Returns whether it
/// moved the entry.
fn push_back_if_unchanged(
    index: &AlarmIndex,
    id: &crate::id::ObjectId,
    alarm: &super::index::DueAlarm,
    config: &AlarmConfig,
    stalls: u32,
) -> bool {
    let delay = config.backoff(stalls);
    let at = now_ms().saturating_add(delay.as_millis() as i64);
    match index.postpone_if_unchanged(id, alarm.at, alarm.retry, at) {
        Ok(true) => {
            tracing::warn!(object = %alarm.id, "alarm could not be delivered; trying again in {delay:?}");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(object = %alarm.id, "cannot postpone the alarm: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index with one entry due a second ago after `retry` failed attempts, as the
    /// scheduler reads it: (its directory, the index, the object, the time, the entry).
    fn index_with_due_entry(
        retry: u32,
    ) -> (
        tempfile::TempDir,
        AlarmIndex,
        crate::id::ObjectId,
        i64,
        super::super::index::DueAlarm,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = AlarmIndex::open(&dir.path().join("alarms.sqlite3")).unwrap();
        let id = crate::id::IdMinter::with_key([1; 32])
            .from_name("c", "a")
            .unwrap();
        let past = now_ms() - 1_000;
        index.upsert(&id, None, past, retry).unwrap();
        let due = index.due(now_ms(), 10).unwrap().remove(0);
        (dir, index, id, past, due)
    }

    /// A due entry whose attempt never reached the object is pushed back, doubling; one the
    /// object's actor has rescheduled meanwhile is left alone.
    #[test]
    fn undelivered_alarms_are_pushed_back() {
        let (_dir, index, id, past, due) = index_with_due_entry(2);
        let config = AlarmConfig::default();
        push_back_if_unchanged(&index, &id, &due, &config, 3);
        let (at, retry) = index.get(&id).unwrap().unwrap();
        assert!(at >= now_ms() + 7_000 && at <= now_ms() + 8_000, "{at}");
        assert_eq!(retry, 2, "the handler's retry budget is not spent");
        // Rescheduled by the actor in between: not touched.
        index.upsert(&id, None, past, 3).unwrap();
        push_back_if_unchanged(&index, &id, &due, &config, 1);
        assert_eq!(index.get(&id).unwrap(), Some((past, 3)));
        // Set by the object to a later time meanwhile: not touched either.
        index.upsert(&id, None, past + 500, 2).unwrap();
        push_back_if_unchanged(&index, &id, &due, &config, 1);
        assert_eq!(index.get(&id).unwrap(), Some((past + 500, 2)));
        // Capped.
        index.upsert(&id, None, past, 2).unwrap();
        push_back_if_unchanged(&index, &id, &due, &config, 30);
        let (at, _) = index.get(&id).unwrap().unwrap();
        assert!(at <= now_ms() + MAX_RETRY_DELAY.as_millis() as i64, "{at}");
    }

    /// An entry left as dispatched after its attempt while writes to the index failed is held
    /// back in memory, doubling; one the attempt moved or removed, or left so with no failed
    /// write, is not.
    #[test]
    fn entries_no_write_could_move_are_held_back() {
        let (_dir, index, id, past, due) = index_with_due_entry(0);
        let config = AlarmConfig::default();
        assert!(
            hold_if_unchanged(&index, &id, &due, &config, 1, index.failed_writes()).is_none(),
            "no write failed: left so on purpose (set again to the same time)"
        );
        // A write failed during the attempt.
        let failed = index.failed_writes();
        index.fail_a_write();
        let held = hold_if_unchanged(&index, &id, &due, &config, 1, failed).expect("held");
        assert_eq!((held.at, held.retry), (past, 0));
        assert!(held.until >= now_ms() + 1_500 && held.until <= now_ms() + 2_000);
        let held = hold_if_unchanged(&index, &id, &due, &config, 3, failed).expect("held");
        assert!(held.until >= now_ms() + 7_500 && held.until <= now_ms() + 8_000);
        // Rescheduled by the actor: not held.
        index.upsert(&id, None, past, 1).unwrap();
        assert!(hold_if_unchanged(&index, &id, &due, &config, 1, failed).is_none());
        // Removed (the handler ran and the alarm is done): not held.
        index.remove(&id).unwrap();
        assert!(hold_if_unchanged(&index, &id, &due, &config, 1, failed).is_none());
    }

    #[test]
    fn the_stall_count_of_an_alarm_not_attempted_again_is_forgotten() {
        let mut stalled = HashMap::from([
            ("deleted".to_string(), (9, 0)),
            ("waiting".into(), (9, 0)),
            ("in flight".into(), (9, 0)),
        ]);
        let longest_wait = MAX_RETRY_DELAY.as_millis() as i64;
        stalled.get_mut("waiting").unwrap().1 = longest_wait;
        let in_flight = HashSet::from(["in flight".to_string()]);
        forget_old_stalls(&mut stalled, &in_flight, 2 * longest_wait);
        let mut kept = stalled.keys().collect::<Vec<_>>();
        kept.sort();
        assert_eq!(kept, ["in flight", "waiting"]);
    }

    #[test]
    fn backoff_doubles() {
        let c = AlarmConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(2));
        assert_eq!(c.backoff(2), Duration::from_secs(4));
        assert_eq!(c.backoff(6), Duration::from_secs(64));
        assert_eq!(c.backoff(30), MAX_RETRY_DELAY);
    }
}
