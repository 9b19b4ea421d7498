// The classic durable object: a game room that players join.
//
//   - POST /join with {"playerId": "...", "name": "..."} adds (or renames) a player
//   - GET /count returns {"players": n} (so does /join)
//   - GET /players returns [{"id": "...", "name": "..."}, ...]
package main

import "dohost.dev/go/dohost"

type room struct {
	sql *dohost.SQL
}

type player struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func newRoom(ctx *dohost.Ctx) (*room, error) {
	_, err := ctx.SQL.Exec(
		"CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
	return &room{sql: ctx.SQL}, err
}

func (r *room) Fetch(req *dohost.Request) (*dohost.Response, error) {
	switch req.Method + " " + req.Path() {
	case "POST /join":
		var join struct {
			PlayerID string `json:"playerId"`
			Name     string `json:"name"`
		}
		if err := req.JSON(&join); err != nil {
			return dohost.Text(err.Error()).WithStatus(400), nil
		}
		if join.PlayerID == "" {
			return dohost.Text("playerId is required").WithStatus(400), nil
		}
		_, err := r.sql.Exec(
			"INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)", join.PlayerID, join.Name)
		if err != nil {
			return nil, err
		}
		return r.count()
	case "GET /count":
		return r.count()
	case "GET /players":
		rows, err := r.sql.Exec("SELECT id, name FROM players ORDER BY id")
		if err != nil {
			return nil, err
		}
		players := []player{}
		for row := range rows.All() {
			var p player
			if err := row.Scan(&p.ID, &p.Name); err != nil {
				return nil, err
			}
			players = append(players, p)
		}
		return dohost.JSON(players)
	}
	return dohost.NotFound(), nil
}

func (r *room) count() (*dohost.Response, error) {
	var players int64
	if err := r.sql.QueryRow("SELECT count(*) FROM players").Scan(&players); err != nil {
		return nil, err
	}
	return dohost.JSON(map[string]int64{"players": players})
}

func init() { dohost.Register(newRoom) }

// main is not called: the host calls the object's handlers.
func main() {}
