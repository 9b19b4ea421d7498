"""Write dohost durable objects in Python.

An object is a class with a ``fetch`` method (and optionally ``alarm``), exported once::

    from dohost import Object, Response, export

    @export
    class Counter(Object):
        def __init__(self):
            self.sql.exec("CREATE TABLE IF NOT EXISTS hits (n INTEGER)")

        def fetch(self, request):
            self.sql.exec("INSERT INTO hits VALUES (1)")
            n = self.sql.exec("SELECT count(*) AS n FROM hits").one()["n"]
            return Response.json({"hits": n})

``scripts/build-guest DIR`` turns a directory with such an ``app.py`` into a component with
componentize-py, bundling this package. Inside the component the object has:

- ``self.sql``: its own SQLite database (:class:`Sql`), in the event's implicit transaction;
- ``self.set_alarm(ms)`` / ``get_alarm()`` / ``delete_alarm()``: its one durable alarm;
- ``self.id`` / ``self.name``: who it is;
- :func:`fetch`: outbound HTTP through the host's policy.

An exception raised by a handler fails the event: its writes are rolled back and the host
answers 500 with the exception's type and message.
"""

from .http import FetchError, Headers, Request, Response, fetch
from .object import AlarmError, AlarmInfo, Object, ObjectError, export, now_ms
from .sql import Cursor, Sql, SqlError

__all__ = [
    "AlarmError",
    "AlarmInfo",
    "Cursor",
    "FetchError",
    "Headers",
    "Object",
    "ObjectError",
    "Request",
    "Response",
    "Sql",
    "SqlError",
    "export",
    "fetch",
    "now_ms",
]
