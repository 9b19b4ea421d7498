//! [`Ctx`]: the object's view of the host — its database, identity, alarm and outbound fetch.

use crate::__private::bindings::dohost::object::{alarm, fetch, identity};
use crate::{AlarmError, FetchError, Request, Response, Result, Sql};

/// Handle to the host services of the running object; passed to
/// [`Object::new`](crate::Object::new), free to copy and keep.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    // Only the SDK hands these out: host calls are valid only inside an exported object.
    _private: (),
}

impl Ctx {
    pub(crate) const fn new() -> Self {
        Self { _private: () }
    }

    /// The object's SQLite database.
    pub fn sql(&self) -> Sql {
        Sql::new()
    }

    /// The object's ID: 64 lower-case hex digits, unique per class and host key.
    pub fn id(&self) -> String {
        identity::id()
    }

    /// The name the ID was derived from, if the object was created from a name.
    pub fn name(&self) -> Option<String> {
        identity::name()
    }

    /// Schedule the alarm at `at_ms` (Unix milliseconds), replacing any previous one.
    ///
    /// Like a write, it takes effect when the current event commits; a time in the past fires
    /// as soon as possible. [`Object::alarm`](crate::Object::alarm) runs when it fires.
    ///
    /// ```no_run
    /// # fn demo(ctx: dohost_sdk::Ctx) -> dohost_sdk::Result<()> {
    /// ctx.set_alarm(dohost_sdk::now_ms() + 60_000)?; // in a minute
    /// # Ok(()) }
    /// ```
    pub fn set_alarm(&self, at_ms: i64) -> Result<()> {
        alarm::set(at_ms).map_err(AlarmError::from)?;
        Ok(())
    }

    /// The scheduled alarm time (Unix milliseconds), including changes made earlier in this
    /// event.
    pub fn get_alarm(&self) -> Option<i64> {
        alarm::get()
    }

    /// Cancel the alarm, if any, when the current event commits.
    pub fn delete_alarm(&self) {
        alarm::delete();
    }

    /// Send `request` through the host's fetch policy and wait for the whole response.
    ///
    /// The object handles no other event while it waits.
    ///
    /// ```no_run
    /// # fn demo(ctx: dohost_sdk::Ctx) -> dohost_sdk::Result<()> {
    /// use dohost_sdk::Request;
    /// let res = ctx.fetch(Request::get("https://example.com/data.json"))?;
    /// let data: serde_json::Value = res.json_body()?;
    /// # Ok(()) }
    /// ```
    pub fn fetch(&self, request: Request) -> Result<Response> {
        let response = fetch::send(&request.into_wit()).map_err(FetchError::from)?;
        Ok(Response::from_wit(response))
    }
}

/// The current time in Unix milliseconds, from the host's wall clock (for alarms).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
