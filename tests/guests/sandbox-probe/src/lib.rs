//! A test guest that tries every way out of its sandbox it has through WASI and reports what
//! it saw: `POST /` with `{"paths": [..], "connect": "host:port"}` answers
//!
//! ```json
//! {"env": [..], "args": [..], "cwd": "..", "read": {path: ".."}, "list": {path: ".."},
//!  "write": {path: ".."}, "connect": ".."}
//! ```
//!
//! where each outcome is `"ok: ..."` or `"err: ..."`. The host test (tests/hostile.rs) asserts
//! that every attempt fails and that environment and arguments are empty.

use std::collections::BTreeMap;
use std::fmt::Display;

use dohost_sdk::{Ctx, Object, Request, Response, Result};
use serde::Deserialize;
use serde_json::json;

struct Probe;

#[derive(Deserialize)]
struct Plan {
    paths: Vec<String>,
    connect: Option<String>,
}

fn outcome<T, E: Display>(result: std::result::Result<T, E>, ok: impl Fn(T) -> String) -> String {
    match result {
        Ok(v) => format!("ok: {}", ok(v)),
        Err(e) => format!("err: {e}"),
    }
}

impl Object for Probe {
    fn new(_ctx: Ctx) -> Result<Self> {
        Ok(Probe)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let plan: Plan = match req.json() {
            Ok(plan) => plan,
            Err(e) => return Ok(Response::text(e.to_string()).with_status(400)),
        };
        let per_path = |f: &dyn Fn(&str) -> String| -> BTreeMap<String, String> {
            plan.paths.iter().map(|p| (p.clone(), f(p))).collect()
        };
        let read = per_path(&|p| outcome(std::fs::read(p), |b| format!("{} bytes", b.len())));
        let list = per_path(&|p| {
            outcome(std::fs::read_dir(p), |entries| {
                format!("{} entries", entries.count())
            })
        });
        let write = per_path(&|p| {
            let file = format!("{}/probe-was-here", p.trim_end_matches('/'));
            outcome(std::fs::write(&file, b"x"), |_| file.clone())
        });
        let connect = plan.connect.as_deref().map(|addr| {
            outcome(std::net::TcpStream::connect(addr), |s| {
                format!("connected from {:?}", s.local_addr())
            })
        });
        let env: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let cwd = outcome(std::env::current_dir(), |d| d.display().to_string());
        Response::json(&json!({
            "env": env,
            "args": args,
            "cwd": cwd,
            "read": read,
            "list": list,
            "write": write,
            "connect": connect,
        }))
    }
}

dohost_sdk::export!(Probe);
