//! HTTP shapes: the [`Request`] an object handles (or sends with
//! [`Ctx::fetch`](crate::Ctx::fetch)) and the [`Response`] it returns (or receives).
//!
//! Bodies are whole byte vectors; the host caps their size. Header names are compared without
//! regard to case and stored in lower case, as the WIT contract requires.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::dohost::object::http_types as wit;
use crate::{Error, Result};

const CONTENT_TYPE: &str = "content-type";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";

/// An HTTP request.
///
/// For an inbound request the URL's path is the part after the object's route (`/<name>/join`
/// arrives as `/join`) and the query string is kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body. `method` is upper-cased.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        let mut method = method.into();
        method.make_ascii_uppercase();
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request for `url` (add a body with [`with_body`](Self::with_body) or
    /// [`with_json`](Self::with_json)).
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// This request with header `name` set to `value`, replacing any previous values.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        set_header(&mut self.headers, name, value.into());
        self
    }

    /// This request with one more `name: value` header, keeping earlier values.
    pub fn append_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// This request with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// This request with `value` as its JSON body and `content-type: application/json`.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(self
            .with_body(body)
            .with_header(CONTENT_TYPE, APPLICATION_JSON))
    }

    /// The upper-case method, for example `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The absolute URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL's path, without query string or fragment; `/` when empty.
    pub fn path(&self) -> &str {
        split_url(&self.url).0
    }

    /// The URL's raw query string (after `?`, still percent-encoded), if it has one.
    pub fn query(&self) -> Option<&str> {
        split_url(&self.url).1
    }

    /// The first value of query parameter `name`, percent-decoded (`+` reads as a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Every query parameter as a decoded `(name, value)` pair, in order.
    pub fn query_params(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All header fields in order, names in lower case.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body; empty when there is none.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        utf8(&self.body)
    }

    /// The body parsed as JSON into `T`; [`Error::Json`] if it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body, consuming the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    pub(crate) fn from_wit(request: wit::Request) -> Self {
        Self {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Request {
        wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// An HTTP response.
///
/// ```
/// use dohost_sdk::Response;
///
/// let ok = Response::text("hello");
/// let created = Response::json(&serde_json::json!({ "id": 1 }))?.with_status(201);
/// let missing = Response::not_found();
/// assert_eq!((ok.status(), created.status(), missing.status()), (200, 201, 404));
/// # Ok::<(), dohost_sdk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK` with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header(CONTENT_TYPE, TEXT_PLAIN)
            .with_body(body.into())
    }

    /// `200 OK` with `value` as an `application/json` body (compact JSON).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(Self::new(200)
            .with_header(CONTENT_TYPE, APPLICATION_JSON)
            .with_body(body))
    }

    /// `404 Not Found` with a short text body.
    pub fn not_found() -> Self {
        Self::text("Not Found").with_status(404)
    }

    /// This response with `status` (100..=599; the host turns anything else into a 500).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// This response with header `name` set to `value`, replacing any previous values.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        set_header(&mut self.headers, name, value.into());
        self
    }

    /// This response with one more `name: value` field, keeping existing ones (for headers
    /// that repeat, such as `set-cookie`).
    pub fn append_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// This response with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All header fields in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text_body(&self) -> Result<&str> {
        utf8(&self.body)
    }

    /// The body parsed as JSON into `T`.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body, consuming the response.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    pub(crate) fn from_wit(response: wit::Response) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

fn utf8(body: &[u8]) -> Result<&str> {
    core::str::from_utf8(body).map_err(|e| Error::Message(format!("body is not UTF-8: {e}")))
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_ascii_lowercase(), value));
}

/// Splits an absolute (or path-only) URL into its path (`/` when empty) and raw query string,
/// dropping any fragment.
fn split_url(url: &str) -> (&str, Option<&str>) {
    let after_scheme = match url.split_once("://") {
        // Skip the authority: the path starts at the first `/`, `?` or `#` after it.
        Some((_, rest)) => rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]),
        None => url,
    };
    let without_fragment = after_scheme
        .split_once('#')
        .map_or(after_scheme, |(before, _)| before);
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// Decodes `%XX` escapes and `+` (as a space); malformed escapes stay as they are and invalid
/// UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    let h = core::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(split_url("http://h/a/b?x=1#f"), ("/a/b", Some("x=1")));
        assert_eq!(split_url("http://h"), ("/", None));
        assert_eq!(split_url("http://h?x"), ("/", Some("x")));
        assert_eq!(split_url("https://h:8080/"), ("/", None));
        assert_eq!(split_url("/join?"), ("/join", Some("")));
    }

    #[test]
    fn query_params_decode() {
        let req = Request::get("http://h/p?name=J%C3%BCrgen+K&x&name=2&bad=%zz");
        assert_eq!(req.query_param("name").as_deref(), Some("Jürgen K"));
        assert_eq!(req.query_param("x").as_deref(), Some(""));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("missing"), None);
    }

    #[test]
    fn headers_are_case_insensitive_and_replaced() {
        let res = Response::text("hi").with_header("Content-Type", "text/html");
        assert_eq!(res.header("CONTENT-TYPE"), Some("text/html"));
        assert_eq!(res.headers().len(), 1);
        let res = res
            .append_header("Set-Cookie", "a=1")
            .append_header("set-cookie", "b=2");
        assert_eq!(res.headers().len(), 3);
    }

    #[test]
    fn json_bodies() {
        let req = Request::post("http://h/join").with_body(r#"{"by": 2}"#);
        let v: serde_json::Value = req.json().unwrap_or_default();
        assert_eq!(v["by"], 2);
        let bad = Request::post("http://h/join").with_body("{");
        assert!(matches!(
            bad.json::<serde_json::Value>(),
            Err(Error::Json(_))
        ));
        let res = Response::json(&serde_json::json!({"players": 1}));
        assert_eq!(
            res.ok().map(Response::into_body),
            Some(br#"{"players":1}"#.to_vec())
        );
    }
}
