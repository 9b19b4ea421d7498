//! Integration tests of go objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/go/` and the conformance object
//! `tests/conformance/objects/go/`, written with the Go SDK (`sdk-go/`, package `dohost`) and
//! built by `scripts/build-guest-go` (Go for wasip1, componentized with the preview1 reactor
//! adapter). The SDK's own unit tests run here too; the conformance suite runs in
//! `tests/conformance.rs`.

mod support;

use std::process::Command;

use serde_json::json;
use support::serve;

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
    support::check_failed_events_roll_back(
        host,
        &[
            // A returned error is the WIT err: the host answers 500 with its text.
            (
                json!({ "op": "fail", "message": "no thanks" }),
                "object-error",
                "no thanks",
            ),
            // A panic is not recovered: the Go runtime exits, which traps the instance.
            (json!({ "op": "trap" }), "object-trapped", ""),
        ],
    );
    // The panic and its goroutine trace went to the host's log.
    let log = host.wait_for_log(|log| log.contains("panic: conformance object: trap requested"));
    assert!(
        log.contains("panic: conformance object: trap requested"),
        "{log}"
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
