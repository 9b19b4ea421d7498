// `ctx`: Cloudflare's DurableObjectState (id, storage, blockConcurrencyWhile, ...) over the
// `dohost:object/identity` and `dohost:object/alarm` WIT interfaces.

import * as alarm from "dohost:object/alarm@0.1.0";
import * as identity from "dohost:object/identity@0.1.0";
import { SqlStorage } from "./sql.js";

/** Thrown by `ctx.abort()`; the export glue lets it escape, which traps the instance. */
export class ObjectAborted extends Error {
  constructor(reason) {
    super(reason);
    this.name = "ObjectAborted";
  }
}

/** Promises passed to `blockConcurrencyWhile` that the next event must wait for. */
export const pendingBlockers = Symbol("pendingBlockers");

/** Whether the object's class has an `alarm()` method (set by the export glue). */
export const hasAlarmHandler = Symbol("hasAlarmHandler");

/** The object's ID: 64 lower-case hex digits, plus the name it was derived from, if any. */
export class DurableObjectId {
  #hex;

  /** @internal */
  constructor(hex, name) {
    this.#hex = hex;
    /** The name this ID was created from (`/<name>/...` routes); undefined for other IDs. */
    this.name = name;
  }

  /** The ID as 64 lower-case hex digits. */
  toString() {
    return this.#hex;
  }

  /** Whether `other` is the same ID. */
  equals(other) {
    return other instanceof DurableObjectId && other.toString() === this.#hex;
  }
}

/** Converts `setAlarm`'s argument to Unix milliseconds. */
function alarmTime(scheduledTime) {
  const ms = scheduledTime instanceof Date ? scheduledTime.getTime() : scheduledTime;
  if (typeof ms !== "number" || !Number.isFinite(ms)) {
    throw new TypeError(
      `setAlarm() expects a Date or a number of milliseconds since the epoch, got ${String(scheduledTime)}`,
    );
  }
  if (ms < 0) {
    // Checked here because componentize-js 0.23 traps on a negative s64 argument; the host
    // rejects negative times anyway (and checks the upper bound itself).
    throw new Error(`setAlarm(): ${ms} is before 1970 (Unix milliseconds must be >= 0)`);
  }
  return BigInt(Math.trunc(ms));
}

/** `ctx.storage`: the object's SQL database and alarm. */
export class DurableObjectStorage {
  #state;

  /** @internal */
  constructor(state) {
    this.#state = state;
    /** The object's own SQLite database. */
    this.sql = new SqlStorage();
  }

  /**
   * The scheduled alarm time in Unix milliseconds, or null. Includes a change made earlier in
   * the current event.
   * @returns {Promise<number | null>}
   */
  async getAlarm() {
    const at = alarm.get();
    return at === undefined ? null : Number(at);
  }

  /**
   * Schedules the alarm (replacing any previous one); the object's `alarm()` method runs then.
   * Like a write, it takes effect when the current event commits.
   * @param {Date | number} scheduledTime a Date or Unix milliseconds
   * @returns {Promise<void>}
   */
  async setAlarm(scheduledTime) {
    if (this.#state[hasAlarmHandler] === false) {
      // As on Cloudflare: an alarm without a handler would fail and be retried forever.
      throw new Error(
        "setAlarm(): the Durable Object class must have an alarm() method to set an alarm",
      );
    }
    const at = alarmTime(scheduledTime);
    try {
      alarm.set(at);
    } catch (e) {
      const payload = e?.payload;
      if (payload && typeof payload.tag === "string") {
        throw new Error(`setAlarm(): ${payload.val}`);
      }
      throw e;
    }
  }

  /**
   * Cancels the alarm, if any; takes effect when the current event commits.
   * @returns {Promise<void>}
   */
  async deleteAlarm() {
    alarm.delete();
  }
}

/** `ctx`: what the object's constructor receives as its first argument. */
export class DurableObjectState {
  #id;
  #storage;

  /** @internal */
  constructor() {
    this[pendingBlockers] = [];
  }

  /** This object's ID. */
  get id() {
    this.#id ??= new DurableObjectId(identity.id(), identity.name());
    return this.#id;
  }

  /** The object's storage: `storage.sql` and the alarm methods. */
  get storage() {
    this.#storage ??= new DurableObjectStorage(this);
    return this.#storage;
  }

  /**
   * Runs `callback` and holds back the object's next events until it settles. dohost delivers
   * one event at a time anyway, so this matters only for work started in the constructor
   * without awaiting it.
   * @template T
   * @param {() => Promise<T> | T} callback
   * @returns {Promise<T>}
   */
  blockConcurrencyWhile(callback) {
    const result = Promise.resolve().then(callback);
    this[pendingBlockers].push(result);
    return result;
  }

  /**
   * Accepted for compatibility. As on Cloudflare, it has no effect in a Durable Object: the
   * object lives on after the response, and work still running when an event ends is not part
   * of that event's transaction.
   * @param {Promise<unknown>} promise
   */
  waitUntil(promise) {
    Promise.resolve(promise).catch((e) => console.error("waitUntil promise rejected:", e));
  }

  /**
   * Resets the object, as on Cloudflare: the current event fails at once (its writes are rolled
   * back, the host answers 500), and the next event gets a fresh instance. Unlike Cloudflare,
   * a `try`/`catch` around the call can intercept it; don't.
   * @param {string} [reason] logged, and the host's error message
   * @returns {never}
   */
  abort(reason = "the object was aborted") {
    throw new ObjectAborted(String(reason));
  }
}
