"""``storage.sql``: the object's own SQLite database.

Every statement runs inside the current event's implicit transaction: it is committed when the
handler returns and rolled back if the handler raises. Never issue BEGIN, COMMIT, ROLLBACK or
SAVEPOINT yourself (the host denies them with ``access-denied``).

Python values map to SQLite values as follows, both ways:

=================  ==========================================================
Python             SQLite
=================  ==========================================================
``None``           NULL
``int``            INTEGER (64-bit signed; ``bool`` is stored as 0 or 1)
``float``          REAL (SQLite stores NaN as NULL)
``str``            TEXT
``bytes``          BLOB (``bytearray`` and ``memoryview`` are accepted too)
=================  ==========================================================
"""

from __future__ import annotations

from typing import Any, Iterator

from componentize_py_types import Err
from wit_world.imports import sql as _wit

__all__ = ["Sql", "Cursor", "SqlError"]

#: Rows asked of the host per page when a result spans several pages (the host's maximum).
_PAGE_ROWS = 1000

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_ERROR_KINDS = {
    _wit.SqlError_Syntax: "syntax",
    _wit.SqlError_Constraint: "constraint",
    _wit.SqlError_DatabaseFull: "database-full",
    _wit.SqlError_TooBig: "too-big",
    _wit.SqlError_AccessDenied: "access-denied",
    _wit.SqlError_InvalidArgument: "invalid-argument",
    _wit.SqlError_Other: "other",
}


class SqlError(Exception):
    """A statement failed.

    ``kind`` is the WIT ``sql-error`` case: ``"syntax"``, ``"constraint"``, ``"database-full"``,
    ``"too-big"``, ``"access-denied"``, ``"invalid-argument"`` or ``"other"``; ``message`` is
    SQLite's message. Left uncaught, it fails the event like any exception (rolled back, 500).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Sql:
    """The object's database; use it as ``self.sql`` inside an :class:`~dohost.Object`."""

    def exec(self, query: str, *params: Any) -> Cursor:
        """Run ``query`` with ``params`` bound to its ``?`` placeholders and return its rows.

        ``query`` may hold several statements separated by ``;``; each takes as many of
        ``params`` as it has placeholders, and the result is the last statement's. Raises
        :class:`SqlError` when a statement fails, ``TypeError`` or ``OverflowError`` for a
        parameter that is not a SQLite value.

        >>> self.sql.exec("SELECT name FROM players WHERE id = ?", player_id).rows
        [{'name': 'Ann'}]
        """
        values = [_to_value(p) for p in params]
        try:
            result = _wit.exec(query, values)
        except Err as e:
            raise _sql_error(e.value) from None
        return Cursor(result)

    @property
    def database_size(self) -> int:
        """Current size of the database in bytes."""
        return _wit.database_size()


class Cursor:
    """The result of :meth:`Sql.exec`.

    A cursor is read once, front to back, like Cloudflare's: iterate it for one ``dict`` per
    row (column name -> value), or call :meth:`raw` for lists of values in column order. Large
    results arrive from the host in pages as you read. :attr:`rows` and :meth:`one` read
    everything that is left.
    """

    def __init__(self, result: _wit.ResultSet):
        #: Column names of the last statement, in order (empty for statements without results).
        self.columns: list[str] = list(result.columns)
        #: Rows SQLite visited (returned plus stepped over by full scans), over all statements.
        self.rows_read: int = result.rows_read
        #: Rows inserted, updated or deleted, over all statements.
        self.rows_written: int = result.rows_written
        self._page = result.rows
        self._more = result.more
        self._rows: list[dict[str, Any]] | None = None

    def raw(self) -> Iterator[list[Any]]:
        """The remaining rows, each a list of values in column order."""
        while True:
            page, self._page = self._page, []
            for row in page:
                yield [_from_value(v) for v in row]
            if self._more is None:
                return
            self._page = self._more.next_page(_PAGE_ROWS)
            if not self._page:
                self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        columns = self.columns
        for row in self.raw():
            yield dict(zip(columns, row))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """All remaining rows as dicts. Reads the cursor; reading ``rows`` again gives the same
        list."""
        if self._rows is None:
            self._rows = list(self)
        return self._rows

    def one(self) -> dict[str, Any]:
        """The only row; ``ValueError`` if the result does not have exactly one row."""
        rows = self.rows
        if len(rows) != 1:
            raise ValueError(f"expected exactly one row, got {len(rows)}")
        return rows[0]

    def close(self) -> None:
        """Release the rows the host still holds for this result (done once they are read)."""
        more, self._more = self._more, None
        if more is not None:
            more.__exit__(None, None, None)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Cursor columns={self.columns} rows_read={self.rows_read} "
            f"rows_written={self.rows_written}>"
        )


def _to_value(value: Any) -> _wit.Value:
    if value is None:
        return _wit.Value_Null()
    if isinstance(value, bool):
        return _wit.Value_Integer(int(value))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(f"SQL integer parameter out of the 64-bit range: {value}")
        return _wit.Value_Integer(value)
    if isinstance(value, float):
        return _wit.Value_Real(value)
    if isinstance(value, str):
        return _wit.Value_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _wit.Value_Blob(bytes(value))
    raise TypeError(
        f"cannot bind {type(value).__name__} as a SQL parameter "
        "(use None, int, float, str or bytes)"
    )


def _from_value(value: _wit.Value) -> Any:
    # Null has no payload; every other case carries its Python value.
    return None if isinstance(value, _wit.Value_Null) else value.value


def _sql_error(error: Any) -> SqlError:
    return SqlError(_ERROR_KINDS.get(type(error), "other"), str(getattr(error, "value", error)))

