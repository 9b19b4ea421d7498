//! A small HTTP server on 127.0.0.1 that fetch cases call (`${upstream}` in cases).
//!
//! Routes: `/echo` (the request as JSON: method, path, query, headers, body as hex),
//! `/bytes?n=N` (N bytes of `x`, streamed), `/slow?ms=N` (answers after N ms),
//! `/binary` (bytes 0..=255), `/status?code=N`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        service_fn(|req| async move { Ok::<_, Infallible>(respond(req).await) });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn full(status: u16, body: impl Into<Bytes>) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    response
}

async fn respond(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    match req.uri().path() {
        "/echo" => {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let headers = crate::fetch::header_pairs(req.headers());
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let json = serde_json::json!({
                "method": method, "path": path, "query": query,
                "headers": headers, "body": hex::encode(&body),
            });
            let mut response = full(200, json.to_string());
            response
                .headers_mut()
                .insert("x-upstream", hyper::header::HeaderValue::from_static("yes"));
            response
        }
        "/bytes" => {
            let remaining = param(&query, "n").unwrap_or(0);
            hyper::Response::new(
                Repeated {
                    remaining,
                    chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                }
                .boxed(),
            )
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(param(&query, "ms").unwrap_or(0))).await;
            full(200, "slow")
        }
        "/binary" => full(200, (0..=255u8).collect::<Vec<u8>>()),
        "/status" => full(param(&query, "code").unwrap_or(200) as u16, ""),
        _ => full(404, "no such upstream route"),
    }
}

/// `remaining` bytes of `x`, streamed in chunks: memory stays flat whatever the size.
struct Repeated {
    remaining: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Repeated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}
