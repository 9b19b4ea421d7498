//! The alarm scheduler: wakes objects whose alarm is due.
//!
//! One task per host. It reads due entries from the [`AlarmIndex`], dispatches an
//! `AlarmDue` event to each object (at most `max_concurrent` at a time, never two for one
//! object), and sleeps until the next entry is due or the index changes. Everything about
//! firing, retrying and clearing happens in the object's actor, serialized with its requests.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use super::index::AlarmIndex;
use crate::object::EventKind;
use crate::registry::ObjectRegistry;

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

impl AlarmConfig {
    /// Delay before retry number `retry` (1-based): base, 2 x base, 4 x base, ...
    pub fn backoff(&self, retry: u32) -> Duration {
        self.retry_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
    }
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
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    loop {
        let now = now_ms();
        match index.due(now, 1024) {
            Ok(due) => {
                for alarm in due {
                    if !in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(alarm.id.clone())
                    {
                        continue;
                    }
                    let (registry, index, in_flight, permits) = (
                        registry.clone(),
                        index.clone(),
                        in_flight.clone(),
                        permits.clone(),
                    );
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let class = registry.class().name().to_string();
                        match registry.ids().parse(&class, &alarm.id) {
                            Ok(id) => {
                                let event = EventKind::AlarmDue { retry: alarm.retry };
                                if let Err(e) =
                                    registry.dispatch(id, alarm.name.clone(), event).await
                                {
                                    tracing::debug!(object = %alarm.id, "alarm attempt failed: {e}");
                                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let c = AlarmConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(2));
        assert_eq!(c.backoff(2), Duration::from_secs(4));
        assert_eq!(c.backoff(6), Duration::from_secs(64));
    }
}
