//! Integration tests of python objects: built from source with scripts/build-guest, driven over real HTTP.
//!
//! The guests are the examples in `guest-examples/python/` and the conformance object
//! `tests/conformance/objects/python/`, built with componentize-py and the `dohost` helper
//! module (`sdk-python/`).

mod support;

use serde_json::{Value as Json, json};
use support::{Host, Served, exec, serve};

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
