//! The conformance suite runner (`dohost conformance`).
//!
//! Runs every case (JSON files in `tests/conformance/cases/`, embedded in the binary) against
//! one conformance object, each case on a fresh host with its own temporary data directory,
//! and reports one line per case. The object speaks the protocol of
//! `tests/conformance/SPEC.md`; the case format is documented in
//! `tests/conformance/README.md`.

mod client;
mod expectations;
mod pattern;
mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value as Json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::expectations::{Expectation, Expectations};
use self::pattern::{Vars, matches, substitute, substitute_str};
use crate::id::IdMinter;
use crate::server::{Runtime, Server, ServerConfig};
use crate::storage::{SyncMode, database_path};

include!(concat!(env!("OUT_DIR"), "/conformance_cases.rs"));

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The conformance object's component.
    pub component: PathBuf,
    /// Known failures and skips.
    pub expectations: Expectations,
    /// Only cases whose name contains this.
    pub filter: Option<String>,
    /// Read cases from this directory instead of the embedded ones.
    pub cases_dir: Option<PathBuf>,
}

/// One case, parsed.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub guarantee: String,
    /// Host settings for this case (`"config"` in the file).
    config: Json,
    steps: Vec<Json>,
}

/// Counts at the end of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    /// Unexpected failures, plus listed failures that passed.
    pub failed: usize,
    pub skipped: usize,
    /// Listed failures that failed as expected (counted in `skipped` too).
    pub expected_failures: usize,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

/// Loads the cases: embedded, or from `dir`.
pub fn load_cases(dir: Option<&Path>) -> anyhow::Result<Vec<Case>> {
    let mut sources: Vec<(String, String)> = match dir {
        None => EMBEDDED_CASES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        Some(dir) => {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let name = path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    out.push((name, std::fs::read_to_string(&path)?));
                }
            }
            out
        }
    };
    sources.sort();
    sources
        .into_iter()
        .map(|(name, text)| {
            let json: Json = serde_json::from_str(&text)
                .with_context(|| format!("case {name} is not valid JSON"))?;
            let steps = json
                .get("steps")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            if steps.is_empty() {
                bail!("case {name} has no steps");
            }
            let guarantee = json
                .get("guarantee")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            let config = json.get("config").cloned().unwrap_or(Json::Null);
            Ok(Case {
                name,
                guarantee,
                config,
                steps,
            })
        })
        .collect()
}

/// Runs the suite, printing one line per case and the summary, and returns the counts.
pub async fn run(options: RunOptions) -> anyhow::Result<Summary> {
    let cases = load_cases(options.cases_dir.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("dohost-conformance-")
        .tempdir()?;
    let base = host_config(&options.component, work.path().join("cases"));
    let runtime = Runtime::load(&base, work.path().join("cache"))
        .await
        .context("loading the conformance object")?;
    let upstream = upstream::Upstream::start()
        .await
        .context("starting the upstream server")?;
    let mut summary = Summary::default();
    let mut unknown = options.expectations.names();
    for case in &cases {
        unknown.retain(|n| n != &case.name);
        if options
            .filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        let expectation = options.expectations.get(&case.name);
        if let Some(Expectation::Skip(reason)) = expectation {
            println!("skip  {}  ({reason})", case.name);
            summary.skipped += 1;
            continue;
        }
        let started = Instant::now();
        let mut config = base.clone();
        config.data_dir = work.path().join("cases").join(&case.name);
        apply_case_config(&mut config, &case.config);
        let outcome = run_case(&runtime, config, case, &upstream).await;
        let ms = started.elapsed().as_millis();
        match (outcome, expectation) {
            (Ok(()), None) => {
                println!("pass  {}  ({ms} ms)", case.name);
                summary.passed += 1;
            }
            (Ok(()), Some(_)) => {
                println!(
                    "XPASS {}: listed as a known failure but passed; remove it from the expectations file",
                    case.name
                );
                summary.failed += 1;
            }
            (Err(e), Some(Expectation::Fail(reason))) => {
                println!("xfail {}  (known failure: {reason})", case.name);
                tracing::debug!("{}: {e:#}", case.name);
                summary.skipped += 1;
                summary.expected_failures += 1;
            }
            (Err(e), _) => {
                println!("FAIL  {}  [{}]\n      {e:#}", case.name, case.guarantee);
                summary.failed += 1;
            }
        }
    }
    for name in unknown {
        println!("note: the expectations file names {name:?}, which is not a case");
    }
    if summary.expected_failures > 0 {
        println!(
            "({} of the skipped are known failures)",
            summary.expected_failures
        );
    }
    println!(
        "{} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.skipped
    );
    Ok(summary)
}

fn host_config(component: &Path, data_dir: PathBuf) -> ServerConfig {
    let mut config = ServerConfig::new(component.to_path_buf());
    config.class = Some("conformance".into());
    config.listen = "127.0.0.1:0".parse().expect("valid address");
    config.data_dir = data_dir;
    config.storage.sync = SyncMode::Normal;
    config.max_instances = 64;
    // Short enough that alarm cases finish in seconds, long enough to observe the order.
    config.alarms.retry_base = Duration::from_millis(200);
    config.alarms.max_retries = 3;
    config
}

/// A host serving in the background for one case.
struct RunningHost {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    registry: crate::registry::ObjectRegistry,
}

impl RunningHost {
    async fn start(runtime: &Runtime, config: ServerConfig) -> anyhow::Result<Self> {
        let server = Server::bind_with(runtime, config).await?;
        let addr = server.local_addr()?;
        let registry = server.registry().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop,
            task,
            registry,
        })
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Applies a case's `"config"`: `fetchAllowPrivate`, `fetchAllow`, `fetchTimeoutMs`,
/// `fetchMaxResponseBytes`, `fetchEnabled`.
fn apply_case_config(config: &mut ServerConfig, case: &Json) {
    let fetch = &mut config.fetch;
    if let Some(v) = case.get("fetchAllowPrivate").and_then(Json::as_bool) {
        fetch.allow_private = v;
    }
    if let Some(v) = case.get("fetchEnabled").and_then(Json::as_bool) {
        fetch.enabled = v;
    }
    if let Some(v) = case.get("fetchAllow").and_then(Json::as_array) {
        fetch.allow = v
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
    }
    if let Some(v) = case.get("fetchTimeoutMs").and_then(Json::as_u64) {
        fetch.timeout = Duration::from_millis(v);
    }
    if let Some(v) = case.get("fetchMaxResponseBytes").and_then(Json::as_u64) {
        fetch.max_response_bytes = v as usize;
    }
}

async fn run_case(
    runtime: &Runtime,
    config: ServerConfig,
    case: &Case,
    upstream: &upstream::Upstream,
) -> anyhow::Result<()> {
    let class = config.class_name();
    let data_dir = config.data_dir.clone();
    let mut host = RunningHost::start(runtime, config.clone()).await?;
    let minter = IdMinter::load_or_create(&data_dir.join("id.key"))?;
    let mut vars = Vars::new();
    vars.insert(
        "upstream".into(),
        Json::String(format!("http://{}", upstream.addr)),
    );
    vars.insert(
        "upstreamPort".into(),
        Json::String(upstream.addr.port().to_string()),
    );
    let mut result = Ok(());
    for (i, step) in case.steps.iter().enumerate() {
        let outcome = match step_kind(step) {
            Some("restart") => {
                host.shutdown().await;
                host = RunningHost::start(runtime, config.clone()).await?;
                Ok(())
            }
            Some("evict") => {
                let name = step["evict"].as_str().unwrap_or_default();
                let id = minter.from_name(&class, name)?;
                host.registry.evict(id).await;
                Ok(())
            }
            Some("sleep") => {
                tokio::time::sleep(Duration::from_millis(step["sleep"].as_u64().unwrap_or(0)))
                    .await;
                Ok(())
            }
            Some("file") => check_file(&step["file"], &data_dir, &minter, &class),
            Some("parallel") => parallel(host.addr, step, &mut vars).await,
            Some("request" | "run") => request_step(host.addr, step, &mut vars).await,
            Some("waitFor") => wait_for(host.addr, step, &mut vars).await,
            _ => Err(anyhow::anyhow!("unknown step {step}")),
        };
        if let Err(e) = outcome {
            result = Err(e.context(format!("step {} ({})", i + 1, describe(step))));
            break;
        }
    }
    host.shutdown().await;
    result
}

const STEP_KINDS: &[&str] = &[
    "restart", "evict", "sleep", "file", "parallel", "request", "run", "waitFor",
];

fn step_kind(step: &Json) -> Option<&'static str> {
    STEP_KINDS.iter().copied().find(|k| step.get(k).is_some())
}

fn describe(step: &Json) -> String {
    let text = step.to_string();
    if text.len() > 120 {
        format!("{}...", &text[..text.floor_char_boundary(120)])
    } else {
        text
    }
}

/// The HTTP request a `request` or `run` step sends.
fn build_request(step: &Json, vars: &Vars) -> anyhow::Result<client::Request> {
    if let Some(run) = step.get("run") {
        let object = run
            .get("object")
            .and_then(Json::as_str)
            .context("run.object")?;
        let body = serde_json::json!({ "steps": substitute(&run["steps"], vars) });
        return Ok(client::Request {
            method: "POST".into(),
            path: format!("/{}/run", uri_escape(&substitute_str(object, vars))),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        });
    }
    let spec = &step["request"];
    let method = spec
        .get("method")
        .and_then(Json::as_str)
        .unwrap_or("GET")
        .to_string();
    let path = substitute_str(
        spec.get("path")
            .and_then(Json::as_str)
            .context("request.path")?,
        vars,
    );
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(list) = spec.get("headers").and_then(Json::as_array) {
        for pair in list {
            let name = pair[0].as_str().unwrap_or_default().to_string();
            headers.push((
                name,
                substitute_str(pair[1].as_str().unwrap_or_default(), vars),
            ));
        }
    }
    let body = if let Some(json) = spec.get("json") {
        headers.push(("content-type".into(), "application/json".into()));
        substitute(json, vars).to_string().into_bytes()
    } else if let Some(text) = spec.get("body").and_then(Json::as_str) {
        substitute_str(text, vars).into_bytes()
    } else if let Some(hex_body) = spec.get("bodyHex").and_then(Json::as_str) {
        hex::decode(hex_body).context("request.bodyHex")?
    } else {
        Vec::new()
    };
    Ok(client::Request {
        method,
        path,
        headers,
        body,
    })
}

/// Escapes what may not appear in a URI path segment (space, `/`, `?`, `#`, non-ASCII,
/// controls); `%` is kept so that cases can write their own escapes.
fn uri_escape(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn request_step(
    addr: std::net::SocketAddr,
    step: &Json,
    vars: &mut Vars,
) -> anyhow::Result<()> {
    let request = build_request(step, vars)?;
    let response = client::send(addr, &request).await?;
    check_response(step, &response, vars)
}

/// Checks a response against the step's `expect` (default: status 200).
fn check_response(step: &Json, response: &client::Response, vars: &mut Vars) -> anyhow::Result<()> {
    let null = Json::Null;
    let expect = step.get("expect").unwrap_or(&null);
    let status = expect.get("status").and_then(Json::as_u64).unwrap_or(200);
    if u64::from(response.status) != status {
        bail!(
            "expected status {status}, got {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim_end()
        );
    }
    let mut json_pattern = expect.get("json").cloned();
    if let Some(results) = expect.get("results") {
        json_pattern = Some(serde_json::json!({ "results": results }));
    }
    if let Some(pattern) = json_pattern {
        let body: Json = serde_json::from_slice(&response.body).with_context(|| {
            format!(
                "the body is not JSON: {}",
                String::from_utf8_lossy(&response.body)
            )
        })?;
        matches(&substitute(&pattern, vars), Some(&body), vars).map_err(anyhow::Error::msg)?;
    }
    if let Some(text) = expect.get("body").and_then(Json::as_str) {
        let body = String::from_utf8_lossy(&response.body);
        if body != substitute_str(text, vars) {
            bail!("expected body {text:?}, got {body:?}");
        }
    }
    if let Some(headers) = expect.get("headers").and_then(Json::as_object) {
        for (name, pattern) in headers {
            let value = response.header(name).map(|v| Json::String(v.to_string()));
            matches(&substitute(pattern, vars), value.as_ref(), vars)
                .map_err(|e| anyhow::anyhow!("header {name}: {e}"))?;
        }
    }
    Ok(())
}

/// `{"parallel": {"times": N, "connections": C, <request or run>}, "expect": ...}`: N requests
/// from C concurrent connections; every response must match.
async fn parallel(addr: std::net::SocketAddr, step: &Json, vars: &mut Vars) -> anyhow::Result<()> {
    let spec = &step["parallel"];
    let times = spec.get("times").and_then(Json::as_u64).unwrap_or(1) as usize;
    let connections = spec
        .get("connections")
        .and_then(Json::as_u64)
        .unwrap_or(1)
        .max(1) as usize;
    let mut inner = spec.clone();
    if let Some(expect) = step.get("expect") {
        inner["expect"] = expect.clone();
    }
    let inner = Arc::new(inner);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let inner = inner.clone();
        let mut vars = vars.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..times).step_by(connections) {
                vars.insert("i".into(), Json::String(i.to_string()));
                let request = build_request(&inner, &vars)?;
                let response = client::send(addr, &request).await?;
                check_response(&inner, &response, &mut vars)
                    .with_context(|| format!("request {i}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `{"waitFor": {<request or run>, "timeoutMs": T}, "expect": ...}`: repeats the request every
/// 50 ms until the response matches, failing with the last difference after T ms (default 10 s).
async fn wait_for(addr: std::net::SocketAddr, step: &Json, vars: &mut Vars) -> anyhow::Result<()> {
    let spec = &step["waitFor"];
    let timeout = Duration::from_millis(
        spec.get("timeoutMs")
            .and_then(Json::as_u64)
            .unwrap_or(10_000),
    );
    let mut inner = spec.clone();
    if let Some(expect) = step.get("expect") {
        inner["expect"] = expect.clone();
    }
    let started = Instant::now();
    loop {
        let request = build_request(&inner, vars)?;
        let response = client::send(addr, &request).await?;
        let mut attempt = vars.clone();
        match check_response(&inner, &response, &mut attempt) {
            Ok(()) => {
                *vars = attempt;
                return Ok(());
            }
            Err(e) if started.elapsed() > timeout => {
                return Err(e.context(format!("still no match after {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `{"file": {"of": NAME | "path": REL, "exists": BOOL}}` or `{"file": {"databases": N}}`
fn check_file(spec: &Json, data_dir: &Path, minter: &IdMinter, class: &str) -> anyhow::Result<()> {
    if let Some(want) = spec.get("databases").and_then(Json::as_u64) {
        let found = count_databases(&data_dir.join("objects"));
        if found != want {
            bail!("expected {want} object database(s) in the data directory, found {found}");
        }
        return Ok(());
    }
    let path = if let Some(name) = spec.get("of").and_then(Json::as_str) {
        database_path(data_dir, &minter.from_name(class, name)?)
    } else {
        let rel = spec
            .get("path")
            .and_then(Json::as_str)
            .context("file.path or file.of")?;
        data_dir.join(rel)
    };
    let want = spec.get("exists").and_then(Json::as_bool).unwrap_or(true);
    if path.exists() != want {
        bail!(
            "expected {} to {}exist",
            path.display(),
            if want { "" } else { "not " }
        );
    }
    Ok(())
}

/// Object database files under `dir` (at any depth).
fn count_databases(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_databases(&path)
            } else {
                u64::from(path.extension().is_some_and(|e| e == "sqlite3"))
            }
        })
        .sum()
}
