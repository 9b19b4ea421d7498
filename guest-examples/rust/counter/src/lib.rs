//! A counter durable object: one integer in SQLite, changed over HTTP.
//!
//! - `GET /` or `GET /value` returns `{"value": n}`
//! - `POST /increment` adds 1, or `by` from an optional `{"by": n}` body, and returns the new value
//! - `POST /reset` sets it back to 0

use dohost_sdk::{Ctx, Object, Request, Response, Result, Sql};
use serde::Deserialize;
use serde_json::json;

struct Counter {
    sql: Sql,
}

#[derive(Deserialize)]
struct Increment {
    #[serde(default = "one")]
    by: i64,
}

fn one() -> i64 {
    1
}

impl Object for Counter {
    fn new(ctx: Ctx) -> Result<Self> {
        let sql = ctx.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS counter
                (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL)",
            (),
        )?;
        Ok(Counter { sql })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let value: i64 = match (req.method(), req.path()) {
            ("GET", "/" | "/value") => {
                // An aggregate always yields one row, even before the first increment.
                let sql = "SELECT coalesce(max(value), 0) FROM counter";
                self.sql.exec(sql, ())?.one()?.get(0)?
            }
            ("POST", "/increment") => {
                let by = if req.body().is_empty() {
                    1
                } else {
                    match req.json::<Increment>() {
                        Ok(inc) => inc.by,
                        Err(e) => return Ok(Response::text(e.to_string()).with_status(400)),
                    }
                };
                self.sql
                    .exec(
                        "INSERT INTO counter (id, value) VALUES (0, ?)
                         ON CONFLICT (id) DO UPDATE SET value = value + excluded.value
                         RETURNING value",
                        (by,),
                    )?
                    .one()?
                    .get(0)?
            }
            ("POST", "/reset") => {
                self.sql.exec("DELETE FROM counter", ())?;
                0
            }
            _ => return Ok(Response::not_found()),
        };
        Response::json(&json!({ "value": value }))
    }
}

dohost_sdk::export!(Counter);
