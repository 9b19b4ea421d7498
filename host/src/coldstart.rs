//! `dohost coldstart`: measures how fast objects of a class start.
//!
//! Runs a host in-process with a temporary data directory and, one object at a time:
//!
//! 1. activates N new objects (their databases are created);
//! 2. evicts them all and activates them again (databases exist: the common cold start);
//! 3. sends warm requests to a live object.
//!
//! It prints min, p50, p99 and max per phase. Events are dispatched to the registry directly,
//! so the figures are the host's own work, without HTTP.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bindings::http_types::Request;
use crate::metrics::{ActivationTimings, distribution};
use crate::object::{EventKind, Reply};
use crate::server::{Server, ServerConfig};

/// What to measure.
#[derive(Clone, Debug)]
pub struct ColdstartOptions {
    pub component: std::path::PathBuf,
    /// Objects to activate.
    pub objects: usize,
    /// Method and path of the request each activation serves.
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// The measured distributions.
pub struct ColdstartReport {
    pub new_objects: Vec<ActivationTimings>,
    pub existing_objects: Vec<ActivationTimings>,
    pub warm: Vec<Duration>,
    pub failures: usize,
}

pub async fn measure(options: &ColdstartOptions) -> anyhow::Result<ColdstartReport> {
    let work = tempfile::Builder::new()
        .prefix("dohost-coldstart-")
        .tempdir()?;
    let mut config = ServerConfig::new(options.component.clone());
    config.listen = "127.0.0.1:0".parse().expect("valid address");
    config.data_dir = work.path().to_path_buf();
    config.max_instances = options.objects.clamp(16, 100_000) as u32 + 16;
    config.idle_timeout = Duration::from_secs(3600);
    let server = Server::bind(config)
        .await
        .context("loading the component")?;
    let registry = server.registry().clone();
    let class = registry.class().name().to_string();
    let metrics = registry.metrics().clone();
    metrics.keep_samples();
    let mut failures = 0;
    let request = || Request {
        method: options.method.clone(),
        url: format!("http://localhost{}", options.path),
        headers: vec![("content-type".into(), "application/json".into())],
        body: options.body.clone(),
    };
    let names: Vec<String> = (0..options.objects)
        .map(|i| format!("coldstart-{i}"))
        .collect();
    let mut ids = Vec::with_capacity(names.len());
    for name in &names {
        let id = registry.ids().from_name(&class, name)?;
        ids.push(id);
        match registry
            .dispatch(id, Some(name.clone()), EventKind::Request(request()))
            .await
        {
            Ok(Reply::Response(r)) if r.status < 500 => {}
            other => {
                failures += 1;
                tracing::warn!("{name}: {other:?}");
            }
        }
    }
    let new_objects = metrics.take_samples();
    for id in &ids {
        registry.evict(*id).await;
    }
    for (id, name) in ids.iter().zip(&names) {
        if registry
            .dispatch(*id, Some(name.clone()), EventKind::Request(request()))
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    let existing_objects = metrics.take_samples();
    let mut warm = Vec::new();
    if let (Some(id), Some(name)) = (ids.first(), names.first()) {
        for _ in 0..options.objects.max(100) {
            let started = Instant::now();
            let _ = registry
                .dispatch(*id, Some(name.clone()), EventKind::Request(request()))
                .await;
            warm.push(started.elapsed());
        }
    }
    registry.shutdown().await;
    drop(server);
    Ok(ColdstartReport {
        new_objects,
        existing_objects,
        warm,
        failures,
    })
}

impl ColdstartReport {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<34}{:>10}{:>10}{:>10}{:>10}\n",
            "phase", "min", "p50", "p99", "max"
        );
        let mut section = |title: &str, samples: &[ActivationTimings]| {
            out.push_str(&format!("{title} ({} activations)\n", samples.len()));
            let phases: [(&str, Phase); 4] = [
                ("  open database", |t| t.open_database),
                ("  instantiate", |t| t.instantiate),
                ("  first event", |t| t.first_event),
                ("  total", ActivationTimings::total),
            ];
            for (label, get) in phases {
                let mut values: Vec<Duration> = samples.iter().map(get).collect();
                out.push_str(&row(label, &mut values));
            }
        };
        section("new object (database created)", &self.new_objects);
        section("existing object (after eviction)", &self.existing_objects);
        let mut warm = self.warm.clone();
        out.push_str(&row("warm request (in-process)", &mut warm));
        if self.failures > 0 {
            out.push_str(&format!(
                "{} request(s) failed; see the log\n",
                self.failures
            ));
        }
        out
    }
}

/// Reads one phase out of an activation's timings.
type Phase = fn(&ActivationTimings) -> Duration;

fn row(label: &str, values: &mut [Duration]) -> String {
    match distribution(values) {
        Some(d) => {
            let cells: String = d
                .iter()
                .map(|v| format!("{:>10}", format_duration(*v)))
                .collect();
            format!("{label:<34}{cells}\n")
        }
        None => format!("{label:<34}{:>10}\n", "-"),
    }
}

/// `12.3µs`, `0.45ms`, `1.20s`.
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1}µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1000.0)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}
