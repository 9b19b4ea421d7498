//! Integration tests of the runtime core: the real `dohost` binary, real HTTP, real SQLite
//! files, guests built from source.

mod support;

use std::path::Path;

use serde_json::{Value as Json, json};
use support::{Client, Host, count_rows, exec, guest, object_databases};

#[test]
fn concurrent_joins_to_one_room_are_all_counted() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("game-room"), data.path(), &[]);
    support::check_game_room_concurrent_joins(&host);
}

#[test]
fn data_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let component = guest("game-room");
    let host = Host::start(&component, data.path(), &[]);
    for p in ["a", "b", "c"] {
        let response = host.client().post(
            "/room-1/join",
            &format!(r#"{{"playerId":"{p}","name":"N"}}"#),
        );
        assert_eq!(response.status, 200);
    }
    assert_eq!(host.stop(), Some(0), "graceful stop exits 0");
    assert_eq!(object_databases(data.path()).len(), 1);

    let host = Host::start(&component, data.path(), &[]);
    assert_eq!(
        host.client().get("/room-1/count").text(),
        r#"{"players":3}"#
    );
    assert!(host.log().contains("serving class game-room"));
}

#[test]
fn a_trap_after_writing_leaves_no_partial_rows() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    host.client()
        .run("t", vec![exec("CREATE TABLE items (x INTEGER)")])
        .results();

    for then in ["trap", "fail"] {
        let steps = json!({ "steps": [
            exec("INSERT INTO items VALUES (1)"),
            { "op": "alarmSet", "at": 4_102_444_800_000i64 },
            { "op": then },
        ]});
        let response = host.client().post_json("/t/run", &steps);
        assert_eq!(response.status, 500, "{then}: {}", response.text());
        let kind = if then == "trap" {
            "object-trapped"
        } else {
            "object-error"
        };
        assert_eq!(response.header("x-dohost-error"), Some(kind));
        assert_eq!(
            count_rows(&host, "t", "items"),
            0,
            "{then} rolled back the insert"
        );
        let alarm = host
            .client()
            .run("t", vec![json!({ "op": "alarmGet" })])
            .results();
        assert_eq!(alarm[0]["ok"], Json::Null, "{then} rolled back the alarm");
    }
    // The next request gets a fresh instance and works.
    host.client()
        .run("t", vec![exec("INSERT INTO items VALUES (2)")])
        .results();
    assert_eq!(count_rows(&host, "t", "items"), 1);
}

#[test]
fn names_map_to_separate_databases() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    let mut ids = Vec::new();
    for name in ["alpha", "beta", "alpha"] {
        let results = host
            .client()
            .run(
                name,
                vec![
                    exec("CREATE TABLE IF NOT EXISTS marks (who TEXT)"),
                    json!({ "op": "exec", "query": "INSERT INTO marks VALUES (?)",
                        "params": [{ "type": "text", "value": name }] }),
                    json!({ "op": "identity" }),
                ],
            )
            .results();
        let identity = &results[2]["ok"];
        assert_eq!(identity["name"], name);
        ids.push(identity["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[2], "the same name is the same object");
    assert_ne!(ids[0], ids[1], "different names are different objects");
    assert_eq!(count_rows(&host, "alpha", "marks"), 2);
    assert_eq!(count_rows(&host, "beta", "marks"), 1);

    let files = object_databases(data.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for id in &ids[..2] {
        let expected = Path::new(&id[..2]).join(id).join("db.sqlite3");
        assert!(files.contains(&expected), "{expected:?} not in {files:?}");
    }

    // The same object by ID sees the same rows and still knows its name.
    let response = host.client().post_json(
        &format!("/_id/{}/run", ids[1]),
        &json!({ "steps": [exec("SELECT who FROM marks"), { "op": "identity" }] }),
    );
    let results = response.json()["results"].clone();
    assert_eq!(results[0]["ok"]["rows"][0][0]["value"], "beta");
    assert_eq!(results[1]["ok"]["name"], "beta");

    // `dohost id` agrees with the running host.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["id", "--class", "conformance", "alpha", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&ids[0]));

    // Mint a unique ID; it is accepted, a forged one is not.
    let minted = host.client().post("/_new", "").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(host.client().get(&format!("/_id/{minted}/x")).status, 200);
    let mut forged = minted.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(host.client().get(&format!("/_id/{forged}/x")).status, 400);
}

#[test]
fn hostile_sql_gets_access_denied_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    host.client()
        .run(
            "h",
            vec![exec("CREATE TABLE t (x)"), exec("INSERT INTO t VALUES (1)")],
        )
        .results();
    let before = support::files_except_spares(data.path());
    let outside = data.path().join("stolen.db");
    let statements = [
        format!("ATTACH DATABASE '{}' AS stolen", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
        "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libc.so.6')".to_string(),
        "INSERT INTO _do_alarm (id, at) VALUES (0, 1)".to_string(),
        "UPDATE _do_meta SET value = 'x'".to_string(),
        "CREATE TABLE _do_evil (x)".to_string(),
        "PRAGMA journal_mode = DELETE".to_string(),
        "PRAGMA writable_schema = 1".to_string(),
        "BEGIN IMMEDIATE".to_string(),
    ];
    for sql in &statements {
        let results = host.client().run("h", vec![exec(sql)]).results();
        assert_eq!(
            results[0]["err"]["kind"], "access-denied",
            "{sql}: {}",
            results[0]
        );
    }
    assert!(!outside.exists());
    assert_eq!(
        support::files_except_spares(data.path()),
        before,
        "no file was created"
    );
    assert_eq!(count_rows(&host, "h", "t"), 1);
    let alarm = host
        .client()
        .run("h", vec![json!({ "op": "alarmGet" })])
        .results();
    assert_eq!(alarm[0]["ok"], Json::Null);
}

#[test]
fn traversal_and_malformed_ids_are_rejected() {
    let data = tempfile::tempdir().unwrap();
    let parent = data.path().to_path_buf();
    let data_dir = parent.join("data");
    let host = Host::start(&guest("conformance"), &data_dir, &[]);
    let before = support::files_except_spares(&parent);
    let long_name = "n".repeat(300);
    let upper = "A".repeat(64);
    let paths = [
        "/../x".to_string(),
        "/%2e%2e/x".to_string(),
        "/%2E%2E/%2e%2e/etc/passwd".to_string(),
        "/.".to_string(),
        "/a%00b/x".to_string(),
        "/%zz/x".to_string(),
        format!("/{long_name}/x"),
        "/_id/../x".to_string(),
        "/_id/%2e%2e/x".to_string(),
        "/_id/xyz/x".to_string(),
        format!("/_id/{upper}/x"),
        format!("/_id/{}/x", "0".repeat(64)),
        format!("/_id/{}/x", "0".repeat(65)),
        "/_private/x".to_string(),
        "/".to_string(),
    ];
    for path in &paths {
        let response = host.client().get(path);
        assert!(
            (400..500).contains(&response.status),
            "{path}: {} {}",
            response.status,
            response.text()
        );
        assert!(!response.text().is_empty());
    }
    // A raw request line with a NUL or spaces never reaches an object.
    let raw = support::raw_exchange(host.addr, b"GET /a\0b/x HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 4"), "{raw}");
    assert_eq!(
        support::files_except_spares(&parent),
        before,
        "no file created anywhere"
    );
}

#[test]
fn oversized_bodies_get_413() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &["--max-body", "1KiB"]);
    let mut client = host.client();
    let response = client.send("POST", "/b/echo", &[], &vec![b'x'; 2048]);
    assert_eq!(response.status, 413);
    assert!(response.text().contains("1024"), "{}", response.text());
    let response = host.client().send("POST", "/b/echo", &[], b"small");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body"], "736d616c6c");
}

#[test]
fn the_object_sees_its_path_query_and_headers() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    let response = host.client().send(
        "PUT",
        "/room%20one/a/b%2Fc?x=1&y=%20",
        &[("x-test", "yes")],
        b"hi",
    );
    assert_eq!(response.status, 200);
    let echo = response.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/a/b%2Fc");
    assert_eq!(echo["query"], "x=1&y=%20");
    assert!(
        echo["url"]
            .as_str()
            .unwrap()
            .ends_with("/a/b%2Fc?x=1&y=%20")
    );
    assert!(
        echo["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-test", "yes"]))
    );
    assert_eq!(echo["body"], "6869");
}

#[test]
fn a_second_host_on_the_same_data_directory_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &[]);
    let started = std::time::Instant::now();
    let stderr = refused_start(&guest("counter"), data.path());
    assert!(
        stderr.contains("is in use by another dohost")
            && stderr.contains(&format!("pid {}", host.pid())),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused only after {:?}",
        started.elapsed()
    );
    // The first host is untouched and still serves; once it stops, a new one starts.
    assert_eq!(host.client().post("/c/increment", "").status, 200);
    assert_eq!(host.stop(), Some(0));
    let host = Host::start(&guest("counter"), data.path(), &[]);
    assert_eq!(host.client().get("/c/value").json()["value"], 1);
}

/// Runs `dohost run component --data data`, which must exit with an error within 30 s (a
/// host that serves instead is killed and the test fails); its stderr.
fn refused_start(component: &Path, data: &Path) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .arg("run")
        .arg(component)
        .args(["--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(support::workspace_root().join("target/test-cache"))
        .arg("--data")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dohost started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_renamed_component_is_refused_on_another_class_data_directory() {
    // The class comes from the file name and is part of every ID: a component renamed
    // between deployments must not serve the data directory as another class (new empty
    // objects for every name, every pending alarm dropped).
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("counter"), data.path(), &[]);
    assert_eq!(host.client().post("/c/increment", "").status, 200);
    assert_eq!(host.stop(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("counter-v2.wasm");
    std::fs::copy(guest("counter"), &renamed).unwrap();
    let stderr = refused_start(&renamed, data.path());
    assert!(
        stderr.contains("holds objects of class \"counter\"")
            && stderr.contains("pass the old class with --class"),
        "{stderr}"
    );
    let host = Host::start(&renamed, data.path(), &["--class", "counter"]);
    assert_eq!(host.client().get("/c/value").json()["value"], 1);
    assert_eq!(host.stop(), Some(0));
    // A data directory from before the record: its objects' IDs tell.
    std::fs::remove_file(data.path().join("class")).unwrap();
    let stderr = refused_start(&renamed, data.path());
    assert!(
        stderr.contains("holds objects of another class"),
        "{stderr}"
    );
    let host = Host::start(&renamed, data.path(), &["--class", "counter"]);
    assert_eq!(host.client().get("/c/value").json()["value"], 1);
    assert_eq!(
        std::fs::read_to_string(data.path().join("class")).unwrap(),
        "counter\n"
    );
}

#[test]
fn malformed_components_fail_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(guest("counter")).unwrap();
    let mut flipped = real.clone();
    let middle = flipped.len() / 2;
    for b in &mut flipped[middle..middle + 64] {
        *b ^= 0xa5;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.wasm",
            b"this is not wasm".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module",
        ),
        (
            "truncated.wasm",
            real[..real.len() / 3].to_vec(),
            "not a valid component",
        ),
        ("flipped.wasm", flipped, "truncated.wasm"),
    ];
    for (file, bytes, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let stderr = refused_start(&path, &dir.path().join("data"));
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
        assert!(stderr.contains(file), "{file}: {stderr}");
        if expected != "truncated.wasm" {
            assert!(stderr.contains(expected), "{file}: {stderr}");
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["run", "/nonexistent/object.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/object.wasm"));
}

/// Waits (up to 30 s) until the host at `admin` has `count` live objects: the last one's
/// event has then been dispatched (its request read), and is running or about to.
fn wait_for_live_objects(admin: std::net::SocketAddr, count: f64) {
    support::wait_for_live_objects(
        admin,
        |live| live >= count,
        std::time::Duration::from_secs(30),
        "dispatched",
    );
}

#[test]
fn sigterm_finishes_in_flight_events_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--admin", "127.0.0.1:0"],
    );
    let admin = host.admin_addr();
    let addr = host.addr;
    // An event that is still running when SIGTERM arrives.
    let in_flight = std::thread::spawn(move || {
        Client::connect(addr).post_json(
            "/g/run",
            &json!({ "steps": [
                exec("CREATE TABLE t (v)"),
                exec("INSERT INTO t VALUES (1)"),
                { "op": "spin", "ms": 2000 },
            ] }),
        )
    });
    wait_for_live_objects(admin, 1.0);
    let code = host.stop();
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(code, Some(0));
    // Its write was committed before the host exited.
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    assert_eq!(count_rows(&host, "g", "t"), 1);
}

/// Shutdown waits for running events, but a second signal ends the process at once; what
/// was acknowledged stays.
#[test]
fn a_second_sigterm_exits_at_once() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Host::start(
        &guest("conformance"),
        data.path(),
        &[
            "--cpu-limit",
            "60s",
            "--idle-timeout",
            "10m",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = host.admin_addr();
    host.client()
        .run(
            "g",
            vec![exec("CREATE TABLE t (v)"), exec("INSERT INTO t VALUES (1)")],
        )
        .results();
    let addr = host.addr;
    let _stuck = std::thread::spawn(move || {
        Client::connect(addr).post_json(
            "/stuck/run",
            &json!({ "steps": [{ "op": "spin", "ms": 30000 }] }),
        )
    });
    wait_for_live_objects(admin, 2.0);
    host.send_sigterm();
    let started = std::time::Instant::now();
    assert_eq!(
        host.exit_code_within(std::time::Duration::from_millis(1500)),
        None,
        "did not wait"
    );
    let log = host.wait_for_log(|log| log.contains("signal again to exit now"));
    assert!(log.contains("signal again to exit now"), "{log}");
    host.send_sigterm();
    assert_eq!(
        host.exit_code_within(std::time::Duration::from_secs(5)),
        Some(Some(1))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    assert_eq!(count_rows(&host, "g", "t"), 1);
}

/// Settings for serving the `example` guest from `data` on a free port, and a current-thread
/// runtime to serve it from, as an embedder of the library might.
fn embedded_on_current_thread(
    example: &str,
    data: &Path,
) -> (dohost::ServerConfig, tokio::runtime::Runtime) {
    let mut config = dohost::ServerConfig::new(guest(example));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data.to_path_buf();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (config, runtime)
}

#[test]
fn a_host_embedded_in_a_current_thread_runtime_serves_one_event_at_a_time() {
    // Tokio forbids blocking a current-thread runtime's thread, so there an event for an idle
    // object runs on a blocking thread rather than inline; events of one object still run one
    // at a time, none lost.
    let data = tempfile::tempdir().unwrap();
    let (config, runtime) = embedded_on_current_thread("game-room", data.path());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        runtime.block_on(async move {
            let server = dohost::Server::bind(config).await.unwrap();
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            server
                .serve(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let addr = addr_rx.recv().unwrap();
    let clients: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..10 {
                    let body = json!({ "playerId": format!("p{t}-{i}"), "name": "Ann" });
                    let response = client.post_json("/lobby/join", &body);
                    assert_eq!(response.status, 200, "{}", response.text());
                    // Each client's own room: one request at a time, always idle.
                    let response = client.post_json(&format!("/own-{t}/join"), &body);
                    assert_eq!(response.json()["players"], json!(i + 1));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/lobby/count").text(), r#"{"players":80}"#);
    stop_tx.send(()).unwrap();
    server.join().expect("server thread");
}

#[test]
fn a_dispatch_dropped_mid_event_on_a_current_thread_runtime_loses_no_object() {
    // There, an event for an idle object runs on a blocking thread with the object's state;
    // the caller may give up (a timeout, a shutdown) before it is done. The thread gives the
    // state back itself, so the object's next event still runs.
    use dohost::bindings::http_types::Request;
    use dohost::object::{EventKind, Reply};
    let data = tempfile::tempdir().unwrap();
    let (config, runtime) = embedded_on_current_thread("conformance", data.path());
    runtime.block_on(async move {
        let server = dohost::Server::bind(config).await.unwrap();
        let registry = server.registry().clone();
        let class = registry.class().name().to_string();
        let id = registry.ids().from_name(&class, "slow").unwrap();
        let run = |steps: Json| {
            EventKind::Request(Request {
                method: "POST".into(),
                url: "http://localhost/run".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_vec(&json!({ "steps": steps })).unwrap(),
            })
        };
        let spin = run(json!([{ "op": "spin", "ms": 300 }]));
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            registry.dispatch(id, Some("slow".into()), spin),
        )
        .await;
        assert!(dropped.is_err(), "the spin outlasts the timeout");
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            registry.dispatch(
                id,
                Some("slow".into()),
                run(json!([{ "op": "spin", "ms": 1 }])),
            ),
        )
        .await
        .expect("the object answers after a dropped dispatch")
        .unwrap();
        assert!(
            matches!(&next, Reply::Response(r) if r.status == 200),
            "{next:?}"
        );
        registry.shutdown().await;
    });
}

/// Whether another process (this test's) can read the SQLite database at `db` right now, as a
/// backup script might: it would then checkpoint and delete the WAL the host writes.
fn readable_by_another_process(db: &Path) -> Result<i64, String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    // No waiting (rusqlite waits 5 s by default, long enough for the object to be evicted).
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(|e| e.to_string())?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// A live object's database stays locked against other processes once its writes are synced,
/// whether it was created on demand or re-activated after an eviction (the host syncs its
/// files through descriptors it keeps, never by opening and closing the database file, which
/// would drop SQLite's locks).
#[test]
fn a_live_object_database_is_locked_against_other_processes() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("counter"),
        data.path(),
        &[
            "--spare-databases",
            "0",
            "--idle-timeout",
            "3s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = host.admin_addr();
    let mut client = host.client();
    assert_eq!(client.post("/c/increment", "{}").status, 200);
    let db = data
        .path()
        .join("objects")
        .join(&object_databases(data.path())[0]);
    let read = readable_by_another_process(&db);
    assert!(
        read.as_ref().is_err_and(|e| e.contains("locked")),
        "made on demand: {read:?}"
    );
    support::wait_for_live_objects(
        admin,
        |live| live == 0.0,
        std::time::Duration::from_secs(15),
        "evicted",
    );
    assert_eq!(client.post("/c/increment", "{}").status, 200);
    let read = readable_by_another_process(&db);
    assert!(
        read.as_ref().is_err_and(|e| e.contains("locked")),
        "re-activated: {read:?}"
    );
    assert_eq!(client.get("/c/value").json(), json!({ "value": 2 }));
}

/// `dohost run` raises its soft open-file limit to the hard limit: a common default of 1,024
/// would run out long before the default settings' 10,000 connections and 1,000 live objects.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 64 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_dohost"))
        .arg("run")
        .arg(guest("counter"))
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in std::io::BufReader::new(stderr).lines() {
        if line.unwrap().contains("serving class") {
            break;
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {line}");
}

/// Instances started ahead and spare databases that new objects take are replaced in the
/// background, woken by the epoch ticker once new objects pause (not by the activations that
/// took them, unless half are gone), and the metrics show how many are ready.
#[test]
fn what_new_objects_take_ahead_is_replaced_in_the_background() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &[
            "--admin",
            "127.0.0.1:0",
            "--spare-instances",
            "8",
            "--spare-databases",
            "8",
        ],
    );
    let admin = host.admin_addr();
    let ready = |what: &str| support::metric(admin, &format!("dohost_spare_{what}_ready{{"));
    let wait_for = |what: &str, count: f64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ready(what) < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {} ready, not {count}",
                ready(what)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for("instances", 8.0);
    wait_for("databases", 8.0);
    // Two new objects: neither takes half of either, so neither wakes a thread itself.
    let mut client = host.client();
    for room in ["a", "b"] {
        let response = client.post_json(
            &format!("/{room}/run"),
            &json!({ "steps": [exec("CREATE TABLE t (v)")] }),
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }
    wait_for("instances", 8.0);
    wait_for("databases", 8.0);
}
