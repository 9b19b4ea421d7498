//! The [`Object`] trait every durable object implements.

use crate::{Ctx, Request, Response, Result};

/// Why [`Object::alarm`] is running: `scheduled_at` (Unix ms) and `retry_count` (0 on the first
/// attempt, then 1, 2, ... after failures).
pub use crate::__private::bindings::exports::dohost::object::alarm_handler::AlarmInfo;

/// A durable object: one instance per object ID, handling one event at a time.
///
/// The SDK constructs the object with [`new`](Self::new) on the first event an instance
/// receives and keeps it for the instance's lifetime, so fields can cache what is in the
/// database. Each event runs in an implicit transaction:
///
/// - `Ok` commits the event's writes (and for [`fetch`](Self::fetch) sends the response);
/// - `Err` rolls them back (a request gets `500` with the error's message), and the SDK drops
///   the object so that the next event constructs it again from the committed state; in-memory
///   fields never disagree with a rolled-back database;
/// - a panic traps the instance, which also rolls back.
///
/// Register the type with [`export!`](crate::export).
pub trait Object: Sized + 'static {
    /// Construct the object, typically creating its tables (`CREATE TABLE IF NOT EXISTS ...`).
    ///
    /// Runs inside the first event's transaction. If it fails, that event fails and the next
    /// event tries again.
    fn new(ctx: Ctx) -> Result<Self>;

    /// Handle an HTTP request.
    fn fetch(&mut self, req: Request) -> Result<Response>;

    /// Handle the alarm firing. `Ok` clears the alarm (unless this call set a new one); `Err`
    /// makes the host retry later with backoff. The default does nothing.
    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let _ = info;
        Ok(())
    }
}
