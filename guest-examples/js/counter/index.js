// A counter Durable Object: one integer in SQLite, changed over HTTP.
//
// - GET / or GET /value returns {"value": n}
// - POST /increment adds 1, or `by` from an optional {"by": n} body, and returns the new value
// - POST /reset sets it back to 0

import { DurableObject } from "dohost:workers";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS counter (
      id INTEGER PRIMARY KEY CHECK (id = 0),
      value INTEGER NOT NULL
    )`);
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    switch (`${request.method} ${pathname}`) {
      case "GET /":
      case "GET /value":
        return Response.json({ value: this.value() });
      case "POST /increment": {
        const by = await incrementOf(request);
        if (!Number.isSafeInteger(by)) {
          return new Response('expected no body or {"by": <integer>}', { status: 400 });
        }
        return Response.json({ value: this.increment(by) });
      }
      case "POST /reset":
        this.sql.exec("DELETE FROM counter");
        return Response.json({ value: 0 });
      default:
        return new Response("not found", { status: 404 });
    }
  }

  value() {
    // An aggregate always yields one row, even before the first increment.
    return this.sql.exec("SELECT coalesce(max(value), 0) AS value FROM counter").one().value;
  }

  increment(by) {
    const upsert = `INSERT INTO counter (id, value) VALUES (0, ?)
      ON CONFLICT (id) DO UPDATE SET value = value + excluded.value
      RETURNING value`;
    return this.sql.exec(upsert, by).one().value;
  }
}

/** `by` from an optional {"by": n} body: 1 without a body, undefined if the body is bad. */
async function incrementOf(request) {
  const body = await request.text();
  if (!body) return 1;
  try {
    return JSON.parse(body).by ?? 1;
  } catch {
    return undefined;
  }
}
