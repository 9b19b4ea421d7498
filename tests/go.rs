//! Integration tests of go objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/go/` and the conformance object
//! `tests/conformance/objects/go/`, written with the Go SDK (`sdk-go/`, package `dohost`) and
//! built by `scripts/build-guest-go` (Go for wasip1, componentized with the preview1 reactor
//! adapter). The SDK's own unit tests run here too; the conformance suite runs in
//! `tests/conformance.rs`.

mod support;

use std::process::Command;

use serde_json::{Value as Json, json};
use support::{exec, serve};

const GAME_ROOM: &str = "guest-examples/go/game-room";
const COUNTER: &str = "guest-examples/go/counter";
const CONFORMANCE: &str = "tests/conformance/objects/go";

#[test]
fn game_room_counts_200_concurrent_joins_exactly() {
    let served = serve(GAME_ROOM);
    support::check_game_room_concurrent_joins(&served.host);
    let players = served.host.client().get("/lobby/players").json();
    assert_eq!(players.as_array().map(Vec::len), Some(200));
}

#[test]
fn game_room_lists_renames_rejects_bad_joins_and_survives_a_restart() {
    let bad_joins = ["not json", "", "{}", r#"{"playerId":1,"name":"x"}"#, "[]"];
    let served = support::check_game_room_renames_and_restarts(serve(GAME_ROOM), &bad_joins);
    assert_eq!(
        served.host.client().get("/room-1/players").text(),
        r#"[{"id":"a","name":"Anna"},{"id":"b","name":"Bob <&>"}]"#,
        "compact JSON, no HTML escaping"
    );
}

#[test]
fn counter_increments_reads_and_resets() {
    let bad = [
        "nope",
        r#"{"by": "x"}"#,
        r#"{"by": 1.5}"#,
        r#"{"by": 99999999999999999999}"#,
        "[1]",
    ];
    support::check_counter(&serve(COUNTER).host, &bad);
}

#[test]
fn a_go_panic_or_error_rolls_back_the_event_and_the_next_request_works() {
    let served = serve(CONFORMANCE);
    let host = &served.host;
    host.client()
        .run("t", json!([exec("CREATE TABLE items (x INTEGER)")]))
        .results();
    let cases = [
        // A returned error is the WIT err: the host answers 500 with its text.
        (
            json!({ "op": "fail", "message": "no thanks" }),
            "object-error",
        ),
        // A panic is not recovered: the Go runtime exits, which traps the instance.
        (json!({ "op": "trap" }), "object-trapped"),
    ];
    for (failing, kind) in cases {
        let response = host.client().run(
            "t",
            json!([
                exec("INSERT INTO items VALUES (1)"),
                { "op": "alarmSet", "at": 4_102_444_800_000i64 },
                failing,
            ]),
        );
        assert_eq!(response.status, 500, "{failing}: {}", response.text());
        assert_eq!(response.header("x-dohost-error"), Some(kind), "{failing}");
        let after = host
            .client()
            .run(
                "t",
                json!([exec("SELECT count(*) AS n FROM items"), { "op": "alarmGet" }]),
            )
            .results();
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
    let response = host
        .client()
        .run("t", json!([{ "op": "fail", "message": "no thanks" }]));
    assert!(response.text().contains("no thanks"), "{}", response.text());
    // The panic and its goroutine trace went to the host's log.
    let log = host.log();
    assert!(
        log.contains("panic: conformance object: trap requested"),
        "{log}"
    );
    let last = host
        .client()
        .run(
            "t",
            json!([
                exec("INSERT INTO items VALUES (2)"),
                exec("SELECT x FROM items")
            ]),
        )
        .results();
    assert_eq!(
        last[1]["ok"]["rows"],
        json!([[{ "type": "integer", "value": "2" }]])
    );
}

/// The SDK's unit tests (`sdk-go/*_test.go`), built for wasip1 and run with wasmtime.
#[test]
fn go_sdk_unit_tests_pass() {
    let root = support::workspace_root();
    let out = Command::new(root.join("scripts/go"))
        .args(["test", "."])
        .current_dir(root.join("sdk-go"))
        .output()
        .expect("run scripts/go test");
    assert!(
        out.status.success(),
        "go test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
