//! The guest's outbound `fetch` interface.
//!
//! Outbound HTTP is not enabled in this version of the host: every call returns the typed
//! `not-enabled` error, so guests can handle it now and work unchanged once it is.

use crate::bindings::fetch::{self, FetchError};
use crate::bindings::http_types::{Request, Response};
use crate::object::ObjectState;

impl fetch::Host for ObjectState {
    fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, FetchError>> {
        Ok(Err(FetchError::NotEnabled(format!(
            "outbound fetch is not enabled on this host (request to {})",
            request.url
        ))))
    }
}

/// Outbound policy for `wasi:http/outgoing-handler`, which standard HTTP clients in guests
/// (the JavaScript global `fetch`, for one) use. Same rule as the `fetch` interface: denied
/// until outbound fetch is enabled, with the typed `HTTP-request-denied` error.
#[derive(Default)]
pub struct OutboundHttp;

impl wasmtime_wasi_http::WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: hyper::http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        hyper::http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::debug!(uri = %request.uri(), "outbound wasi:http request denied: fetch is not enabled");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
