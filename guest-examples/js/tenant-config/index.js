// Per-tenant configuration, one object per tenant: feature flags that the tenant's requests
// read, and usage meters they update.
//
// - GET /flags                returns {"flags": {"<feature>": true|false, ...}}
// - PUT /flags/<feature>      with {"enabled": true|false} turns a feature on or off
// - POST /usage/<metric>      with {"delta": n} adds n to a meter and returns {"metric", "value"}
// - GET /usage                returns {"usage": {"<metric>": n, ...}}
// - GET /                     returns both

import { DurableObject } from "dohost:workers";

export class TenantConfig extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS feature_flags (
        feature TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS usage_meters (
        metric TEXT PRIMARY KEY,
        value INTEGER NOT NULL DEFAULT 0
      );
    `);
  }

  getFeatureFlags() {
    return this.sql.exec("SELECT feature, enabled FROM feature_flags").toArray();
  }

  setFeatureFlag(feature, enabled) {
    this.sql.exec(
      `INSERT INTO feature_flags (feature, enabled) VALUES (?, ?)
       ON CONFLICT (feature) DO UPDATE SET enabled = excluded.enabled`,
      feature,
      enabled ? 1 : 0,
    );
  }

  updateUsage(metric, delta) {
    const cursor = this.sql.exec(
      "UPDATE usage_meters SET value = value + ? WHERE metric = ?",
      delta,
      metric,
    );
    if (cursor.rowsWritten === 0) {
      this.sql.exec("INSERT INTO usage_meters (metric, value) VALUES (?, ?)", metric, delta);
    }
    return this.sql.exec("SELECT value FROM usage_meters WHERE metric = ?", metric).one().value;
  }

  getUsage() {
    return this.sql.exec("SELECT metric, value FROM usage_meters ORDER BY metric").toArray();
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    const [, section, name] = pathname.split("/");
    const flags = () =>
      Object.fromEntries(this.getFeatureFlags().map((f) => [f.feature, f.enabled === 1]));
    const usage = () => Object.fromEntries(this.getUsage().map((m) => [m.metric, m.value]));

    if (request.method === "GET" && pathname === "/") {
      return Response.json({ flags: flags(), usage: usage() });
    }
    if (request.method === "GET" && pathname === "/flags") {
      return Response.json({ flags: flags() });
    }
    if (request.method === "PUT" && section === "flags" && name) {
      const { enabled } = await request.json();
      if (typeof enabled !== "boolean") {
        return new Response("`enabled` must be true or false", { status: 400 });
      }
      this.setFeatureFlag(decodeURIComponent(name), enabled);
      return Response.json({ flags: flags() });
    }
    if (request.method === "GET" && pathname === "/usage") {
      return Response.json({ usage: usage() });
    }
    if (request.method === "POST" && section === "usage" && name) {
      const { delta } = await request.json();
      if (!Number.isSafeInteger(delta)) {
        return new Response("`delta` must be an integer", { status: 400 });
      }
      const metric = decodeURIComponent(name);
      return Response.json({ metric, value: this.updateUsage(metric, delta) });
    }
    return new Response("not found", { status: 404 });
  }
}
