//! [`export!`](crate::export): glue between the generated WIT exports and an [`Object`].
//!
//! Invariants: wasm components are single-threaded and the component model never re-enters an
//! instance while an export is running, so the one object lives in a thread-local slot that each
//! event borrows exclusively. A component exports at most one object type (a second `export!`
//! would clash on the export names at link time).

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::__private::bindings::dohost::object::http_types as wit;
use crate::__private::bindings::exports::dohost::object::{alarm_handler, handler};
use crate::{AlarmInfo, Ctx, Object, Request, Result};

thread_local! {
    /// The instance's object, built by the first event and dropped after a failed one.
    static OBJECT: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Implements the generated `Guest` traits for `T`; named by [`export!`](crate::export).
#[doc(hidden)]
pub struct Exported<T>(PhantomData<T>);

/// Runs one event against the object, constructing it first if needed, and maps the outcome
/// to the WIT `result<_, string>`.
fn run_event<T: Object, R>(event: impl FnOnce(&mut T) -> Result<R>) -> Result<R, String> {
    OBJECT.with(|slot| {
        let mut slot = slot
            .try_borrow_mut()
            .map_err(|_| "dohost-sdk: object re-entered while handling an event".to_owned())?;
        if slot.is_none() {
            let object = T::new(Ctx::new()).map_err(|e| e.to_string())?;
            *slot = Some(Box::new(object));
        }
        let object = slot
            .as_mut()
            .and_then(|object| object.downcast_mut::<T>())
            .ok_or_else(|| "dohost-sdk: more than one object type exported".to_owned())?;
        let outcome = event(object);
        if outcome.is_err() {
            // The host rolls this event back; rebuild the object from committed state next time.
            *slot = None;
        }
        outcome.map_err(|e| e.to_string())
    })
}

impl<T: Object> handler::Guest for Exported<T> {
    fn handle_request(request: wit::Request) -> Result<wit::Response, String> {
        run_event(|object: &mut T| object.fetch(Request::from_wit(request)))
            .map(crate::Response::into_wit)
    }
}

impl<T: Object> alarm_handler::Guest for Exported<T> {
    fn on_alarm(info: AlarmInfo) -> Result<(), String> {
        run_event(|object: &mut T| object.alarm(info))
    }
}

/// Export a type implementing [`Object`] as this component's durable object.
///
/// Use it once per crate (a component holds one object class), at module level:
///
/// ```ignore
/// struct Room { /* ... */ }
/// impl dohost_sdk::Object for Room { /* ... */ }
/// dohost_sdk::export!(Room);
/// ```
#[macro_export]
macro_rules! export {
    ($object:ty) => {
        const _: () = {
            type DohostExportedObject = $crate::__private::Exported<$object>;
            $crate::__private::bindings::__export_object_world!(
                DohostExportedObject with_types_in $crate::__private::bindings
            );
        };
    };
}
