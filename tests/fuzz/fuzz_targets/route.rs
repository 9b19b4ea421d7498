//! `dohost_wire::route` on arbitrary paths: never panics; a name it accepts is a valid name
//! that any percent-encoding of it reaches again; `rest` always starts with `/`.

#![no_main]

use dohost_wire::{Route, RouteError, route, validate_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let routed = route(path);
    match &routed {
        Ok(Route::Named { name, rest }) => {
            assert!(
                validate_name(name).is_ok(),
                "{path:?}: accepted name {name:?}"
            );
            assert!(rest.starts_with('/'), "{path:?}: rest {rest:?}");
            assert!(rest.len() <= path.len(), "{path:?}: rest {rest:?} grew");
            // However the name is spelled, it reaches the same object with the same rest.
            for spelling in [encode_minimally(name), encode_every_byte(name)] {
                let again = route(&format!("/{spelling}{rest}"));
                assert_eq!(again, routed, "{path:?} as /{spelling}{rest}");
            }
        }
        Ok(Route::ById { hex, rest }) => {
            assert!(
                !hex.is_empty() && !hex.contains('/'),
                "{path:?}: hex {hex:?}"
            );
            assert!(rest.starts_with('/'), "{path:?}: rest {rest:?}");
        }
        Ok(Route::NewId) => {
            let first = path.strip_prefix('/').unwrap_or(path).split('/').next();
            assert_eq!(first, Some("_new"), "{path:?}");
        }
        Err(RouteError::NotFound(message) | RouteError::BadRequest(message)) => {
            assert!(!message.is_empty(), "{path:?}: empty message");
        }
    }
});

/// Escapes only what the router treats specially: `%`, `/`, and a leading `_`.
fn encode_minimally(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.char_indices() {
        match c {
            '%' | '/' => out.push_str(&format!("%{:02X}", c as u32)),
            '_' if i == 0 => out.push_str("%5f"),
            c => out.push(c),
        }
    }
    out
}

/// Every byte as an upper-case `%XX` escape.
fn encode_every_byte(name: &str) -> String {
    name.bytes().map(|b| format!("%{b:02X}")).collect()
}
