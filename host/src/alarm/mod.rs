//! Alarms: one durable wake-up time per object.
//!
//! - The guest's `alarm` interface (this file) stores the time in the object's own database
//!   (`_do_alarm`) inside the event transaction, so a rolled-back event also undoes its alarm
//!   change.
//! - [`AlarmIndex`] is the host's durable index of pending alarms, so alarms fire after
//!   eviction and restarts.
//! - [`scheduler`] wakes objects whose alarm is due; the object's actor runs the handler as an
//!   event (serialized with requests, same limits, same transaction) and retries failures
//!   with exponential backoff. Delivery is at least once: the alarm is cleared only when a
//!   handler run commits.

mod index;
pub mod scheduler;

pub use self::index::{AlarmIndex, DueAlarm};
pub use self::scheduler::{AlarmConfig, now_ms};

use crate::bindings::alarm::{self, AlarmError, Timestamp};
use crate::object::ObjectState;

/// Latest accepted time: 9999-12-31T23:59:59.999Z.
const MAX_TIMESTAMP: i64 = 253_402_300_799_999;

impl ObjectState {
    /// Alarm changes belong to an event's transaction (and its alarm index update): called
    /// while the component is instantiated, by its start code, they trap.
    fn during_event(&mut self, call: &str) -> wasmtime::Result<()> {
        if self.sql()?.in_event() {
            Ok(())
        } else {
            Err(wasmtime::format_err!(
                "{call} is only allowed during an event, not while the object is being instantiated"
            ))
        }
    }
}

impl alarm::Host for ObjectState {
    fn set(&mut self, at: Timestamp) -> wasmtime::Result<Result<(), AlarmError>> {
        if !(0..=MAX_TIMESTAMP).contains(&at) {
            return Ok(Err(AlarmError::InvalidTime(format!(
                "{at} is outside 0..={MAX_TIMESTAMP} (Unix milliseconds)"
            ))));
        }
        self.during_event("alarm.set")?;
        self.sql()?.set_alarm(Some(at))?;
        self.alarm_changed = true;
        Ok(Ok(()))
    }

    fn get(&mut self) -> wasmtime::Result<Option<Timestamp>> {
        Ok(self.sql()?.alarm()?)
    }

    fn delete(&mut self) -> wasmtime::Result<()> {
        self.during_event("alarm.delete")?;
        self.sql()?.set_alarm(None)?;
        self.alarm_changed = true;
        Ok(())
    }
}
