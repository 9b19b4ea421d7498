//! Outbound fetch: the guest's `fetch` interface and `wasi:http/outgoing-handler` (which
//! standard clients such as the JavaScript global `fetch` use), both under one
//! [`FetchPolicy`]: allow-list, no private addresses unless allowed (checked after DNS), a
//! timeout per request, a response size cap and a cap on concurrent fetches per object.
//!
//! An object waiting on a fetch is still inside its event: its other events queue behind it
//! (the input gate holds), so a slow upstream slows only that object.

mod client;
mod policy;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::policy::{FetchPolicy, check_allow_entry, is_public};
use crate::bindings::fetch::{self, FetchError};
use crate::bindings::http_types::{Request, Response};
use crate::logs::LogOwner;
use crate::metrics::Metrics;
use crate::object::ObjectState;

/// Why a fetch failed, before it is mapped to the guest's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailure {
    #[error("outbound fetch is not enabled on this host")]
    NotEnabled,
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Dns(String),
    #[error("{0}")]
    Connect(String),
    #[error("no complete response within {0:?}")]
    Timeout(std::time::Duration),
    /// Timed out waiting for one of the object's fetch slots: a timeout, with the reason.
    #[error("{0}")]
    NoSlot(String),
    #[error("the response body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

impl From<FetchFailure> for FetchError {
    fn from(f: FetchFailure) -> Self {
        let message = f.to_string();
        match f {
            FetchFailure::NotEnabled => FetchError::NotEnabled(message),
            FetchFailure::Denied(_) => FetchError::Denied(message),
            FetchFailure::InvalidRequest(_) => FetchError::InvalidRequest(message),
            FetchFailure::Dns(_) => FetchError::Dns(message),
            FetchFailure::Connect(_) => FetchError::Connect(message),
            FetchFailure::Timeout(_) | FetchFailure::NoSlot(_) => FetchError::Timeout(message),
            FetchFailure::TooLarge(_) => FetchError::TooLarge(message),
            FetchFailure::Other(_) => FetchError::Other(message),
        }
    }
}

impl From<FetchFailure> for wasmtime_wasi_http::Error {
    fn from(f: FetchFailure) -> Self {
        use wasmtime_wasi_http::Error as E;
        match f {
            FetchFailure::NotEnabled | FetchFailure::Denied(_) => E::HttpRequestDenied,
            FetchFailure::InvalidRequest(_) => E::HttpRequestUriInvalid,
            FetchFailure::Dns(_) => E::DestinationNotFound,
            FetchFailure::Connect(_) => E::ConnectionRefused,
            FetchFailure::Timeout(_) | FetchFailure::NoSlot(_) => E::HttpResponseTimeout,
            FetchFailure::TooLarge(n) => E::HttpResponseBodySize(Some(n as u64)),
            FetchFailure::Other(m) => E::InternalError(Some(m)),
        }
    }
}

/// An object's outbound HTTP: the policy, its concurrency permits and the host metrics.
#[derive(Clone)]
pub struct OutboundHttp {
    policy: Arc<FetchPolicy>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// The object the instance is bound to: an instance started ahead sends nothing before it
    /// is bound (its start code would make requests no object asked for).
    owner: Option<Arc<LogOwner>>,
}

impl OutboundHttp {
    pub fn new(policy: Arc<FetchPolicy>, metrics: Arc<Metrics>) -> Self {
        let permits = Arc::new(Semaphore::new(policy.max_concurrent.max(1)));
        Self {
            policy,
            permits,
            metrics,
            owner: None,
        }
    }

    /// Refuses requests (and notes them) while `owner` is not bound to an object.
    pub fn owned_by(mut self, owner: Arc<LogOwner>) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Fails if the instance is not yet bound to an object (and notes it).
    fn check_bound(&self) -> Result<(), FetchFailure> {
        match &self.owner {
            Some(owner) if !owner.is_bound() => {
                owner.note_unbound_use();
                Err(FetchFailure::Other(
                    "no outbound requests while an instance starts ahead of its object".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// One of the object's fetch slots, waiting for one until `deadline` (the request's own:
    /// the wait counts against its timeout). A `wasi:http` response holds its slot until its
    /// body is read or dropped, so a guest that keeps unread responses could otherwise wait
    /// here forever, its event with it.
    async fn permit(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, FetchFailure> {
        match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Ok(permit) => permit.map_err(|_| FetchFailure::Other("fetch permits closed".into())),
            Err(_) => Err(FetchFailure::NoSlot(format!(
                "no fetch slot came free within {:?}: this object already has {} requests in \
                 flight (an unread wasi:http response body holds its slot until it is read or \
                 dropped)",
                self.policy.timeout, self.policy.max_concurrent
            ))),
        }
    }

    /// The guest `fetch` interface: the whole response, body included.
    pub async fn fetch(&self, request: Request) -> Result<Response, FetchFailure> {
        self.check_bound()?;
        let deadline = tokio::time::Instant::now() + self.policy.timeout;
        let _permit = self.permit(deadline).await?;
        let started = Instant::now();
        let policy = self.policy.clone();
        let outcome = tokio::time::timeout_at(deadline, async {
            let response = client::send(&policy, to_hyper(request)?).await?;
            let status = response.status().as_u16();
            let headers = header_pairs(response.headers());
            let body = match Limited::new(response.into_body(), policy.max_response_bytes)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes().to_vec(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(FetchFailure::TooLarge(policy.max_response_bytes));
                }
                Err(e) => return Err(FetchFailure::Connect(format!("reading the response: {e}"))),
            };
            Ok(Response {
                status,
                headers,
                body,
            })
        })
        .await
        .unwrap_or(Err(FetchFailure::Timeout(policy.timeout)));
        self.record(started, &outcome.as_ref().map(|r| r.body.len()));
        outcome
    }

    fn record(&self, started: Instant, outcome: &Result<usize, &FetchFailure>) {
        let m = &self.metrics;
        m.fetch_seconds.observe(started.elapsed());
        match outcome {
            Ok(bytes) => {
                m.fetch_ok.fetch_add(1, Ordering::Relaxed);
                m.fetch_bytes.fetch_add(*bytes as u64, Ordering::Relaxed);
            }
            Err(FetchFailure::Denied(_) | FetchFailure::NotEnabled) => {
                m.fetch_denied.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                m.fetch_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Response headers as the WIT `headers` list: names as received (lower-case), values as text
/// (bytes that are not UTF-8 replaced).
pub fn header_pairs(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn to_hyper(request: Request) -> Result<hyper::Request<Full<Bytes>>, FetchFailure> {
    let invalid = |what: String| FetchFailure::InvalidRequest(what);
    let method = hyper::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| invalid(format!("invalid method {:?}", request.method)))?;
    let uri: hyper::Uri = request
        .url
        .parse()
        .map_err(|e| invalid(format!("invalid URL {:?}: {e}", request.url)))?;
    let mut out = hyper::Request::new(Full::new(Bytes::from(request.body)));
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    for (name, value) in request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        out.headers_mut().append(name, value);
    }
    Ok(out)
}

impl fetch::Host for ObjectState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, FetchError>> {
        let outbound = self.outbound().clone();
        Ok(outbound.fetch(request).await.map_err(FetchError::from))
    }
}

type WasiError = wasmtime_wasi_http::Error;
type IoFuture = Box<dyn Future<Output = Result<(), WasiError>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: hyper::http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        hyper::http::Response<wasmtime_wasi_http::WasiBody>,
                        IoFuture,
                    ),
                    WasiError,
                >,
            > + Send,
    > {
        let this = self.clone();
        Box::new(async move {
            this.check_bound()?;
            let policy = this.policy.clone();
            let deadline = tokio::time::Instant::now() + policy.timeout;
            let permit = this.permit(deadline).await?;
            let started = Instant::now();
            let sent = tokio::time::timeout_at(deadline, client::send(&policy, request))
                .await
                .unwrap_or(Err(FetchFailure::Timeout(policy.timeout)));
            let response = match sent {
                Ok(response) => response,
                Err(failure) => {
                    tracing::debug!("outbound wasi:http request failed: {failure}");
                    this.record(started, &Err(&failure));
                    return Err(failure.into());
                }
            };
            this.record(started, &Ok(0));
            let response = response.map(|incoming| {
                CappedBody {
                    inner: incoming,
                    remaining: policy.max_response_bytes,
                    limit: policy.max_response_bytes,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    metrics: this.metrics.clone(),
                    _permit: permit,
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// A response body for `wasi:http` that enforces the size cap and the request deadline and
/// holds the object's fetch permit until it is consumed or dropped.
struct CappedBody {
    inner: Incoming,
    remaining: usize,
    limit: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = WasiError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > self.remaining {
                        return Poll::Ready(Some(Err(FetchFailure::TooLarge(self.limit).into())));
                    }
                    self.remaining -= data.len();
                    self.metrics
                        .fetch_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(WasiError::InternalError(Some(e.to_string())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(WasiError::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch that finds every one of its object's slots held (unread `wasi:http` response
    /// bodies, say) fails once its own timeout has passed, rather than waiting forever.
    #[tokio::test]
    async fn a_fetch_waits_for_a_slot_only_within_its_timeout() {
        let policy = FetchPolicy {
            timeout: std::time::Duration::from_millis(200),
            max_concurrent: 1,
            ..FetchPolicy::default()
        };
        let outbound = OutboundHttp::new(Arc::new(policy), Arc::new(Metrics::default()));
        let _held = outbound.permits.clone().acquire_owned().await.unwrap();
        let started = Instant::now();
        let request = Request {
            method: "GET".into(),
            url: "http://example.com/".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let failure = outbound.fetch(request).await.expect_err("no slot");
        assert!(
            failure.to_string().contains("no fetch slot came free"),
            "{failure}"
        );
        assert!(
            matches!(FetchError::from(failure), FetchError::Timeout(_)),
            "a timeout for the guest"
        );
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(200)
                && waited < std::time::Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
