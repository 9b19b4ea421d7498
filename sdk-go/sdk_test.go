package dohost

// Unit tests of the parts that do not call the host; they run natively:
// cd sdk-go && ../scripts/go test .
// The host calls are covered by the integration tests (tests/go.rs) and the conformance suite.

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	alarmWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_alarm_handler"
	httpWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_http_types"
	sqlWIT "dohost.dev/go/dohost/internal/wit/imports/dohost_object_sql"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func TestSplitURL(t *testing.T) {
	for _, c := range []struct {
		url, path, query string
		hasQuery         bool
	}{
		{"http://h/a/b?x=1#f", "/a/b", "x=1", true},
		{"http://h", "/", "", false},
		{"http://h?x", "/", "x", true},
		{"https://h:8080/", "/", "", false},
		{"/join?", "/join", "", true},
		{"http://h/a/b%2Fc?x=1&y=%20", "/a/b%2Fc", "x=1&y=%20", true},
	} {
		path, query, hasQuery := splitURL(c.url)
		if path != c.path || query != c.query || hasQuery != c.hasQuery {
			t.Errorf("splitURL(%q) = %q, %q, %v; want %q, %q, %v",
				c.url, path, query, hasQuery, c.path, c.query, c.hasQuery)
		}
	}
}

func TestRequestQuery(t *testing.T) {
	req := NewRequest("get", "http://h/p?name=J%C3%BCrgen+K&x&name=2", nil)
	if req.Method != "GET" {
		t.Errorf("method %q", req.Method)
	}
	q := req.Query()
	if q.Get("name") != "Jürgen K" || q["name"][1] != "2" || !q.Has("x") || q.Has("missing") {
		t.Errorf("query %v", q)
	}
}

func TestHeaderIsCaseInsensitive(t *testing.T) {
	var h Header
	h.Set("Content-Type", "text/html")
	h.Add("Set-Cookie", "a=1")
	h.Add("set-cookie", "b=2")
	if h.Get("CONTENT-TYPE") != "text/html" {
		t.Errorf("Get: %v", h)
	}
	if got := h.Values("SET-COOKIE"); len(got) != 2 || got[1] != "b=2" {
		t.Errorf("Values: %v", got)
	}
	h.Set("set-Cookie", "c=3")
	if len(h) != 2 || h[1] != (Field{"set-cookie", "c=3"}) {
		t.Errorf("Set: %v", h)
	}
	h.Del("content-type")
	if len(h) != 1 {
		t.Errorf("Del: %v", h)
	}
}

func TestJSONBodies(t *testing.T) {
	resp, err := JSON(map[string]any{"players": 1, "html": "<a&b>"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Text(); got != `{"html":"<a&b>","players":1}` {
		t.Errorf("JSON body %s", got)
	}
	if resp.Header.Get("content-type") != "application/json" || resp.Status != 200 {
		t.Errorf("JSON response %+v", resp)
	}
	if _, err := JSON(math.NaN()); err == nil {
		t.Error("NaN is not JSON")
	}

	var v struct{ By int64 }
	if err := (&Request{Body: []byte(`{"by": 2}`)}).JSON(&v); err != nil || v.By != 2 {
		t.Errorf("decoded %+v, %v", v, err)
	}
	for _, body := range []string{"", "{", `{"by": 2.5}`} {
		err := (&Request{Body: []byte(body)}).JSON(&v)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid JSON body: ") {
			t.Errorf("body %q: %v", body, err)
		}
	}
}

func TestResponseStatusToWIT(t *testing.T) {
	for status, want := range map[int]uint16{0: 200, 201: 201, 404: 404, 70000: 0, -1: 0} {
		if got := (&Response{Status: status}).toWIT().Status; got != want {
			t.Errorf("status %d -> %d, want %d", status, got, want)
		}
	}
	wit := Text("hi").WithHeader("X-Custom", "1").toWIT()
	if len(wit.Headers) != 2 || wit.Headers[1].F0 != "x-custom" {
		t.Errorf("headers %v", wit.Headers)
	}
	// Names set directly in the struct are lower-cased too, as the WIT contract requires.
	wit = (&Response{Header: Header{{"X-Upper", "v"}}}).toWIT()
	if wit.Headers[0].F0 != "x-upper" {
		t.Errorf("headers %v", wit.Headers)
	}
}

type playerID string

func TestParams(t *testing.T) {
	name := "Ann"
	var none *string
	for _, c := range []struct {
		param any
		tag   uint8
	}{
		{nil, sqlWIT.Value_Null},
		{none, sqlWIT.Value_Null},
		{&name, sqlWIT.Value_Text},
		{playerID("p1"), sqlWIT.Value_Text},
		{7, sqlWIT.Value_Integer},
		{int8(-7), sqlWIT.Value_Integer},
		{uint64(math.MaxInt64), sqlWIT.Value_Integer},
		{true, sqlWIT.Value_Integer},
		{float32(1.5), sqlWIT.Value_Real},
		{[]byte(nil), sqlWIT.Value_Blob},
	} {
		v, err := toWITValue(c.param)
		if err != nil || v.Tag() != c.tag {
			t.Errorf("%#v: tag %d, %v; want tag %d", c.param, v.Tag(), err, c.tag)
		}
	}
	if v, _ := toWITValue(true); v.Integer() != 1 {
		t.Error("true is 1")
	}
	if _, err := toWITValue(uint64(math.MaxInt64) + 1); err == nil {
		t.Error("uint64 overflow accepted")
	}
	if _, err := toWITValue(time.Now()); err == nil || !strings.Contains(err.Error(), "UnixMilli") {
		t.Errorf("time.Time: %v", err)
	}
}

func TestScan(t *testing.T) {
	row := &Row{
		columns: []string{"id", "name", "score", "data", "missing"},
		values:  []any{int64(300), "Ann", 2.5, []byte{0, 1}, nil},
	}
	var (
		id      int64
		name    playerID
		score   float64
		data    []byte
		missing *string
	)
	if err := row.Scan(&id, &name, &score, &data, &missing); err != nil {
		t.Fatal(err)
	}
	if id != 300 || name != "Ann" || score != 2.5 || len(data) != 2 || missing != nil {
		t.Errorf("scanned %v %v %v %v %v", id, name, score, data, missing)
	}

	var small int8
	var text string
	var anything any
	var ok bool
	for _, c := range []struct {
		dest any
		err  string
	}{
		{&small, "column 0 (id): 300 overflows int8"},
		{&text, "column 0 (id): cannot store integer into *string"},
		{&ok, ""},
		{&anything, ""},
	} {
		err := row.Scan(c.dest, &name, &score, &data, &missing)
		if (err == nil && c.err != "") || (err != nil && !strings.HasSuffix(err.Error(), c.err)) || (c.err == "" && err != nil) {
			t.Errorf("Scan into %T: %v, want %q", c.dest, err, c.err)
		}
	}
	if !ok || anything != int64(300) {
		t.Errorf("bool %v, any %v", ok, anything)
	}
	err := row.Scan(&id, &name, &score, &data, &text)
	if err == nil || !strings.Contains(err.Error(), "column 4 (missing): the value is NULL") {
		t.Errorf("NULL into *string: %v", err)
	}
	if err := row.Scan(&id); err == nil {
		t.Error("wrong destination count accepted")
	}
	if v, found := row.Get("name"); !found || v != "Ann" {
		t.Errorf("Get: %v", v)
	}
	if m := row.Map(); len(m) != 5 || m["missing"] != nil {
		t.Errorf("Map: %v", m)
	}
}

func cursorOf(rows ...[]sqlWIT.Value) *Cursor {
	return &Cursor{columns: []string{"v"}, page: rows}
}

func TestCursor(t *testing.T) {
	one := []sqlWIT.Value{sqlWIT.MakeValueInteger(1)}
	two := []sqlWIT.Value{sqlWIT.MakeValueInteger(2)}

	if row, err := cursorOf(one).One(); err != nil || row.Values()[0] != int64(1) {
		t.Errorf("One: %v, %v", row, err)
	}
	if _, err := cursorOf().One(); !errors.Is(err, ErrNoRows) {
		t.Errorf("One of none: %v", err)
	}
	if _, err := cursorOf(one, two).One(); !errors.Is(err, ErrManyRows) {
		t.Errorf("One of two: %v", err)
	}
	var seen []any
	for row := range cursorOf(one, two).All() {
		seen = append(seen, row.Values()[0])
	}
	if len(seen) != 2 || seen[1] != int64(2) {
		t.Errorf("All: %v", seen)
	}
	empty := []sqlWIT.Value{sqlWIT.MakeValueBlob(nil), sqlWIT.MakeValueNull()}
	for values := range cursorOf(empty).Raw() {
		if b, isBlob := values[0].([]byte); !isBlob || b == nil || values[1] != nil {
			t.Errorf("an empty blob must stay a non-nil []byte, NULL nil: %#v", values)
		}
	}
	if err := (&Row{err: ErrNoRows}).Scan(new(int)); !errors.Is(err, ErrNoRows) {
		t.Errorf("deferred error: %v", err)
	}
}

type fakeObject struct {
	events int
	fail   bool
}

func (o *fakeObject) Fetch(req *Request) (*Response, error) {
	o.events++
	if o.fail {
		return nil, errors.New("boom")
	}
	return Text(req.Method + " " + req.Path()).WithStatus(201), nil
}

func TestEventsAndFailures(t *testing.T) {
	defer func() { constructor, current = nil, nil }()
	constructions := 0
	object := &fakeObject{}
	Register(func(*Ctx) (*fakeObject, error) {
		constructions++
		return object, nil
	})
	request := httpWIT.Request{Method: "GET", Url: "http://h/x?y", Headers: nil, Body: nil}

	result := handleRequest(request)
	if result.IsErr() || result.Ok().Status != 201 || string(result.Ok().Body) != "GET /x" {
		t.Fatalf("first event: %+v", result)
	}
	handleRequest(request)
	if constructions != 1 || object.events != 2 {
		t.Errorf("the object is kept between events: %d constructions, %d events", constructions, object.events)
	}

	object.fail = true
	if result := handleRequest(request); !result.IsErr() || result.Err() != "boom" {
		t.Errorf("failing event: %+v", result)
	}
	object.fail = false
	handleRequest(request)
	if constructions != 2 {
		t.Errorf("a failed event drops the object: %d constructions", constructions)
	}

	// Objects without an Alarm method ignore alarms.
	info := alarmWIT.AlarmInfo{ScheduledAt: 1_700_000_000_123, RetryCount: 0}
	if result := handleAlarm(info); result.Tag() != witTypes.ResultOk {
		t.Errorf("alarm: %+v", result)
	}

	defer func() {
		if recover() == nil {
			t.Error("a second Register must panic")
		}
	}()
	Register(func(*Ctx) (*fakeObject, error) { return nil, nil })
}

func TestNoObjectRegistered(t *testing.T) {
	result := handleRequest(httpWIT.Request{Method: "GET", Url: "http://h/"})
	if !result.IsErr() || !strings.Contains(result.Err(), "dohost.Register") {
		t.Errorf("%+v", result)
	}
}

type alarmObject struct{ got AlarmInfo }

func (o *alarmObject) Fetch(*Request) (*Response, error) { return NotFound(), nil }
func (o *alarmObject) Alarm(info AlarmInfo) error {
	o.got = info
	if info.RetryCount == 0 {
		return errors.New("retry me")
	}
	return nil
}

func TestAlarmEvents(t *testing.T) {
	defer func() { constructor, current = nil, nil }()
	object := &alarmObject{}
	Register(func(*Ctx) (Object, error) { return object, nil })
	if result := handleAlarm(alarmWIT.AlarmInfo{ScheduledAt: 1_700_000_000_123}); !result.IsErr() || result.Err() != "retry me" {
		t.Errorf("first attempt: %+v", result)
	}
	if result := handleAlarm(alarmWIT.AlarmInfo{ScheduledAt: 1_700_000_000_123, RetryCount: 1}); result.IsErr() {
		t.Errorf("retry: %+v", result)
	}
	if object.got.ScheduledAt.UnixMilli() != 1_700_000_000_123 || object.got.RetryCount != 1 {
		t.Errorf("info %+v", object.got)
	}
}
