//! Test harness: builds guest components from source, runs the real `dohost` binary on a free
//! port with a temporary data directory, and speaks plain HTTP/1.1 to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Guest crates the tests use; built together, once per test binary.
const GUESTS: &[&str] = &[
    "counter",
    "game-room",
    "conformance",
    "proxy-cache",
    "subscription",
    "sandbox-probe",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Path of a guest component, building all test guests from source on first use.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--release", "--target", "wasm32-wasip2"]);
        for g in GUESTS {
            cmd.args(["-p", g]);
        }
        let status = cmd.status().expect("run cargo to build the guests");
        assert!(status.success(), "building the guest components failed");
    });
    workspace_root()
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// A running `dohost run` process.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Host {
    /// Starts `dohost run <component> --data <data> --listen 127.0.0.1:0 <extra...>`.
    pub fn start(component: &Path, data: &Path, extra: &[&str]) -> Host {
        Self::start_with_log(component, data, extra, "info")
    }

    /// Like [`Host::start`], with `RUST_LOG` set to `filter`.
    pub fn start_with_log(component: &Path, data: &Path, extra: &[&str], filter: &str) -> Host {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dohost"))
            .arg("run")
            .arg(component)
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            // One compiled-component cache for every test host: each guest compiles once.
            .arg("--cache-dir")
            .arg(workspace_root().join("target/test-cache"))
            .args(extra)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dohost");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("on http://").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "dohost did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Host {
            child,
            addr,
            data: data.to_path_buf(),
            log,
        }
    }

    /// The address of the metrics endpoint of a host started with `--admin 127.0.0.1:0`, from
    /// its log (a port picked ahead could be taken by another test before the host binds it).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.wait_for_log(|log| log.contains("metrics on http://"));
        log.split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
    }

    /// Resident memory of the dohost process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The host process's ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log once `done` holds for it, or after 10 s: the host's log reaches the test
    /// through a pipe and a reader thread, and a guest's output goes to it from a stream task
    /// of its own, so a line may arrive just after the response it belongs to.
    pub fn wait_for_log(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if done(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Graceful stop (SIGTERM); returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        signal(&self.child, libc_sigterm());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("dohost did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        signal(&self.child, libc_sigterm());
    }

    /// The exit code once the process has exited, waiting up to `wait`.
    pub fn exit_code_within(&mut self, wait: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Abrupt stop (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        self.client().send(method, path, &[], body)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn libc_sigterm() -> i32 {
    15
}

fn signal(child: &Child, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The per-step results of a `/run` response, which must have succeeded.
    pub fn results(&self) -> Vec<serde_json::Value> {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["results"].as_array().expect("results").clone()
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Client {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to dohost");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream: BufReader::new(stream),
            addr,
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.stream.get_mut();
        stream
            .write_all(head.as_bytes())
            .expect("send request head");
        stream.write_all(body).expect("send request body");
        read_response(&mut self.stream)
    }

    /// Like [`Client::send`] with a JSON body, but returns I/O errors (a killed host) instead
    /// of panicking.
    pub fn try_post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> std::io::Result<Response> {
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        try_read_response(&mut self.stream)
    }

    /// `POST /<object>/run` with `{"steps": steps}`: the conformance protocol
    /// (tests/conformance/SPEC.md).
    pub fn run(&mut self, object: &str, steps: impl Into<serde_json::Value>) -> Response {
        let steps: serde_json::Value = steps.into();
        self.post_json(
            &format!("/{object}/run"),
            &serde_json::json!({ "steps": steps }),
        )
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, &[], b"")
    }

    pub fn post(&mut self, path: &str, body: &str) -> Response {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> Response {
        self.post(path, &body.to_string())
    }
}

fn read_response(stream: &mut BufReader<TcpStream>) -> Response {
    try_read_response(stream).expect("read the response")
}

fn try_read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut status_line = String::new();
    stream.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes on a fresh connection and returns what comes back (until close or timeout).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the first metric line starting with `line_start` at a host's metrics
/// address ([`Host::admin_addr`]).
pub fn metric(admin: SocketAddr, line_start: &str) -> f64 {
    let mut client = Client::connect(admin);
    let text = client.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
}

/// Waits until the live-object gauge at `admin` satisfies `done`, for at most `within`
/// (then fails, saying `what` did not happen). An evicted object's actor closes its database,
/// a checkpoint and a sync, before the gauge drops; a new object counts once its event has
/// been dispatched.
pub fn wait_for_live_objects(
    admin: SocketAddr,
    done: impl Fn(f64) -> bool,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    while !done(metric(admin, "dohost_live_objects")) {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the server has answered (or closed) `stream`, without waiting.
pub fn answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = match stream.peek(&mut byte) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).unwrap();
    answered
}

/// `path` with `suffix` appended to its file name (`x.sqlite3` -> `x.sqlite3-wal`).
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// [`files_under`], leaving out the spare databases for new objects that the host makes and
/// uses in the background (`spare/` in a data directory).
pub fn files_except_spares(dir: &Path) -> Vec<PathBuf> {
    let mut files = files_under(dir);
    files.retain(|f| !f.components().any(|c| c.as_os_str() == "spare"));
    files
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Object database files (`objects/xx/<hex>.sqlite3`) under a data directory.
pub fn object_databases(data: &Path) -> Vec<PathBuf> {
    files_under(&data.join("objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sqlite3"))
        .collect()
}

/// Builds the guest in `dir` (relative to the workspace root) with `scripts/build-guest`, once
/// per test binary, and returns the component's path. Works for every guest language.
pub fn build_guest(dir: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(d, _)| d == dir) {
        return path.clone();
    }
    let out = Command::new(workspace_root().join("scripts/build-guest"))
        .arg(workspace_root().join(dir))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/build-guest");
    assert!(out.status.success(), "scripts/build-guest {dir} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-guest prints the output path"),
    );
    built.push((dir.to_string(), path.clone()));
    path
}

/// The game-room contract every language's example honours: 200 joins to one room from 20
/// concurrent connections all succeed and are all counted (`{"players":200}`, compact JSON),
/// another room is another object, unknown paths are 404.
pub fn check_game_room_concurrent_joins(host: &Host) {
    let addr = host.addr;
    let threads: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..10 {
                    let body =
                        serde_json::json!({ "playerId": format!("p{t}-{i}"), "name": "Ann" });
                    let response = client.post_json("/lobby/join", &body);
                    assert_eq!(response.status, 200, "{}", response.text());
                    let players = response.json()["players"].as_i64().unwrap_or(0);
                    assert!((1..=200).contains(&players), "{}", response.text());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let response = host.client().get("/lobby/count");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), r#"{"players":200}"#);
    assert_eq!(host.client().get("/other/count").text(), r#"{"players":0}"#);
    assert_eq!(host.client().get("/lobby/nowhere").status, 404);
}

/// An `exec` step of the conformance protocol.
pub fn exec(query: &str) -> serde_json::Value {
    serde_json::json!({ "op": "exec", "query": query })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// A host serving a guest from a fresh data directory (removed when this is dropped).
pub struct Served {
    pub host: Host,
    pub component: PathBuf,
    pub data: tempfile::TempDir,
}

/// Builds the guest in `dir` (any language) and serves it from a fresh data directory.
///
/// Test hosts share one compiled-component cache. The first start of each component is made
/// alone, so that tests starting at the same time load it from the cache instead of all
/// compiling a 5-19 MB component at once on a shared machine.
pub fn serve(dir: &str) -> Served {
    static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let component = build_guest(dir);
    let data = tempfile::tempdir().expect("create a data directory");
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    let host = if started.contains(&component) {
        drop(started);
        Host::start(&component, data.path(), &[])
    } else {
        let host = Host::start(&component, data.path(), &[]);
        started.push(component.clone());
        host
    };
    Served {
        host,
        component,
        data,
    }
}

/// `SELECT count(*) FROM <table>` in object `object`.
pub fn count_rows(host: &Host, object: &str, table: &str) -> i64 {
    let results = host
        .client()
        .run(object, vec![exec(&format!("SELECT count(*) FROM {table}"))])
        .results();
    results[0]["ok"]["rows"][0][0]["value"]
        .as_str()
        .expect("a count")
        .parse()
        .expect("an integer")
}

/// The failure contract of every SDK's conformance object: for each `(step, kind, text)`, an
/// event that inserts a row, sets an alarm and then runs the failing `step` answers 500 with
/// `x-dohost-error: kind` and a body containing `text`, and leaves neither the row nor the
/// alarm behind; afterwards the object serves the next event normally.
pub fn check_failed_events_roll_back(host: &Host, cases: &[(serde_json::Value, &str, &str)]) {
    use serde_json::{Value as Json, json};
    host.client()
        .run("t", json!([exec("CREATE TABLE items (x INTEGER)")]))
        .results();
    for (failing, kind, text) in cases {
        let response = host.client().run(
            "t",
            json!([
                exec("INSERT INTO items VALUES (1)"),
                { "op": "alarmSet", "at": 4_102_444_800_000i64 },
                failing,
            ]),
        );
        assert_eq!(response.status, 500, "{failing}: {}", response.text());
        assert_eq!(response.header("x-dohost-error"), Some(*kind), "{failing}");
        assert!(response.text().contains(text), "{}", response.text());
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

/// The counter contract every language's example honours: `GET /` and `/value`, increments
/// with no body, `{}` and `{"by": n}`, 400 (and no change) for each of `bad_bodies`, reset,
/// 404 for a wrong method or path, one object per name.
pub fn check_counter(host: &Host, bad_bodies: &[&str]) {
    let mut c = host.client();
    assert_eq!(c.get("/c/").text(), r#"{"value":0}"#);
    assert_eq!(c.post("/c/increment", "").text(), r#"{"value":1}"#);
    assert_eq!(
        c.post("/c/increment", r#"{"by": 5}"#).json(),
        serde_json::json!({ "value": 6 })
    );
    assert_eq!(
        c.post("/c/increment", "{}").json(),
        serde_json::json!({ "value": 7 })
    );
    assert_eq!(
        c.post("/c/increment", r#"{"by": -2}"#).json(),
        serde_json::json!({ "value": 5 })
    );
    assert_eq!(c.get("/c/value").json(), serde_json::json!({ "value": 5 }));
    assert_eq!(
        c.get("/d/value").json(),
        serde_json::json!({ "value": 0 }),
        "separate object"
    );
    for bad in bad_bodies {
        let response = c.post("/c/increment", bad);
        assert_eq!(response.status, 400, "{bad}: {}", response.text());
    }
    assert_eq!(c.get("/c/value").json(), serde_json::json!({ "value": 5 }));
    assert_eq!(
        c.post("/c/reset", "").json(),
        serde_json::json!({ "value": 0 })
    );
    assert_eq!(c.get("/c/").json(), serde_json::json!({ "value": 0 }));
    assert_eq!(c.get("/c/increment").status, 404, "wrong method");
    assert_eq!(c.get("/c/elsewhere").status, 404);
}

/// The game-room contract beyond concurrency: joining again renames, `/players` lists, each of
/// `bad_joins` gets 400, a wrong method 404; after a graceful stop (exit 0) and a restart that
/// loads the compiled component from the cache, the data is still there. Returns the
/// restarted host on the same data directory.
pub fn check_game_room_renames_and_restarts(served: Served, bad_joins: &[&str]) -> Served {
    let mut client = served.host.client();
    let response = client.post("/room-1/join", r#"{"playerId":"a","name":"Ann"}"#);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"players":1}"#);
    client.post("/room-1/join", r#"{"playerId":"b","name":"Bob <&>"}"#);
    // Joining again with a new name renames: still two players.
    let response = client.post("/room-1/join", r#"{"playerId":"a","name":"Anna"}"#);
    assert_eq!(response.text(), r#"{"players":2}"#);
    assert_eq!(
        client.get("/room-1/players").json(),
        serde_json::json!([{ "id": "a", "name": "Anna" }, { "id": "b", "name": "Bob <&>" }])
    );
    for bad in bad_joins {
        let response = client.post("/room-1/join", bad);
        assert_eq!(response.status, 400, "{bad:?}: {}", response.text());
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
    let log = host.log();
    assert!(log.contains("serving class game-room"), "{log}");
    assert!(
        !log.contains("compiled component"),
        "the restart used the cache:\n{log}"
    );
    Served {
        host,
        component,
        data,
    }
}
