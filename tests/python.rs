//! Integration tests of python objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/python/` and the conformance object
//! `tests/conformance/objects/python/`, built with componentize-py and the `dohost` helper
//! module (`sdk-python/`).

mod support;

use serde_json::{Value as Json, json};
use support::{exec, serve};

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
    host.client()
        .run("t", json!([exec("CREATE TABLE items (x INTEGER)")]))
        .results();
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
        assert!(response.text().contains(message), "{}", response.text());
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
    // The OverflowError's traceback went to the host's log.
    let log = host.log();
    assert!(
        log.contains("Traceback") && log.contains("OverflowError"),
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
