//! The URL scheme: which object a request path reaches.
//!
//! - `/<name>/<rest>`: the object created from `<name>` (percent-decoded UTF-8 that passes
//!   [`validate_name`]); it sees `/<rest>`.
//! - `/_id/<hex>/<rest>`: the object with that ID; the hex is checked by the host, which
//!   knows the key and the class.
//! - `/_new`: mint a unique ID.
//! - Any other first segment starting with `_` is reserved for the host.
//!
//! Only the path is parsed; the query string is the host's to pass on.

use std::fmt;

use crate::name::validate_name;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/<name>/<rest>`
    Named { name: String, rest: String },
    /// `/_id/<hex>/<rest>`
    ById { hex: String, rest: String },
    /// `/_new`
    NewId,
}

/// Why a path reaches no object, by the HTTP status it maps to. The messages are sent to
/// clients as the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// `404`: no object in the URL, or a path reserved for the host.
    NotFound(String),
    /// `400`: a malformed name or a missing ID.
    BadRequest(String),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NotFound(message) | RouteError::BadRequest(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for RouteError {}

const USAGE: &str = "no object in the URL: use /<name>/<path> or /_id/<hex id>/<path> \
                     (POST /_new mints a unique ID)";

/// Parses a request path (still percent-encoded) into a route. `rest` starts with `/`.
pub fn route(path: &str) -> Result<Route, RouteError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = split_segment(path);
    if first.is_empty() {
        return Err(RouteError::NotFound(USAGE.into()));
    }
    if first == "_id" {
        let (hex, rest) = split_segment(rest.strip_prefix('/').unwrap_or(""));
        if hex.is_empty() {
            return Err(RouteError::BadRequest(
                "missing object ID after /_id/".into(),
            ));
        }
        return Ok(Route::ById {
            hex: hex.to_string(),
            rest: rest_path(rest),
        });
    }
    if first == "_new" {
        return Ok(Route::NewId);
    }
    // Checked before decoding: a name spelled `%5F...` is not a host path, and reaches the
    // object of that name.
    if first.starts_with('_') {
        return Err(RouteError::NotFound(format!(
            "/{first} is reserved for the host; object names cannot start with '_'"
        )));
    }
    let name = percent_decode(first)?;
    validate_name(&name).map_err(|e| RouteError::BadRequest(e.to_string()))?;
    Ok(Route::Named {
        name,
        rest: rest_path(rest),
    })
}

/// Splits at the first `/`, which stays with the second part.
fn split_segment(path: &str) -> (&str, &str) {
    match path.find('/') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    }
}

fn rest_path(rest: &str) -> String {
    if rest.is_empty() {
        "/".into()
    } else {
        rest.to_string()
    }
}

/// Decodes `%XX` escapes (two hex digits of either case); the result must be UTF-8.
fn percent_decode(segment: &str) -> Result<String, RouteError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = match bytes.get(i + 1..i + 3) {
                Some(&[hi, lo]) => hex_digit(hi).zip(hex_digit(lo)).map(|(h, l)| h << 4 | l),
                _ => None,
            }
            .ok_or_else(|| {
                RouteError::BadRequest("malformed %-escape in the object name".into())
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RouteError::BadRequest("object names must be UTF-8".into()))
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, rest: &str) -> Route {
        Route::Named {
            name: name.into(),
            rest: rest.into(),
        }
    }

    fn bad_request(path: &str) -> String {
        match route(path) {
            Err(RouteError::BadRequest(message)) => message,
            other => panic!("{path}: expected 400, got {other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/lobby/join").unwrap(), named("lobby", "/join"));
        assert_eq!(route("/lobby").unwrap(), named("lobby", "/"));
        assert_eq!(route("/lobby/").unwrap(), named("lobby", "/"));
        assert_eq!(route("lobby/x").unwrap(), named("lobby", "/x"));
        assert_eq!(route("/lobby//x").unwrap(), named("lobby", "//x"));
        assert_eq!(route("/a%20b/x/y").unwrap(), named("a b", "/x/y"));
        assert_eq!(route("/%C3%A9t%c3%a9").unwrap(), named("été", "/"));
        assert_eq!(route("/a%2Fb/x").unwrap(), named("a/b", "/x"));
        assert_eq!(route("/%5Fx").unwrap(), named("_x", "/"));
        assert_eq!(route("/_new").unwrap(), Route::NewId);
        assert_eq!(route("/_new/more").unwrap(), Route::NewId);
        assert_eq!(
            route("/_id/abc/x").unwrap(),
            Route::ById {
                hex: "abc".into(),
                rest: "/x".into()
            }
        );
        assert_eq!(
            route("/_id/abc").unwrap(),
            Route::ById {
                hex: "abc".into(),
                rest: "/".into()
            }
        );
    }

    #[test]
    fn reserved_and_empty_paths_are_not_found() {
        for path in ["", "/", "//x", "/_x", "/_", "/_ID/abc"] {
            assert!(
                matches!(route(path), Err(RouteError::NotFound(_))),
                "{path:?}: {:?}",
                route(path)
            );
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(bad_request("/_id/"), "missing object ID after /_id/");
        assert_eq!(bad_request("/_id"), "missing object ID after /_id/");
        assert_eq!(bad_request("/_id//x"), "missing object ID after /_id/");
        for path in ["/%zz", "/%", "/a%2", "/%+f", "/%-1", "/% f", "/%é"] {
            assert_eq!(bad_request(path), "malformed %-escape in the object name");
        }
        assert_eq!(bad_request("/%ff"), "object names must be UTF-8");
        assert_eq!(bad_request("/%c3"), "object names must be UTF-8");
        for path in ["/..", "/%2e%2e/x", "/%2E%2E", "/.", "/%2e"] {
            assert_eq!(bad_request(path), r#"object names may not be "." or "..""#);
        }
        assert_eq!(
            bad_request("/a%00b"),
            "object names may not contain control characters"
        );
        assert_eq!(
            bad_request(&format!("/{}", "n".repeat(300))),
            "object names are 1 to 256 bytes; got 300"
        );
    }
}
