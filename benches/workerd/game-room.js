// The game-room Durable Object as it is written for Cloudflare (SQLite-backed storage), served
// by workerd as the peer in the dohost end-to-end benchmarks. Same behaviour as
// guest-examples/{rust,js}/game-room:
//
// - POST /<room>/join with {"playerId": "...", "name": "..."} adds (or renames) a player
// - GET /<room>/count returns {"players": n} (so does /join)
//
// The Worker routes /<room>/<path> to the object idFromName(room), which sees /<path>.

import { DurableObject } from "cloudflare:workers";

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
    return new Response("not found", { status: 404 });
  }

  count() {
    const { players } = this.sql.exec("SELECT count(*) AS players FROM players").one();
    return Response.json({ players });
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const slash = url.pathname.indexOf("/", 1);
    const room = decodeURIComponent(slash < 0 ? url.pathname.slice(1) : url.pathname.slice(1, slash));
    if (room === "") {
      return new Response("expected /<room>/<path>", { status: 400 });
    }
    const rest = slash < 0 ? "/" : url.pathname.slice(slash);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(room));
    const inner = new URL(rest + url.search, "http://room");
    return stub.fetch(new Request(inner, request));
  },
};
