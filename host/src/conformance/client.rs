//! A minimal HTTP/1.1 client for the runner (one connection per request, so that cases that
//! restart the host never reuse a dead connection).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long one request may take before the case fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub async fn send(addr: SocketAddr, request: &Request) -> anyhow::Result<Response> {
    tokio::time::timeout(REQUEST_TIMEOUT, send_inner(addr, request))
        .await
        .with_context(|| format!("{} {} timed out", request.method, request.path))?
}

async fn send_inner(addr: SocketAddr, request: &Request) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(&request.path)
        .header("host", addr.to_string());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let req = builder.body(Full::new(Bytes::from(request.body.clone())))?;
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    let headers = crate::fetch::header_pairs(response.headers());
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}
