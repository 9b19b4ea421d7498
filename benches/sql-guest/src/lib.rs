//! The micro-benchmark guest: measures the `sql.exec` round trip from inside an object.
//!
//! `GET /exec?n=N` runs `SELECT ?` N times (binding the loop counter, reading back one row)
//! in one event and answers `N` as text. The benchmark times `n=64` against `n=0`, so the
//! difference divided by 64 is the cost of one round trip: guest SDK, canonical ABI lowering
//! and lifting, the host's `sql.exec` (statement cache, authorizer, binding, row copy) and back.

use dohost_sdk::{Ctx, Object, Request, Response, Result, Sql};

struct SqlBench {
    sql: Sql,
}

impl Object for SqlBench {
    fn new(ctx: Ctx) -> Result<Self> {
        Ok(SqlBench { sql: ctx.sql() })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.method() != "GET" || req.path() != "/exec" {
            return Ok(Response::not_found());
        }
        let n: i64 = match req.query_param("n").map(|n| n.parse()) {
            Some(Ok(n)) if (0..=1_000_000).contains(&n) => n,
            _ => return Ok(Response::text("expected ?n=<0..=1000000>").with_status(400)),
        };
        let mut sum = 0i64;
        for i in 0..n {
            let v: i64 = self.sql.exec("SELECT ?", (i,))?.one()?.get(0)?;
            sum = sum.wrapping_add(v);
        }
        Ok(Response::text(format!("{n} {sum}")))
    }
}

dohost_sdk::export!(SqlBench);
