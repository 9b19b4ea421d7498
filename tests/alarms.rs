//! Durable alarms, end to end: the real binary, real SQLite files, the conformance object
//! (whose alarm handler records each run, see tests/conformance/SPEC.md).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::{Client, Host, exec, guest, now_ms};

/// The (scheduled_at, retry_count) rows the object's alarm handler recorded.
fn alarm_runs(client: &mut Client, object: &str) -> Vec<(i64, i64)> {
    let query = "SELECT scheduled_at, retry_count FROM conformance_alarms";
    let results = client.run(object, vec![exec(query)]).results();
    let Some(rows) = results[0]["ok"]["rows"].as_array() else {
        return Vec::new(); // the table does not exist yet: no run committed
    };
    rows.iter()
        .map(|r| {
            let int = |v: &Json| v["value"].as_str().unwrap().parse::<i64>().unwrap();
            (int(&r[0]), int(&r[1]))
        })
        .collect()
}

/// Polls until the object has recorded `n` alarm runs; returns when that was first seen.
fn wait_for_runs(host: &Host, object: &str, n: usize, timeout: Duration) -> Instant {
    let started = Instant::now();
    let mut client = host.client();
    loop {
        let runs = alarm_runs(&mut client, object);
        if runs.len() >= n {
            return Instant::now();
        }
        assert!(
            started.elapsed() < timeout,
            "{object}: {runs:?} after {timeout:?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fires_on_time_on_live_and_evicted_objects() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start_with_log(
        &guest("conformance"),
        data.path(),
        &["--idle-timeout", "200ms"],
        "info,dohost::registry=debug",
    );
    let mut client = host.client();
    let at = now_ms() + 1500;
    client
        .run("live", json!([{ "op": "alarmSet", "at": at }]))
        .results();
    client
        .run("evicted", json!([{ "op": "alarmSet", "at": at }]))
        .results();
    // Keep `live` busy so it stays live; `evicted` idles past the 200 ms timeout.
    let keep_alive = {
        let addr = host.addr;
        std::thread::spawn(move || {
            let mut client = Client::connect(addr);
            let end = Instant::now() + Duration::from_millis(1400);
            while Instant::now() < end {
                client.get("/live/ping");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    keep_alive.join().unwrap();
    for object in ["live", "evicted"] {
        wait_for_runs(&host, object, 1, Duration::from_secs(10));
        let fired_at = now_ms();
        assert!(fired_at >= at, "{object} fired {} ms early", at - fired_at);
        assert_eq!(alarm_runs(&mut client, object), vec![(at, 0)]);
        let results = client.run(object, json!([{ "op": "alarmGet" }])).results();
        assert_eq!(
            results[0]["ok"],
            Json::Null,
            "the alarm is cleared after it ran"
        );
    }
    assert!(
        host.log().contains("evicted after"),
        "the idle object was evicted:\n{}",
        host.log()
    );
}

#[test]
fn fires_after_sigkill_and_restart() {
    let data = tempfile::tempdir().unwrap();
    let component = guest("conformance");
    let host = Host::start(&component, data.path(), &[]);
    let at = now_ms() + 1000;
    host.client()
        .run("k", json!([{ "op": "alarmSet", "at": at }]))
        .results();
    host.kill();
    // Stay down past the alarm time: it must fire promptly once the host is back.
    std::thread::sleep(Duration::from_millis(1500));
    let host = Host::start(&component, data.path(), &[]);
    wait_for_runs(&host, "k", 1, Duration::from_secs(10));
    assert_eq!(alarm_runs(&mut host.client(), "k"), vec![(at, 0)]);
}

#[test]
fn failing_handlers_are_retried_with_growing_delays() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--alarm-retry-base", "200ms", "--alarm-max-retries", "5"],
    );
    let mut client = host.client();
    let start = Instant::now();
    client.run("r", json!([
            { "op": "exec", "query": "CREATE TABLE conformance_alarm_plan (fail_times INTEGER); INSERT INTO conformance_alarm_plan VALUES (3)" },
            { "op": "alarmSet", "at": now_ms() },
        ])).results();
    let done = wait_for_runs(&host, "r", 1, Duration::from_secs(20));
    // Three failures, then success on retry 3; failed attempts left no rows.
    assert_eq!(alarm_runs(&mut client, "r").len(), 1);
    assert_eq!(alarm_runs(&mut client, "r")[0].1, 3);
    // Retries wait 200, 400 and 800 ms: the success cannot come before 1.4 s.
    assert!(
        done - start >= Duration::from_millis(1400),
        "{:?}",
        done - start
    );
    let log = host.log();
    for delay in [
        "retrying in 200ms",
        "retrying in 400ms",
        "retrying in 800ms",
    ] {
        assert!(log.contains(delay), "missing {delay:?} in\n{log}");
    }
}

#[test]
fn a_thousand_simultaneous_alarms_fire_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &["--sync", "normal"]);
    let at = now_ms() + 3000;
    let objects: Vec<String> = (0..1000).map(|i| format!("obj-{i}")).collect();
    std::thread::scope(|scope| {
        for chunk in objects.chunks(100) {
            let addr = host.addr;
            scope.spawn(move || {
                let mut client = Client::connect(addr);
                for object in chunk {
                    client
                        .run(object, json!([{ "op": "alarmSet", "at": at }]))
                        .results();
                }
            });
        }
    });
    let wait_until = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for chunk in objects.chunks(100) {
            let host = &host;
            scope.spawn(move || {
                let mut client = host.client();
                for object in chunk {
                    loop {
                        let runs = alarm_runs(&mut client, object);
                        if !runs.is_empty() {
                            assert_eq!(runs, vec![(at, 0)], "{object}");
                            break;
                        }
                        assert!(Instant::now() < wait_until, "{object} never fired");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
    });
    // No second delivery afterwards either.
    std::thread::sleep(Duration::from_millis(500));
    let mut client = host.client();
    for object in objects.iter().step_by(37) {
        assert_eq!(alarm_runs(&mut client, object).len(), 1, "{object}");
    }
}

#[test]
fn subscription_renews_itself_until_cancelled() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("subscription"), data.path(), &[]);
    let mut client = host.client();
    let first = now_ms() + 200;
    let body = json!({ "plan": "pro", "nextBillingAt": first, "periodMs": 300 });
    let response = client.post_json("/acme/activate", &body);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["nextBillingAt"], first);
    let deadline = Instant::now() + Duration::from_secs(15);
    let state = loop {
        let state = client.get("/acme/").json();
        if state["renewals"].as_array().unwrap().len() >= 3 {
            break state;
        }
        assert!(Instant::now() < deadline, "{state}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let renewals = state["renewals"].as_array().unwrap();
    for (i, renewal) in renewals.iter().take(3).enumerate() {
        assert_eq!(
            renewal["renewedAt"],
            first + 300 * i as i64,
            "cycle {i}: {state}"
        );
        assert_eq!(renewal["plan"], "pro");
    }
    let cancelled = client.post("/acme/cancel", "").json();
    assert_eq!(cancelled["nextBillingAt"], Json::Null);
    let count = cancelled["renewals"].as_array().unwrap().len();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        client.get("/acme/").json()["renewals"]
            .as_array()
            .unwrap()
            .len(),
        count
    );
}

/// Once each change is durable, the index holds the object's alarm exactly: postponing the
/// alarm moves the entry later (no early wake-up), deleting it drops the entry.
#[test]
fn the_index_follows_postponed_and_deleted_alarms() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    let index = data.path().join("alarms.sqlite3");
    let entry = || -> Option<(i64, i64)> {
        let conn = rusqlite::Connection::open(&index).unwrap();
        conn.query_row("SELECT at, retry FROM alarms", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ok()
    };
    let mut client = host.client();
    let soon = now_ms() + 60_000;
    client
        .run("p", json!([{ "op": "alarmSet", "at": soon }]))
        .results();
    assert_eq!(entry(), Some((soon, 0)));
    client
        .run("p", json!([{ "op": "alarmSet", "at": soon + 60_000 }]))
        .results();
    assert_eq!(entry(), Some((soon + 60_000, 0)));
    client
        .run("p", json!([{ "op": "alarmSet", "at": soon - 30_000 }]))
        .results();
    assert_eq!(entry(), Some((soon - 30_000, 0)));
    client.run("p", json!([{ "op": "alarmDelete" }])).results();
    assert_eq!(entry(), None);
}

#[test]
fn an_early_index_entry_wakes_no_instance() {
    // The index may be early (a crash between an alarm's move to a later time and the index
    // following it): the object's database is asked, without starting an instance, and the
    // entry moves to the database's time.
    let data = tempfile::tempdir().unwrap();
    let index = data.path().join("alarms.sqlite3");
    let later = now_ms() + 120_000;
    let host = Host::start(&guest("conformance"), data.path(), &[]);
    host.client()
        .run("e", json!([{ "op": "alarmSet", "at": later }]))
        .results();
    assert_eq!(host.stop(), Some(0));
    let early = now_ms() - 1_000;
    rusqlite::Connection::open(&index)
        .unwrap()
        .execute("UPDATE alarms SET at = ?1", [early])
        .unwrap();
    let host = Host::start(
        &guest("conformance"),
        data.path(),
        &["--admin", "127.0.0.1:0"],
    );
    let entry = || -> Option<(i64, i64)> {
        let conn = rusqlite::Connection::open(&index).unwrap();
        conn.query_row("SELECT at, retry FROM alarms", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while entry() != Some((later, 0)) {
        assert!(Instant::now() < deadline, "{:?}\n{}", entry(), host.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let activations = support::metric(
        host.admin_addr(),
        "dohost_activations_total{class=\"conformance\"}",
    );
    assert_eq!(activations, 0.0, "an instance was started");
    assert!(alarm_runs(&mut host.client(), "e").is_empty());
}
