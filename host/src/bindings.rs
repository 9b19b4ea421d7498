//! The host's one `bindgen!` of the `dohost:object` world (see `wit/object.wit`).
//!
//! Imports are synchronous and trappable: SQL, alarm and identity calls run on the object's
//! event thread (see `object`), where blocking on SQLite is allowed; a host failure that is not
//! the guest's fault becomes a trap. `fetch.send` is async: it waits on the network. Exports are async so that a guest can be suspended by epoch
//! interruption and, later, wait on outbound I/O.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "object",
    imports: {
        // Waits on the network: async, so the event thread keeps driving other I/O.
        "dohost:object/fetch.send": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "dohost:object/sql.cursor": crate::sql::Cursor,
    },
});

pub use self::dohost::object::{alarm, fetch, http_types, identity, sql};
pub use self::exports::dohost::object::alarm_handler::AlarmInfo;
