//! The reference conformance object: the JSON command protocol of `tests/conformance/SPEC.md`,
//! written with `dohost-sdk`.
//!
//! `POST /run` with `{"steps": [...]}` runs each step in order inside one event and answers
//! `{"results": [...]}`; any other request is echoed back as JSON.

use dohost_sdk::{
    AlarmInfo, Ctx, Error, FetchError, Object, Request, Response, Result, SqlError, Value,
};
use dohost_wire::{TypedValue, hex};
use serde_json::{Value as Json, json};

struct Conformance {
    ctx: Ctx,
    /// Memory kept alive by `alloc` steps, so the allocation is not optimised away.
    hoard: Vec<Vec<u8>>,
}

impl Object for Conformance {
    fn new(ctx: Ctx) -> Result<Self> {
        Ok(Conformance {
            ctx,
            hoard: Vec::new(),
        })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.method() != "POST" || req.path() != "/run" {
            return Response::json(&echo(&req));
        }
        let command: Json = match req.json() {
            Ok(command) => command,
            Err(e) => return Ok(Response::text(e.to_string()).with_status(400)),
        };
        let Some(steps) = command.get("steps").and_then(Json::as_array) else {
            return Ok(Response::text("expected {\"steps\": [...]}").with_status(400));
        };
        let mut results = Vec::with_capacity(steps.len());
        for step in steps {
            results.push(self.step(step)?);
        }
        Response::json(&json!({ "results": results }))
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let sql = self.ctx.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS conformance_alarms (scheduled_at INTEGER, retry_count INTEGER)",
            (),
        )?;
        sql.exec(
            "INSERT INTO conformance_alarms VALUES (?, ?)",
            (info.scheduled_at, i64::from(info.retry_count)),
        )?;
        // SPEC.md: fail (after writing) while the retry count is below `fail_times`.
        let plan = sql.exec(
            "SELECT name FROM sqlite_master WHERE name = 'conformance_alarm_plan'",
            (),
        )?;
        if plan.count() > 0 {
            let fail_times: i64 = sql
                .exec("SELECT fail_times FROM conformance_alarm_plan", ())?
                .one()?
                .get(0)?;
            if i64::from(info.retry_count) < fail_times {
                return Err(Error::msg(format!("planned failure {}", info.retry_count)));
            }
        }
        Ok(())
    }
}

impl Conformance {
    fn step(&mut self, step: &Json) -> Result<Json> {
        let op = step.get("op").and_then(Json::as_str).unwrap_or("");
        Ok(match op {
            "exec" => {
                let query = step.get("query").and_then(Json::as_str).unwrap_or("");
                let params = match step.get("params").and_then(Json::as_array) {
                    Some(params) => params
                        .iter()
                        .map(decode_value)
                        .collect::<Result<Vec<_>>>()?,
                    None => Vec::new(),
                };
                match self.ctx.sql().exec(query, params) {
                    Ok(cursor) => {
                        let columns = cursor.columns().to_vec();
                        let (read, written) = (cursor.rows_read(), cursor.rows_written());
                        let rows: Vec<Json> = cursor
                            .raw()
                            .map(|row| Json::Array(row.iter().map(encode_value).collect()))
                            .collect();
                        // Rows read may grow while later pages are fetched; report the final count.
                        json!({ "ok": {
                            "columns": columns,
                            "rows": rows,
                            "rowsRead": read,
                            "rowsWritten": written,
                        }})
                    }
                    Err(Error::Sql(e)) => {
                        json!({ "err": { "kind": sql_kind(&e), "message": e.message() } })
                    }
                    Err(e) => return Err(e),
                }
            }
            "databaseSize" => json!({ "ok": self.ctx.sql().database_size() }),
            "alarmSet" => {
                let at = step.get("at").and_then(Json::as_i64).unwrap_or(0);
                match self.ctx.set_alarm(at) {
                    Ok(()) => json!({ "ok": null }),
                    Err(e) => json!({ "err": { "kind": "alarm", "message": e.to_string() } }),
                }
            }
            "alarmGet" => json!({ "ok": self.ctx.get_alarm() }),
            "alarmDelete" => {
                self.ctx.delete_alarm();
                json!({ "ok": null })
            }
            "identity" => json!({ "ok": { "id": self.ctx.id(), "name": self.ctx.name() } }),
            "fetch" => {
                let url = step.get("url").and_then(Json::as_str).unwrap_or("");
                let method = step.get("method").and_then(Json::as_str).unwrap_or("GET");
                let mut request = Request::new(method, url);
                if let Some(headers) = step.get("headers").and_then(Json::as_array) {
                    for pair in headers {
                        let name = pair[0].as_str().unwrap_or("");
                        request = request.append_header(name, pair[1].as_str().unwrap_or(""));
                    }
                }
                if let Some(body) = step.get("body").and_then(Json::as_str) {
                    request = request.with_body(
                        hex::decode(body).map_err(|e| Error::msg(format!("body: {e}")))?,
                    );
                }
                match self.ctx.fetch(request) {
                    Ok(resp) => json!({ "ok": {
                        "status": resp.status(),
                        "headers": resp.headers(),
                        "body": hex::encode(resp.body()),
                    }}),
                    Err(Error::Fetch(e)) => {
                        json!({ "err": { "kind": fetch_kind(&e), "message": e.message() } })
                    }
                    Err(e) => return Err(e),
                }
            }
            "alloc" => {
                let bytes = step.get("bytes").and_then(Json::as_u64).unwrap_or(0) as usize;
                // Touch every page so the memory is really used.
                self.hoard.push(vec![1u8; bytes]);
                json!({ "ok": bytes })
            }
            "probe" => {
                // Fresh zeroed memory, as a new allocation sees it: any non-zero byte would be
                // data left behind by an earlier instance.
                let bytes = step.get("bytes").and_then(Json::as_u64).unwrap_or(0) as usize;
                let fresh = vec![0u8; bytes];
                let dirty = fresh.iter().filter(|b| **b != 0).count();
                json!({ "ok": dirty })
            }
            "spin" => {
                let ms = step.get("ms").and_then(Json::as_u64).unwrap_or(0);
                let start = dohost_sdk::now_ms();
                let mut x = 0u64;
                while ms == 0 || dohost_sdk::now_ms() - start < ms as i64 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                json!({ "ok": x })
            }
            "recurse" => {
                let depth = step.get("depth").and_then(Json::as_u64).unwrap_or(0);
                json!({ "ok": recurse(depth) })
            }
            "trap" => panic!("conformance object: trap requested"),
            "fail" => {
                let message = step
                    .get("message")
                    .and_then(Json::as_str)
                    .unwrap_or("failure requested");
                return Err(Error::msg(message));
            }
            other => {
                json!({ "err": { "kind": "unknown-op", "message": format!("unknown op {other:?}") } })
            }
        })
    }
}

/// Recursion that the optimiser cannot turn into a loop: each frame keeps a buffer alive.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    if depth == 0 {
        0
    } else {
        recurse(depth - 1).wrapping_add(frame[3])
    }
}

fn echo(req: &Request) -> Json {
    json!({
        "method": req.method(),
        "url": req.url(),
        "path": req.path(),
        "query": req.query(),
        "headers": req.headers(),
        "body": hex::encode(req.body()),
    })
}

fn fetch_kind(e: &FetchError) -> &'static str {
    match e {
        FetchError::NotEnabled(_) => "not-enabled",
        FetchError::Denied(_) => "denied",
        FetchError::InvalidRequest(_) => "invalid-request",
        FetchError::Dns(_) => "dns",
        FetchError::Connect(_) => "connect",
        FetchError::Timeout(_) => "timeout",
        FetchError::TooLarge(_) => "too-large",
        _ => "other",
    }
}

fn sql_kind(e: &SqlError) -> &'static str {
    match e {
        SqlError::Syntax(_) => "syntax",
        SqlError::Constraint(_) => "constraint",
        SqlError::DatabaseFull(_) => "database-full",
        SqlError::TooBig(_) => "too-big",
        SqlError::AccessDenied(_) => "access-denied",
        SqlError::InvalidArgument(_) => "invalid-argument",
        _ => "other",
    }
}

/// Typed value encoding (SPEC.md), shared with the host's fuzz targets: `dohost-wire`.
fn encode_value(value: &Value) -> Json {
    dohost_wire::encode(&match value {
        Value::Null => TypedValue::Null,
        Value::Integer(i) => TypedValue::Integer(*i),
        Value::Real(f) => TypedValue::Real(*f),
        Value::Text(t) => TypedValue::Text(t.clone()),
        Value::Blob(b) => TypedValue::Blob(b.clone()),
    })
}

fn decode_value(json: &Json) -> Result<Value> {
    Ok(match dohost_wire::decode(json).map_err(Error::msg)? {
        TypedValue::Null => Value::Null,
        TypedValue::Integer(i) => Value::Integer(i),
        TypedValue::Real(f) => Value::Real(f),
        TypedValue::Text(t) => Value::Text(t),
        TypedValue::Blob(b) => Value::Blob(b),
    })
}

dohost_sdk::export!(Conformance);
