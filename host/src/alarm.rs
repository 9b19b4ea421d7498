//! The guest's `alarm` interface: one alarm time per object, stored in the object's database
//! (`_do_alarm`) inside the event transaction, so a rolled-back event also undoes its alarm
//! change.
//!
//! Firing alarms (the scheduler, retries with backoff) is not part of this module yet: the
//! time is stored durably and read back, and nothing wakes the object at that time.

use crate::bindings::alarm::{self, AlarmError, Timestamp};
use crate::object::ObjectState;

/// Latest accepted time: 9999-12-31T23:59:59.999Z.
const MAX_TIMESTAMP: i64 = 253_402_300_799_999;

impl alarm::Host for ObjectState {
    fn set(&mut self, at: Timestamp) -> wasmtime::Result<Result<(), AlarmError>> {
        if !(0..=MAX_TIMESTAMP).contains(&at) {
            return Ok(Err(AlarmError::InvalidTime(format!(
                "{at} is outside 0..={MAX_TIMESTAMP} (Unix milliseconds)"
            ))));
        }
        self.sql().set_alarm(Some(at))?;
        Ok(Ok(()))
    }

    fn get(&mut self) -> wasmtime::Result<Option<Timestamp>> {
        Ok(self.sql().alarm()?)
    }

    fn delete(&mut self) -> wasmtime::Result<()> {
        self.sql().set_alarm(None)?;
        Ok(())
    }
}
