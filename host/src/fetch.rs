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
