//! Integration tests of js objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The examples (`guest-examples/js/`), the conformance object (`tests/conformance/objects/js/`)
//! and the SDK's API test object (`sdk-js/tests/sql-api/`, which reports how the
//! Cloudflare-style API behaves so the checks below can compare it with Cloudflare's
//! documentation) all run on the real `dohost` binary.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::{Host, build_guest, now_ms, workspace_root};

/// A fresh data directory.
fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a data directory")
}

/// Starts `dohost run` for the JS guest in `dir` with `data` as its data directory. The test
/// hosts share one compiled-component cache, so each JS component (~12 MB) compiles once.
fn start(dir: &str, data: &Path) -> Host {
    Host::start(&build_guest(dir), data, &[])
}

/// GET `path` and return the JSON body, asserting 200.
fn get_json(host: &Host, path: &str) -> Json {
    let response = host.client().get(path);
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    response.json()
}

#[test]
fn game_room_counts_200_concurrent_joins_exactly() {
    let data = data_dir();
    let host = start("guest-examples/js/game-room", data.path());
    support::check_game_room_concurrent_joins(&host);

    // Joining again renames; another room is another object.
    let mut client = host.client();
    let body = json!({ "playerId": "p0-0", "name": "Bob" });
    assert_eq!(
        client.post_json("/lobby/join", &body).text(),
        r#"{"players":200}"#
    );
    assert_eq!(
        client.get("/lobby/players").json()[0],
        json!({ "id": "p0-0", "name": "Bob" })
    );
    assert_eq!(client.get("/other/count").text(), r#"{"players":0}"#);
    assert_eq!(client.get("/lobby/nowhere").status, 404);
}

#[test]
fn counter_keeps_its_value_across_a_restart() {
    let data = data_dir();
    let host = start("guest-examples/js/counter", data.path());
    let mut client = host.client();
    assert_eq!(client.get("/c/").json(), json!({ "value": 0 }));
    assert_eq!(
        client.post("/c/increment", "").json(),
        json!({ "value": 1 })
    );
    assert_eq!(
        client.post("/c/increment", r#"{"by": 41}"#).json(),
        json!({ "value": 42 })
    );
    assert_eq!(client.post("/c/increment", r#"{"by": 1.5}"#).status, 400);
    assert_eq!(client.post("/c/increment", "not json").status, 400);
    assert_eq!(host.stop(), Some(0));

    let host = start("guest-examples/js/counter", data.path());
    let mut client = host.client();
    assert_eq!(client.get("/c/value").json(), json!({ "value": 42 }));
    assert_eq!(client.post("/c/reset", "").json(), json!({ "value": 0 }));
    assert_eq!(client.get("/c/value").json(), json!({ "value": 0 }));
    assert_eq!(client.get("/c/nowhere").status, 404);
}

#[test]
fn tenant_config_reads_flags_and_meters_usage() {
    let data = data_dir();
    let host = start("guest-examples/js/tenant-config", data.path());
    let mut client = host.client();
    assert_eq!(
        client.get("/acme/").json(),
        json!({ "flags": {}, "usage": {} })
    );

    let on = |enabled: bool| json!({ "enabled": enabled }).to_string();
    assert_eq!(
        client
            .send("PUT", "/acme/flags/beta", &[], on(true).as_bytes())
            .status,
        200
    );
    assert_eq!(
        client
            .send("PUT", "/acme/flags/sso", &[], on(false).as_bytes())
            .status,
        200
    );
    assert_eq!(
        client.send("PUT", "/acme/flags/sso", &[], b"{}").status,
        400
    );
    assert_eq!(
        client.get("/acme/flags").json(),
        json!({ "flags": { "beta": true, "sso": false } })
    );

    let delta = |n: i64| json!({ "delta": n });
    let meter = client.post_json("/acme/usage/api-calls", &delta(5)).json();
    assert_eq!(meter, json!({ "metric": "api-calls", "value": 5 }));
    let meter = client.post_json("/acme/usage/api-calls", &delta(7)).json();
    assert_eq!(meter, json!({ "metric": "api-calls", "value": 12 }));
    client.post_json("/acme/usage/seats", &delta(3));
    assert_eq!(
        client.get("/acme/usage").json(),
        json!({ "usage": { "api-calls": 12, "seats": 3 } })
    );
    // Another tenant is another object with its own tables.
    assert_eq!(
        client.get("/globex/").json(),
        json!({ "flags": {}, "usage": {} })
    );
}

#[test]
fn subscription_activation_sets_and_cancel_deletes_the_alarm() {
    let data = data_dir();
    let host = start("guest-examples/js/subscription", data.path());
    let mut client = host.client();
    let next = 4_102_444_800_000i64; // 2100-01-01
    let activated = client
        .post_json(
            "/cust-1/activate",
            &json!({ "plan": "pro", "nextBillingAt": next }),
        )
        .json();
    assert_eq!(activated["plan"], "pro");
    assert_eq!(activated["nextBillingAt"], next);
    assert_eq!(activated["alarm"], next);
    assert_eq!(client.get("/cust-1/").json()["alarm"], next);

    // An ISO date works too, and replaces the alarm.
    let status = client
        .post_json(
            "/cust-1/activate",
            &json!({ "plan": "team", "nextBillingAt": "2099-01-01T00:00:00Z", "periodDays": 7 }),
        )
        .json();
    assert_eq!(status["alarm"], 4_070_908_800_000i64);
    assert_eq!(status["periodDays"], 7);
    assert_eq!(
        client
            .post_json("/cust-1/activate", &json!({ "plan": "x" }))
            .status,
        400
    );

    let cancelled = client.post("/cust-1/cancel", "").json();
    assert_eq!(cancelled["alarm"], Json::Null);
    assert_eq!(cancelled["plan"], Json::Null);
}

#[test]
fn subscription_renews_when_its_alarm_fires() {
    let data = data_dir();
    let host = start("guest-examples/js/subscription", data.path());
    let due = now_ms() + 500;
    let body = json!({ "plan": "pro", "nextBillingAt": due, "periodDays": 30 });
    assert_eq!(
        host.client().post_json("/cust-2/activate", &body).status,
        200
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = get_json(&host, "/cust-2/");
        if status["renewals"].as_array().is_some_and(|r| !r.is_empty()) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the alarm did not fire: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let next = due + 30 * 24 * 3600 * 1000;
    assert_eq!(status["renewals"][0]["billedAt"], due);
    assert_eq!(status["renewals"][0]["plan"], "pro");
    assert_eq!(status["nextBillingAt"], next);
    assert_eq!(status["alarm"], next, "alarm() scheduled the next cycle");
}

#[test]
fn cursor_follows_cloudflare_semantics() {
    let data = data_dir();
    let host = start("sdk-js/tests/sql-api", data.path());
    let c = get_json(&host, "/t/cursor");

    // A write has no columns and no rows, and counts what it wrote.
    assert_eq!(
        c["insert"],
        json!({ "columnNames": [], "rowsRead": 0, "rowsWritten": 3, "rows": [] })
    );
    // Iteration yields objects keyed by column name; NULL is null; reals stay numbers.
    assert_eq!(
        c["iterated"],
        json!([
            { "id": 1, "name": "a", "score": 1.5 },
            { "id": 2, "name": "b", "score": 2.5 },
            { "id": 3, "name": "c", "score": null },
        ])
    );
    assert_eq!(c["columnNames"], json!(["id", "name", "score"]));
    // next() and toArray() share one position; an exhausted cursor says done.
    assert_eq!(
        c["next"],
        json!({
            "first": { "done": false, "value": { "id": 1 } },
            "rest": [{ "id": 2 }, { "id": 3 }],
            "after": { "done": true },
        })
    );
    // raw() gives arrays in column order, and has toArray().
    assert_eq!(
        c["raw"],
        json!({ "first": [1, "a"], "rest": [[2, "b"], [3, "c"]] })
    );
    // Duplicate column names: the object keeps the last, raw() keeps both.
    assert_eq!(
        c["duplicateNames"],
        json!({ "object": { "a": 2 }, "raw": [[1, 2]] })
    );
    // rowsRead counts rows scanned, rowsWritten rows changed.
    assert_eq!(
        c["scan"],
        json!({ "rowsRead": 3, "rowsWritten": 0, "n": 2 })
    );
    assert_eq!(c["update"]["rowsWritten"], 2);
    // one(): exactly one row, else Cloudflare's errors.
    assert_eq!(c["one"]["exactly"], json!({ "returned": { "name": "b" } }));
    assert_eq!(
        c["one"]["none"],
        json!({ "name": "Error",
                "message": "Expected exactly one result from SQL query, but got no results." })
    );
    assert_eq!(
        c["one"]["many"],
        json!({ "name": "Error",
                "message": "Expected exactly one result from SQL query, but got multiple results." })
    );
    // 2500 rows span three host pages; all arrive (sum of 1..=2500).
    assert_eq!(c["paged"], 3_126_250);
    assert!(c["databaseSize"].as_u64().unwrap() >= 4096, "{c}");
}

#[test]
fn values_map_like_cloudflare() {
    let data = data_dir();
    let host = start("sdk-js/tests/sql-api", data.path());
    let v = get_json(&host, "/t/values");
    /// What binding one JS value gave: SQLite's typeof() and quote(), and the value read back.
    fn bound(sql_type: &str, quoted: &str, js: Json) -> Json {
        json!({ "type": sql_type, "quoted": quoted, "value": js })
    }
    let number = |n: Json| json!({ "type": "number", "value": n });
    assert_eq!(v["integer"], bound("integer", "42", number(json!(42))));
    assert_eq!(v["negative"], bound("integer", "-7", number(json!(-7))));
    assert_eq!(v["real"], bound("real", "1.5", number(json!(1.5))));
    // A bigint binds exactly; reading it back as a number rounds, as on Cloudflare, while
    // execTyped returns the exact bigint.
    assert_eq!(v["bigint"]["type"], "integer");
    assert_eq!(v["bigint"]["quoted"], "4611686018427387905");
    assert_eq!(v["bigint"]["value"]["type"], "number");
    let rounded = v["bigint"]["value"]["value"].as_f64();
    assert_eq!(rounded, Some(4_611_686_018_427_387_904f64));
    assert_eq!(v["bigintTyped"], "4611686018427387905");
    assert_eq!(v["bigintTooLarge"]["name"], "RangeError");
    assert_eq!(v["boolean"], bound("integer", "1", number(json!(1))));
    let text = json!({ "type": "string", "value": "héllo" });
    assert_eq!(v["string"], bound("text", "'héllo'", text));
    let null = json!({ "type": "null", "value": null });
    assert_eq!(v["null"], bound("null", "NULL", null.clone()));
    assert_eq!(v["undefined"], bound("null", "NULL", null));
    // Blobs go in as ArrayBuffer or any view, and come back as ArrayBuffer.
    let blob = |bytes: Json| json!({ "type": "ArrayBuffer", "bytes": bytes });
    assert_eq!(
        v["arrayBuffer"],
        bound("blob", "X'00FF10'", blob(json!([0, 255, 16])))
    );
    assert_eq!(
        v["uint8Array"],
        bound("blob", "X'0203'", blob(json!([2, 3])))
    );
    for unsupported in ["object", "date"] {
        assert_eq!(v[unsupported]["name"], "TypeError", "{unsupported}: {v}");
        let message = v[unsupported]["message"].as_str().unwrap();
        assert!(message.contains("unsupported type"), "{message}");
    }
}

#[test]
fn sql_errors_read_like_workerd() {
    let data = data_dir();
    let host = start("sdk-js/tests/sql-api", data.path());
    let e = get_json(&host, "/t/errors");
    let check = |case: &str, kind: &str, code: &str, text: &str| {
        let error = &e[case];
        assert_eq!(error["name"], "Error", "{case}: {error}");
        assert_eq!(error["kind"], kind, "{case}: {error}");
        assert_eq!(error["code"], code, "{case}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(text), "{case}: {message}");
        assert!(message.ends_with(&format!(": {code}")), "{case}: {message}");
    };
    check("syntax", "syntax", "SQLITE_ERROR", "syntax error");
    check(
        "missingTable",
        "syntax",
        "SQLITE_ERROR",
        "no such table: nowhere",
    );
    check(
        "unique",
        "constraint",
        "SQLITE_CONSTRAINT",
        "UNIQUE constraint failed: items.name",
    );
    check("denied", "access-denied", "SQLITE_AUTH", "not authorized");
    check(
        "tooFewBindings",
        "invalid-argument",
        "SQLITE_RANGE",
        "placeholder",
    );
    // A caught SQL error does not end the event.
    assert_eq!(e["afterErrors"], json!({ "ok": 1 }));
}

#[test]
fn alarm_api_and_identity() {
    let data = data_dir();
    let host = start("sdk-js/tests/sql-api", data.path());
    let a = get_json(&host, "/t/alarm");
    assert_eq!(a["before"], Json::Null);
    assert_eq!(a["fromDate"], 4_102_444_800_000i64);
    assert_eq!(
        a["fromNumber"], 4_102_444_800_123i64,
        "fractional ms are truncated"
    );
    assert!(
        a["negative"].as_str().unwrap().contains("before 1970"),
        "{a}"
    );
    assert!(
        a["invalid"].as_str().unwrap().starts_with("TypeError"),
        "{a}"
    );
    assert_eq!(a["after"], Json::Null);

    let id = get_json(&host, "/room-7/identity");
    let hex = id["hex"].as_str().unwrap();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(id["string"], hex);
    assert_eq!(id["name"], "room-7");
    assert_eq!(id["equalsSelf"], true);
    let by_id = get_json(&host, &format!("/_id/{hex}/identity"));
    assert_eq!(by_id["hex"], hex);
}

#[test]
fn an_exception_in_fetch_rolls_back_the_event_and_the_next_request_works() {
    let data = data_dir();
    let host = start("sdk-js/tests/sql-api", data.path());
    let mut client = host.client();
    assert_eq!(client.post("/r/write", "").json(), json!({ "events": 1 }));

    let response = client.post("/r/write-then-throw", "");
    assert_eq!(response.status, 500);
    assert_eq!(response.header("x-dohost-error"), Some("object-error"));
    assert!(
        response.text().contains("TypeError: boom after writing"),
        "{}",
        response.text()
    );
    // The row written before the throw was rolled back; the next request gets a fresh
    // instance and works.
    assert_eq!(client.post("/r/write", "").json(), json!({ "events": 2 }));
    let uncaught = "Uncaught (in fetch) TypeError: boom after writing";
    let log = host.wait_for_log(|log| log.contains(uncaught));
    // Tagged with the object it came from.
    let line = log.lines().find(|l| l.contains(uncaught));
    let tag = line
        .and_then(|l| l.split_once("object=\""))
        .and_then(|(_, rest)| rest.get(..64));
    assert!(
        tag.is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())),
        "{log}"
    );
}

#[test]
fn conformance_object_fails_and_traps_like_the_spec_says() {
    let data = data_dir();
    let host = start("tests/conformance/objects/js", data.path());
    let run = |steps: Json| {
        host.client()
            .post_json("/t/run", &json!({ "steps": steps }))
    };
    let exec = |query: &str| json!({ "op": "exec", "query": query });
    assert_eq!(
        run(json!([exec("CREATE TABLE items (x INTEGER)")])).status,
        200
    );
    for (then, kind) in [("fail", "object-error"), ("trap", "object-trapped")] {
        let steps =
            json!([exec("INSERT INTO items VALUES (1)"), { "op": then, "message": "nope" }]);
        let response = run(steps);
        assert_eq!(response.status, 500, "{then}: {}", response.text());
        assert_eq!(response.header("x-dohost-error"), Some(kind), "{then}");
        let count = run(json!([exec("SELECT count(*) FROM items")])).json();
        assert_eq!(
            count["results"][0]["ok"]["rows"][0][0]["value"], "0",
            "{then}"
        );
    }
    // Echo keeps the headers as delivered.
    let echo = host
        .client()
        .send(
            "PUT",
            "/t/a?x=1",
            &[("x-b", "2"), ("x-a", "1"), ("x-b", "3")],
            b"hi",
        )
        .json();
    let headers = echo["headers"].as_array().unwrap();
    let named = |name: &str| -> Vec<&Json> { headers.iter().filter(|h| h[0] == name).collect() };
    assert_eq!(
        named("x-b"),
        [&json!(["x-b", "2"]), &json!(["x-b", "3"])],
        "{echo}"
    );
    assert_eq!(named("x-a"), [&json!(["x-a", "1"])], "{echo}");
    assert_eq!(echo["body"], "6869");
    assert_eq!(echo["query"], "x=1");
}

#[test]
fn a_module_without_an_object_class_fails_to_build_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "bad", "main": "index.js"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("index.js"), "export class NotAnObject {}\n").unwrap();
    let out = Command::new(workspace_root().join("scripts/build-guest"))
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path().join("bad.wasm"))
        .output()
        .expect("run scripts/build-guest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("exports no class that extends DurableObject"),
        "{stderr}"
    );
}
