//! What machine the figures come from: cores, CPU model, memory, kernel, and the filesystem
//! the data directories live on (fsync costs differ by orders of magnitude between disks).

use std::path::Path;

/// A description of this machine, for the report.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// `ext4 on /dev/vda` for the scratch directory.
    pub data_filesystem: String,
    /// Load average when the run started: other work on the machine skews the figures.
    pub load_average: String,
}

impl Machine {
    pub fn describe(scratch: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|kib| kib.parse::<f64>().ok())
            })
            .map(|kib| kib / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            data_filesystem: filesystem_of(scratch),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "machine: {} cores (nproc), {}, {:.0} GiB RAM, Linux {}; data on {}; load average at start {}",
            self.cores,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.data_filesystem,
            self.load_average
        )
    }
}

/// The filesystem type and device of the longest mount point containing `path`.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{fs_type} ({device})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
        .unwrap_or_else(|| "unknown".into())
}
