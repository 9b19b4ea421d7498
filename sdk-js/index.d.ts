// Types of the `dohost:workers` module: Cloudflare's Durable Object API on dohost.
//
// Use them from TypeScript (or checked JavaScript) with
//   /// <reference types="dohost-sdk" />
// or "types": ["dohost-sdk"] in tsconfig.json. The names and shapes follow
// @cloudflare/workers-types, so code typed against Cloudflare keeps compiling; dohost
// extensions are marked as such.

declare module "dohost:workers" {
  /** A value read from SQLite: INTEGER and REAL as number, TEXT as string, BLOB as ArrayBuffer. */
  export type SqlStorageValue = ArrayBuffer | string | number | null;

  /**
   * A value that `exec` binds to a `?` placeholder:
   * - `null`, `undefined` -> NULL
   * - an integral `number` in the signed 64-bit range -> INTEGER, any other number -> REAL
   * - `bigint` -> INTEGER (RangeError outside the signed 64-bit range; a dohost extension)
   * - `boolean` -> INTEGER 1 or 0 (a dohost extension)
   * - `string` -> TEXT
   * - `ArrayBuffer` or any `ArrayBufferView` (Uint8Array, DataView, ...) -> BLOB
   */
  export type SqlStorageBinding =
    null | undefined | number | bigint | boolean | string | ArrayBuffer | ArrayBufferView;

  /** An exactly typed SQL value, as `execTyped` returns them (a dohost extension). */
  export type SqlTypedValue =
    | { type: "null" }
    | { type: "integer"; value: bigint }
    | { type: "real"; value: number }
    | { type: "text"; value: string }
    | { type: "blob"; value: Uint8Array };

  /** What `execTyped` binds: a typed value (an integer may be given as number or string) or a plain binding. */
  export type SqlTypedBinding =
    SqlTypedValue | { type: "integer"; value: bigint | number | string } | SqlStorageBinding;

  /** The WIT `sql-error` case behind an `SqlError`. */
  export type SqlErrorKind =
    | "syntax"
    | "constraint"
    | "database-full"
    | "too-big"
    | "access-denied"
    | "invalid-argument"
    | "other";

  /**
   * A failed SQL statement. `message` reads like workerd's:
   * `"<SQLite message>: SQLITE_<CODE>"`, e.g. `"UNIQUE constraint failed: players.id: SQLITE_CONSTRAINT"`.
   * Its `name` is "Error", as on Cloudflare.
   */
  export class SqlError extends Error {
    /** The WIT `sql-error` case (a dohost extension). */
    readonly kind: SqlErrorKind;
    /** The SQLite primary result code name, e.g. "SQLITE_CONSTRAINT". */
    readonly code: string;
    /** The host's message without the code suffix. */
    readonly detail: string;
  }

  /**
   * The rows of one `exec`. Every way of reading shares one position. `T` is the row object,
   * `V` the type of one value (`SqlTypedValue` for `execTyped`).
   */
  export class SqlStorageCursor<
    T extends Record<string, unknown> = Record<string, SqlStorageValue>,
    V = SqlStorageValue,
  > implements IterableIterator<T> {
    /** The next row: `{ done: false, value }`, then `{ done: true, value: undefined }`. */
    next(): IteratorResult<T, undefined>;
    [Symbol.iterator](): IterableIterator<T>;
    /** All remaining rows. */
    toArray(): T[];
    /**
     * The only remaining row. Throws "Expected exactly one result from SQL query, but got no
     * results." or "...but got multiple results.".
     */
    one(): T;
    /** The remaining rows as arrays of values in column order; also has `toArray()`. */
    raw<U extends V[] = V[]>(): IterableIterator<U> & { toArray(): U[] };
    /** Column names of the result, in order (empty for statements without results). */
    readonly columnNames: string[];
    /** Rows SQLite read: rows returned plus rows stepped over by full scans. Final from the start on dohost. */
    readonly rowsRead: number;
    /** Rows inserted, updated or deleted. */
    readonly rowsWritten: number;
  }

  /** `ctx.storage.sql`: the object's own SQLite database. */
  export class SqlStorage {
    /**
     * Runs `query` with `bindings` bound to its `?` placeholders. The query may hold several
     * statements separated by `;`: each takes as many bindings as it has placeholders, and the
     * cursor is the last statement's. Throws `SqlError` when a statement fails.
     *
     * Transaction control (BEGIN, COMMIT, SAVEPOINT, ...) is not allowed: every event already
     * runs in its own transaction, committed when it succeeds and rolled back when it throws.
     */
    exec<T extends Record<string, SqlStorageValue> = Record<string, SqlStorageValue>>(
      query: string,
      ...bindings: SqlStorageBinding[]
    ): SqlStorageCursor<T>;

    /**
     * Like `exec`, typed exactly both ways (a dohost extension): every value in the result is an
     * `SqlTypedValue`, so integers beyond 2^53 survive as bigints and 1 stays distinct from 1.0.
     */
    execTyped(
      query: string,
      ...bindings: SqlTypedBinding[]
    ): SqlStorageCursor<Record<string, SqlTypedValue>, SqlTypedValue>;

    /** The database's current size in bytes. */
    readonly databaseSize: number;
  }

  /** `ctx.storage`: the object's SQL database and its alarm. */
  export class DurableObjectStorage {
    readonly sql: SqlStorage;
    /** The scheduled alarm time in Unix milliseconds, or null. */
    getAlarm(): Promise<number | null>;
    /**
     * Schedules the alarm (replacing any previous one) at a Date or Unix milliseconds; the
     * object's `alarm()` runs then. Takes effect when the current event commits.
     */
    setAlarm(scheduledTime: Date | number): Promise<void>;
    /** Cancels the alarm; takes effect when the current event commits. */
    deleteAlarm(): Promise<void>;
  }

  /** The object's ID. */
  export class DurableObjectId {
    /** 64 lower-case hex digits. */
    toString(): string;
    equals(other: DurableObjectId): boolean;
    /** The name the ID was derived from (requests to `/<name>/...`), if any. */
    readonly name?: string;
  }

  /** `ctx`: the first argument of the object's constructor. */
  export class DurableObjectState {
    readonly id: DurableObjectId;
    readonly storage: DurableObjectStorage;
    /** Runs `callback`; the object's next event waits until it settles. */
    blockConcurrencyWhile<T>(callback: () => Promise<T> | T): Promise<T>;
    /** Accepted for compatibility; has no effect in a Durable Object (as on Cloudflare). */
    waitUntil(promise: Promise<unknown>): void;
    /**
     * Resets the object: the current event traps (rolled back, 500) and the instance is
     * discarded. Unlike on Cloudflare, a surrounding try/catch can intercept it.
     */
    abort(reason?: string): never;
  }

  /** What `alarm()` receives. */
  export interface AlarmInvocationInfo {
    /** 0 on the first attempt, then 1, 2, ... on retries after a failure. */
    readonly retryCount: number;
    readonly isRetry: boolean;
    /** The time the alarm was scheduled for, Unix ms (a dohost extension). */
    readonly scheduledTime: number;
  }

  /**
   * Base class of a Durable Object. Implement `fetch(request)` and, if you use the alarm,
   * `alarm(alarmInfo)`. A thrown exception or rejected promise fails the event: its writes are
   * rolled back and the host answers 500.
   */
  export abstract class DurableObject<Env = unknown> {
    constructor(ctx: DurableObjectState, env: Env);
    protected ctx: DurableObjectState;
    protected env: Env;
    fetch?(request: Request): Response | Promise<Response>;
    alarm?(alarmInfo?: AlarmInvocationInfo): void | Promise<void>;
  }

  /**
   * The request's headers in the order the host delivered them, repeated names kept, names in
   * lower case (a dohost extension; `request.headers` sorts and merges them).
   */
  export function rawHeaders(request: Request): [string, string][];
}
