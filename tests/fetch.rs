//! Outbound fetch against a local HTTP server this test starts on 127.0.0.1, through the real
//! binary and the conformance object's `fetch` op.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{Value as Json, json};
use support::{Host, guest};

/// A tiny threaded HTTP/1.1 server: `/echo` (request as JSON), `/slow` (answers after 5 s),
/// `/huge` (an endless body), anything else 404.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        if n.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().unwrap();
        }
        headers.push(json!([n.to_ascii_lowercase(), v.trim()]));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut out = stream;
    match path.as_str() {
        "/echo" => {
            let reply =
                json!({ "method": method, "headers": headers, "body": hex(&body) }).to_string();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nx-upstream: yes\r\ncontent-length: {}\r\n\r\n{reply}",
                reply.len()
            );
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(5));
            let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
        }
        "/huge" => {
            let _ = write!(out, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            // Up to 2 GiB: far past any cap; stops when the host hangs up.
            for _ in 0..32 * 1024 {
                if write!(out, "{:x}\r\n", chunk.len()).is_err()
                    || out.write_all(&chunk).is_err()
                    || out.write_all(b"\r\n").is_err()
                {
                    return;
                }
            }
        }
        _ => {
            let _ = write!(out, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn fetch(host: &Host, step: Json) -> Json {
    let mut step = step;
    step["op"] = json!("fetch");
    let response = host
        .client()
        .post_json("/f/run", &json!({ "steps": [step] }));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["results"][0].clone()
}

#[test]
fn get_and_post_round_trip_headers_and_binary_bodies() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--fetch-allow-private"],
    );
    let get = fetch(&host, json!({ "url": format!("http://{up}/echo") }));
    assert_eq!(get["ok"]["status"], 200, "{get}");
    let echoed: Json = serde_json::from_slice(&unhex(get["ok"]["body"].as_str().unwrap())).unwrap();
    assert_eq!(echoed["method"], "GET");
    assert!(
        get["ok"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-upstream", "yes"]))
    );

    let binary = hex(&(0..=255u8).collect::<Vec<_>>());
    let post = fetch(
        &host,
        json!({ "url": format!("http://{up}/echo"), "method": "POST",
                "headers": [["x-token", "secret"], ["host", "other.example"]], "body": binary }),
    );
    let echoed: Json =
        serde_json::from_slice(&unhex(post["ok"]["body"].as_str().unwrap())).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], binary);
    let headers = echoed["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-token", "secret"])));
    // The Host header is always the URL's: an object cannot aim at another site served at an
    // allowed address.
    let hosts: Vec<&Json> = headers.iter().filter(|h| h[0] == "host").collect();
    assert_eq!(hosts, [&json!(["host", up.to_string()])], "{headers:?}");
}

#[test]
fn loopback_is_denied_by_default_and_allowed_by_flag_or_allow_list() {
    let up = upstream();
    let url = format!("http://{up}/echo");
    let data = tempfile::tempdir().unwrap();
    let component = guest("conformance");

    let host = Host::start(&component, &data.path().join("a"), &[]);
    let denied = fetch(&host, json!({ "url": url }));
    assert_eq!(denied["err"]["kind"], "denied", "{denied}");
    assert!(
        denied["err"]["message"]
            .as_str()
            .unwrap()
            .contains("--fetch-allow-private")
    );
    drop(host);

    let host = Host::start(
        &component,
        &data.path().join("b"),
        &["--fetch-allow-private"],
    );
    assert_eq!(fetch(&host, json!({ "url": url }))["ok"]["status"], 200);
    drop(host);

    let allow = format!("127.0.0.1:{}", up.port());
    let host = Host::start(
        &component,
        &data.path().join("c"),
        &["--fetch-allow", &allow],
    );
    assert_eq!(fetch(&host, json!({ "url": url }))["ok"]["status"], 200);
    let other_port = fetch(
        &host,
        json!({ "url": format!("http://127.0.0.1:{}/", up.port() + 1) }),
    );
    assert_eq!(other_port["err"]["kind"], "denied");
}

#[test]
fn a_slow_server_hits_the_timeout() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--fetch-allow-private", "--fetch-timeout", "500ms"],
    );
    // The object live first, so the clock counts the fetch alone.
    fetch(&host, json!({ "url": format!("http://{up}/echo") }));
    let started = std::time::Instant::now();
    let slow = fetch(&host, json!({ "url": format!("http://{up}/slow") }));
    assert_eq!(slow["err"]["kind"], "timeout", "{slow}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn an_oversized_response_is_cut_and_memory_stays_bounded() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--fetch-allow-private", "--fetch-max-response", "1MiB"],
    );
    for _ in 0..3 {
        let huge = fetch(&host, json!({ "url": format!("http://{up}/huge") }));
        assert_eq!(huge["err"]["kind"], "too-large", "{huge}");
    }
    let rss_kib = host.rss_kib();
    assert!(
        rss_kib < 256 * 1024,
        "dohost uses {rss_kib} KiB after cut-off fetches"
    );
}

#[test]
fn proxy_cache_serves_from_its_database_within_the_ttl() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("proxy-cache"),
        data.path(),
        &["--fetch-allow-private"],
    );
    let path = format!("/eu/?url=http://{up}/echo&ttl=60");
    let first = host.client().get(&path);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-cache"), Some("miss"));
    let second = host.client().get(&path);
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(second.body, first.body, "the cached body is the upstream's");
    // Another cache object has its own database.
    assert_eq!(
        host.client()
            .get(&format!("/us/?url=http://{up}/echo"))
            .header("x-cache"),
        Some("miss")
    );
    // ttl=0 always refetches; upstream failures become 502.
    assert_eq!(
        host.client()
            .get(&format!("/eu/?url=http://{up}/echo&ttl=0"))
            .header("x-cache"),
        Some("miss")
    );
    // Nothing listens on port 1 of loopback: the connection is refused.
    assert_eq!(
        host.client().get("/eu/?url=http://127.0.0.1:1/").status,
        502
    );
}
