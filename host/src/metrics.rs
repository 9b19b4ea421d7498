//! Host metrics: request latency, cold starts split into phases, warm event latency, live objects,
//! evictions, limit hits, rows read and written. Served as Prometheus text on the admin
//! listener (`dohost run --admin ADDR`, `GET /metrics`) and summarized by `dohost coldstart`.
//!
//! Everything is lock-free atomics except the optional raw samples, which only
//! `dohost coldstart` turns on.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds. Finer from 50 us to 1 ms, where a
/// warm request and a cold start fall.
const BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_25, 0.000_3,
    0.000_4, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A Prometheus histogram of durations.
pub struct Histogram {
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
        );
    }
}

/// Phases of one activation (a cold start).
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivationTimings {
    /// Opening (or creating) the object's SQLite database.
    pub open_database: Duration,
    /// Creating the instance from the `InstancePre`, including the component's start
    /// functions (guest initialisation); or, usually, binding an instance started ahead
    /// (`--spare-instances`) to the object.
    pub instantiate: Duration,
    /// The first event on the new instance, until its response is ready (includes the
    /// guest's own setup, such as an SDK constructor).
    pub first_event: Duration,
}

impl ActivationTimings {
    pub fn total(&self) -> Duration {
        self.open_database + self.instantiate + self.first_event
    }
}

/// Why an object stopped being live.
#[derive(Debug, Clone, Copy)]
pub enum Eviction {
    Idle,
    Capacity,
    Failure,
}

/// Which limit an event broke.
#[derive(Debug, Clone, Copy)]
pub enum LimitKind {
    Memory,
    Cpu,
    Database,
}

/// All host metrics of one class.
#[derive(Default)]
pub struct Metrics {
    /// HTTP requests to objects, from the request head read to the response ready.
    pub requests: Histogram,
    pub open_database: Histogram,
    pub instantiate: Histogram,
    pub first_event: Histogram,
    pub activation: Histogram,
    pub warm_event: Histogram,
    pub live_objects: AtomicU64,
    pub activations: AtomicU64,
    pub evictions_idle: AtomicU64,
    pub evictions_capacity: AtomicU64,
    pub evictions_failure: AtomicU64,
    pub limit_memory: AtomicU64,
    pub limit_cpu: AtomicU64,
    pub limit_database: AtomicU64,
    pub events_ok: AtomicU64,
    pub events_failed: AtomicU64,
    pub alarms_run: AtomicU64,
    pub rows_read: AtomicU64,
    pub rows_written: AtomicU64,
    pub fetch_seconds: Histogram,
    pub fetch_ok: AtomicU64,
    pub fetch_failed: AtomicU64,
    pub fetch_denied: AtomicU64,
    pub fetch_bytes: AtomicU64,
    samples: Mutex<Option<Vec<ActivationTimings>>>,
}

impl Metrics {
    pub fn record_activation(&self, t: ActivationTimings) {
        self.open_database.observe(t.open_database);
        self.instantiate.observe(t.instantiate);
        self.first_event.observe(t.first_event);
        self.activation.observe(t.total());
        self.activations.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut samples) = self.samples.lock()
            && let Some(samples) = samples.as_mut()
        {
            samples.push(t);
        }
    }

    pub fn record_eviction(&self, why: Eviction) {
        let counter = match why {
            Eviction::Idle => &self.evictions_idle,
            Eviction::Capacity => &self.evictions_capacity,
            Eviction::Failure => &self.evictions_failure,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_limit(&self, kind: LimitKind) {
        let counter = match kind {
            LimitKind::Memory => &self.limit_memory,
            LimitKind::Cpu => &self.limit_cpu,
            LimitKind::Database => &self.limit_database,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts keeping every activation's timings (for `dohost coldstart`).
    pub fn keep_samples(&self) {
        if let Ok(mut samples) = self.samples.lock() {
            samples.get_or_insert_with(Vec::new);
        }
    }

    /// Takes the kept samples.
    pub fn take_samples(&self) -> Vec<ActivationTimings> {
        self.samples
            .lock()
            .ok()
            .and_then(|mut s| s.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    /// Prometheus text exposition.
    /// The metrics in Prometheus' text format, with `gauges` (name, help, value) read by the
    /// caller.
    pub fn render(&self, class: &str, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let class_label = format!("class=\"{}\"", class.replace(['\\', '"', '\n'], "_"));
        let l = class_label.as_str();
        for (name, hist, help) in [
            (
                "dohost_request_seconds",
                &self.requests,
                "HTTP requests, from the request head read to the response ready (errors included).",
            ),
            (
                "dohost_activation_open_database_seconds",
                &self.open_database,
                "Cold start phase: opening the object's database.",
            ),
            (
                "dohost_activation_instantiate_seconds",
                &self.instantiate,
                "Cold start phase: creating the instance (including guest start functions).",
            ),
            (
                "dohost_activation_first_event_seconds",
                &self.first_event,
                "Cold start phase: the first event on a new instance, until its response is ready.",
            ),
            (
                "dohost_activation_seconds",
                &self.activation,
                "Whole cold start: database, instance and first event.",
            ),
            (
                "dohost_warm_event_seconds",
                &self.warm_event,
                "Events on an already live instance, until the response is ready.",
            ),
            (
                "dohost_fetch_seconds",
                &self.fetch_seconds,
                "Outbound fetches: until the whole body (fetch) or the response head (wasi:http).",
            ),
        ] {
            hist.render(&mut out, name, l, help);
        }
        let counters: [(&str, &str, &AtomicU64, &str); 16] = [
            (
                "dohost_activations_total",
                "",
                &self.activations,
                "Cold starts.",
            ),
            (
                "dohost_evictions_total",
                "reason=\"idle\"",
                &self.evictions_idle,
                "Objects evicted.",
            ),
            (
                "dohost_evictions_total",
                "reason=\"capacity\"",
                &self.evictions_capacity,
                "Objects evicted.",
            ),
            (
                "dohost_evictions_total",
                "reason=\"failure\"",
                &self.evictions_failure,
                "Objects evicted.",
            ),
            (
                "dohost_limit_hits_total",
                "limit=\"memory\"",
                &self.limit_memory,
                "Events stopped by a limit.",
            ),
            (
                "dohost_limit_hits_total",
                "limit=\"cpu\"",
                &self.limit_cpu,
                "Events stopped by a limit.",
            ),
            (
                "dohost_limit_hits_total",
                "limit=\"database\"",
                &self.limit_database,
                "Events stopped by a limit.",
            ),
            (
                "dohost_events_total",
                "outcome=\"ok\"",
                &self.events_ok,
                "Events handled.",
            ),
            (
                "dohost_events_total",
                "outcome=\"failed\"",
                &self.events_failed,
                "Events handled.",
            ),
            (
                "dohost_alarms_run_total",
                "",
                &self.alarms_run,
                "Alarm handler runs that committed.",
            ),
            (
                "dohost_rows_read_total",
                "",
                &self.rows_read,
                "Rows read by guest SQL.",
            ),
            (
                "dohost_rows_written_total",
                "",
                &self.rows_written,
                "Rows written by guest SQL.",
            ),
            (
                "dohost_fetches_total",
                "outcome=\"ok\"",
                &self.fetch_ok,
                "Outbound fetches.",
            ),
            (
                "dohost_fetches_total",
                "outcome=\"failed\"",
                &self.fetch_failed,
                "Outbound fetches.",
            ),
            (
                "dohost_fetches_total",
                "outcome=\"denied\"",
                &self.fetch_denied,
                "Outbound fetches.",
            ),
            (
                "dohost_fetch_response_bytes_total",
                "",
                &self.fetch_bytes,
                "Bytes of outbound fetch responses.",
            ),
        ];
        let mut described = Vec::new();
        for (name, extra, value, help) in counters {
            if !described.contains(&name) {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                described.push(name);
            }
            let sep = if extra.is_empty() { "" } else { "," };
            let _ = writeln!(
                out,
                "{name}{{{l}{sep}{extra}}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP dohost_live_objects Objects with a live instance or actor.\n# TYPE dohost_live_objects gauge\ndohost_live_objects{{{l}}} {}",
            self.live_objects.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {value}"
            );
        }
        out
    }
}

/// min, p50, p99 and max of a set of durations.
pub fn distribution(values: &mut [Duration]) -> Option<[Duration; 4]> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some([values[0], at(0.5), at(0.99), values[values.len() - 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record_activation(ActivationTimings {
            open_database: Duration::from_micros(40),
            instantiate: Duration::from_micros(30),
            first_event: Duration::from_micros(200),
        });
        m.warm_event.observe(Duration::from_micros(80));
        m.requests.observe(Duration::from_micros(180));
        m.record_eviction(Eviction::Idle);
        let text = m.render("room", &[("dohost_test_ready", "A gauge.", 3)]);
        assert!(text.contains("dohost_activations_total{class=\"room\"} 1"));
        assert!(text.contains(
            "dohost_activation_instantiate_seconds_bucket{class=\"room\",le=\"0.00005\"} 1"
        ));
        assert!(text.contains("dohost_warm_event_seconds_count{class=\"room\"} 1"));
        assert!(text.contains("dohost_request_seconds_bucket{class=\"room\",le=\"0.00015\"} 0"));
        assert!(text.contains("dohost_request_seconds_bucket{class=\"room\",le=\"0.0002\"} 1"));
        assert!(
            text.contains("# TYPE dohost_test_ready gauge\ndohost_test_ready{class=\"room\"} 3")
        );
        assert!(text.contains("dohost_evictions_total{class=\"room\",reason=\"idle\"} 1"));
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let [min, p50, p99, max] = distribution(&mut v).unwrap();
        assert_eq!(
            (
                min.as_millis(),
                p50.as_millis(),
                p99.as_millis(),
                max.as_millis()
            ),
            (1, 51, 99, 100)
        );
    }
}
