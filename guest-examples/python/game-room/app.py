"""The classic durable object: a game room that players join.

- ``POST /join`` with ``{"playerId": "...", "name": "..."}`` adds (or renames) a player
- ``GET /count`` returns ``{"players": n}`` (so does ``/join``)
- ``GET /players`` returns ``[{"id": "...", "name": "..."}, ...]``
"""

from dohost import Object, Response, export


@export
class GameRoom(Object):
    def __init__(self):
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)"
        )

    def fetch(self, request):
        match request.method, request.path:
            case "POST", "/join":
                try:
                    join = request.json()
                    player_id, name = join["playerId"], join["name"]
                    if not (isinstance(player_id, str) and isinstance(name, str)):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    return Response('expected {"playerId": "...", "name": "..."}', status=400)
                self.sql.exec(
                    "INSERT OR REPLACE INTO players (id, name) VALUES (?, ?)", player_id, name
                )
                return self.count()
            case "GET", "/count":
                return self.count()
            case "GET", "/players":
                return Response.json(self.sql.exec("SELECT id, name FROM players ORDER BY id").rows)
            case _:
                return Response("not found", status=404)

    def count(self):
        players = self.sql.exec("SELECT count(*) AS n FROM players").one()["n"]
        return Response.json({"players": players})
