//! Write dohost durable objects in Rust.
//!
//! A durable object is a WebAssembly component with its own SQLite database. The host runs at
//! most one instance per object ID and hands it one event (an HTTP request or an alarm) at a
//! time, each inside an implicit transaction that commits when the handler returns `Ok` and
//! rolls back when it returns `Err` or panics.
//!
//! Implement [`Object`] for a type, register it with [`export!`], and build the crate as a
//! `cdylib` for `wasm32-wasip2`:
//!
//! ```no_run
//! use dohost_sdk::{Ctx, Object, Request, Response, Result};
//! use serde::{Deserialize, Serialize};
//!
//! struct Room {
//!     ctx: Ctx,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct Join {
//!     player_id: String,
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Count {
//!     players: i64,
//! }
//!
//! impl Object for Room {
//!     fn new(ctx: Ctx) -> Result<Self> {
//!         ctx.sql().exec(
//!             "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
//!             (),
//!         )?;
//!         Ok(Room { ctx })
//!     }
//!
//!     fn fetch(&mut self, req: Request) -> Result<Response> {
//!         let sql = self.ctx.sql();
//!         match (req.method(), req.path()) {
//!             ("POST", "/join") => {
//!                 let Ok(join) = req.json::<Join>() else {
//!                     return Ok(Response::text("bad join request").with_status(400));
//!                 };
//!                 sql.exec(
//!                     "INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)",
//!                     (join.player_id, join.name),
//!                 )?;
//!             }
//!             ("GET", "/count") => {}
//!             _ => return Ok(Response::not_found()),
//!         }
//!         let players = sql.exec("SELECT count(*) FROM players", ())?.one()?.get(0)?;
//!         Response::json(&Count { players })
//!     }
//! }
//!
//! dohost_sdk::export!(Room);
//! ```
//!
//! - [`Ctx`] reaches the host: [`Ctx::sql`] (the database), [`Ctx::set_alarm`] and friends,
//!   [`Ctx::fetch`] (outbound HTTP), [`Ctx::id`] and [`Ctx::name`].
//! - [`Sql::exec`] takes [`Params`] (`()`, tuples, arrays, `Vec<Value>`) and returns a
//!   [`Cursor`] of [`Row`]s; read columns with [`Row::get`] or [`Row::deserialize`].
//! - Every fallible call returns [`Result`] with the one [`Error`] type.

#![warn(missing_docs)]

extern crate self as dohost_sdk;

mod ctx;
mod de;
mod error;
mod export;
mod http;
mod object;
mod sql;
mod value;

#[doc(hidden)]
pub mod __private;

pub use ctx::{Ctx, now_ms};
pub use error::{AlarmError, Error, FetchError, Result, SqlError};
pub use http::{Request, Response};
pub use object::{AlarmInfo, Object};
pub use sql::{ColumnIndex, Cursor, RawRows, Row, Sql};
pub use value::{FromValue, Params, Value};
