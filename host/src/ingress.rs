//! HTTP ingress: hyper 1.x on tokio, the URL scheme, and HTTP errors.
//!
//! URL scheme (one class per host):
//! - `/<name>/<rest>?<query>`: the object created from `<name>` (percent-decoded UTF-8,
//!   1..=256 bytes, no control characters, not `.` or `..`); it sees `/<rest>?<query>`.
//! - `/_id/<hex>/<rest>?<query>`: the object with that ID (64 lower-case hex digits minted
//!   by this host for this class).
//! - `POST /_new`: mints a random unique ID and returns `{"id": "<hex>"}`.
//! - Any other first segment starting with `_` is reserved for the host (404).
//!
//! Names and IDs only ever reach the filesystem as the hex of a validated ID, so no URL can
//! name a path outside the data directory. The path parsing itself is `dohost_wire::route`
//! (pure, fuzzed by `tests/fuzz`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dohost_wire::{Route, RouteError, route};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::bindings::http_types::{Request, Response};
use crate::id::IdError;
use crate::object::{EventError, EventKind, Reply};
use crate::registry::{DispatchError, ObjectRegistry};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer of a connection: bounds what hyper holds for one request head.
const MAX_HEAD_BUFFER: usize = 256 * 1024;
/// Largest total size of a request's target (path and query) and header fields, in bytes;
/// more gets 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A failed request, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error(
        "the request head (target and header fields) is larger than the limit of \
         {MAX_HEADER_BYTES} bytes"
    )]
    HeadersTooLarge,
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error(
        "the host holds too many request bodies ({0} bytes at most, --max-buffered-bodies); \
         try again"
    )]
    BodiesFull(usize),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

impl IngressError {
    fn status(&self) -> StatusCode {
        match self {
            IngressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngressError::NotFound(_) => StatusCode::NOT_FOUND,
            IngressError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            IngressError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngressError::BodiesFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::Dispatch(
                DispatchError::Overloaded(_)
                | DispatchError::ShuttingDown
                | DispatchError::Event(EventError::Busy(_)),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::Dispatch(DispatchError::Event(_) | DispatchError::Lost(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A short machine-readable kind, sent as `x-dohost-error`.
    fn kind(&self) -> &'static str {
        match self {
            IngressError::BadRequest(_) => "bad-request",
            IngressError::NotFound(_) => "not-found",
            IngressError::MethodNotAllowed(_) => "method-not-allowed",
            IngressError::PayloadTooLarge(_) => "payload-too-large",
            IngressError::HeadersTooLarge => "headers-too-large",
            IngressError::BodyTimeout(_) => "request-timeout",
            IngressError::BodiesFull(_) => "overloaded",
            IngressError::Dispatch(DispatchError::Overloaded(_)) => "overloaded",
            IngressError::Dispatch(DispatchError::ShuttingDown) => "shutting-down",
            IngressError::Dispatch(DispatchError::Lost(_)) => "internal-error",
            IngressError::Dispatch(DispatchError::Event(e)) => match e {
                EventError::Guest(_) => "object-error",
                EventError::Trap(_) => "object-trapped",
                EventError::Limit(crate::limits::LimitHit::Memory { .. }) => "memory-limit",
                EventError::Limit(crate::limits::LimitHit::Cpu(_)) => "cpu-limit",
                EventError::Activation(_) => "activation-failed",
                EventError::Busy(_) => "overloaded",
                EventError::Storage(_) => "storage-failed",
            },
        }
    }
}

impl From<IdError> for IngressError {
    fn from(e: IdError) -> Self {
        IngressError::BadRequest(e.to_string())
    }
}

impl From<RouteError> for IngressError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound(message) => IngressError::NotFound(message),
            RouteError::BadRequest(message) => IngressError::BadRequest(message),
        }
    }
}

/// Settings of the HTTP ingress (see [`crate::limits::Limits`]).
#[derive(Clone, Debug)]
pub struct IngressConfig {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_buffered_body_bytes: usize,
    pub max_connections: usize,
}

/// Serves HTTP on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    registry: ObjectRegistry,
    config: IngressConfig,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // One permit per KiB.
    let bodies = Arc::new(Semaphore::new(
        config
            .max_buffered_body_bytes
            .div_ceil(1024)
            .min(Semaphore::MAX_PERMITS),
    ));
    let app = Arc::new(App {
        registry,
        config,
        bodies,
    });
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BUFFER);
    tokio::pin!(shutdown);
    let mut at_cap_since: Option<std::time::Instant> = None;
    loop {
        // At the connection cap, stop accepting (new clients wait in the listen backlog)
        // until one closes. Said once per episode, not per connection.
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Some(since) = at_cap_since.take() {
                    tracing::info!(
                        "accepting connections again after {:.1} s at the cap",
                        since.elapsed().as_secs_f64()
                    );
                }
                permit
            }
            Err(_) => {
                if at_cap_since.is_none() {
                    at_cap_since = Some(std::time::Instant::now());
                    tracing::warn!(
                        "{} client connections open (--max-connections): not accepting more \
                         until one closes",
                        app.config.max_connections
                    );
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => {
                        permit.expect("the connection semaphore is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let stream = StallLimit::new(stream, app.config.body_timeout);
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(req, peer).await) }
                });
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        let cause = std::error::Error::source(&e)
                            .map(|cause| format!(": {cause}"))
                            .unwrap_or_default();
                        tracing::debug!(%peer, "connection ended: {e}{cause}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("gave up waiting for connections after {SHUTDOWN_GRACE:?}");
        }
    }
}

struct App {
    registry: ObjectRegistry,
    config: IngressConfig,
    /// Request bodies the host may hold at once, in KiB (one permit per KiB).
    bodies: Arc<Semaphore>,
}

type HttpResponse = hyper::Response<Full<Bytes>>;

impl App {
    async fn handle(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let response = match self.handle_inner(req).await {
            Ok(response) => response,
            Err(err) => {
                let status = err.status();
                if status.is_server_error() {
                    let err = crate::logs::log_safe(&err.to_string());
                    tracing::warn!(%peer, %method, %path, status = status.as_u16(), "{err}");
                }
                error_response(&err)
            }
        };
        self.registry.metrics().requests.observe(started.elapsed());
        tracing::debug!(
            %peer, %method, %path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    async fn handle_inner(
        &self,
        req: hyper::Request<Incoming>,
    ) -> Result<HttpResponse, IngressError> {
        let target_bytes = req.uri().path_and_query().map_or(0, |t| t.as_str().len());
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if target_bytes + header_bytes > MAX_HEADER_BYTES {
            return Err(IngressError::HeadersTooLarge);
        }
        let class = self.registry.class().name().to_string();
        let (id, name, rest) = match route(req.uri().path())? {
            Route::NewId => {
                if req.method() != Method::POST {
                    return Err(IngressError::MethodNotAllowed("use POST /_new".into()));
                }
                let id = self.registry.ids().new_unique(&class);
                let body = serde_json::json!({ "id": id.to_hex() }).to_string();
                return Ok(json_response(StatusCode::OK, body));
            }
            Route::Named { name, rest } => (
                self.registry.ids().from_name(&class, &name)?,
                Some(name),
                rest,
            ),
            Route::ById { hex, rest } => (self.registry.ids().parse(&class, &hex)?, None, rest),
        };
        // The body's share of the host's body budget goes with the event, until it has run.
        let (request, body_permit) = self.guest_request(req, &rest).await?;
        match self
            .registry
            .dispatch_holding(id, name, EventKind::Request(request), body_permit)
            .await?
        {
            Reply::Response(response) => Ok(to_http(response)),
            Reply::AlarmDone | Reply::AlarmNotDue => {
                Err(IngressError::Dispatch(DispatchError::Lost(id)))
            }
        }
    }

    /// Reads a body of at most `limit` bytes, taking its share of the host's budget for bodies
    /// as its bytes arrive (a client that declares a large body and sends little holds
    /// little). The permit is that share, one per KiB received.
    async fn read_body(
        &self,
        mut body: Incoming,
        limit: usize,
    ) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), IngressError> {
        let mut out = Vec::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| IngressError::BadRequest(format!("cannot read the body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = out.len() + data.len();
            if len > limit {
                return Err(IngressError::PayloadTooLarge(limit));
            }
            let want = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
            let held = permit.as_ref().map_or(0, |p| p.num_permits() as u32);
            if want > held {
                let more = self
                    .bodies
                    .clone()
                    .try_acquire_many_owned(want - held)
                    .map_err(|_| IngressError::BodiesFull(self.config.max_buffered_body_bytes))?;
                match &mut permit {
                    Some(permit) => permit.merge(more),
                    None => permit = Some(more),
                }
            }
            out.extend_from_slice(&data);
        }
        // The body may wait in a queue: hold no more memory than its budget counts.
        out.shrink_to_fit();
        Ok((out, permit))
    }

    /// Reads the body (within the cap, the time limit and the host's budget for bodies) and
    /// builds the guest's view of the request. The permit is the body's share of the budget.
    async fn guest_request(
        &self,
        req: hyper::Request<Incoming>,
        rest: &str,
    ) -> Result<(Request, Option<OwnedSemaphorePermit>), IngressError> {
        let limit = self.config.max_body_bytes;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(IngressError::PayloadTooLarge(limit));
        }
        let (parts, body) = req.into_parts();
        let host = guest_host(parts.headers.get(HOST))?;
        let url = match parts.uri.query() {
            Some(query) => format!("http://{host}{rest}?{query}"),
            None => format!("http://{host}{rest}"),
        };
        let mut headers = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            let value = std::str::from_utf8(value.as_bytes()).map_err(|_| {
                IngressError::BadRequest(format!("header {name} is not valid UTF-8"))
            })?;
            headers.push((name.as_str().to_string(), value.to_string()));
        }
        let timeout = self.config.body_timeout;
        let (body, permit) = tokio::time::timeout(timeout, self.read_body(body, limit))
            .await
            .map_err(|_| IngressError::BodyTimeout(timeout))??;
        let request = Request {
            method: parts.method.as_str().to_string(),
            url,
            headers,
            body,
        };
        Ok((request, permit))
    }
}

/// The authority of the URL the guest sees: the request's `Host` header if it is a plain
/// `host[:port]`, `localhost` if there is none. Anything else (a path, query, fragment or
/// user info in it, say `x/reset?`) would change the path or query the guest parses out of
/// the URL, so it is refused.
fn guest_host(header: Option<&HeaderValue>) -> Result<String, IngressError> {
    let Some(value) = header else {
        return Ok("localhost".into());
    };
    let invalid = || IngressError::BadRequest("the Host header is not a valid host[:port]".into());
    let text = value.to_str().map_err(|_| invalid())?;
    if text.is_empty() {
        return Ok("localhost".into());
    }
    let authority: hyper::http::uri::Authority = text.parse().map_err(|_| invalid())?;
    let port = text.get(authority.host().len()..).unwrap_or("/");
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if authority.as_str() != text || text.contains('@') || !port_ok {
        return Err(invalid());
    }
    Ok(text.to_string())
}

/// Converts the guest's response; a response hyper cannot send becomes a 500 that says why.
fn to_http(response: Response) -> HttpResponse {
    let invalid = |why: String| {
        tracing::warn!("object sent an invalid response: {why}");
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "object-invalid-response",
            &format!("the object sent an invalid response: {why}"),
        )
    };
    let status = match StatusCode::from_u16(response.status) {
        Ok(s) if (100..=599).contains(&response.status) && !s.is_informational() => s,
        _ => return invalid(format!("status {}", response.status)),
    };
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return invalid(format!("header name {name:?}"));
        };
        // hyper computes framing from the body.
        if name == CONTENT_LENGTH || name == hyper::header::TRANSFER_ENCODING {
            continue;
        }
        let Ok(value) = HeaderValue::from_str(&value) else {
            return invalid(format!("value of header {name}"));
        };
        headers.append(name, value);
    }
    out
}

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    let mut out = hyper::Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = status;
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

fn error_response(err: &IngressError) -> HttpResponse {
    // Storage errors name files of the host: they go to the log (see `App::handle`), not to
    // clients.
    if let IngressError::Dispatch(DispatchError::Event(EventError::Storage(_))) = err {
        return plain(
            err.status(),
            err.kind(),
            "storage failure: the host could not read or write the object's database (the \
             host log says why)",
        );
    }
    plain(err.status(), err.kind(), &err.to_string())
}

fn plain(status: StatusCode, kind: &'static str, message: &str) -> HttpResponse {
    let mut out = hyper::Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-dohost-error", HeaderValue::from_static(kind));
    out
}

/// A client connection whose writes fail once the client has taken no bytes for `limit`: a
/// client that stops reading its response (a full receive window) would otherwise hold its
/// connection, its slot under `--max-connections` and the response in memory for good
/// (hyper's timers run only between requests).
struct StallLimit<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits for the client.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a write (or flush) of the inner stream: pending arms the stall timer, which
    /// fails the write once it fires; any progress disarms it.
    fn check<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took no response bytes for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_status(path: &str) -> StatusCode {
        IngressError::from(route(path).unwrap_err()).status()
    }

    /// A Host header can only name the host the guest sees in its URL, never change the
    /// path or query after it.
    #[test]
    fn host_header_is_a_plain_authority() {
        let host = |h: &str| guest_host(Some(&HeaderValue::from_str(h).unwrap()));
        assert_eq!(guest_host(None).unwrap(), "localhost");
        assert_eq!(host("").unwrap(), "localhost");
        for ok in [
            "example.com",
            "example.com:8787",
            "127.0.0.1:80",
            "[::1]:8787",
            "a-b.c",
        ] {
            assert_eq!(host(ok).unwrap(), ok);
        }
        for bad in [
            "x/reset?", "h/reset#", "h?a=b", "h#f", "user@h", "u:p@h", "h:port", "h h", "/",
            "h:80/x",
        ] {
            let err = host(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    /// The routes themselves are tested in `dohost-wire`; here, the statuses they map to.
    #[test]
    fn route_errors_keep_their_status() {
        for path in ["/", "/_x", "/_"] {
            assert_eq!(route_status(path), StatusCode::NOT_FOUND, "{path}");
        }
        for path in ["/..", "/%2e%2e/x", "/a%00b", "/%zz", "/%ff", "/_id/"] {
            assert_eq!(route_status(path), StatusCode::BAD_REQUEST, "{path}");
        }
        let long = format!("/{}", "n".repeat(300));
        let err = IngressError::from(route(&long).unwrap_err());
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.to_string(), "object names are 1 to 256 bytes; got 300");
    }
}
