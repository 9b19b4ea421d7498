//! Counts a peer's file syncs (`fsync`, `fdatasync`, `sync_file_range`) while it is measured,
//! with `perf stat` on the syscall tracepoints: evidence of what each side does for
//! durability, reported as syncs per request (`e2e --count-syncs`).
//!
//! Needs `perf` and permission to attach to the peer (root, or a low
//! `kernel.perf_event_paranoid`); without them the count is simply left out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const EVENTS: &str =
    "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_sync_file_range";

/// A running `perf stat` attached to a peer.
pub struct SyncCounter {
    child: Child,
    output: PathBuf,
}

impl SyncCounter {
    /// Starts counting the syncs of process `pid` (all its threads). `None` if perf cannot.
    pub fn start(pid: u32, work: &Path) -> Option<SyncCounter> {
        let output = work.join(format!("perf-{pid}.csv"));
        let child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                EVENTS,
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(SyncCounter { child, output })
    }

    /// Stops counting (SIGINT makes perf print its counts) and returns the total.
    pub async fn finish(mut self) -> Option<u64> {
        let pid = libc::pid_t::try_from(self.child.id()).ok()?;
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return None;
        }
        let text = std::fs::read_to_string(&self.output).ok()?;
        let _ = std::fs::remove_file(&self.output);
        parse(&text)
    }
}

/// Sums the counts of `perf stat -x ,` output (`<count>,,<event>,...` lines).
fn parse(text: &str) -> Option<u64> {
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.contains("syscalls:sys_enter_"))
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_perf_csv() {
        let text = "# started on Fri\n\n12,,syscalls:sys_enter_fsync,100.00,,\n\
                    30,,syscalls:sys_enter_fdatasync,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_sync_file_range,0,,\n";
        assert_eq!(super::parse(text), Some(42));
        assert_eq!(super::parse("nothing"), None);
    }
}
