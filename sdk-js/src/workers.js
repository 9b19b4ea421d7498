// The `dohost:workers` module: Cloudflare's Durable Object API for dohost objects.
//
//   import { DurableObject } from "dohost:workers";
//
//   export class Counter extends DurableObject {
//     async fetch(request) {
//       const { value } = this.ctx.storage.sql.exec("SELECT 1 AS value").one();
//       return Response.json({ value });
//     }
//   }
//
// The build (scripts/build-guest, or `npm run build` in sdk-js/) resolves both
// "dohost:workers" and "cloudflare:workers" to this module. Types: ../index.d.ts.

export { SqlError, SqlStorage, SqlStorageCursor } from "./sql.js";
export { DurableObjectId, DurableObjectState, DurableObjectStorage } from "./state.js";
export { rawHeaders } from "./http.js";

/**
 * Base class of a Durable Object. Subclasses implement `fetch(request)` and, if they use the
 * alarm, `alarm(alarmInfo)`; both may be async.
 */
export class DurableObject {
  /**
   * @param {import("./state.js").DurableObjectState} ctx the object's state: `ctx.id`,
   *   `ctx.storage.sql`, `ctx.storage.setAlarm()`, ...
   * @param {object} env the environment (bindings); empty on dohost for now
   */
  constructor(ctx, env) {
    /** The object's state: id, storage, blockConcurrencyWhile. */
    this.ctx = ctx;
    /** The environment the object was created with. */
    this.env = env;
  }
}
