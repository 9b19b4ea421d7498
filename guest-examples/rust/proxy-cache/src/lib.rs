//! A caching proxy: fetches a URL through the host's fetch policy and keeps the body in SQL
//! for a while.
//!
//! - `GET /?url=<url>&ttl=<seconds>` answers from the cache when the entry is younger than
//!   `ttl` (default 60 s, header `x-cache: hit`), else fetches, stores and answers
//!   (`x-cache: miss`). Upstream statuses pass through; only 200s are cached.
//! - `DELETE /?url=<url>` drops the entry.
//!
//! One object per cache: address it by name, e.g. `/cache-eu/?url=...`.

use dohost_sdk::{Ctx, Object, Request, Response, Result, Sql, now_ms};

struct ProxyCache {
    ctx: Ctx,
    sql: Sql,
}

impl Object for ProxyCache {
    fn new(ctx: Ctx) -> Result<Self> {
        let sql = ctx.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS cache (
                url TEXT PRIMARY KEY,
                content_type TEXT,
                body BLOB NOT NULL,
                fetched_at INTEGER NOT NULL
            )",
            (),
        )?;
        Ok(ProxyCache { ctx, sql })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let Some(url) = req.query_param("url") else {
            return Ok(Response::text("use ?url=<url>").with_status(400));
        };
        match req.method() {
            "GET" => {
                let ttl_ms = req
                    .query_param("ttl")
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(60)
                    * 1000;
                self.get(&url, ttl_ms)
            }
            "DELETE" => {
                self.sql.exec("DELETE FROM cache WHERE url = ?", (url,))?;
                Ok(Response::new(204))
            }
            _ => Ok(Response::text("use GET or DELETE").with_status(405)),
        }
    }
}

impl ProxyCache {
    fn get(&self, url: &str, ttl_ms: i64) -> Result<Response> {
        let now = now_ms();
        let cached = self
            .sql
            .exec(
                "SELECT content_type, body FROM cache WHERE url = ? AND fetched_at > ?",
                (url, now - ttl_ms),
            )?
            .next();
        if let Some(row) = cached {
            let content_type: Option<String> = row.get("content_type")?;
            let body: Vec<u8> = row.get("body")?;
            return Ok(with_type(Response::new(200).with_body(body), content_type)
                .with_header("x-cache", "hit"));
        }
        let upstream = match self.ctx.fetch(Request::get(url)) {
            Ok(response) => response,
            Err(e) => return Ok(Response::text(e.to_string()).with_status(502)),
        };
        let content_type = upstream.header("content-type").map(str::to_string);
        if upstream.status() == 200 {
            self.sql.exec(
                "INSERT OR REPLACE INTO cache (url, content_type, body, fetched_at) VALUES (?, ?, ?, ?)",
                (url, content_type.clone(), upstream.body(), now),
            )?;
        }
        let status = upstream.status();
        Ok(with_type(
            Response::new(status).with_body(upstream.into_body()),
            content_type,
        )
        .with_header("x-cache", "miss"))
    }
}

fn with_type(response: Response, content_type: Option<String>) -> Response {
    match content_type {
        Some(t) => response.with_header("content-type", t),
        None => response,
    }
}

dohost_sdk::export!(ProxyCache);
