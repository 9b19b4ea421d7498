// Conversions between the WIT `http-types` records and the web-standard Request / Response
// classes that StarlingMonkey provides.

/** Header lists exactly as the host delivered them, for `rawHeaders()`. */
const deliveredHeaders = new WeakMap();

/**
 * The request's headers in the order the host delivered them, repeated names kept, names in
 * lower case (a dohost extension: `request.headers` is a `Headers`, which sorts and merges).
 * @param {Request} request a request the object received
 * @returns {[string, string][]}
 */
export function rawHeaders(request) {
  const headers = deliveredHeaders.get(request);
  if (headers === undefined) {
    return [...request.headers];
  }
  return headers.map(([name, value]) => [name, value]);
}

/** A WIT `request` record as a `Request`. */
export function toRequest(record) {
  const headers = new Headers();
  for (const [name, value] of record.headers) headers.append(name, value);
  const init = { method: record.method, headers };
  // GET and HEAD requests cannot carry a body in the Fetch API.
  if (record.body.length > 0 && record.method !== "GET" && record.method !== "HEAD") {
    init.body = record.body;
  }
  const request = new Request(record.url, init);
  deliveredHeaders.set(request, record.headers);
  return request;
}

/** A `Response` as a WIT `response` record (reads the whole body). */
export async function fromResponse(response) {
  if (!(response instanceof Response)) {
    const what = response === null ? "null" : (response?.constructor?.name ?? typeof response);
    throw new TypeError(`fetch() must return a Response, but returned ${what}`);
  }
  // Headers joins repeated fields with ", ", which breaks Set-Cookie: send each cookie alone.
  const headers = [];
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") headers.push([name, value]);
  }
  for (const cookie of response.headers.getSetCookie()) headers.push(["set-cookie", cookie]);
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers, body };
}
