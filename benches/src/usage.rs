//! What a measured window cost the peer, and what the machine lost meanwhile: the peer's CPU
//! time (user + system, all its threads, from `/proc/<pid>/stat`) and the machine's stolen
//! time (`/proc/stat`'s `steal`: time the hypervisor ran something else while a vCPU wanted
//! to run).
//!
//! CPU per request is the figure that tells two builds apart on a shared VM: throughput
//! follows whatever CPU the hypervisor grants (on this project's 2-vCPU VM, steal of 35-45%
//! for minutes at a time roughly halved every peer's throughput), while CPU per request moves
//! much less. Steal is reported with each measurement so that a reader can tell a slow
//! machine from a slow peer.

use std::time::{Duration, Instant};

/// The peer's CPU time and the machine's CPU counters at the start of a window.
pub struct UsageProbe {
    pid: u32,
    cpu: Duration,
    machine: Option<MachineTimes>,
    started: Instant,
}

/// What one window cost.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// The peer's CPU time (user + system) during the window.
    pub cpu: Duration,
    /// Share of the machine's CPU time stolen by the hypervisor during the window (0.0-1.0),
    /// where `/proc/stat` says.
    pub steal: Option<f64>,
    /// The peer's CPU time over the window's wall time: cores kept busy.
    pub cores: f64,
}

impl UsageProbe {
    /// Starts a window for process `pid`. `None` where `/proc` does not say (not Linux).
    pub fn start(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            cpu: process_cpu(pid)?,
            machine: MachineTimes::read(),
            started: Instant::now(),
        })
    }

    /// Ends the window. `None` if the peer is gone.
    pub fn finish(self) -> Option<Usage> {
        let cpu = process_cpu(self.pid)?.saturating_sub(self.cpu);
        let steal = self
            .machine
            .zip(MachineTimes::read())
            .and_then(|(then, now)| {
                let total = now.total.saturating_sub(then.total);
                let steal = now.steal.saturating_sub(then.steal);
                (total > 0).then(|| steal as f64 / total as f64)
            });
        let wall = self.started.elapsed().as_secs_f64();
        Some(Usage {
            cpu,
            steal,
            cores: if wall > 0.0 {
                cpu.as_secs_f64() / wall
            } else {
                0.0
            },
        })
    }
}

impl Usage {
    /// The peer's CPU time per request, for `requests` answered in the window.
    pub fn per_request(&self, requests: u64) -> Option<Duration> {
        (requests > 0).then(|| self.cpu / u32::try_from(requests).unwrap_or(u32::MAX))
    }
}

/// Clock ticks per second of `/proc`'s CPU times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf takes no pointers.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    }
}

/// User + system CPU time of process `pid` so far (all its threads).
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
        .map(|ticks| Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second()))
}

/// `utime + stime` from a `/proc/<pid>/stat` line (fields 14 and 15; the command name, field
/// 2, is in parentheses and may hold spaces).
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's CPU time counters, in ticks, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MachineTimes {
    total: u64,
    steal: u64,
}

impl MachineTimes {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(stat.lines().next()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: the first eight
    /// make up the total (guest time is already counted in user).
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let times: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            total: times.iter().sum(),
            steal: *times.get(7)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_process_ticks() {
        let stat = "1234 (dohost (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9";
        assert_eq!(parse_process_ticks(stat), Some(287));
        assert_eq!(parse_process_ticks("garbage"), None);
    }

    #[test]
    fn parses_machine_times() {
        let line = "cpu  8246486 2 682074 5070460 183874 0 45433 384496 0 0";
        let times = MachineTimes::parse(line).unwrap();
        assert_eq!(times.steal, 384496);
        assert_eq!(
            times.total,
            8246486 + 2 + 682074 + 5070460 + 183874 + 45433 + 384496
        );
        assert_eq!(MachineTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(MachineTimes::parse("cpu  1 2 3"), None);
    }
}
