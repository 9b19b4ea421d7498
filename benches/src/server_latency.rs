//! Latency at the server, from dohost's own `dohost_request_seconds` histogram (scraped from
//! its admin listener, `GET /metrics`): the time from a request's head read to its response
//! ready, without the loopback network and the load generator's own time that the client's
//! figures include. The other peers expose nothing comparable, so only ours get this figure.
//!
//! A quantile comes from the difference of two scrapes (the measured window's requests only),
//! interpolated linearly within the bucket it falls in, and is reported with that bucket's
//! bounds.

use std::net::SocketAddr;

use crate::loadgen::{PlannedRequest, request_once};

const NAME: &str = "dohost_request_seconds_bucket";

/// Cumulative bucket counts (upper bound in seconds, requests at or under it), `+Inf` last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(Vec<(f64, u64)>);

/// A quantile estimated from a histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub seconds: f64,
    /// The bounds of the bucket it fell in.
    pub lower: f64,
    pub upper: f64,
}

/// Scrapes dohost's request histogram from its admin listener.
pub async fn scrape(admin: SocketAddr) -> Option<Buckets> {
    let (status, body) = request_once(admin, PlannedRequest::get("/metrics"))
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    parse(&String::from_utf8_lossy(&body))
}

/// The `dohost_request_seconds_bucket` lines of a Prometheus text exposition.
fn parse(text: &str) -> Option<Buckets> {
    let mut buckets = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(NAME)) {
        let (labels, count) = line.rsplit_once(' ')?;
        let bound = labels.split("le=\"").nth(1)?.split('"').next()?;
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            bound.parse().ok()?
        };
        buckets.push((bound, count.parse().ok()?));
    }
    (!buckets.is_empty()).then_some(Buckets(buckets))
}

impl Buckets {
    /// The `q`-quantile of the requests counted between `earlier` and `self`. `None` without
    /// requests, or if it falls in the last, unbounded bucket.
    pub fn quantile_since(&self, earlier: &Buckets, q: f64) -> Option<Estimate> {
        let counts: Vec<(f64, u64)> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, (bound, n))| {
                let before = earlier.0.get(i).map_or(0, |(_, m)| *m);
                (*bound, n.saturating_sub(before))
            })
            .collect();
        let total = counts.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = (0.0, 0);
        for (bound, cumulative) in counts {
            if cumulative as f64 >= rank {
                if !bound.is_finite() {
                    return None;
                }
                let (low, below) = lower;
                let inside = (cumulative - below) as f64;
                let fraction = if inside > 0.0 {
                    (rank - below as f64) / inside
                } else {
                    1.0
                };
                return Some(Estimate {
                    seconds: low + (bound - low) * fraction.clamp(0.0, 1.0),
                    lower: low,
                    upper: bound,
                });
            }
            lower = (bound, cumulative);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE dohost_request_seconds histogram\n\
        dohost_request_seconds_bucket{class=\"game-room\",le=\"0.0001\"} 10\n\
        dohost_request_seconds_bucket{class=\"game-room\",le=\"0.0002\"} 60\n\
        dohost_request_seconds_bucket{class=\"game-room\",le=\"0.0003\"} 100\n\
        dohost_request_seconds_bucket{class=\"game-room\",le=\"+Inf\"} 100\n\
        dohost_request_seconds_sum{class=\"game-room\"} 0.02\n\
        dohost_warm_event_seconds_bucket{class=\"game-room\",le=\"0.0001\"} 99\n";

    #[test]
    fn parses_and_interpolates() {
        let now = parse(TEXT).unwrap();
        assert_eq!(now.0.len(), 4);
        let p50 = now.quantile_since(&Buckets::default(), 0.5).unwrap();
        assert_eq!((p50.lower, p50.upper), (0.0001, 0.0002));
        // 50th of 100: 40 of the bucket's 50 requests in.
        assert!((p50.seconds - 0.00018).abs() < 1e-9, "{p50:?}");
        // Only what happened between two scrapes counts.
        let before = Buckets(vec![
            (0.0001, 10),
            (0.0002, 10),
            (0.0003, 10),
            (f64::INFINITY, 10),
        ]);
        // 90 requests since: the 45th is the 45th of the 50 in (0.1 ms, 0.2 ms].
        let p50 = now.quantile_since(&before, 0.5).unwrap();
        assert_eq!((p50.lower, p50.upper), (0.0001, 0.0002));
        assert!((p50.seconds - 0.00019).abs() < 1e-9, "{p50:?}");
        assert_eq!(now.quantile_since(&now, 0.5), None);
        assert_eq!(parse("nothing here"), None);
    }
}
