//! dohost-wire: the formats that cross dohost's edges, as pure functions.
//!
//! - [`route`]: a request path (still percent-encoded) to the object it reaches.
//! - [`validate_name`]: the rules for object names.
//! - [`parse_id_hex`] / [`encode_id_hex`]: the 64-hex-digit form of an object ID (its shape
//!   only; whether this host minted it is the host's HMAC check).
//! - [`TypedValue`], [`encode`], [`decode`]: SQL values as JSON, as the conformance protocol
//!   carries them (`tests/conformance/SPEC.md`, "Typed values").
//!
//! Everything here takes untrusted input and returns an error instead of panicking; the fuzz
//! targets in `tests/fuzz/` check that, and the round-trip properties, on arbitrary input.

pub mod hex;
mod id;
mod name;
mod route;
mod typed_value;

pub use id::{ID_LEN, IdFormatError, encode_id_hex, parse_id_hex};
pub use name::{MAX_NAME_LEN, NameError, validate_name};
pub use route::{Route, RouteError, route};
pub use typed_value::{TypedValue, decode, encode};
