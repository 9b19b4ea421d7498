//! The results table: one row per figure, one column per peer, and the ratios.
//!
//! Ratios are plain quotients, ours divided by the peer's, whatever the figure: above 1 is
//! better for rates (↑), below 1 is better for latencies and memory (↓).

use std::collections::HashMap;
use std::fmt::Write;

use crate::peers::PeerKind;
use crate::scenarios::{Better, Metric, Options};

/// What happened to one peer in one scenario.
#[derive(Clone, Debug)]
pub enum Outcome {
    Measured(f64),
    /// Not run, and why (peer unavailable, scenario not selected, ...).
    Skipped(String),
    Failed(String),
}

/// Everything measured in a run.
#[derive(Default)]
pub struct Results {
    cells: HashMap<(Metric, PeerKind), Outcome>,
}

impl Results {
    pub fn set(&mut self, metric: Metric, peer: PeerKind, outcome: Outcome) {
        self.cells.insert((metric, peer), outcome);
    }

    pub fn get(&self, metric: Metric, peer: PeerKind) -> Option<&Outcome> {
        self.cells.get(&(metric, peer))
    }

    fn value(&self, metric: Metric, peer: PeerKind) -> Option<f64> {
        match self.get(metric, peer) {
            Some(Outcome::Measured(v)) => Some(*v),
            _ => None,
        }
    }

    fn cell(&self, metric: Metric, peer: PeerKind) -> String {
        match self.get(metric, peer) {
            Some(Outcome::Measured(v)) => metric.format(*v),
            Some(Outcome::Failed(_)) => "failed".into(),
            Some(Outcome::Skipped(_)) | None => "-".into(),
        }
    }

    fn ratio(&self, metric: Metric, ours: PeerKind, peer: PeerKind) -> String {
        match (self.value(metric, ours), self.value(metric, peer)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "-".into(),
        }
    }

    fn any(&self, metric: Metric) -> bool {
        PeerKind::ALL.iter().any(|p| self.get(metric, *p).is_some())
    }

    /// The table, as aligned text (`markdown == false`) or as a Markdown table.
    pub fn table(&self, options: &Options, markdown: bool) -> String {
        let with_js = Metric::ALL
            .iter()
            .any(|m| self.value(*m, PeerKind::DohostJs).is_some());
        let mut header = vec!["scenario".to_string(), PeerKind::DohostRust.label().into()];
        if with_js {
            header.push(PeerKind::DohostJs.label().into());
        }
        header.extend([
            PeerKind::Workerd.label().into(),
            PeerKind::Floor.label().into(),
            "ours/workerd".into(),
            "ours/floor".into(),
        ]);
        if with_js {
            header.push("JS/workerd".into());
        }
        let mut rows = vec![header];
        for metric in Metric::ALL {
            if !self.any(metric) {
                continue;
            }
            let arrow = match metric.better() {
                Better::Higher => "↑",
                Better::Lower => "↓",
            };
            let mut row = vec![
                format!("{} {arrow}", metric.title(options)),
                self.cell(metric, PeerKind::DohostRust),
            ];
            if with_js {
                row.push(self.cell(metric, PeerKind::DohostJs));
            }
            row.extend([
                self.cell(metric, PeerKind::Workerd),
                self.cell(metric, PeerKind::Floor),
                self.ratio(metric, PeerKind::DohostRust, PeerKind::Workerd),
                self.ratio(metric, PeerKind::DohostRust, PeerKind::Floor),
            ]);
            if with_js {
                row.push(self.ratio(metric, PeerKind::DohostJs, PeerKind::Workerd));
            }
            rows.push(row);
        }
        if markdown {
            render_markdown(&rows)
        } else {
            render_text(&rows)
        }
    }

    /// Failures and skips, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        for ((_, peer), outcome) in &self.cells {
            match outcome {
                Outcome::Failed(why) => {
                    seen.insert(format!("{}: FAILED: {why}", peer.label()));
                }
                Outcome::Skipped(why) => {
                    seen.insert(format!("{}: skipped: {why}", peer.label()));
                }
                Outcome::Measured(_) => {}
            }
        }
        seen.into_iter().collect()
    }
}

/// Steal (share of the machine's CPU time the hypervisor gave to something else) at or above
/// this in a measurement is named in the summary: the figures of that measurement are of a
/// slower machine.
const STEAL_WORTH_NAMING: f64 = 0.05;

/// One line on the machine's stolen CPU time during the watched measurements (`what` and share
/// of each: the closed loops, the back-to-back cold start, the re-activation), or `None` if
/// none was watched.
pub fn steal_summary(steal: &[(String, f64)]) -> Option<String> {
    let most = steal.iter().map(|(_, s)| *s).reduce(f64::max)?;
    let named: Vec<String> = steal
        .iter()
        .filter(|(_, s)| *s >= STEAL_WORTH_NAMING)
        .map(|(what, s)| format!("{what}: {:.0}%", s * 100.0))
        .collect();
    Some(if named.is_empty() {
        format!(
            "machine steal (CPU time the hypervisor gave elsewhere) during the watched \
             measurements: at most {:.0}%",
            most * 100.0
        )
    } else {
        format!(
            "machine steal (CPU time the hypervisor gave elsewhere) during the watched \
             measurements: {:.0}% or more in {} of {} ({}); their figures are of a slower \
             machine, and CPU per request is the figure to compare",
            STEAL_WORTH_NAMING * 100.0,
            named.len(),
            steal.len(),
            named.join("; ")
        )
    })
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn render_text(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| width(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(width(cell));
            if c == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

fn render_markdown(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str("| ");
        out.push_str(&row.join(" | "));
        out.push_str(" |\n");
        if i == 0 {
            out.push('|');
            for c in 0..row.len() {
                out.push_str(if c == 0 { " --- |" } else { " ---: |" });
            }
            out.push('\n');
        }
    }
    out
}

/// What a response from each peer promises about the write it reports, for the report.
pub fn durability_notes() -> [(&'static str, &'static str); 3] {
    [
        (
            "dohost",
            "--sync full (the default): each event's transaction commits to the object's WAL \
             and the WAL is fsynced before the event's response leaves (output gate); the \
             events that queued up on one object while a sync was due share that one fsync \
             (group commit, new in the host at the time of writing)",
        ),
        (
            "workerd",
            "localDisk storage: one SQLite file per object, PRAGMA journal_mode=WAL, SQLite \
             built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=2 (FULL) and no synchronous pragma of its \
             own, so every commit fsyncs the WAL; a write opens an implicit transaction that \
             commits at the end of the event-loop turn (ActorSqlite::onWrite, kj::evalLater) \
             while the output gate holds the response; SQLite runs on the single event-loop \
             thread, so an fsync stalls every object of the process",
        ),
        (
            "floor",
            "WAL with synchronous=FULL, one transaction and one WAL fsync per request, \
             response written after the commit",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::steal_summary;

    #[test]
    fn names_measurements_with_steal() {
        assert_eq!(steal_summary(&[]), None);
        let calm = steal_summary(&[("ours in warm read".into(), 0.02)]).unwrap();
        assert!(calm.ends_with("at most 2%"), "{calm}");
        let slow = steal_summary(&[
            ("ours in warm read".into(), 0.02),
            ("floor in warm read".into(), 0.36),
            ("ours in durable write".into(), 0.19),
        ])
        .unwrap();
        assert!(
            slow.contains(
                "5% or more in 2 of 3 (floor in warm read: 36%; ours in durable write: 19%)"
            ),
            "{slow}"
        );
    }
}
