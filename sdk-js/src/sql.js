// `ctx.storage.sql`: Cloudflare's SqlStorage API over the `dohost:object/sql` WIT interface.
//
// The host runs each query to completion inside `exec` and hands back the first page of rows
// (at most 1000); the rest wait in a host-side cursor resource that `SqlStorageCursor` pages
// through lazily and releases as soon as it is exhausted.
//
// Value mapping (JS -> SQLite), see README.md "SQL values":
//   null, undefined               -> NULL
//   number, integral, in i64      -> INTEGER      (any other number -> REAL)
//   bigint                        -> INTEGER      (RangeError outside the signed 64-bit range)
//   boolean                       -> INTEGER 1/0
//   string                        -> TEXT
//   ArrayBuffer, any typed array  -> BLOB
// and back (SQLite -> JS): INTEGER and REAL -> number, TEXT -> string, BLOB -> ArrayBuffer,
// NULL -> null. As in Cloudflare, an INTEGER outside +-(2^53 - 1) loses precision when it
// becomes a number; `execTyped` returns exact bigints instead.

import * as wit from "dohost:object/sql@0.1.0";

/** Rows fetched per call when a result spans several pages (the host's maximum). */
const PAGE_ROWS = 1000;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** SQLite result code names for each WIT `sql-error` case, as workerd appends them. */
const SQLITE_CODES = {
  syntax: "SQLITE_ERROR",
  constraint: "SQLITE_CONSTRAINT",
  "database-full": "SQLITE_FULL",
  "too-big": "SQLITE_TOOBIG",
  "access-denied": "SQLITE_AUTH",
  "invalid-argument": "SQLITE_RANGE",
  other: "SQLITE_ERROR",
};

/**
 * A failed SQL statement. Its message reads like workerd's, `<SQLite message>: SQLITE_<CODE>`
 * (for example `UNIQUE constraint failed: players.id: SQLITE_CONSTRAINT`), so code that
 * inspects `error.message` on Cloudflare keeps working.
 */
export class SqlError extends Error {
  /**
   * @param {string} kind the WIT `sql-error` case: "syntax", "constraint", "database-full",
   *   "too-big", "access-denied", "invalid-argument" or "other"
   * @param {string} detail the host's (SQLite's) message
   */
  constructor(kind, detail) {
    const code = SQLITE_CODES[kind] ?? "SQLITE_ERROR";
    super(`${detail}: ${code}`);
    this.name = "Error";
    /** The WIT `sql-error` case name. */
    this.kind = kind;
    /** The SQLite primary result code name, for example "SQLITE_CONSTRAINT". */
    this.code = code;
    /** The host's message without the code suffix. */
    this.detail = detail;
  }
}

/** Converts one JS binding to a WIT `value`. `position` is 1-based, for error messages. */
function toWitValue(value, position) {
  switch (typeof value) {
    case "undefined":
      return { tag: "null" };
    case "number":
      if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
        return { tag: "integer", val: BigInt(value) };
      }
      return { tag: "real", val: value };
    case "bigint":
      if (value < I64_MIN || value > I64_MAX) {
        throw new RangeError(
          `SQL binding ${position}: ${value}n does not fit a SQLite INTEGER (signed 64-bit)`,
        );
      }
      return { tag: "integer", val: value };
    case "boolean":
      return { tag: "integer", val: value ? 1n : 0n };
    case "string":
      return { tag: "text", val: value };
    case "object":
      if (value === null) return { tag: "null" };
      if (value instanceof ArrayBuffer) return { tag: "blob", val: new Uint8Array(value) };
      if (ArrayBuffer.isView(value)) {
        return {
          tag: "blob",
          val: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
        };
      }
      break;
  }
  const what = value?.constructor?.name ?? typeof value;
  throw new TypeError(
    `SQL binding ${position} has an unsupported type (${what}); bind a string, number, bigint, ` +
      `boolean, null, ArrayBuffer or typed array (for a Date, bind date.getTime() or date.toISOString())`,
  );
}

/** Converts a typed value (`{ type, value }`, see `execTyped`) or a plain JS value. */
function typedToWitValue(value, position) {
  if (value === null || typeof value !== "object" || typeof value.type !== "string") {
    return toWitValue(value, position);
  }
  const v = value.value;
  switch (value.type) {
    case "null":
      return { tag: "null" };
    case "integer": {
      const big =
        typeof v === "bigint"
          ? v
          : typeof v === "number" || typeof v === "string"
            ? BigInt(v)
            : null;
      if (big === null || big < I64_MIN || big > I64_MAX) {
        throw new RangeError(
          `SQL binding ${position}: ${String(v)} is not a signed 64-bit integer`,
        );
      }
      return { tag: "integer", val: big };
    }
    case "real":
      return { tag: "real", val: Number(v) };
    case "text":
      return { tag: "text", val: String(v) };
    case "blob":
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return toWitValue(v, position);
      throw new TypeError(
        `SQL binding ${position}: a blob value must be an ArrayBuffer or typed array`,
      );
    default:
      throw new TypeError(
        `SQL binding ${position}: unknown value type ${JSON.stringify(value.type)}`,
      );
  }
}

/** WIT value -> the JS value Cloudflare's API returns. */
function toJsValue(value) {
  switch (value.tag) {
    case "null":
      return null;
    case "integer":
      return Number(value.val);
    case "real":
      return value.val;
    case "text":
      return value.val;
    case "blob": {
      const bytes = value.val;
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? bytes.buffer
        : bytes.slice().buffer;
    }
  }
  throw new TypeError(`unknown SQL value ${value.tag}`);
}

/** WIT value -> `{ type, value }` with exact integers (bigint) and blobs as Uint8Array. */
function toTypedValue(value) {
  return value.tag === "null" ? { type: "null" } : { type: value.tag, value: value.val };
}

/** Runs a query on the host, turning WIT errors into `SqlError`s. */
function run(query, params) {
  if (typeof query !== "string") {
    throw new TypeError(`sql.exec: the query must be a string, not ${typeof query}`);
  }
  try {
    return wit.exec(query, params);
  } catch (e) {
    // The generated bindings throw the WIT error case as `payload` ({ tag, val }).
    const payload = e?.payload;
    if (payload && typeof payload.tag === "string") {
      throw new SqlError(payload.tag, String(payload.val));
    }
    throw e;
  }
}

/**
 * The result of `sql.exec`: iterate it for row objects keyed by column name, or use
 * `toArray()`, `one()` or `raw()`. Every way of reading consumes the same rows.
 *
 * The host has already run the statement to completion, so `rowsRead` and `rowsWritten` are
 * final from the start (on Cloudflare they may grow while you iterate).
 */
export class SqlStorageCursor {
  #columns;
  #rows;
  #next = 0;
  #more;
  #decode;
  #rowsRead;
  #rowsWritten;

  /** @internal Use `ctx.storage.sql.exec()`. */
  constructor(resultSet, decode) {
    this.#columns = resultSet.columns;
    this.#rows = resultSet.rows;
    this.#more = resultSet.more;
    this.#decode = decode;
    this.#rowsRead = Number(resultSet.rowsRead);
    this.#rowsWritten = Number(resultSet.rowsWritten);
  }

  /** The next row as an array of WIT values, or undefined once the result is exhausted. */
  #nextRaw() {
    if (this.#next >= this.#rows.length) {
      if (!this.#more) return undefined;
      this.#rows = this.#more.nextPage(PAGE_ROWS);
      this.#next = 0;
      if (this.#rows.length === 0) {
        this.#close();
        return undefined;
      }
    }
    return this.#rows[this.#next++];
  }

  /** Releases the host's remaining rows. */
  #close() {
    this.#rows = [];
    this.#next = 0;
    if (this.#more) {
      this.#more[Symbol.dispose]();
      this.#more = undefined;
    }
  }

  #nextValues() {
    const row = this.#nextRaw();
    return row === undefined ? undefined : row.map(this.#decode);
  }

  #toObject(values) {
    // Later columns win over earlier ones with the same name, as in workerd.
    const object = {};
    for (let i = 0; i < values.length; i++) object[this.#columns[i]] = values[i];
    return object;
  }

  /** Column names of the result, in order (empty for statements without results). */
  get columnNames() {
    return this.#columns;
  }

  /** Rows SQLite read to produce the result (rows returned plus rows scanned). */
  get rowsRead() {
    return this.#rowsRead;
  }

  /** Rows inserted, updated or deleted by the query. */
  get rowsWritten() {
    return this.#rowsWritten;
  }

  /** Iterator protocol: `{ done: false, value: row }`, then `{ done: true, value: undefined }`. */
  next() {
    const values = this.#nextValues();
    return values === undefined
      ? { done: true, value: undefined }
      : { done: false, value: this.#toObject(values) };
  }

  [Symbol.iterator]() {
    return this;
  }

  /** All remaining rows as objects. */
  toArray() {
    const rows = [];
    for (let values; (values = this.#nextValues()) !== undefined;)
      rows.push(this.#toObject(values));
    return rows;
  }

  /**
   * The only row of the result. Throws unless the result has exactly one (remaining) row, with
   * Cloudflare's messages.
   */
  one() {
    const values = this.#nextValues();
    if (values === undefined) {
      throw new Error("Expected exactly one result from SQL query, but got no results.");
    }
    if (this.#nextRaw() !== undefined) {
      this.#close();
      throw new Error("Expected exactly one result from SQL query, but got multiple results.");
    }
    return this.#toObject(values);
  }

  /**
   * The remaining rows as arrays of values, in column order (no names). The returned iterator
   * also has `toArray()`. It shares its position with this cursor.
   */
  raw() {
    const nextValues = () => this.#nextValues();
    return {
      next() {
        const values = nextValues();
        return values === undefined
          ? { done: true, value: undefined }
          : { done: false, value: values };
      },
      toArray() {
        const rows = [];
        for (let values; (values = nextValues()) !== undefined;) rows.push(values);
        return rows;
      },
      [Symbol.iterator]() {
        return this;
      },
    };
  }
}

/** `ctx.storage.sql`: the object's own SQLite database. */
export class SqlStorage {
  /**
   * Runs `query` with `bindings` bound to its `?` placeholders, in order. The query may hold
   * several statements separated by `;`; each takes as many bindings as it has placeholders,
   * and the cursor is the last statement's.
   * @returns {SqlStorageCursor}
   */
  exec(query, ...bindings) {
    const params = bindings.map((value, i) => toWitValue(value, i + 1));
    return new SqlStorageCursor(run(query, params), toJsValue);
  }

  /**
   * Like `exec`, with exact typing both ways (a dohost extension): bindings may be
   * `{ type: "integer", value: 5n }`-style typed values (or plain values, converted as by
   * `exec`), and every value in the result is a typed value: `{ type: "null" }`,
   * `{ type: "integer", value: bigint }`, `{ type: "real", value: number }`,
   * `{ type: "text", value: string }` or `{ type: "blob", value: Uint8Array }`.
   * @returns {SqlStorageCursor}
   */
  execTyped(query, ...bindings) {
    const params = bindings.map((value, i) => typedToWitValue(value, i + 1));
    return new SqlStorageCursor(run(query, params), toTypedValue);
  }

  /** Current size of the database in bytes. */
  get databaseSize() {
    return Number(wit.databaseSize());
  }
}
