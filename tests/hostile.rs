//! Hostile guests and clients: isolation of instance memory, malformed and slow clients, many
//! connections. The host must answer clearly, stay up and keep serving everyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Host, guest};

#[test]
fn a_fresh_instance_never_sees_memory_of_a_previous_one() {
    let data = tempfile::tempdir().unwrap();
    // A small pool, so instances must reuse the same slots.
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--max-instances", "2"],
    );
    let mut client = host.client();
    for round in 0..6 {
        // Fill 32 MiB with 0x01, then trap: the instance is discarded and its slot freed.
        let fill = client.post_json(
            &format!("/writer-{round}/run"),
            &json!({ "steps": [{ "op": "alloc", "bytes": 32 << 20 }, { "op": "trap" }] }),
        );
        assert_eq!(fill.status, 500);
        let probe = client.post_json(
            &format!("/reader-{round}/run"),
            &json!({ "steps": [{ "op": "probe", "bytes": 48 << 20 }] }),
        );
        assert_eq!(probe.status, 200, "{}", probe.text());
        assert_eq!(
            probe.json()["results"][0]["ok"],
            0,
            "round {round}: stale bytes visible"
        );
    }
}

#[test]
fn malformed_http_gets_a_4xx_and_the_host_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &[]);
    for garbage in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /c/value HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
        b"POST /c/increment HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
    ] {
        let answer = support::raw_exchange(host.addr, garbage);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{:?} -> {answer:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    // Both Content-Length and Transfer-Encoding (request smuggling): the chunked framing wins
    // and the connection is closed after the response (RFC 9112, section 6.3).
    let both = support::raw_exchange(
        host.addr,
        b"GET /c/value HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(
        both.starts_with("HTTP/1.1 4") || both.contains("connection: close"),
        "{both}"
    );
    // A Host header that would change the path the object sees (`/reset` instead of
    // `/increment`) is refused, and the object is not touched.
    for evil in ["x/reset?", "h/reset#", "u@h"] {
        let request =
            format!("POST /c/increment HTTP/1.1\r\nhost: {evil}\r\ncontent-length: 0\r\n\r\n");
        let answer = support::raw_exchange(host.addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400"), "{evil}: {answer}");
    }
    let value = host.client().get("/c/value");
    assert_eq!(value.status, 200);
    assert_eq!(value.json(), json!({ "value": 0 }));
}

#[test]
fn slow_and_idle_clients_do_not_block_others() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &[]);
    // 200 connections that send half a request head and then nothing (slowloris).
    let stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(host.addr).unwrap();
            s.write_all(b"GET /c/value HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // A request body that never finishes, to an object.
    let mut slow_body = TcpStream::connect(host.addr).unwrap();
    slow_body
        .write_all(b"POST /c/increment HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(host.client().get("/c/value").status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The object that is waiting for a slow body is not blocked either: bodies are read
    // before an event is queued.
    assert_eq!(host.client().post("/c/increment", "{}").status, 200);
    drop(stalled);
    let mut buf = [0u8; 16];
    slow_body
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _ = slow_body.read(&mut buf);
}

#[test]
fn many_concurrent_connections_are_served() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &[]);
    let addr = host.addr;
    let threads: Vec<_> = (0..50)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = support::Client::connect(addr);
                for _ in 0..10 {
                    assert_eq!(
                        client.post(&format!("/c{}/increment", t % 5), "{}").status,
                        200
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: i64 = (0..5)
        .map(|o| {
            host.client().get(&format!("/c{o}/value")).json()["value"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 500);
}

#[test]
fn other_objects_keep_answering_during_an_attack() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &["--cpu-limit", "2s"]);
    let addr = host.addr;
    let bomb =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    // Four attackers: an infinite loop, a memory bomb, a CTE bomb, deep recursion; repeated.
    let attacks = [
        json!([{ "op": "spin", "ms": 0 }]),
        json!([{ "op": "alloc", "bytes": 1u64 << 30 }]),
        json!([{ "op": "exec", "query": bomb }]),
        json!([{ "op": "recurse", "depth": 100_000_000u64 }]),
    ];
    let attackers: Vec<_> = attacks
        .into_iter()
        .enumerate()
        .map(|(i, steps)| {
            std::thread::spawn(move || {
                let mut client = support::Client::connect(addr);
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    let r =
                        client.post_json(&format!("/attacker-{i}/run"), &json!({ "steps": steps }));
                    assert!(r.status == 200 || r.status == 500, "{}", r.text());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut client = host.client();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let started = Instant::now();
        let r = client.post_json(
            "/bystander/run",
            &json!({ "steps": [{ "op": "exec", "query": "SELECT 1" }] }),
        );
        assert_eq!(r.status, 200);
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    for a in attackers {
        a.join().unwrap();
    }
    latencies.sort();
    let p90 = latencies[(latencies.len() - 1) * 9 / 10];
    println!(
        "bystander: {} requests during the attack, p50 {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        p90,
        latencies.last().unwrap()
    );
    // Not a speed goal, a liveness bound: nobody waits for the attackers' 2 s CPU limit. (A
    // bystander queued behind them would wait that long nearly every time; p90, not p99, so
    // that two stalls of a loaded machine among some 200 requests do not fail the test.)
    assert!(p90 < Duration::from_secs(2), "p90 {p90:?}");
}

#[test]
fn a_huge_result_set_is_refused_and_the_object_keeps_working() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    // About 200 MB of rows, over the 64 MiB a result may hold: refused as it grows.
    let huge = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) \
                SELECT x, zeroblob(1000) FROM c";
    let started = Instant::now();
    let results = host
        .client()
        .run(
            "greedy",
            json!([
                { "op": "exec", "query": huge },
                { "op": "exec", "query": "SELECT 42" },
            ]),
        )
        .results();
    assert_eq!(results[0]["err"]["kind"], "too-big", "{}", results[0]);
    assert_eq!(
        results[1]["ok"]["rows"][0][0]["value"], "42",
        "the event goes on"
    );
    println!("refused in {:?}", started.elapsed());
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", host.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 512 * 1024,
        "peak RSS {rss_kib} KiB: the result was not cut off"
    );
}

#[test]
fn guests_cannot_reach_host_files_environment_or_network() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("sandbox-probe"), data.path(), &[]);
    // Another object's database and the host key, by absolute path, as targets.
    host.client().post_json("/other/", &json!({ "paths": [] }));
    let other_db = support::object_databases(data.path())
        .pop()
        .expect("the other object's database exists");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let paths = [
        "/".to_string(),
        ".".to_string(),
        "..".to_string(),
        "/etc/passwd".to_string(),
        "/proc/self/environ".to_string(),
        "/tmp".to_string(),
        data.path().display().to_string(),
        data.path().join("id.key").display().to_string(),
        other_db.display().to_string(),
    ];
    let r = host.client().post_json(
        "/probe/",
        &json!({ "paths": paths, "connect": listener.local_addr().unwrap().to_string() }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    println!("{seen:#}");
    assert_eq!(
        seen["env"],
        json!([]),
        "no environment variables reach a guest"
    );
    assert_eq!(seen["args"], json!([]), "no arguments reach a guest");
    // wasi-libc answers "/" for the working directory without asking the host; that "/" is
    // not a directory the guest can open (listing it fails below).
    let cwd = seen["cwd"].as_str().unwrap();
    assert!(cwd.starts_with("err") || cwd == "ok: /", "cwd: {cwd}");
    for attempt in ["read", "list", "write"] {
        for path in &paths {
            let outcome = seen[attempt][path].as_str().unwrap();
            assert!(outcome.starts_with("err"), "{attempt} {path}: {outcome}");
        }
    }
    let connect = seen["connect"].as_str().unwrap();
    assert!(connect.starts_with("err"), "connect: {connect}");
    assert!(
        listener.accept().is_err(),
        "no connection reached the listener"
    );
    // Nothing was written anywhere the probe tried.
    assert!(!std::path::Path::new("/tmp/probe-was-here").exists());
    assert!(!data.path().join("probe-was-here").exists());
}

/// A body that does not arrive in time gets 408, and the object never sees the request.
#[test]
fn a_body_that_never_arrives_times_out() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &["--body-timeout", "1s"]);
    let started = Instant::now();
    let answer = support::raw_exchange(
        host.addr,
        b"POST /c/increment HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-dohost-error: request-timeout"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(host.client().get("/c/value").json(), json!({ "value": 0 }));
}

/// Bodies held across the host are capped: past the budget a request with a body gets 503
/// at once (requests without one still pass), and the budget comes back when the holder ends.
/// A body counts with the bytes received, not the length it declares.
#[test]
fn buffered_bodies_have_a_host_wide_budget() {
    let data = tempfile::tempdir().unwrap();
    let args = ["--max-body", "64KiB", "--max-buffered-bodies", "64KiB"];
    let host = Host::start(&guest("counter"), data.path(), &args);
    // Declaring the whole budget takes none of it (no body byte sent, so none held: a byte
    // held here could still be held when the next request arrives, and make it fail).
    let mut declared = TcpStream::connect(host.addr).unwrap();
    declared
        .write_all(b"POST /c/increment HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(host.client().post("/probe/increment", "{}").status, 200);
    drop(declared);
    // Sending all but its last byte takes all of it. A probe whose byte is held while the
    // holder's last KiB arrives turns the holder away instead (503): then send a new holder.
    let send_holder = || {
        let mut holder = TcpStream::connect(host.addr).unwrap();
        holder
            .write_all(b"POST /c/increment HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n")
            .unwrap();
        holder.write_all(&[b' '; 65535]).unwrap();
        holder
    };
    let mut holder = send_holder();
    // Once the host holds the holder's bytes (probing another object meanwhile):
    let deadline = Instant::now() + Duration::from_secs(20);
    let full = loop {
        let answer = support::raw_exchange(
            host.addr,
            b"POST /probe/increment HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
        );
        if !answer.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break answer;
        }
        if support::answered(&holder) {
            holder = send_holder();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(full.starts_with("HTTP/1.1 503"), "{full}");
    assert!(full.contains("x-dohost-error: overloaded"), "{full}");
    assert_eq!(host.client().get("/c/value").status, 200);
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = host.client().post("/c/increment", "{}").status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "the budget never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(host.client().get("/c/value").json(), json!({ "value": 1 }));
}

/// Past --max-connections the host stops accepting until a connection closes; the waiting
/// client is then served.
#[test]
fn connections_past_the_cap_wait() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &["--max-connections", "2"]);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(host.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(host.addr).unwrap();
    third
        .write_all(b"GET /c/value HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(third.read(&mut buf).is_err(), "served past the cap");
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
