//! Crash safety: write load on several objects and on a stream of new objects, SIGKILL at random
//! moments (50 times; `DOHOST_CRASH_KILLS=N` or `scripts/soak N` for more), restart, and check
//! that every acknowledged write survived, no event is half-applied, every database passes
//! `PRAGMA integrity_check`, and alarms set before the crashes still fire.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{Client, Host, guest, object_databases};

const OBJECTS: usize = 4;
/// SIGKILLs in the test suite; `DOHOST_CRASH_KILLS` asks for more (a soak).
const KILLS: usize = 50;

fn kills() -> usize {
    std::env::var("DOHOST_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(KILLS, |n: usize| n.max(1))
}

/// A small deterministic generator (no extra dependency): xorshift64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn event(n: u64) -> serde_json::Value {
    let id = json!({ "type": "integer", "value": n.to_string() });
    // One event, two rows: both or neither may be visible.
    json!({ "steps": [
        { "op": "exec", "query": "CREATE TABLE IF NOT EXISTS w (id INTEGER, part INTEGER)" },
        { "op": "exec", "query": "INSERT INTO w VALUES (?, 1)", "params": [id] },
        { "op": "exec", "query": "INSERT INTO w VALUES (?, 2)", "params": [id] },
    ]})
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let component = guest("conformance");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let kills = kills();
    let acked: Arc<Mutex<Vec<HashSet<u64>>>> = Arc::new(Mutex::new(vec![HashSet::new(); OBJECTS]));
    // First writes to new objects (spare databases claimed, files created) while being killed.
    let acked_new: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut next_id = 0u64;
    let mut alarm_at = 0i64;
    for round in 0..kills {
        let host = Host::start(&component, data.path(), &[]);
        if round == kills / 2 {
            // An alarm set halfway must still fire after all the crashes that follow.
            alarm_at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                + 3_000;
            let response = host.client().post_json(
                "/alarmed/run",
                &json!({ "steps": [{ "op": "alarmSet", "at": alarm_at }] }),
            );
            assert_eq!(response.status, 200);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let creator = {
            let (acked_new, stop, addr) = (acked_new.clone(), stop.clone(), host.addr);
            let first = next_id + 9_000_000;
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut n = first;
                while !stop.load(Ordering::Relaxed) {
                    match client.try_post_json(&format!("/new{n}/run"), &event(n)) {
                        Ok(r) if r.status == 200 => acked_new.lock().unwrap().push(n),
                        _ => break,
                    }
                    n += 1;
                }
            })
        };
        let writers: Vec<_> = (0..OBJECTS)
            .map(|o| {
                let (acked, stop, addr) = (acked.clone(), stop.clone(), host.addr);
                let first = next_id + o as u64 * 1_000_000;
                std::thread::spawn(move || {
                    let Ok(stream) = std::net::TcpStream::connect(addr) else {
                        return;
                    };
                    drop(stream);
                    let mut client = Client::connect(addr);
                    let mut n = first;
                    while !stop.load(Ordering::Relaxed) {
                        match client.try_post_json(&format!("/o{o}/run"), &event(n)) {
                            Ok(r) if r.status == 200 => {
                                acked.lock().unwrap()[o].insert(n);
                            }
                            _ => break, // the host is gone
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        next_id += 10_000_000;
        // Once the load is under way (a loaded machine may take a while to get there: each
        // round must add writes, or the test would mean little), at a random moment.
        let counts = || {
            let writes: usize = acked.lock().unwrap().iter().map(HashSet::len).sum();
            (writes, acked_new.lock().unwrap().len())
        };
        let (writes, new) = counts();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let (w, n) = counts();
            if w > writes && n > new {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 130));
        host.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            let _ = w.join();
        }
        let _ = creator.join();
    }

    // Restart once more and check through the host.
    let host = Host::start(&component, data.path(), &[]);
    let mut client = host.client();
    let acked = acked.lock().unwrap();
    let total: usize = acked.iter().map(HashSet::len).sum();
    assert!(
        total > 100,
        "too little load to mean anything: {total} acknowledged writes"
    );
    for (o, ids) in acked.iter().enumerate() {
        let response = client.post_json(
            &format!("/o{o}/run"),
            &json!({ "steps": [{ "op": "exec", "query": "SELECT id, count(*) FROM w GROUP BY id" }] }),
        );
        let rows = response.json()["results"][0]["ok"]["rows"]
            .as_array()
            .unwrap()
            .clone();
        let mut present = HashSet::new();
        for row in &rows {
            let id: u64 = row[0]["value"].as_str().unwrap().parse().unwrap();
            let parts = row[1]["value"].as_str().unwrap();
            assert_eq!(parts, "2", "object o{o}: event {id} is half-applied");
            present.insert(id);
        }
        let lost: Vec<_> = ids.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "object o{o} lost acknowledged writes: {lost:?}"
        );
    }
    let acked_new = acked_new.lock().unwrap();
    assert!(!acked_new.is_empty(), "no new object was ever acknowledged");
    for n in acked_new.iter() {
        let response = client.post_json(
            &format!("/new{n}/run"),
            &json!({ "steps": [{ "op": "exec", "query": "SELECT count(*) FROM w" }] }),
        );
        let rows = &response.json()["results"][0]["ok"]["rows"];
        assert_eq!(
            rows[0][0]["value"], "2",
            "new object new{n} lost its first write"
        );
    }
    println!(
        "{total} acknowledged writes and {} new objects, all present after {kills} SIGKILLs",
        acked_new.len()
    );

    // The alarm set before half of the crashes fires.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client.post_json(
            "/alarmed/run",
            &json!({ "steps": [{ "op": "exec", "query": "SELECT scheduled_at FROM conformance_alarms" }] }),
        );
        let rows = response.json()["results"][0]["ok"]["rows"].clone();
        if rows.as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(rows[0][0]["value"], alarm_at.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "the alarm never fired");
        std::thread::sleep(Duration::from_millis(50));
    }
    host.stop();

    // Every database file is intact.
    let databases = object_databases(data.path());
    assert!(databases.len() > OBJECTS);
    for db in databases {
        let conn = rusqlite::Connection::open(data.path().join("objects").join(&db)).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{db:?}");
    }
}

/// The database file of object `name` of class `class`, as `dohost id` prints it.
fn database_of(data: &std::path::Path, class: &str, name: &str) -> std::path::PathBuf {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["id", "--class", class, "--data"])
        .arg(data)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    std::path::PathBuf::from(text.lines().nth(1).expect("the file on line 2"))
}

#[test]
fn a_creation_cut_short_by_power_loss_is_set_aside_and_other_damage_is_reported() {
    let data = tempfile::tempdir().unwrap();
    let component = guest("counter");
    let host = Host::start(&component, data.path(), &[]);
    let r = host.client().post("/kept/increment", "");
    assert_eq!(r.json()["value"], 1);
    host.stop();
    // What a power loss between creating a file and its first sync can leave: the file's
    // pages not yet written (zeros) and a WAL with a torn frame. Nothing was acknowledged.
    let fresh = database_of(data.path(), "counter", "fresh");
    std::fs::create_dir_all(fresh.parent().unwrap()).unwrap();
    std::fs::write(&fresh, vec![0u8; 4096]).unwrap();
    std::fs::write(support::sidecar(&fresh, "-wal"), b"torn").unwrap();
    // Damage of another kind to an object with acknowledged data is never papered over.
    let kept = database_of(data.path(), "counter", "kept");
    let mut bytes = std::fs::read(&kept).unwrap();
    bytes[..16].copy_from_slice(b"scribbled over!!");
    std::fs::write(&kept, &bytes).unwrap();

    let host = Host::start(&component, data.path(), &[]);
    let mut client = host.client();
    let r = client.post("/fresh/increment", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], 1, "the object starts afresh");
    let aside: Vec<_> = std::fs::read_dir(fresh.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".unfinished-"))
        .collect();
    assert_eq!(aside.len(), 2, "file and WAL set aside: {aside:?}");
    let r = client.post("/kept/increment", "");
    println!("damaged object: {} {}", r.status, r.text());
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("database"), "{}", r.text());
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        bytes,
        "the damaged file is left as it was"
    );
    assert_eq!(client.post("/other/increment", "").json()["value"], 1);
    let log = host.log();
    assert!(log.contains("left unfinished"), "{log}");
}
