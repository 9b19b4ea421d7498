// The WIT export glue: turns a Durable Object class into the `handler` and `alarm-handler`
// exports of the `object` world. The build (build/build.mjs) generates a tiny entry module that
// calls `exportObject` and re-exports its result; componentize-js binds the interface exports by
// their camel-cased names (`handler.handleRequest`, `alarmHandler.onAlarm`).
//
// Async: componentize-js makes every export a synchronous component function that awaits the JS
// function's result, running StarlingMonkey's event loop (microtasks, timers, wasi:http I/O)
// until the promise settles. So `async fetch()` just works. A promise that can never settle
// (the event loop ran dry) traps the instance.
//
// Errors: an exception or rejection from the object becomes the WIT `err(message)`, which makes
// the host roll the event back and answer 500. Two kinds escape on purpose, so that the
// instance traps (the generated bindings cannot encode them): `ctx.abort()`, which is what
// Cloudflare's abort means (reset the object, uncatchable), and SpiderMonkey's own
// InternalError (too much recursion, allocation overflow), the JS form of a stack overflow.
//
// Lifetime: the module's top level runs once at build time (Wizer snapshot), when no host
// interface may be called; so the object is constructed lazily on the first event of each
// instance, exactly once, like on Cloudflare. The host discards the instance after an `err`.

import { DurableObject } from "./workers.js";
import { toRequest, fromResponse } from "./http.js";
import { DurableObjectState, ObjectAborted, hasAlarmHandler, pendingBlockers } from "./state.js";

/** Picks the Durable Object class from the user's module namespace. */
function findClass(module, className) {
  if (className) {
    const cls = module[className];
    if (typeof cls !== "function") {
      throw new Error(`the entry module does not export a class named ${className}`);
    }
    return cls;
  }
  const classes = Object.entries(module).filter(
    ([, value]) => typeof value === "function" && value.prototype instanceof DurableObject,
  );
  const names = [...new Set(classes.map(([name]) => name))];
  if (classes.length === 0) {
    throw new Error(
      'the entry module exports no class that extends DurableObject (import { DurableObject } from "dohost:workers")',
    );
  }
  if (new Set(classes.map(([, cls]) => cls)).size > 1) {
    throw new Error(
      `the entry module exports several Durable Object classes (${names.join(", ")}); ` +
        'name the one to build in package.json: "dohost": { "class": "..." }',
    );
  }
  return classes[0][1];
}

/** Whether `error` must trap the instance instead of becoming the WIT `err` (see above). */
function isFatal(error) {
  return (
    error instanceof ObjectAborted || (error instanceof Error && error.name === "InternalError")
  );
}

/** The message of the WIT `err` for a thrown value: `throw new Error("x")` gives "x". */
function describe(error) {
  if (error instanceof Error) {
    return error.name === "Error" ? error.message : `${error.name}: ${error.message}`;
  }
  return `Uncaught ${String(error)}`;
}

/** Logs an uncaught error with its stack to stderr (the host's log), like workerd does. */
function report(where, error) {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  // A runaway recursion has thousands of frames; the innermost few say enough.
  const frames = error instanceof Error && error.stack ? error.stack.trimEnd().split("\n") : [];
  const more = frames.length > 12 ? `\n... ${frames.length - 12} more frames` : "";
  const stack = frames.length > 0 ? `\n${frames.slice(0, 12).join("\n")}${more}` : "";
  console.error(`Uncaught (in ${where}) ${what}${stack}`);
}

/**
 * Builds the WIT exports for the Durable Object class exported by `module`.
 * @param {object} module the user's entry module namespace
 * @param {string | undefined} className the class to use; found by its base class if omitted
 * @param {object} env the `env` the constructor receives
 */
export function exportObject(module, className, env = {}) {
  const ObjectClass = findClass(module, className);
  let state;
  let instance;

  /** The live object, constructed on first use, after its blockConcurrencyWhile work. */
  async function object() {
    if (instance === undefined) {
      state = new DurableObjectState();
      state[hasAlarmHandler] = typeof ObjectClass.prototype.alarm === "function";
      instance = new ObjectClass(state, env);
    }
    const blockers = state[pendingBlockers].splice(0);
    if (blockers.length > 0) await Promise.all(blockers);
    return instance;
  }

  const handler = {
    async handleRequest(record) {
      try {
        const obj = await object();
        if (typeof obj.fetch !== "function") {
          throw new Error(`${ObjectClass.name} has no fetch() method`);
        }
        const response = await obj.fetch(toRequest(record));
        return { tag: "ok", val: await fromResponse(response) };
      } catch (error) {
        report("fetch", error);
        if (isFatal(error)) throw error;
        return { tag: "err", val: describe(error) };
      }
    },
  };

  const alarmHandler = {
    async onAlarm(info) {
      try {
        const obj = await object();
        if (typeof obj.alarm !== "function") {
          throw new Error(`${ObjectClass.name} has no alarm() method`);
        }
        const retryCount = Number(info.retryCount);
        await obj.alarm({
          retryCount,
          isRetry: retryCount > 0,
          scheduledTime: Number(info.scheduledAt),
        });
        return { tag: "ok", val: undefined };
      } catch (error) {
        report("alarm", error);
        if (isFatal(error)) throw error;
        return { tag: "err", val: describe(error) };
      }
    },
  };

  return { handler, alarmHandler };
}
