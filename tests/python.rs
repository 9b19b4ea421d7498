//! Integration tests of python objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/python/` and the conformance object
//! `tests/conformance/objects/python/`, built with componentize-py and the `dohost` helper
//! module (`sdk-python/`).

mod support;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value as Json, json};
use support::{Client, Host};
use tempfile::TempDir;

const GAME_ROOM: &str = "guest-examples/python/game-room";
const COUNTER: &str = "guest-examples/python/counter";
const CONFORMANCE: &str = "tests/conformance/objects/python";

/// A host serving the Python guest in `dir` on a fresh data directory (dropped with it).
struct Served {
    host: Host,
    component: PathBuf,
    data: TempDir,
}

/// Builds the guest in `dir` and serves it from a fresh data directory.
///
/// A componentize-py component is ~19 MB and cranelift needs tens of seconds to compile it.
/// Test hosts share one compiled-component cache, so the first start of each component is
/// made alone: tests starting at the same time then load it from the cache instead of all
/// compiling it at once on a shared machine.
fn serve(dir: &str) -> Served {
    static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let component = support::build_guest(dir);
    let data = tempfile::tempdir().unwrap();
    let host = {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if started.contains(&component) {
            drop(started);
            Host::start(&component, data.path(), &[])
        } else {
            let clock = Instant::now();
            let host = Host::start(&component, data.path(), &[]);
            if host.log().contains("compiled component") {
                eprintln!(
                    "compiled {} in {:.1} s",
                    component.display(),
                    clock.elapsed().as_secs_f64()
                );
            }
            started.push(component.clone());
            host
        }
    };
    Served {
        host,
        component,
        data,
    }
}

/// Runs conformance steps against object `name` and returns the response.
fn run_steps(host: &Host, name: &str, steps: Json) -> support::Response {
    host.client()
        .post_json(&format!("/{name}/run"), &json!({ "steps": steps }))
}

fn results(response: support::Response) -> Vec<Json> {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["results"]
        .as_array()
        .expect("results")
        .clone()
}

fn exec(query: &str) -> Json {
    json!({ "op": "exec", "query": query })
}

#[test]
fn game_room_counts_200_concurrent_joins_exactly() {
    let served = serve(GAME_ROOM);
    let addr = served.host.addr;
    let threads: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..10 {
                    let body = json!({ "playerId": format!("p{t}-{i}"), "name": "Ann" });
                    let response = client.post_json("/lobby/join", &body);
                    assert_eq!(response.status, 200, "{}", response.text());
                    let players = response.json()["players"].as_i64().unwrap();
                    assert!((1..=200).contains(&players));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let response = served.host.client().get("/lobby/count");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), r#"{"players":200}"#);
    // Another room is another object, with its own database.
    assert_eq!(
        served.host.client().get("/other/count").text(),
        r#"{"players":0}"#
    );
    assert_eq!(served.host.client().get("/lobby/nowhere").status, 404);
}

#[test]
fn game_room_lists_renames_rejects_bad_joins_and_survives_a_restart() {
    let served = serve(GAME_ROOM);
    let mut client = served.host.client();
    let response = client.post("/room-1/join", r#"{"playerId":"a","name":"Ann"}"#);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"players":1}"#);
    client.post("/room-1/join", r#"{"playerId":"b","name":"Bob"}"#);
    // Joining again with a new name renames: still two players.
    let response = client.post("/room-1/join", r#"{"playerId":"a","name":"Anna"}"#);
    assert_eq!(response.text(), r#"{"players":2}"#);
    assert_eq!(
        client.get("/room-1/players").json(),
        json!([{ "id": "a", "name": "Anna" }, { "id": "b", "name": "Bob" }])
    );
    for bad in ["not json", "{}", r#"{"playerId":1,"name":"x"}"#, "[]"] {
        let response = client.post("/room-1/join", bad);
        assert_eq!(response.status, 400, "{bad}: {}", response.text());
    }
    assert_eq!(client.send("DELETE", "/room-1/count", &[], b"").status, 404);

    let Served {
        host,
        component,
        data,
    } = served;
    assert_eq!(host.stop(), Some(0), "graceful stop exits 0");
    let host = Host::start(&component, data.path(), &[]);
    assert_eq!(
        host.client().get("/room-1/count").text(),
        r#"{"players":2}"#
    );
    assert!(
        !host.log().contains("compiled component"),
        "the restart used the compiled-component cache:\n{}",
        host.log()
    );
}

#[test]
fn counter_increments_reads_and_resets() {
    let served = serve(COUNTER);
    let mut c = served.host.client();
    assert_eq!(c.get("/c/").text(), r#"{"value":0}"#);
    assert_eq!(c.post("/c/increment", "").text(), r#"{"value":1}"#);
    assert_eq!(
        c.post("/c/increment", r#"{"by": 5}"#).json(),
        json!({ "value": 6 })
    );
    assert_eq!(c.post("/c/increment", "{}").json(), json!({ "value": 7 }));
    assert_eq!(
        c.post("/c/increment", r#"{"by": -2}"#).json(),
        json!({ "value": 5 })
    );
    assert_eq!(c.get("/c/value").json(), json!({ "value": 5 }));
    assert_eq!(
        c.get("/d/value").json(),
        json!({ "value": 0 }),
        "separate object"
    );
    for bad in [
        "nope",
        r#"{"by": "x"}"#,
        r#"{"by": 1.5}"#,
        r#"{"by": true}"#,
        r#"{"by": 9223372036854775808}"#,
        "[1]",
    ] {
        let response = c.post("/c/increment", bad);
        assert_eq!(response.status, 400, "{bad}: {}", response.text());
    }
    assert_eq!(c.post("/c/reset", "").json(), json!({ "value": 0 }));
    assert_eq!(c.get("/c/").json(), json!({ "value": 0 }));
    assert_eq!(c.get("/c/increment").status, 404, "wrong method");
    assert_eq!(c.get("/c/elsewhere").status, 404);
}

#[test]
fn a_python_exception_rolls_back_the_event_and_the_next_request_works() {
    let served = serve(CONFORMANCE);
    let host = &served.host;
    results(run_steps(
        host,
        "t",
        json!([exec("CREATE TABLE items (x INTEGER)")]),
    ));
    let too_big = json!({ "op": "exec", "query": "SELECT ?",
                          "params": [{ "type": "integer", "value": "9223372036854775808" }] });
    let cases = [
        // `fail` raises dohost.ObjectError: the message is the error, as is.
        (
            json!({ "op": "fail", "message": "no thanks" }),
            "object-error",
            "no thanks",
        ),
        // Any other exception fails the event with its type and message.
        (too_big, "object-error", "OverflowError"),
        // `trap` raises SystemExit, which the SDK lets escape: a real trap.
        (json!({ "op": "trap" }), "object-trapped", "trap"),
    ];
    for (failing, kind, message) in cases {
        let response = run_steps(
            host,
            "t",
            json!([
                exec("INSERT INTO items VALUES (1)"),
                { "op": "alarmSet", "at": 4_102_444_800_000i64 },
                failing,
            ]),
        );
        assert_eq!(response.status, 500, "{failing}: {}", response.text());
        assert_eq!(response.header("x-dohost-error"), Some(kind), "{failing}");
        assert!(response.text().contains(message), "{}", response.text());
        let after = results(run_steps(
            host,
            "t",
            json!([exec("SELECT count(*) AS n FROM items"), { "op": "alarmGet" }]),
        ));
        assert_eq!(
            after[0]["ok"]["rows"],
            json!([[{ "type": "integer", "value": "0" }]]),
            "{failing} rolled back the insert"
        );
        assert_eq!(
            after[1]["ok"],
            Json::Null,
            "{failing} rolled back the alarm"
        );
    }
    // The OverflowError's traceback went to the host's log.
    let log = host.log();
    assert!(
        log.contains("Traceback") && log.contains("OverflowError"),
        "{log}"
    );
    let last = results(run_steps(
        host,
        "t",
        json!([
            exec("INSERT INTO items VALUES (2)"),
            exec("SELECT x FROM items")
        ]),
    ));
    assert_eq!(
        last[1]["ok"]["rows"],
        json!([[{ "type": "integer", "value": "2" }]])
    );
}

#[test]
fn sql_errors_values_and_large_results_reach_python_intact() {
    let served = serve(CONFORMANCE);
    let host = &served.host;
    let typed = json!([
        { "type": "null" },
        { "type": "integer", "value": "-9223372036854775808" },
        { "type": "integer", "value": "9223372036854775807" },
        { "type": "real", "value": 1.5 },
        { "type": "real", "value": "-Infinity" },
        { "type": "text", "value": "zürich ✓" },
        { "type": "blob", "value": "00ff10" },
        { "type": "blob", "value": "" },
    ]);
    let r = results(run_steps(
        host,
        "v",
        json!([
            { "op": "exec", "query": "SELECT ?, ?, ?, ?, ?, ?, ?, ?", "params": typed },
            exec("SELEC 1"),
            exec("CREATE TABLE u (k TEXT PRIMARY KEY)"),
            exec("INSERT INTO u VALUES ('a')"),
            exec("INSERT INTO u VALUES ('a')"),
            exec("BEGIN"),
            { "op": "exec", "query": "SELECT ?", "params": [] },
            exec(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
                 SELECT i FROM n"
            ),
            { "op": "nonsense" },
        ]),
    ));
    assert_eq!(r[0]["ok"]["rows"], json!([typed]));
    assert_eq!(r[1]["err"]["kind"], "syntax");
    assert_eq!(r[3]["ok"]["rowsWritten"], 1);
    assert_eq!(r[4]["err"]["kind"], "constraint");
    assert_eq!(r[5]["err"]["kind"], "access-denied");
    assert_eq!(r[6]["err"]["kind"], "invalid-argument");
    // 2500 rows span three pages of the host's cursor; the SDK reads them all, in order.
    let rows = r[7]["ok"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[2499][0]["value"], "2500");
    assert_eq!(r[8]["err"]["kind"], "unknown-op");
}

#[test]
fn the_object_sees_its_path_query_headers_and_identity() {
    let served = serve(CONFORMANCE);
    let host = &served.host;
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
    assert_eq!(
        host.client().get("/room%20one/plain").json()["query"],
        Json::Null
    );

    let r = results(run_steps(host, "room%20one", json!([{ "op": "identity" }])));
    assert_eq!(r[0]["ok"]["name"], "room one");
    let id = r[0]["ok"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    let by_id = results(host.client().post_json(
        &format!("/_id/{id}/run"),
        &json!({ "steps": [{ "op": "identity" }] }),
    ));
    assert_eq!(by_id[0]["ok"], json!({ "id": id, "name": "room one" }));
}
