//! Per-object limits: linear memory, CPU time per event, and the sizes the ingress accepts.
//!
//! Memory is capped twice: by the pooling allocator's slot size (a hard bound) and by
//! [`MemoryLimiter`], which turns an attempt to grow past the limit into a trap that names the
//! limit. CPU time is measured with the event thread's CPU clock and checked on every epoch
//! tick (see `engine`), so a guest spinning in a loop is stopped within the limit plus a tick.

use std::time::Duration;

/// Limits applied to every object on a host.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory of an instance, in bytes.
    pub memory_bytes: usize,
    /// CPU time one event (request or alarm) may use.
    pub cpu_per_event: Duration,
    /// Largest request body the ingress accepts, in bytes.
    pub max_body_bytes: usize,
    /// Events that may wait for one object before new ones are refused with 503.
    pub max_queued_events: usize,
    /// How long a client may take to send a request body once its head has arrived, and to
    /// take any bytes of a response being written to it (then its connection is closed).
    pub body_timeout: Duration,
    /// Request bodies held in memory at once across the host (being read, or queued with
    /// their events), in bytes; a request whose body does not fit gets 503.
    pub max_buffered_body_bytes: usize,
    /// Client connections open at once; past it the host stops accepting until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 * 1024 * 1024,
            cpu_per_event: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_queued_events: 10_000,
            body_timeout: Duration::from_secs(30),
            max_buffered_body_bytes: 1 << 30,
            max_connections: 10_000,
        }
    }
}

/// Why an event was stopped by a limit. Carried as the error of a trap so that the event's
/// caller can tell a limit from a guest bug.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitHit {
    #[error(
        "memory limit exceeded: the object tried to grow its memory to {desired} bytes, the limit is {limit} bytes"
    )]
    Memory { desired: usize, limit: usize },
    #[error("CPU time limit exceeded: the event used more than {0:?} of CPU time")]
    Cpu(Duration),
}

/// A `wasmtime::ResourceLimiter` that traps with [`LimitHit::Memory`] past the limit.
pub struct MemoryLimiter {
    limit: usize,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(LimitHit::Memory {
                desired,
                limit: self.limit,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_THREAD_CPUTIME_ID is supported on
    // every Linux kernel wasmtime runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clock_advances_with_work() {
        let start = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - start < Duration::from_millis(5) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
    }
}
