// A subscription that renews itself with the object's alarm, one object per customer.
//
// - POST /activate  with {"plan": "pro", "nextBillingAt": <Unix ms or ISO date>,
//                   "periodDays": 30 (optional)} stores the plan and sets the alarm
// - POST /cancel    cancels the renewals (deletes the alarm)
// - GET /           returns {"plan", "periodDays", "nextBillingAt", "alarm", "renewals": [...]}
//
// When the alarm fires, alarm() records a renewal and schedules the next billing cycle. The
// alarm is set in the same transaction as the rows, so neither is saved without the other.

import { DurableObject } from "dohost:workers";

const DAY_MS = 24 * 60 * 60 * 1000;
const USAGE = 'expected {"plan": "...", "nextBillingAt": ms or ISO date, "periodDays": n}';

export class Subscription extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS subscription (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        plan TEXT NOT NULL,
        period_days INTEGER NOT NULL,
        next_billing_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS renewals (
        billed_at INTEGER NOT NULL,
        plan TEXT NOT NULL,
        renewed_at INTEGER NOT NULL,
        retry_count INTEGER NOT NULL
      );
    `);
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (request.method === "POST" && pathname === "/activate") {
      const { plan, nextBillingAt, periodDays = 30 } = await request.json();
      const next = new Date(nextBillingAt).getTime();
      const valid = typeof plan === "string" && Number.isFinite(next);
      if (!valid || !Number.isSafeInteger(periodDays) || periodDays < 1) {
        return new Response(USAGE, { status: 400 });
      }
      this.sql.exec(
        `INSERT OR REPLACE INTO subscription (id, plan, period_days, next_billing_at)
         VALUES (0, ?, ?, ?)`,
        plan,
        periodDays,
        next,
      );
      await this.ctx.storage.setAlarm(next);
      return Response.json(await this.status());
    }
    if (request.method === "POST" && pathname === "/cancel") {
      this.sql.exec("DELETE FROM subscription");
      await this.ctx.storage.deleteAlarm();
      return Response.json(await this.status());
    }
    if (request.method === "GET" && pathname === "/") {
      return Response.json(await this.status());
    }
    return new Response("not found", { status: 404 });
  }

  async alarm(alarmInfo) {
    const subscription = this.subscription();
    if (!subscription) return; // cancelled after the alarm was due
    const { plan, period_days, next_billing_at } = subscription;
    this.sql.exec(
      `INSERT INTO renewals (billed_at, plan, renewed_at, retry_count) VALUES (?, ?, ?, ?)`,
      next_billing_at,
      plan,
      Date.now(),
      alarmInfo?.retryCount ?? 0,
    );
    const next = next_billing_at + period_days * DAY_MS;
    this.sql.exec("UPDATE subscription SET next_billing_at = ?", next);
    await this.ctx.storage.setAlarm(next);
  }

  /** The stored subscription row, or undefined. */
  subscription() {
    const cursor = this.sql.exec("SELECT plan, period_days, next_billing_at FROM subscription");
    return cursor.toArray()[0];
  }

  async status() {
    const subscription = this.subscription();
    const renewals = this.sql.exec(
      `SELECT billed_at AS billedAt, plan, renewed_at AS renewedAt
       FROM renewals ORDER BY billed_at`,
    );
    return {
      plan: subscription?.plan ?? null,
      periodDays: subscription?.period_days ?? null,
      nextBillingAt: subscription?.next_billing_at ?? null,
      alarm: await this.ctx.storage.getAlarm(),
      renewals: renewals.toArray(),
    };
  }
}
