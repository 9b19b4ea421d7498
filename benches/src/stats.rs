//! Latency samples and their percentiles, and how durations and rates are printed.
//!
//! The load generator keeps every sample (a few hundred thousand at most in a run of this
//! harness), so percentiles are exact rather than bucketed.

use std::time::Duration;

/// Latency samples of one measurement, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    nanos: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            nanos: Vec::with_capacity(n),
            sorted: true,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.nanos
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Latencies) {
        self.nanos.extend(other.nanos);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.nanos.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q`-quantile (0.0..=1.0), nearest rank. `None` without samples, or when there are
    /// too few samples for the quantile to mean anything (p99.9 needs at least 1,000).
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if self.nanos.is_empty() {
            return None;
        }
        let tail = 1.0 - q;
        if tail > 0.0 && (self.nanos.len() as f64) * tail < 1.0 {
            return None;
        }
        self.sort();
        let rank = ((q * self.nanos.len() as f64).ceil() as usize).clamp(1, self.nanos.len());
        Some(Duration::from_nanos(self.nanos[rank - 1]))
    }

    pub fn max(&mut self) -> Option<Duration> {
        self.sort();
        self.nanos.last().map(|n| Duration::from_nanos(*n))
    }

    pub fn mean(&self) -> Option<Duration> {
        if self.nanos.is_empty() {
            return None;
        }
        let sum: u128 = self.nanos.iter().map(|n| u128::from(*n)).sum();
        Some(Duration::from_nanos(
            (sum / self.nanos.len() as u128) as u64,
        ))
    }

    /// `p50 1.23ms  p99 4.56ms  p99.9 7.89ms  max 9.01ms`.
    pub fn summary(&mut self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            fmt_opt(self.quantile(0.5)),
            fmt_opt(self.quantile(0.99)),
            fmt_opt(self.quantile(0.999)),
            fmt_opt(self.max()),
        )
    }
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map(fmt_duration).unwrap_or_else(|| "-".into())
}

/// `850µs`, `12.3ms`, `1.20s`: three significant digits.
pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1.0 {
        format!("{:.0}ns", micros * 1e3)
    } else if micros < 10.0 {
        format!("{micros:.2}µs")
    } else if micros < 1_000.0 {
        format!("{micros:.0}µs")
    } else if micros < 10_000.0 {
        format!("{:.2}ms", micros / 1e3)
    } else if micros < 1_000_000.0 {
        format!("{:.1}ms", micros / 1e3)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}

/// `12,345/s` (or `12.3/s` below 100).
pub fn fmt_rate(per_second: f64) -> String {
    if per_second < 100.0 {
        return format!("{per_second:.1}/s");
    }
    format!("{}/s", group_thousands(per_second.round() as u64))
}

/// `1234567` -> `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut l = Latencies::default();
        for ms in 1..=1000 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.quantile(0.5), Some(Duration::from_millis(500)));
        assert_eq!(l.quantile(0.99), Some(Duration::from_millis(990)));
        assert_eq!(l.quantile(0.999), Some(Duration::from_millis(999)));
        assert_eq!(l.max(), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn too_few_samples_for_a_tail_quantile() {
        let mut l = Latencies::default();
        for ms in 1..=10 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.quantile(0.999), None);
        assert_eq!(l.quantile(0.5), Some(Duration::from_millis(5)));
    }

    #[test]
    fn formatting() {
        assert_eq!(group_thousands(1234567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(fmt_rate(12345.4), "12,345/s");
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(fmt_duration(Duration::from_micros(12_345)), "12.3ms");
    }
}
