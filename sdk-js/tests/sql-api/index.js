// Test object for tests/js.rs: each GET /<check> runs one group of API calls and answers with
// JSON describing what happened, which the Rust test compares with what Cloudflare documents.
// POST /write-then-throw writes a row and then throws (the event must roll back).

import { DurableObject } from "dohost:workers";

/** The error an action throws, as { name, message }, or what it returned. */
function attempt(action) {
  try {
    return { returned: action() };
  } catch (e) {
    return { name: e.name, message: e.message, kind: e.kind, code: e.code };
  }
}

/** A JS value described with its type, so the test can check the mapping. */
function describe(value) {
  if (value instanceof ArrayBuffer)
    return { type: "ArrayBuffer", bytes: [...new Uint8Array(value)] };
  return { type: value === null ? "null" : typeof value, value };
}

export class SqlApi extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL);
      CREATE TABLE IF NOT EXISTS events (n INTEGER);
    `);
  }

  checks = {
    cursor: () => {
      const sql = this.sql;
      sql.exec("DELETE FROM items");
      const insert = sql.exec(
        "INSERT INTO items (id, name, score) VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, 'c', NULL)",
      );
      const iterated = [];
      const cursor = sql.exec("SELECT id, name, score FROM items ORDER BY id");
      for (const row of cursor) iterated.push(row);
      const partial = sql.exec("SELECT id FROM items ORDER BY id");
      const first = partial.next();
      const rest = partial.toArray();
      const after = partial.next();
      const raw = sql.exec("SELECT id, name FROM items ORDER BY id").raw();
      const rawFirst = raw.next().value;
      const scan = sql.exec("SELECT count(*) AS n FROM items WHERE score > 0");
      const update = sql.exec("UPDATE items SET score = score + 1 WHERE score IS NOT NULL");
      return {
        insert: {
          columnNames: insert.columnNames,
          rowsRead: insert.rowsRead,
          rowsWritten: insert.rowsWritten,
          rows: insert.toArray(),
        },
        iterated,
        columnNames: cursor.columnNames,
        next: { first, rest, after },
        raw: { first: rawFirst, rest: raw.toArray() },
        duplicateNames: {
          object: sql.exec("SELECT 1 AS a, 2 AS a").one(),
          raw: sql.exec("SELECT 1 AS a, 2 AS a").raw().toArray(),
        },
        scan: { rowsRead: scan.rowsRead, rowsWritten: scan.rowsWritten, n: scan.one().n },
        update: { rowsRead: update.rowsRead, rowsWritten: update.rowsWritten },
        one: {
          exactly: attempt(() => sql.exec("SELECT name FROM items WHERE id = ?", 2).one()),
          none: attempt(() => sql.exec("SELECT name FROM items WHERE id = ?", 99).one()),
          many: attempt(() => sql.exec("SELECT name FROM items").one()),
        },
        paged: sql
          .exec(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) SELECT i FROM n",
          )
          .toArray()
          .reduce((sum, { i }) => sum + i, 0),
        databaseSize: sql.databaseSize,
      };
    },

    values: () => {
      const sql = this.sql;
      const bound = (value) => {
        const row = sql
          .exec("SELECT typeof(?1) AS type, quote(?1) AS quoted, ?1 AS value", value)
          .one();
        return { type: row.type, quoted: row.quoted, value: describe(row.value) };
      };
      const big = 2n ** 62n + 1n;
      return {
        integer: bound(42),
        negative: bound(-7),
        real: bound(1.5),
        bigint: bound(big),
        bigintTyped: sql.execTyped("SELECT ? AS v", big).one().v.value.toString(),
        bigintTooLarge: attempt(() => sql.exec("SELECT ?", 2n ** 63n)),
        boolean: bound(true),
        string: bound("héllo"),
        null: bound(null),
        undefined: bound(undefined),
        arrayBuffer: bound(new Uint8Array([0, 255, 16]).buffer),
        uint8Array: bound(new Uint8Array([1, 2, 3, 4]).subarray(1, 3)),
        object: attempt(() => sql.exec("SELECT ?", { a: 1 })),
        date: attempt(() => sql.exec("SELECT ?", new Date(0))),
      };
    },

    errors: () => {
      const sql = this.sql;
      const described = (action) => {
        const result = attempt(action);
        return { ...result, isError: result.name === "Error" };
      };
      return {
        syntax: described(() => sql.exec("SELEC 1")),
        missingTable: described(() => sql.exec("SELECT * FROM nowhere")),
        unique: described(() => sql.exec("INSERT INTO items (name) VALUES ('dup'), ('dup')")),
        denied: described(() => sql.exec("BEGIN")),
        tooFewBindings: described(() => sql.exec("SELECT ?, ?", 1)),
        afterErrors: sql.exec("SELECT 1 AS ok").one(),
      };
    },

    alarm: async () => {
      const storage = this.ctx.storage;
      const before = await storage.getAlarm();
      await storage.setAlarm(new Date(4102444800000));
      const fromDate = await storage.getAlarm();
      await storage.setAlarm(4102444800123.9);
      const fromNumber = await storage.getAlarm();
      const negative = await storage.setAlarm(-1).then(
        () => "resolved",
        (e) => e.message,
      );
      const invalid = await storage.setAlarm("soon").then(
        () => "resolved",
        (e) => `${e.name}: ${e.message}`,
      );
      await storage.deleteAlarm();
      return { before, fromDate, fromNumber, negative, invalid, after: await storage.getAlarm() };
    },

    identity: () => {
      const id = this.ctx.id;
      return {
        hex: id.toString(),
        name: id.name ?? null,
        equalsSelf: id.equals(this.ctx.id),
        string: `${id}`,
      };
    },
  };

  // setAlarm() requires an alarm() method; this object never lets its alarm fire.
  async alarm() {}

  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (request.method === "POST" && pathname === "/write-then-throw") {
      this.sql.exec("INSERT INTO events VALUES (1)");
      await Promise.resolve();
      throw new TypeError("boom after writing");
    }
    if (request.method === "POST" && pathname === "/write") {
      this.sql.exec("INSERT INTO events VALUES (1)");
      return Response.json(this.sql.exec("SELECT count(*) AS events FROM events").one());
    }
    const check = this.checks[pathname.slice(1)];
    if (request.method !== "GET" || !check) return new Response("not found", { status: 404 });
    return Response.json(await check());
  }
}
