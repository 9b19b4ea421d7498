//! Per-object limits, hibernation and the compiled-component cache, each broken on purpose
//! against the real binary.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Host, count_rows, exec, guest, metric};

#[test]
fn memory_limit_fails_the_event_and_nothing_else() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--memory-limit", "64MiB"],
    );
    let mut client = host.client();
    client
        .run(
            "m",
            json!([exec("CREATE TABLE t (v)"), exec("INSERT INTO t VALUES (1)")]),
        )
        .results();
    client
        .run("other", json!([exec("CREATE TABLE t (v)")]))
        .results();

    let response = client.run(
        "m",
        json!([exec("INSERT INTO t VALUES (2)"), { "op": "alloc", "bytes": 100_000_000 }]),
    );
    assert_eq!(response.status, 500);
    assert_eq!(response.header("x-dohost-error"), Some("memory-limit"));
    assert!(
        response.text().contains("memory limit exceeded"),
        "{}",
        response.text()
    );
    assert!(
        response.text().contains(&(64 << 20).to_string()),
        "names the limit: {}",
        response.text()
    );

    assert_eq!(
        count_rows(&host, "m", "t"),
        1,
        "committed data intact, the event's insert rolled back"
    );
    assert_eq!(
        count_rows(&host, "other", "t"),
        0,
        "other objects unaffected"
    );
    // The next request gets a fresh instance, which can allocate again.
    client
        .run("m", json!([{ "op": "alloc", "bytes": 10_000_000 }]))
        .results();
}

#[test]
fn database_size_limit_gives_database_full_and_rolls_back_the_event() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--max-db-size", "256KiB"],
    );
    let mut client = host.client();
    client
        .run(
            "d",
            json!([
                exec("CREATE TABLE t (v)"),
                exec("INSERT INTO t VALUES (zeroblob(1000))")
            ]),
        )
        .results();
    let results = client
        .run(
            "d",
            json!([
                exec("INSERT INTO t VALUES (zeroblob(1000))"),
                exec("INSERT INTO t VALUES (zeroblob(400000))")
            ]),
        )
        .results();
    assert_eq!(results[1]["err"]["kind"], "database-full", "{results:?}");
    let message = results[1]["err"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("size limit"), "{message}");
    assert_eq!(
        count_rows(&host, "d", "t"),
        1,
        "the whole event rolled back, earlier data intact"
    );
    let size = client.run("d", json!([{ "op": "databaseSize" }])).results();
    assert!(size[0]["ok"].as_u64().unwrap() <= 256 * 1024);
}

#[test]
fn cpu_limit_stops_a_spinning_guest_while_others_keep_answering() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &["--cpu-limit", "1s"]);
    host.client()
        .run("calm", json!([exec("CREATE TABLE t (v)")]))
        .results();
    let addr = host.addr;
    let spinner = std::thread::spawn(move || {
        let started = Instant::now();
        let response = Client::connect(addr).run("spin", json!([{ "op": "spin", "ms": 0 }]));
        (response, started.elapsed())
    });
    // While "spin" burns its CPU budget, "calm" answers every request.
    std::thread::sleep(Duration::from_millis(100));
    let mut client = host.client();
    for _ in 0..10 {
        assert_eq!(count_rows(&host, "calm", "t"), 0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (response, elapsed) = spinner.join().unwrap();
    assert_eq!(response.status, 500, "{}", response.text());
    assert_eq!(response.header("x-dohost-error"), Some("cpu-limit"));
    assert!(
        response.text().contains("CPU time limit"),
        "{}",
        response.text()
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "stopped late: {elapsed:?}"
    );
    client
        .run("spin", json!([{ "op": "spin", "ms": 10 }]))
        .results();
}

#[test]
fn runaway_sql_is_stopped_by_the_cpu_limit() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--cpu-limit", "500ms"],
    );
    let mut client = host.client();
    let bomb =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let started = Instant::now();
    let results = client.run("q", json!([exec(bomb)])).results();
    assert_eq!(results[0]["err"]["kind"], "other", "{results:?}");
    assert!(
        results[0]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("CPU")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn stack_overflow_traps_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    let mut client = host.client();
    let response = client.run("s", json!([{ "op": "recurse", "depth": 100_000_000u64 }]));
    assert_eq!(response.status, 500);
    assert_eq!(response.header("x-dohost-error"), Some("object-trapped"));
    client
        .run("s", json!([{ "op": "recurse", "depth": 1000 }]))
        .results();
}

#[test]
fn oversized_headers_are_refused_and_the_host_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    let big = "x".repeat(100 * 1024);
    let request = format!("GET /h/x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    let answer = support::raw_exchange(host.addr, request.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(host.client().get("/h/x").status, 200);
}

/// A host of the conformance guest whose objects retire after `idle`, and its metrics address.
fn conformance_host_idle_after(data: &std::path::Path, idle: &str) -> (Host, SocketAddr) {
    let host = Host::start(
        &guest("conformance"),
        data,
        &["--idle-timeout", idle, "--admin", "127.0.0.1:0"],
    );
    let admin = host.admin_addr();
    (host, admin)
}

/// Waits (up to 15 s) until no object is live.
fn wait_until_no_object_is_live(admin: SocketAddr) {
    support::wait_for_live_objects(
        admin,
        |live| live == 0.0,
        Duration::from_secs(15),
        "no object live",
    );
}

#[test]
fn idle_objects_hibernate_and_wake_with_their_data() {
    let data = tempfile::tempdir().unwrap();
    let (host, admin) = conformance_host_idle_after(data.path(), "300ms");
    let mut client = host.client();
    client
        .run(
            "sleepy",
            json!([exec("CREATE TABLE t (v)"), exec("INSERT INTO t VALUES (1)")]),
        )
        .results();
    assert_eq!(metric(admin, "dohost_activations_total"), 1.0);
    wait_until_no_object_is_live(admin);
    assert!(
        metric(
            admin,
            "dohost_evictions_total{class=\"conformance\",reason=\"idle\"}"
        ) >= 1.0
    );
    assert_eq!(
        count_rows(&host, "sleepy", "t"),
        1,
        "woken from its database"
    );
    assert_eq!(
        metric(admin, "dohost_activations_total"),
        2.0,
        "a second cold start"
    );
    assert!(metric(admin, "dohost_activation_seconds_count") >= 2.0);
    assert!(metric(admin, "dohost_rows_written_total") >= 1.0);
}

#[test]
fn an_object_in_steady_use_outlives_its_idle_timeout() {
    // One request at a time: each finds the object idle and runs on the request's own thread,
    // not through the actor's queue. The idle timeout counts from the last of them. (Requests
    // 100 ms apart for 3 s against a 2 s timeout: a loaded machine may stall a while.)
    let data = tempfile::tempdir().unwrap();
    let (host, admin) = conformance_host_idle_after(data.path(), "2s");
    let mut client = host.client();
    client
        .run("steady", json!([exec("CREATE TABLE t (v)")]))
        .results();
    for i in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        client
            .run(
                "steady",
                json!([exec(&format!("INSERT INTO t VALUES ({i})"))]),
            )
            .results();
    }
    assert_eq!(
        metric(admin, "dohost_activations_total"),
        1.0,
        "one activation for 3 s of requests 100 ms apart"
    );
    assert_eq!(count_rows(&host, "steady", "t"), 30);
    wait_until_no_object_is_live(admin);
}

#[test]
fn the_live_object_cap_evicts_the_least_recently_used() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--max-instances", "4", "--admin", "127.0.0.1:0"],
    );
    let admin = host.admin_addr();
    let mut client = host.client();
    for i in 0..10 {
        client
            .run(
                &format!("o{i}"),
                json!([exec("CREATE TABLE t (v)"), exec("INSERT INTO t VALUES (1)")]),
            )
            .results();
    }
    // An evicted object's actor closes its database after it leaves the registry, so the
    // gauge reaches the cap a moment after the last request.
    support::wait_for_live_objects(
        admin,
        |live| live <= 4.0,
        Duration::from_secs(5),
        "at most 4 objects live",
    );
    assert!(
        metric(
            admin,
            "dohost_evictions_total{class=\"conformance\",reason=\"capacity\"}"
        ) >= 6.0
    );
    for i in 0..10 {
        assert_eq!(count_rows(&host, &format!("o{i}"), "t"), 1);
    }
}

#[test]
fn compiled_components_are_cached_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let component = guest("counter");
    // Its own cache directory (by default the tests share one).
    let cache = data.path().join("cache").display().to_string();
    let host = Host::start(&component, data.path(), &["--cache-dir", &cache]);
    assert!(host.log().contains("compiled component"), "{}", host.log());
    host.stop();
    let cached = support::files_under(&data.path().join("cache"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    let host = Host::start_with_log(&component, data.path(), &["--cache-dir", &cache], "debug");
    let log = host.log();
    assert!(
        log.contains("loaded compiled component from cache"),
        "{log}"
    );
    assert!(!log.contains("compiled component component="), "{log}");
}

#[test]
fn an_object_reactivated_while_its_evicted_instance_closes_sees_all_its_writes() {
    // One live object at a time: each round's request to a new object evicts `big` (unless
    // it is still finishing its last event: then the next round's does), whose actor then
    // closes its database (a checkpoint of megabytes) while the next request to `big` starts
    // a new actor. That one waits for the close (without holding a thread) and then sees
    // every acknowledged write. Rounds go on until such an overlap was seen (a close takes
    // milliseconds, the next request comes within one).
    let data = tempfile::tempdir().unwrap();
    let host = Host::start_with_log(
        &guest("conformance"),
        data.path(),
        &["--max-instances", "1"],
        "info,dohost::registry=debug",
    );
    let overlaps = || {
        host.log()
            .matches("waiting for the object's previous instance to close")
            .count()
    };
    let mut client = host.client();
    client
        .run("big", json!([exec("CREATE TABLE t (v BLOB)")]))
        .results();
    let mut rounds = 0;
    while rounds < 8 || (overlaps() == 0 && rounds < 40) {
        rounds += 1;
        let results = client
            .run(
                "big",
                json!([
                    exec("INSERT INTO t VALUES (randomblob(4000000))"),
                    exec("SELECT count(*) FROM t"),
                ]),
            )
            .results();
        assert_eq!(
            results[1]["ok"]["rows"][0][0]["value"],
            json!(rounds.to_string()),
            "round {rounds}: {results:?}"
        );
        client
            .run(
                &format!("other-{rounds}"),
                json!([exec("CREATE TABLE t (v)"), exec("INSERT INTO t VALUES (1)")]),
            )
            .results();
    }
    assert_eq!(count_rows(&host, "big", "t"), rounds);
    assert_eq!(count_rows(&host, "other-1", "t"), 1);
    assert!(
        overlaps() >= 1,
        "no activation overlapped a close in {rounds} rounds"
    );
}

#[test]
fn many_busy_objects_over_the_cap_all_get_served() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("game-room"), data.path(), &["--max-instances", "4"]);
    let addr = host.addr;
    // 16 connections at once over 200 rooms: more busy objects than the cap at any moment.
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for n in 0..25 {
                    let room = format!("r{}", (t * 25 + n) % 200);
                    let body = json!({ "playerId": format!("p{t}"), "name": "x" });
                    // A slot frees when an evicted object's instance is dropped; on a loaded
                    // machine an activation may wait longer than the host's 2 s for one, and
                    // is then told to try again (503 overloaded), which a client does.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let r = client.post_json(&format!("/{room}/join"), &body);
                        if r.status == 503
                            && r.header("x-dohost-error") == Some("overloaded")
                            && Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        assert_eq!(r.status, 200, "{room}: {}", r.text());
                        break;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A client socket to `addr` with a 4 KiB receive buffer, set before the connection so that
/// the kernel does not grow it: a response of megabytes fills it at once.
fn connect_with_small_receive_buffer(addr: SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_client_that_stops_reading_its_response_is_disconnected() {
    // Its connection would otherwise hold a slot under --max-connections, and the response
    // in memory, for good: writes that make no progress for --body-timeout end it.
    let data = tempfile::tempdir().unwrap();
    let host = Host::start_with_log(
        &guest("conformance"),
        data.path(),
        &["--body-timeout", "1s"],
        "info,dohost::ingress=debug",
    );
    let mut stalled = connect_with_small_receive_buffer(host.addr);
    let body = json!({ "steps": [exec("SELECT randomblob(8000000)")] }).to_string();
    let request = format!(
        "POST /big/run HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut stalled, request.as_bytes()).unwrap();
    let log = host.wait_for_log(|log| log.contains("took no response bytes"));
    assert!(log.contains("took no response bytes for 1s"), "{log}");
    // Everything else goes on.
    assert_eq!(host.client().get("/big/ping").status, 200);
    drop(stalled);
}
