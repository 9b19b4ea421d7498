//! Integration tests of python objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/python/` and the conformance object
//! `tests/conformance/objects/python/`, built with componentize-py and the `dohost` helper
//! module (`sdk-python/`).

mod support;

use serde_json::json;
use support::serve;

const GAME_ROOM: &str = "guest-examples/python/game-room";
const COUNTER: &str = "guest-examples/python/counter";
const CONFORMANCE: &str = "tests/conformance/objects/python";

#[test]
fn game_room_counts_200_concurrent_joins_exactly() {
    let served = serve(GAME_ROOM);
    support::check_game_room_concurrent_joins(&served.host);
}

#[test]
fn game_room_lists_renames_rejects_bad_joins_and_survives_a_restart() {
    let bad_joins = ["not json", "{}", r#"{"playerId":1,"name":"x"}"#, "[]"];
    support::check_game_room_renames_and_restarts(serve(GAME_ROOM), &bad_joins);
}

#[test]
fn counter_increments_reads_and_resets() {
    let bad = [
        "nope",
        r#"{"by": "x"}"#,
        r#"{"by": 1.5}"#,
        r#"{"by": true}"#,
        r#"{"by": 9223372036854775808}"#,
        "[1]",
    ];
    support::check_counter(&serve(COUNTER).host, &bad);
}

#[test]
fn a_python_exception_rolls_back_the_event_and_the_next_request_works() {
    let served = serve(CONFORMANCE);
    let host = &served.host;
    let too_big = json!({ "op": "exec", "query": "SELECT ?",
                          "params": [{ "type": "integer", "value": "9223372036854775808" }] });
    support::check_failed_events_roll_back(
        host,
        &[
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
        ],
    );
    // The OverflowError's traceback went to the host's log.
    let log = host.wait_for_log(|log| log.contains("Traceback") && log.contains("OverflowError"));
    assert!(
        log.contains("Traceback") && log.contains("OverflowError"),
        "{log}"
    );
}
