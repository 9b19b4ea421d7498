//! The outbound HTTP/1.1 client: policy-checked connect (TCP to a checked address, TLS with
//! the bundled web PKI roots for https), one connection per request.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hyper::body::{Body, Incoming};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use super::FetchFailure;
use super::policy::FetchPolicy;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

fn tls() -> TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        Arc::new(config.unwrap_or_else(|_| {
            // Cannot happen with ring's default provider; keep a working client regardless.
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }))
    });
    TlsConnector::from(config.clone())
}

/// Sends `request` (absolute URI) under `policy` and returns the response head; the body is
/// read by the caller. The caller applies the overall timeout.
pub async fn send<B>(
    policy: &FetchPolicy,
    mut request: Request<B>,
) -> Result<Response<Incoming>, FetchFailure>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let uri = request.uri().clone();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => {
            return Err(FetchFailure::InvalidRequest(format!(
                "unsupported URL scheme {:?}: use http or https",
                other.unwrap_or("")
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| FetchFailure::InvalidRequest(format!("no host in {uri}")))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs = policy.resolve(&host, port).await?;
    let tcp = connect_any(&addrs).await?;
    let stream: Box<dyn Stream> = if https {
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| FetchFailure::InvalidRequest(format!("{host}: {e}")))?;
        Box::new(
            tls()
                .connect(name, tcp)
                .await
                .map_err(|e| FetchFailure::Connect(format!("TLS with {host}: {e}")))?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| FetchFailure::Connect(format!("{host}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("outbound connection ended: {e}");
        }
    });
    // Always the URL's host (and port), whatever the object set: a Host header of its own
    // would reach other sites served at an allowed address (past the allow-list).
    let authority = match uri.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    request.headers_mut().remove(HOST);
    if let Ok(value) = HeaderValue::from_str(&authority) {
        request.headers_mut().insert(HOST, value);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() =
        Uri::try_from(path).map_err(|e| FetchFailure::InvalidRequest(e.to_string()))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| FetchFailure::Connect(format!("{host}: {e}")))
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, FetchFailure> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(FetchFailure::Connect(
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}
