// The Go conformance object: the JSON command protocol of tests/conformance/SPEC.md, written
// with sdk-go (package dohost). It behaves exactly like the Rust reference, ../rust/src/lib.rs.
//
// POST /run with {"steps": [...]} runs each step in order inside one event and answers
// {"results": [...]}; any other request is echoed back as JSON. A returned error fails the
// event with the WIT err ("fail"); a panic traps it ("trap").
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"dohost.dev/go/dohost"
)

type conformance struct {
	ctx *dohost.Ctx
	// hoard keeps the memory of alloc steps alive for the instance's life.
	hoard [][]byte
}

type (
	object = map[string]any
	array  = []any
)

func newConformance(ctx *dohost.Ctx) (*conformance, error) {
	return &conformance{ctx: ctx}, nil
}

func (c *conformance) Fetch(req *dohost.Request) (*dohost.Response, error) {
	if req.Method != "POST" || req.Path() != "/run" {
		return dohost.JSON(echo(req))
	}
	var command struct {
		Steps []any `json:"steps"`
	}
	dec := json.NewDecoder(bytes.NewReader(req.Body))
	dec.UseNumber() // integers beyond 2^53 stay exact
	if err := dec.Decode(&command); err != nil || command.Steps == nil {
		return dohost.Text(`expected {"steps": [...]}`).WithStatus(400), nil
	}
	results := array{}
	for _, step := range command.Steps {
		fields, _ := step.(object) // a step that is no object is an unknown op
		result, err := c.step(fields)
		if err != nil {
			return nil, err
		}
		results = append(results, result)
	}
	return dohost.JSON(object{"results": results})
}

func (c *conformance) Alarm(info dohost.AlarmInfo) error {
	sql := c.ctx.SQL
	_, err := sql.Exec(
		"CREATE TABLE IF NOT EXISTS conformance_alarms (scheduled_at INTEGER, retry_count INTEGER)")
	if err != nil {
		return err
	}
	_, err = sql.Exec("INSERT INTO conformance_alarms VALUES (?, ?)",
		info.ScheduledAt.UnixMilli(), info.RetryCount)
	if err != nil {
		return err
	}
	// SPEC.md: fail (after writing) while the retry count is below fail_times.
	plan, err := sql.Exec("SELECT name FROM sqlite_master WHERE name = 'conformance_alarm_plan'")
	if err != nil {
		return err
	}
	if _, planned := plan.Next(); planned {
		var failTimes int64
		if err := sql.QueryRow("SELECT fail_times FROM conformance_alarm_plan").Scan(&failTimes); err != nil {
			return err
		}
		if int64(info.RetryCount) < failTimes {
			return fmt.Errorf("planned failure %d", info.RetryCount)
		}
	}
	return nil
}

func ok(value any) object { return object{"ok": value} }

func fail(kind, message string) object {
	return object{"err": object{"kind": kind, "message": message}}
}

// step runs one step and returns its result; an error fails the whole event.
func (c *conformance) step(step object) (object, error) {
	op, _ := step["op"].(string)
	switch op {
	case "exec":
		query, _ := step["query"].(string)
		var params []any
		if list, isList := step["params"].([]any); isList {
			for _, p := range list {
				value, err := decodeValue(p)
				if err != nil {
					return nil, err
				}
				params = append(params, value)
			}
		}
		cursor, err := c.ctx.SQL.Exec(query, params...)
		var sqlErr *dohost.SQLError
		if errors.As(err, &sqlErr) {
			return fail(string(sqlErr.Kind), sqlErr.Message), nil
		} else if err != nil {
			return nil, err
		}
		rows := array{}
		for values := range cursor.Raw() {
			row := make(array, len(values))
			for i, v := range values {
				row[i] = encodeValue(v)
			}
			rows = append(rows, row)
		}
		return ok(object{
			"columns":     cursor.Columns(),
			"rows":        rows,
			"rowsRead":    cursor.RowsRead(),
			"rowsWritten": cursor.RowsWritten(),
		}), nil
	case "databaseSize":
		return ok(c.ctx.SQL.DatabaseSize()), nil
	case "alarmSet":
		at, _ := integer(step["at"])
		if err := c.ctx.SetAlarm(time.UnixMilli(at)); err != nil {
			return fail("alarm", err.Error()), nil
		}
		return ok(nil), nil
	case "alarmGet":
		if at, set := c.ctx.Alarm(); set {
			return ok(at.UnixMilli()), nil
		}
		return ok(nil), nil
	case "alarmDelete":
		c.ctx.DeleteAlarm()
		return ok(nil), nil
	case "identity":
		var name any
		if n, named := c.ctx.Name(); named {
			name = n
		}
		return ok(object{"id": c.ctx.ID(), "name": name}), nil
	case "fetch":
		url, _ := step["url"].(string)
		method, hasMethod := step["method"].(string)
		if !hasMethod {
			method = "GET"
		}
		req := dohost.NewRequest(method, url, nil)
		if pairs, isList := step["headers"].([]any); isList {
			for _, p := range pairs {
				pair, _ := p.([]any)
				req.Header.Add(stringAt(pair, 0), stringAt(pair, 1))
			}
		}
		if body, hasBody := step["body"].(string); hasBody {
			b, err := hex.DecodeString(body)
			if err != nil {
				return nil, errors.New("body is not hex")
			}
			req.Body = b
		}
		resp, err := c.ctx.Fetch(req)
		var fetchErr *dohost.FetchError
		if errors.As(err, &fetchErr) {
			return fail(string(fetchErr.Kind), fetchErr.Message), nil
		} else if err != nil {
			return nil, err
		}
		headers := array{}
		for _, f := range resp.Header {
			headers = append(headers, array{f.Name, f.Value})
		}
		return ok(object{
			"status":  resp.Status,
			"headers": headers,
			"body":    hex.EncodeToString(resp.Body),
		}), nil
	case "alloc":
		n, _ := integer(step["bytes"])
		n = max(n, 0)
		memory := bytes.Repeat([]byte{1}, int(n)) // writes every byte, so the pages are used
		c.hoard = append(c.hoard, memory)
		return ok(n), nil
	case "spin":
		ms, _ := integer(step["ms"])
		start := time.Now()
		x := uint64(0)
		for ms <= 0 || time.Since(start) < time.Duration(ms)*time.Millisecond {
			x++
		}
		return ok(x), nil
	case "recurse":
		depth, _ := integer(step["depth"])
		return ok(recurse(max(depth, 0))), nil
	case "trap":
		panic("conformance object: trap requested")
	case "fail":
		message, isText := step["message"].(string)
		if !isText {
			message = "failure requested"
		}
		return nil, errors.New(message)
	default:
		return fail("unknown-op", fmt.Sprintf("unknown op %q", op)), nil
	}
}

// recurse recurses depth calls deep; each frame keeps a buffer alive, so the compiler cannot
// turn it into a loop. A goroutine's stack grows on demand in linear memory, but every Go call
// is also a wasm call: a huge depth exhausts the host's wasm call stack, which traps.
//
//go:noinline
func recurse(depth int64) int64 {
	var frame [16]int64
	for i := range frame {
		frame[i] = depth
	}
	if depth == 0 {
		return 0
	}
	return recurse(depth-1) + frame[3]
}

func echo(req *dohost.Request) object {
	var query any
	if q, hasQuery := req.RawQuery(); hasQuery {
		query = q
	}
	headers := array{}
	for _, f := range req.Header {
		headers = append(headers, array{f.Name, f.Value})
	}
	return object{
		"method":  req.Method,
		"url":     req.URL,
		"path":    req.Path(),
		"query":   query,
		"headers": headers,
		"body":    hex.EncodeToString(req.Body),
	}
}

// stringAt is element i of list if it is a JSON string, else "" (a missing or non-string header
// name or value, as in the Rust reference).
func stringAt(list []any, i int) string {
	if i >= len(list) {
		return ""
	}
	s, _ := list[i].(string)
	return s
}

// integer reads a JSON number (decoded as json.Number) as an int64.
func integer(v any) (int64, bool) {
	n, isNumber := v.(json.Number)
	if !isNumber {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// encodeValue is the typed JSON of a SQL value (SPEC.md): integers as decimal strings,
// non-finite reals as strings, blobs as lower-case hex.
func encodeValue(v any) object {
	switch v := v.(type) {
	case nil:
		return object{"type": "null"}
	case int64:
		return object{"type": "integer", "value": strconv.FormatInt(v, 10)}
	case float64:
		var value any = v
		switch {
		case math.IsNaN(v):
			value = "NaN"
		case math.IsInf(v, 1):
			value = "Infinity"
		case math.IsInf(v, -1):
			value = "-Infinity"
		case v == 0 && math.Signbit(v):
			value = json.Number("-0.0") // encoding/json would write -0 as 0
		}
		return object{"type": "real", "value": value}
	case string:
		return object{"type": "text", "value": v}
	case []byte:
		return object{"type": "blob", "value": hex.EncodeToString(v)}
	default:
		panic(fmt.Sprintf("unexpected SQL value %T", v))
	}
}

// decodeValue reads a typed JSON value into the Go value the SDK binds.
func decodeValue(j any) (any, error) {
	bad := fmt.Errorf("bad typed value %v", j)
	typed, isObject := j.(object)
	if !isObject {
		return nil, bad
	}
	kind, _ := typed["type"].(string)
	value := typed["value"]
	text, isText := value.(string)
	switch kind {
	case "null":
		return nil, nil
	case "integer":
		i, err := strconv.ParseInt(text, 10, 64)
		if !isText || err != nil {
			return nil, bad
		}
		return i, nil
	case "real":
		switch {
		case text == "NaN":
			return math.NaN(), nil
		case text == "Infinity":
			return math.Inf(1), nil
		case text == "-Infinity":
			return math.Inf(-1), nil
		}
		n, isNumber := value.(json.Number)
		f, err := strconv.ParseFloat(string(n), 64)
		if !isNumber || err != nil {
			return nil, bad
		}
		return f, nil
	case "text":
		if !isText {
			return nil, bad
		}
		return text, nil
	case "blob":
		b, err := hex.DecodeString(text)
		if !isText || err != nil {
			return nil, bad
		}
		return b, nil
	}
	return nil, bad
}

func init() { dohost.Register(newConformance) }

// main is not called: the host calls the object's handlers.
func main() {}
