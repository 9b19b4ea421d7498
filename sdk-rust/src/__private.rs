//! Support for [`export!`](crate::export): the generated bindings and the export glue.
//!
//! Nothing in here is a public API; it is `pub` only because `export!` expands inside the
//! user's crate. The `generate!` paths are absolute (`dohost_sdk::...`) for the same reason:
//! that crate depends on this SDK but not on `wit-bindgen`.

pub use crate::export::Exported;
pub use wit_bindgen;

/// The one `wit_bindgen::generate!` for the `object` world (from `wit/object.wit`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "object",
        runtime_path: "dohost_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_object_world",
        default_bindings_module: "dohost_sdk::__private::bindings",
    });
}
