//! The load generator: a fixed number of HTTP/1.1 keep-alive connections, each with at most
//! one request in flight, driven closed-loop or at a fixed rate.
//!
//! - **Closed loop**: each connection sends its next request as soon as the previous response
//!   has been read. Throughput is what the server sustains at that concurrency; latency is
//!   measured from the actual send.
//! - **Fixed rate**: requests are scheduled at a constant total rate, spread evenly over the
//!   connections. A request that had to wait for its connection's previous response is
//!   measured from its *intended* send time, not from when the connection got round to
//!   sending it, so a server that stalls is charged for every request that queued behind the
//!   stall (the coordinated-omission correction of wrk2 and HdrHistogram). A request whose
//!   connection was free is measured from its actual send, so the client's own timer slack
//!   (tokio's timer has millisecond resolution) is not charged to the server. Requests
//!   scheduled inside the measured window but never sent before it closed are counted with
//!   the lower bound of their latency (window end minus intended time), and reported as
//!   `unsent`.
//! - **Batch**: a fixed list of requests (say, the first request to each of 1,000 new rooms),
//!   each sent once, shared out to the connections as they become free.
//!
//! Every loop here ends by itself: timed loads at their deadline, batches when the list is
//! done, and a connection that cannot be re-established stops its worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::stats::Latencies;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnection attempts of one worker before it gives up.
const MAX_RECONNECTS: u32 = 3;

/// One request to send.
#[derive(Clone, Debug)]
pub struct PlannedRequest {
    pub method: Method,
    /// Path and query, e.g. `/lobby/count`.
    pub path: String,
    pub body: Bytes,
}

impl PlannedRequest {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: Bytes::new(),
        }
    }

    pub fn post_json(path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body: body.into(),
        }
    }
}

/// Makes the request with a given index. Indexes are unique within one load: a timed load
/// numbers request `k` of connection `c` as `k * connections + c`; a batch numbers its list.
pub type RequestPlan = Arc<dyn Fn(u64) -> PlannedRequest + Send + Sync>;

/// When requests are sent.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    ClosedLoop,
    /// Total requests per second over all connections.
    FixedRate(f64),
}

/// How much load.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// Run for `warmup + measure`; only requests started (closed loop) or scheduled (fixed
    /// rate) after the warm-up are measured.
    Timed { warmup: Duration, measure: Duration },
    /// Send requests `0..n` once each (closed loop only), all measured.
    Batch(u64),
}

/// A load to apply.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub pacing: Pacing,
    pub amount: Amount,
}

/// What a load measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Latencies of the measured requests that succeeded (and, at a fixed rate, the lower
    /// bounds of the unsent ones).
    pub latencies: Latencies,
    /// Measured requests answered with a 2xx status.
    pub ok: u64,
    /// Requests that failed (non-2xx, I/O error or timeout), measured or not.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Fixed rate: requests scheduled in the measured window that were never sent.
    pub unsent: u64,
    /// Length of the measured window (batch: start to last response).
    pub elapsed: Duration,
}

impl LoadReport {
    /// Successful measured requests per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Fails if any request failed or nothing was measured, quoting the first error.
    pub fn require_clean(&self, what: &str) -> anyhow::Result<()> {
        if self.errors > 0 {
            anyhow::bail!(
                "{what}: {} request(s) failed; first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        if self.ok == 0 {
            anyhow::bail!("{what}: no request completed");
        }
        Ok(())
    }

    fn merge(&mut self, other: WorkerReport) {
        self.latencies.merge(other.latencies);
        self.ok += other.ok;
        self.errors += other.errors;
        self.unsent += other.unsent;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Default)]
struct WorkerReport {
    latencies: Latencies,
    ok: u64,
    errors: u64,
    unsent: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl WorkerReport {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

/// Applies `load` to the server at `addr` and reports what it measured. Must run inside a
/// tokio runtime; the connections are opened before the clock starts.
pub async fn run(addr: SocketAddr, load: Load, plan: RequestPlan) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(load.connections > 0, "a load needs at least one connection");
    if let (Amount::Batch(_), Pacing::FixedRate(_)) = (load.amount, load.pacing) {
        anyhow::bail!("a batch is sent closed-loop");
    }
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push(connect(addr).await?);
    }
    let start = Instant::now();
    let next_in_batch = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(load.connections);
    for (conn, sender) in senders.into_iter().enumerate() {
        let worker = Worker {
            addr,
            conn,
            load,
            plan: plan.clone(),
            start,
            next_in_batch: next_in_batch.clone(),
        };
        workers.push(tokio::spawn(worker.run(sender)));
    }
    let mut report = LoadReport::default();
    let mut last_done = start;
    for worker in workers {
        let result = worker.await.context("a load worker panicked")?;
        if let Some(done) = result.last_done {
            last_done = last_done.max(done);
        }
        report.merge(result);
    }
    report.elapsed = match load.amount {
        Amount::Timed { measure, .. } => measure,
        Amount::Batch(_) => last_done.saturating_duration_since(start),
    };
    Ok(report)
}

struct Worker {
    addr: SocketAddr,
    conn: usize,
    load: Load,
    plan: RequestPlan,
    start: Instant,
    next_in_batch: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self, mut sender: SendRequest<Full<Bytes>>) -> WorkerReport {
        let mut report = WorkerReport {
            latencies: Latencies::with_capacity(4096),
            ..Default::default()
        };
        let connections = self.load.connections as u64;
        let (measure_from, end) = match self.load.amount {
            Amount::Timed { warmup, measure } => {
                (self.start + warmup, Some(self.start + warmup + measure))
            }
            Amount::Batch(_) => (self.start, None),
        };
        // Fixed rate: this connection sends every `interval`, offset so that the connections
        // interleave evenly.
        let schedule = match self.load.pacing {
            Pacing::FixedRate(rate) if rate > 0.0 => {
                let interval = Duration::from_secs_f64(connections as f64 / rate);
                let offset = Duration::from_secs_f64(self.conn as f64 / rate);
                Some((interval, offset))
            }
            _ => None,
        };
        let mut reconnects = 0;
        let mut previous_done: Option<Instant> = None;
        for seq in 0u64.. {
            let index = match self.load.amount {
                Amount::Batch(total) => {
                    let i = self.next_in_batch.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    i
                }
                Amount::Timed { .. } => seq * connections + self.conn as u64,
            };
            let intended = match schedule {
                Some((interval, offset)) => {
                    let factor = u32::try_from(seq).unwrap_or(u32::MAX);
                    self.start + offset + interval.saturating_mul(factor)
                }
                None => Instant::now(),
            };
            if let Some(end) = end {
                if intended >= end {
                    break;
                }
                if schedule.is_some() && Instant::now() >= end {
                    // Scheduled in the window but the window closed first: charge the lower
                    // bound of its latency.
                    if intended >= measure_from {
                        report.unsent += 1;
                        report.latencies.record(end - intended);
                    }
                    continue;
                }
            }
            if schedule.is_some() {
                tokio::time::sleep_until(intended).await;
            }
            let request = (self.plan)(index);
            let sent = Instant::now();
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request)).await;
            let done = Instant::now();
            let measured = intended >= measure_from;
            match outcome {
                Ok(Ok(())) => {
                    if measured {
                        report.ok += 1;
                        // Fixed rate: a request held up behind its connection's previous
                        // response is charged from its intended time. One whose connection
                        // was free is charged from its actual send: the gap between the two
                        // is then the client's timer (tokio's millisecond wheel), not the
                        // server.
                        let held_up = previous_done.is_some_and(|p| p > intended);
                        let from = if schedule.is_some() && held_up {
                            intended
                        } else {
                            sent
                        };
                        report.latencies.record(done - from);
                        report.last_done = Some(done);
                    }
                    previous_done = Some(done);
                }
                Ok(Err(failure)) => {
                    previous_done = Some(done);
                    report.error(failure.message);
                    if failure.connection_lost {
                        match self.reconnect(&mut reconnects).await {
                            Some(s) => sender = s,
                            None => break,
                        }
                    }
                }
                Err(_) => {
                    previous_done = Some(done);
                    report.error(format!("no response within {REQUEST_TIMEOUT:?}"));
                    match self.reconnect(&mut reconnects).await {
                        Some(s) => sender = s,
                        None => break,
                    }
                }
            }
        }
        report
    }

    async fn reconnect(&self, attempts: &mut u32) -> Option<SendRequest<Full<Bytes>>> {
        while *attempts < MAX_RECONNECTS {
            *attempts += 1;
            if let Ok(sender) = connect(self.addr).await {
                return Some(sender);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// Opens one keep-alive HTTP/1.1 connection.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection; errors show up
        // on the sender's next request.
        let _ = connection.await;
    });
    Ok(sender)
}

struct Failure {
    message: String,
    connection_lost: bool,
}

/// Sends one request and reads the whole response; a non-2xx status is a failure.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    planned: PlannedRequest,
) -> Result<(), Failure> {
    let lost = |e: hyper::Error| Failure {
        message: format!("connection error: {e}"),
        connection_lost: true,
    };
    sender.ready().await.map_err(lost)?;
    let mut request = Request::new(Full::new(planned.body));
    *request.method_mut() = planned.method;
    *request.uri_mut() = planned.path.parse().map_err(|e| Failure {
        message: format!("bad path {:?}: {e}", planned.path),
        connection_lost: false,
    })?;
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let response = sender.send_request(request).await.map_err(lost)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(lost)?
        .to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Err(Failure {
            message: format!("{status}: {}", text.trim()),
            connection_lost: false,
        })
    }
}

/// Sends one request on a fresh connection and returns its status and body (for set-up steps
/// and readiness checks, not measurements).
pub async fn request_once(
    addr: SocketAddr,
    planned: PlannedRequest,
) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(addr).await?;
    sender.ready().await?;
    let mut request = Request::new(Full::new(planned.body));
    *request.method_mut() = planned.method;
    *request.uri_mut() = planned.path.parse()?;
    request
        .headers_mut()
        .insert(HOST, HeaderValue::from_static("127.0.0.1"));
    let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request))
        .await
        .context("no response")??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
