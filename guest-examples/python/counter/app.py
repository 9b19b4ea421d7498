"""A counter durable object: one integer in SQLite, changed over HTTP.

- ``GET /`` or ``GET /value`` returns ``{"value": n}``
- ``POST /increment`` adds 1, or ``by`` from an optional ``{"by": n}`` body, and returns the
  new value
- ``POST /reset`` sets it back to 0
"""

from dohost import Object, Response, export


@export
class Counter(Object):
    def __init__(self):
        self.sql.exec(
            """CREATE TABLE IF NOT EXISTS counter
               (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL)"""
        )

    def fetch(self, request):
        match request.method, request.path:
            case "GET", "/" | "/value":
                # An aggregate always yields one row, even before the first increment.
                query = "SELECT coalesce(max(value), 0) AS value FROM counter"
                value = self.sql.exec(query).one()["value"]
            case "POST", "/increment":
                try:
                    by = request.json().get("by", 1) if request.body else 1
                except (ValueError, AttributeError):
                    return Response('expected {"by": n}', status=400)
                if type(by) is not int or not -(2**63) <= by < 2**63:
                    return Response('"by" must be a 64-bit integer', status=400)
                value = self.sql.exec(
                    """INSERT INTO counter (id, value) VALUES (0, ?)
                       ON CONFLICT (id) DO UPDATE SET value = value + excluded.value
                       RETURNING value""",
                    by,
                ).one()["value"]
            case "POST", "/reset":
                self.sql.exec("DELETE FROM counter")
                value = 0
            case _:
                return Response("not found", status=404)
        return Response.json({"value": value})
