package dohost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	httpWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_http_types"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

const (
	contentType     = "content-type"
	textPlain       = "text/plain; charset=utf-8"
	applicationJSON = "application/json"
)

// Field is one header field.
type Field struct {
	Name, Value string
}

// Header is a list of header fields, in order; a name may repeat. Names are compared without
// regard to case; the methods store them in lower case, as the host delivers them.
type Header []Field

// Get is the first value of header name, or "" if there is none.
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values are all values of header name, in order.
func (h Header) Values(name string) []string {
	var values []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			values = append(values, f.Value)
		}
	}
	return values
}

// Set replaces all values of header name with value.
func (h *Header) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Add appends a name: value field, keeping existing ones (for headers that repeat, such as
// set-cookie).
func (h *Header) Add(name, value string) {
	*h = append(*h, Field{strings.ToLower(name), value})
}

// Del removes all fields named name.
func (h *Header) Del(name string) {
	kept := (*h)[:0]
	for _, f := range *h {
		if !strings.EqualFold(f.Name, name) {
			kept = append(kept, f)
		}
	}
	*h = kept
}

// Request is an HTTP request: one the object handles, or one it sends with [Ctx.Fetch].
//
// For an inbound request, the URL's path is the part after the object's route (/<name>/join
// arrives as /join) and the query string is kept as received.
type Request struct {
	// Method is upper case, for example GET.
	Method string
	// URL is absolute.
	URL    string
	Header Header
	// Body is the whole body; empty when there is none. The host caps its size.
	Body []byte
}

// NewRequest makes a request to send with [Ctx.Fetch]. The method is upper-cased; body may
// be nil.
func NewRequest(method, url string, body []byte) *Request {
	return &Request{Method: strings.ToUpper(method), URL: url, Body: body}
}

// Path is the URL's path, still percent-encoded, without query string or fragment; "/" when
// empty.
func (r *Request) Path() string {
	path, _, _ := splitURL(r.URL)
	return path
}

// RawQuery is the URL's query string (after '?', still percent-encoded); ok is false when the
// URL has no '?'.
func (r *Request) RawQuery() (query string, ok bool) {
	_, query, ok = splitURL(r.URL)
	return query, ok
}

// Query is the parsed query string: Query().Get("name") is the first value of parameter name,
// percent-decoded. Malformed pairs are skipped.
func (r *Request) Query() url.Values {
	query, _ := r.RawQuery()
	values, _ := url.ParseQuery(query)
	return values
}

// Text is the body as a string.
func (r *Request) Text() string {
	return string(r.Body)
}

// JSON decodes the JSON body into v (see [encoding/json.Unmarshal]). The error says what is
// wrong and suits a 400 response.
func (r *Request) JSON(v any) error {
	return decodeJSON(r.Body, v)
}

// WithHeader sets header name to value (replacing earlier values) and returns r.
func (r *Request) WithHeader(name, value string) *Request {
	r.Header.Set(name, value)
	return r
}

// Response is an HTTP response: one the object returns, or one [Ctx.Fetch] received.
type Response struct {
	// Status is the status code, 100 to 599 (the host answers 500 for anything else); 0 means
	// 200.
	Status int
	Header Header
	Body   []byte
}

// NewResponse is a response with status and body and no headers.
func NewResponse(status int, body []byte) *Response {
	return &Response{Status: status, Body: body}
}

// Text is a 200 response with a text/plain body.
func Text(body string) *Response {
	r := NewResponse(200, []byte(body))
	r.Header.Set(contentType, textPlain)
	return r
}

// JSON is a 200 response with v encoded as compact JSON (an application/json body). Unlike
// [encoding/json.Marshal], it leaves <, > and & unescaped. It fails only for values that
// encoding/json cannot encode, so a handler may end with:
//
//	return dohost.JSON(map[string]int64{"players": n})
func JSON(v any) (*Response, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("dohost: encoding the JSON response: %w", err)
	}
	r := NewResponse(200, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	r.Header.Set(contentType, applicationJSON)
	return r, nil
}

// NotFound is a 404 response with a short text body.
func NotFound() *Response {
	return Text("Not Found").WithStatus(404)
}

// WithStatus sets the status code and returns r.
func (r *Response) WithStatus(status int) *Response {
	r.Status = status
	return r
}

// WithHeader sets header name to value (replacing earlier values) and returns r.
func (r *Response) WithHeader(name, value string) *Response {
	r.Header.Set(name, value)
	return r
}

// Text is the body as a string.
func (r *Response) Text() string {
	return string(r.Body)
}

// JSON decodes the JSON body into v (see [encoding/json.Unmarshal]).
func (r *Response) JSON(v any) error {
	return decodeJSON(r.Body, v)
}

func decodeJSON(body []byte, v any) error {
	if len(body) == 0 {
		return fmt.Errorf("invalid JSON body: the body is empty")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

// splitURL splits an absolute (or path-only) URL into its path ("/" when empty) and raw query
// string, dropping any fragment.
func splitURL(u string) (path, query string, hasQuery bool) {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		// Skip the authority: the path starts at the first '/', '?' or '#' after it.
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			u = rest[i:]
		} else {
			u = ""
		}
	}
	u, _, _ = strings.Cut(u, "#")
	path, query, hasQuery = strings.Cut(u, "?")
	if path == "" {
		path = "/"
	}
	return path, query, hasQuery
}

func headerFromWIT(fields []witTypes.Tuple2[string, string]) Header {
	h := make(Header, len(fields))
	for i, f := range fields {
		h[i] = Field{f.F0, f.F1}
	}
	return h
}

func headerToWIT(h Header) []witTypes.Tuple2[string, string] {
	fields := make([]witTypes.Tuple2[string, string], len(h))
	for i, f := range h {
		fields[i] = witTypes.Tuple2[string, string]{F0: strings.ToLower(f.Name), F1: f.Value}
	}
	return fields
}

func requestFromWIT(r httpWIT.Request) *Request {
	return &Request{Method: r.Method, URL: r.Url, Header: headerFromWIT(r.Headers), Body: r.Body}
}

func (r *Request) toWIT() httpWIT.Request {
	return httpWIT.Request{Method: r.Method, Url: r.URL, Headers: headerToWIT(r.Header), Body: r.Body}
}

func responseFromWIT(r httpWIT.Response) *Response {
	return &Response{Status: int(r.Status), Header: headerFromWIT(r.Headers), Body: r.Body}
}

func (r *Response) toWIT() httpWIT.Response {
	status := r.Status
	switch {
	case status == 0:
		status = 200
	case status < 0 || status > 0xffff:
		status = 0 // out of range for the WIT u16: the host answers 500
	}
	return httpWIT.Response{Status: uint16(status), Headers: headerToWIT(r.Header), Body: r.Body}
}
