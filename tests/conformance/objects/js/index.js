// The JavaScript conformance object: the JSON command protocol of tests/conformance/SPEC.md,
// written with sdk-js. It behaves exactly like the Rust reference, ../rust/src/lib.rs.
//
// POST /run with {"steps": [...]} runs each step in order inside one event and answers
// {"results": [...]}; any other request is echoed back as JSON.
//
// Where the protocol needs more than Cloudflare's API offers, it uses the SDK's extensions:
// `sql.execTyped` (exact integer/real/blob typing) and `rawHeaders` (headers in delivery order);
// `fetch` calls the WIT `dohost:object/fetch` interface directly, as SPEC.md specifies. A
// thrown exception fails the event with `err` ("fail"); `ctx.abort()` traps it ("trap").

import { DurableObject, SqlError, rawHeaders } from "dohost:workers";
import { send } from "dohost:object/fetch@0.1.0";

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

export class Conformance extends DurableObject {
  /** Memory kept alive by `alloc` steps, for the instance's life. */
  hoard = [];

  async fetch(request) {
    const url = new URL(request.url);
    if (request.method !== "POST" || url.pathname !== "/run") {
      return Response.json(await echo(request));
    }
    let steps;
    try {
      steps = (await request.json()).steps;
    } catch {}
    if (!Array.isArray(steps)) {
      return new Response('expected {"steps": [...]}', { status: 400 });
    }
    const results = [];
    for (const step of steps) results.push(await this.step(step ?? {}));
    return Response.json({ results });
  }

  async alarm(info) {
    const sql = this.ctx.storage.sql;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS conformance_alarms (scheduled_at INTEGER, retry_count INTEGER)",
    );
    sql.exec("INSERT INTO conformance_alarms VALUES (?, ?)", info.scheduledTime, info.retryCount);
    // SPEC.md: fail (after writing) while the retry count is below `fail_times`.
    const plan = sql.exec("SELECT name FROM sqlite_master WHERE name = 'conformance_alarm_plan'");
    if (plan.toArray().length > 0) {
      const { fail_times } = sql.exec("SELECT fail_times FROM conformance_alarm_plan").one();
      if (info.retryCount < fail_times) throw new Error(`planned failure ${info.retryCount}`);
    }
  }

  async step(step) {
    // Like the Rust reference, a missing or mistyped field counts as its default.
    const op = text(step.op, "");
    switch (op) {
      case "exec": {
        const params = Array.isArray(step.params) ? step.params.map(decodeValue) : [];
        let cursor;
        try {
          cursor = this.ctx.storage.sql.execTyped(text(step.query, ""), ...params);
        } catch (e) {
          if (e instanceof SqlError) return err(e.kind, e.detail);
          throw e;
        }
        const rows = cursor
          .raw()
          .toArray()
          .map((row) => row.map(encodeValue));
        return {
          ok: {
            columns: cursor.columnNames,
            rows,
            rowsRead: cursor.rowsRead,
            rowsWritten: cursor.rowsWritten,
          },
        };
      }
      case "databaseSize":
        return { ok: this.ctx.storage.sql.databaseSize };
      case "alarmSet":
        try {
          await this.ctx.storage.setAlarm(integer(step.at));
        } catch (e) {
          return err("alarm", e.message);
        }
        return { ok: null };
      case "alarmGet":
        return { ok: await this.ctx.storage.getAlarm() };
      case "alarmDelete":
        await this.ctx.storage.deleteAlarm();
        return { ok: null };
      case "identity":
        return { ok: { id: this.ctx.id.toString(), name: this.ctx.id.name ?? null } };
      case "fetch": {
        const headers = Array.isArray(step.headers)
          ? step.headers.map((pair) => [text(pair?.[0], ""), text(pair?.[1], "")])
          : [];
        const body = typeof step.body === "string" ? unhexOrThrow(step.body) : new Uint8Array();
        try {
          const response = send({
            method: text(step.method, "GET"),
            url: text(step.url, ""),
            headers,
            body,
          });
          return {
            ok: { status: response.status, headers: response.headers, body: hex(response.body) },
          };
        } catch (e) {
          // The WIT binding throws the `fetch-error` case as `payload` ({ tag, val }).
          if (e?.payload?.tag) return err(e.payload.tag, e.payload.val);
          throw e;
        }
      }
      case "alloc": {
        const bytes = Math.max(0, integer(step.bytes));
        // fill() writes every byte, so the memory is really used.
        this.hoard.push(new Uint8Array(bytes).fill(1));
        return { ok: bytes };
      }
      case "spin": {
        const ms = Math.max(0, integer(step.ms));
        const start = Date.now();
        let x = 0;
        while (ms === 0 || Date.now() - start < ms) x++;
        return { ok: x };
      }
      case "recurse":
        // SpiderMonkey stops a runaway recursion with an InternalError, which traps the event.
        return { ok: recurse(Math.max(0, integer(step.depth))) };
      case "trap":
        // A thrown exception is an error (`err`); aborting the object is the JS way to trap.
        this.ctx.abort("conformance object: trap requested");
      case "fail":
        throw new Error(text(step.message, "failure requested"));
      default:
        return err("unknown-op", `unknown op ${JSON.stringify(op)}`);
    }
  }
}

/** A typed JSON value (SPEC.md) as a typed SQL value; a malformed one fails the event. */
function decodeValue(typed) {
  const value = typed?.value;
  switch (typed?.type) {
    case "null":
      return { type: "null" };
    case "integer":
      if (typeof value === "string" && /^[+-]?[0-9]+$/.test(value)) {
        const big = BigInt(value.replace(/^\+/, ""));
        if (big >= I64_MIN && big <= I64_MAX) return { type: "integer", value: big };
      }
      break;
    case "real":
      if (typeof value === "number") return { type: "real", value };
      if (value === "NaN" || value === "Infinity" || value === "-Infinity") {
        return { type: "real", value: Number(value) };
      }
      break;
    case "text":
      if (typeof value === "string") return { type: "text", value };
      break;
    case "blob":
      if (typeof value === "string" && /^([0-9a-fA-F]{2})*$/.test(value)) {
        return { type: "blob", value: unhex(value) };
      }
      break;
  }
  throw new Error(`bad typed value ${JSON.stringify(typed)}`);
}

async function echo(request) {
  const url = new URL(request.url);
  return {
    method: request.method,
    url: request.url,
    path: url.pathname,
    query: request.url.includes("?") ? url.search.slice(1) : null,
    headers: rawHeaders(request),
    body: hex(new Uint8Array(await request.arrayBuffer())),
  };
}

/** Recurses `depth` calls deep, keeping some data in each frame. */
function recurse(depth) {
  const frame = [depth, depth, depth, depth, depth, depth, depth, depth];
  return depth === 0 ? 0 : recurse(depth - 1) + frame[3] - depth;
}

function err(kind, message) {
  return { err: { kind, message } };
}

function text(value, fallback) {
  return typeof value === "string" ? value : fallback;
}

/** A JSON integer (a safe one: JSON.parse has already rounded larger ones), else 0. */
function integer(value) {
  return Number.isSafeInteger(value) ? value : 0;
}

/** Typed value encoding (SPEC.md): integers as decimal strings, non-finite reals as strings. */
function encodeValue({ type, value }) {
  switch (type) {
    case "integer":
      return { type, value: value.toString() };
    case "real":
      return { type, value: Number.isFinite(value) ? value : String(value) };
    case "blob":
      return { type, value: hex(value) };
    case "null":
      return { type };
    default:
      return { type, value };
  }
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhexOrThrow(text) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new Error("body is not hex");
  return unhex(text);
}

function unhex(text) {
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
