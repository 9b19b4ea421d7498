// The classic Durable Object: a game room that players join. This is Cloudflare code; only the
// import line differs ("cloudflare:workers" works too).
//
// - POST /join with {"playerId": "...", "name": "..."} adds (or renames) a player
// - GET /count returns {"players": n} (so does /join)
// - GET /players returns [{"id": "...", "name": "..."}, ...]

import { DurableObject } from "dohost:workers";

export class GameRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS players (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL
    )`);
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/join") {
      const { playerId, name } = await request.json();
      this.sql.exec("INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)", playerId, name);
      return this.count();
    }
    if (request.method === "GET" && url.pathname === "/count") {
      return this.count();
    }
    if (request.method === "GET" && url.pathname === "/players") {
      return Response.json(this.sql.exec("SELECT id, name FROM players ORDER BY id").toArray());
    }
    return new Response("not found", { status: 404 });
  }

  count() {
    const { players } = this.sql.exec("SELECT count(*) AS players FROM players").one();
    return Response.json({ players });
  }
}
