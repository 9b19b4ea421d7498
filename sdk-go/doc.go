// Package dohost writes dohost durable objects in Go.
//
// A durable object is a WebAssembly component with its own SQLite database. The host runs at
// most one instance per object ID and hands it one event (an HTTP request or an alarm) at a
// time, each inside an implicit transaction that commits when the handler returns a nil error
// and rolls back when it returns an error or panics.
//
// Implement [Object], register its constructor with [Register] from an init function of
// package main, and build the package with scripts/build-guest (Go 1.24 or newer, GOOS=wasip1,
// GOARCH=wasm, -buildmode=c-shared, then componentized with the WASI preview1 reactor adapter):
//
//	package main
//
//	import "dohost.dev/go/dohost"
//
//	type room struct{ sql *dohost.SQL }
//
//	func newRoom(ctx *dohost.Ctx) (*room, error) {
//		_, err := ctx.SQL.Exec(`CREATE TABLE IF NOT EXISTS players
//			(id TEXT PRIMARY KEY, name TEXT NOT NULL)`)
//		return &room{sql: ctx.SQL}, err
//	}
//
//	func (r *room) Fetch(req *dohost.Request) (*dohost.Response, error) {
//		switch req.Method + " " + req.Path() {
//		case "POST /join":
//			var join struct {
//				PlayerID string `json:"playerId"`
//				Name     string `json:"name"`
//			}
//			if err := req.JSON(&join); err != nil {
//				return dohost.Text(err.Error()).WithStatus(400), nil
//			}
//			_, err := r.sql.Exec("INSERT OR REPLACE INTO players VALUES (?, ?)", join.PlayerID, join.Name)
//			if err != nil {
//				return nil, err
//			}
//			return r.count()
//		case "GET /count":
//			return r.count()
//		}
//		return dohost.NotFound(), nil
//	}
//
//	func (r *room) count() (*dohost.Response, error) {
//		var n int64
//		if err := r.sql.QueryRow("SELECT count(*) FROM players").Scan(&n); err != nil {
//			return nil, err
//		}
//		return dohost.JSON(map[string]int64{"players": n})
//	}
//
//	func init() { dohost.Register(newRoom) }
//
//	// main is not called: the host calls the object's handlers.
//	func main() {}
//
// # Overview
//
//   - [Ctx] reaches the host: Ctx.SQL (the database), [Ctx.SetAlarm] and friends,
//     [Ctx.Fetch] (outbound HTTP), [Ctx.ID] and [Ctx.Name].
//   - [SQL.Exec] binds Go values to ? placeholders and returns a [Cursor] over the rows;
//     [SQL.QueryRow] and [Row.Scan] read single values the way database/sql does.
//   - [Request] and [Response] are plain structs with helpers: [Request.Path],
//     [Request.Query], [Request.JSON]; [JSON], [Text], [NotFound], [Response.WithStatus].
//
// # Alarms
//
// An object that implements [AlarmHandler] can wake itself up: [Ctx.SetAlarm] stores one
// durable wake-up time, committed with the event that sets it, and the host calls Alarm when
// it is due (retrying with backoff while Alarm returns an error):
//
//	func (s *session) Fetch(req *dohost.Request) (*dohost.Response, error) {
//		// ...
//		if err := s.ctx.SetAlarm(time.Now().Add(30 * time.Minute)); err != nil {
//			return nil, err
//		}
//		return dohost.Text("ok"), nil
//	}
//
//	func (s *session) Alarm(info dohost.AlarmInfo) error {
//		_, err := s.ctx.SQL.Exec("DELETE FROM sessions WHERE expires_at <= ?", info.ScheduledAt.UnixMilli())
//		return err
//	}
//
// # Events, errors and panics
//
// The SDK constructs the object on the first event an instance receives and keeps it for the
// instance's lifetime, so fields may cache what is in the database. When Fetch (or Alarm, or
// the constructor) returns an error, the host rolls the event back and answers 500 with the
// error's text; the SDK drops the object, so the next event constructs it again from the
// committed state and in-memory fields never disagree with a rolled-back database.
//
// A panic is not recovered: the Go runtime prints it with its stack trace to stderr (the
// host's log) and exits, which traps the instance. The host rolls the event back, answers 500
// (x-dohost-error: object-trapped) and starts a fresh instance for the next event. Return an
// error for failures you expect; a panic means a bug.
//
// # Concurrency
//
// An object handles one event at a time and the host calls it from one thread: no locks are
// needed. wasip1 has no threads: goroutines run only while a handler runs, so a handler must
// finish its work (wait for the goroutines it starts) before it returns.
package dohost
