// A counter durable object: one integer in SQLite, changed over HTTP.
//
//   - GET / or GET /value returns {"value": n}
//   - POST /increment adds 1, or "by" from an optional {"by": n} body, and returns the new value
//   - POST /reset sets it back to 0
package main

import "dohost.dev/go/dohost"

type counter struct {
	sql *dohost.SQL
}

func newCounter(ctx *dohost.Ctx) (*counter, error) {
	_, err := ctx.SQL.Exec(`CREATE TABLE IF NOT EXISTS counter
		(id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL)`)
	return &counter{sql: ctx.SQL}, err
}

func (c *counter) Fetch(req *dohost.Request) (*dohost.Response, error) {
	var value int64
	var err error
	switch req.Method + " " + req.Path() {
	case "GET /", "GET /value":
		// An aggregate always yields one row, even before the first increment.
		err = c.sql.QueryRow("SELECT coalesce(max(value), 0) FROM counter").Scan(&value)
	case "POST /increment":
		inc := struct {
			By int64 `json:"by"`
		}{By: 1}
		if len(req.Body) > 0 {
			if err := req.JSON(&inc); err != nil {
				return dohost.Text(err.Error()).WithStatus(400), nil
			}
		}
		err = c.sql.QueryRow(`INSERT INTO counter (id, value) VALUES (0, ?)
			ON CONFLICT (id) DO UPDATE SET value = value + excluded.value
			RETURNING value`, inc.By).Scan(&value)
	case "POST /reset":
		_, err = c.sql.Exec("DELETE FROM counter")
	default:
		return dohost.NotFound(), nil
	}
	if err != nil {
		return nil, err
	}
	return dohost.JSON(map[string]int64{"value": value})
}

func init() { dohost.Register(newCounter) }

// main is not called: the host calls the object's handlers.
func main() {}
