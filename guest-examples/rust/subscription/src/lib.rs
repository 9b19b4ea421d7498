//! A subscription that renews itself with the object's alarm: no cron, no queue, no worker.
//!
//! - `POST /activate` with `{"plan": "pro", "nextBillingAt": <Unix ms>, "periodMs": <ms>}`
//!   stores the subscription and sets the alarm for the first renewal (`periodMs` defaults
//!   to 30 days).
//! - When the alarm fires, the object records a renewal and sets the alarm for the next one.
//! - `GET /` shows the plan, the next billing time and every renewal.
//! - `POST /cancel` deletes the alarm: no more renewals.

use dohost_sdk::{AlarmInfo, Ctx, Object, Request, Response, Result, Sql};
use serde::{Deserialize, Serialize};

const THIRTY_DAYS_MS: i64 = 30 * 24 * 60 * 60 * 1000;

struct Subscription {
    ctx: Ctx,
    sql: Sql,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activate {
    plan: String,
    next_billing_at: i64,
    period_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Renewal {
    renewed_at: i64,
    plan: String,
    attempt: i64,
}

impl Object for Subscription {
    fn new(ctx: Ctx) -> Result<Self> {
        let sql = ctx.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS subscription (
                 id INTEGER PRIMARY KEY CHECK (id = 0), plan TEXT NOT NULL, period_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS renewals (
                 renewed_at INTEGER NOT NULL, plan TEXT NOT NULL, attempt INTEGER NOT NULL)",
            (),
        )?;
        Ok(Subscription { ctx, sql })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method(), req.path()) {
            ("POST", "/activate") => {
                let Ok(a) = req.json::<Activate>() else {
                    return Ok(
                        Response::text("expected {\"plan\", \"nextBillingAt\"}").with_status(400)
                    );
                };
                let period = a.period_ms.unwrap_or(THIRTY_DAYS_MS).max(1);
                self.sql.exec(
                    "INSERT OR REPLACE INTO subscription (id, plan, period_ms) VALUES (0, ?, ?)",
                    (a.plan, period),
                )?;
                self.ctx.set_alarm(a.next_billing_at)?;
                self.show()
            }
            ("POST", "/cancel") => {
                self.ctx.delete_alarm();
                self.show()
            }
            ("GET", "/") => self.show(),
            _ => Ok(Response::not_found()),
        }
    }

    /// One billing cycle: record the renewal, schedule the next. If this fails, the host
    /// rolls it back and retries, so a renewal is recorded once per cycle.
    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let Some(row) = self
            .sql
            .exec("SELECT plan, period_ms FROM subscription", ())?
            .next()
        else {
            return Ok(()); // no subscription: nothing to renew
        };
        let (plan, period): (String, i64) = (row.get(0)?, row.get(1)?);
        self.sql.exec(
            "INSERT INTO renewals (renewed_at, plan, attempt) VALUES (?, ?, ?)",
            (info.scheduled_at, plan, i64::from(info.retry_count) + 1),
        )?;
        self.ctx.set_alarm(info.scheduled_at + period)?;
        Ok(())
    }
}

impl Subscription {
    fn show(&self) -> Result<Response> {
        let plan: Option<String> = match self.sql.exec("SELECT plan FROM subscription", ())?.next()
        {
            Some(row) => row.get(0)?,
            None => None,
        };
        let renewals: Vec<Renewal> = self
            .sql
            .exec(
                "SELECT renewed_at AS renewedAt, plan, attempt FROM renewals ORDER BY renewed_at",
                (),
            )?
            .deserialize()?;
        Response::json(&serde_json::json!({
            "plan": plan,
            "nextBillingAt": self.ctx.get_alarm(),
            "renewals": renewals,
        }))
    }
}

dohost_sdk::export!(Subscription);
