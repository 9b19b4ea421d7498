//! The classic durable object: a game room that players join.
//!
//! - `POST /join` with `{"playerId": "...", "name": "..."}` adds (or renames) a player
//! - `GET /count` returns `{"players": n}` (so does `/join`)
//! - `GET /players` returns `[{"id": "...", "name": "..."}, ...]`

use dohost_sdk::{Ctx, Object, Request, Response, Result, Sql};
use serde::{Deserialize, Serialize};
use serde_json::json;

struct GameRoom {
    sql: Sql,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    player_id: String,
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Player {
    id: String,
    name: String,
}

impl Object for GameRoom {
    fn new(ctx: Ctx) -> Result<Self> {
        let sql = ctx.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
            (),
        )?;
        Ok(GameRoom { sql })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method(), req.path()) {
            ("POST", "/join") => {
                let join: Join = match req.json() {
                    Ok(join) => join,
                    Err(e) => return Ok(Response::text(e.to_string()).with_status(400)),
                };
                self.sql.exec(
                    "INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)",
                    (join.player_id, join.name),
                )?;
                self.count()
            }
            ("GET", "/count") => self.count(),
            ("GET", "/players") => {
                let players: Vec<Player> = self
                    .sql
                    .exec("SELECT id, name FROM players ORDER BY id", ())?
                    .deserialize()?;
                Response::json(&players)
            }
            _ => Ok(Response::not_found()),
        }
    }
}

impl GameRoom {
    fn count(&self) -> Result<Response> {
        let players: i64 = self
            .sql
            .exec("SELECT count(*) FROM players", ())?
            .one()?
            .get(0)?;
        Response::json(&json!({ "players": players }))
    }
}

dohost_sdk::export!(GameRoom);
