"""The :class:`Object` base class and :func:`export`, which connects it to the WIT exports.

How events reach your object: the host runs at most one instance of the component per object
ID and delivers its events (requests, alarms) one at a time. The first event of an instance
constructs your class (so ``__init__`` may use ``self.sql``), and the same Python object
handles every later event. If a handler raises, the event's writes are rolled back, the host
answers 500 (or retries the alarm), and the Python object is discarded: the next event builds a
fresh one, so in-memory state never disagrees with the rolled-back database.

Only ``Exception`` subclasses are turned into an event error (WIT ``err``, HTTP 500 with
``x-dohost-error: object-error``). A ``BaseException`` that is not an ``Exception``, such as
``SystemExit`` from ``sys.exit()``, is left to escape: the instance traps and the host discards
it whole (500 with ``object-trapped``), and the next event starts a new instance.
"""

from __future__ import annotations

import datetime as _datetime
import sys
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import alarm as _wit_alarm
from wit_world.imports import identity as _wit_identity

from .http import Request, Response
from .sql import Sql

__all__ = ["Object", "AlarmInfo", "AlarmError", "ObjectError", "export", "now_ms"]

_SQL = Sql()


@dataclass(frozen=True)
class AlarmInfo:
    """Why :meth:`Object.alarm` is running."""

    #: The time the alarm was scheduled for, in Unix milliseconds.
    scheduled_at: int
    #: 0 on the first attempt, then 1, 2, ... on retries after a failure.
    retry_count: int


class AlarmError(Exception):
    """An alarm call failed. ``kind`` is ``"invalid-time"`` or ``"not-enabled"``."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class ObjectError(Exception):
    """Raise to fail the current event with exactly this message.

    Any exception fails the event; this one is for expected failures: its message is passed on
    as is (other exceptions get their type name in front) and no traceback is logged.
    """


class Object:
    """Base class of a durable object written in Python.

    Override :meth:`fetch` to answer requests and :meth:`alarm` to handle the alarm, then call
    :func:`export` on the class (or decorate it with ``@export``)::

        from dohost import Object, Response, export

        @export
        class Hello(Object):
            def fetch(self, request):
                return Response(f"hello from {self.name}")

    The constructor runs inside the instance's first event; it takes no arguments.
    """

    def fetch(self, request: Request) -> Response:
        """Handle one request. Returning commits the event's writes and sends the response;
        raising rolls them back and the host answers 500. The default answers 404."""
        return Response("not found", status=404)

    def alarm(self, info: AlarmInfo) -> None:
        """Handle the alarm. Returning commits and clears it (unless a new one was set);
        raising rolls back and the host retries later with backoff. The default does nothing."""

    @property
    def sql(self) -> Sql:
        """The object's SQLite database (``storage.sql``)."""
        return _SQL

    @cached_property
    def id(self) -> str:
        """The object's ID: 64 lower-case hex digits."""
        return _wit_identity.id()

    @cached_property
    def name(self) -> str | None:
        """The name the ID was derived from, or ``None`` for an object addressed by a unique ID."""
        return _wit_identity.name()

    def set_alarm(self, at: int | float | _datetime.datetime) -> None:
        """Schedule the alarm at ``at`` (Unix milliseconds, or a ``datetime``), replacing any
        previous one. Like a write, it takes effect when the event commits. A time in the past
        fires as soon as possible. Raises :class:`AlarmError`."""
        if isinstance(at, _datetime.datetime):
            ms = int(at.timestamp() * 1000)
        elif isinstance(at, (int, float)) and not isinstance(at, bool):
            ms = int(at)
        else:
            raise TypeError(f"an alarm time is Unix milliseconds or a datetime, not {at!r}")
        try:
            _wit_alarm.set(ms)
        except Err as e:
            invalid = isinstance(e.value, _wit_alarm.AlarmError_InvalidTime)
            raise AlarmError("invalid-time" if invalid else "not-enabled", e.value.value) from None

    def get_alarm(self) -> int | None:
        """The scheduled alarm time in Unix milliseconds, or ``None``."""
        return _wit_alarm.get()

    def delete_alarm(self) -> None:
        """Cancel the alarm, if any; takes effect when the event commits."""
        _wit_alarm.delete()


def now_ms() -> int:
    """The current time in Unix milliseconds (handy for :meth:`Object.set_alarm`)."""
    return time.time_ns() // 1_000_000


class _Runner:
    """Owns the one Python object of this instance and turns its exceptions into WIT errors."""

    def __init__(self, cls: type[Object]):
        self.cls = cls
        self.instance: Object | None = None

    def handle_request(self, request: Any) -> Any:
        def run() -> Any:
            response = self._object().fetch(Request._from_wit(request))
            if not isinstance(response, Response):
                raise TypeError(
                    f"{self.cls.__name__}.fetch returned {type(response).__name__}, "
                    "expected a dohost.Response"
                )
            return response._to_wit()

        return self._guard("fetch", run)

    def on_alarm(self, info: Any) -> None:
        alarm_info = AlarmInfo(info.scheduled_at, info.retry_count)
        self._guard("alarm", lambda: self._object().alarm(alarm_info))

    def _object(self) -> Object:
        if self.instance is None:
            self.instance = self.cls()
        return self.instance

    def _guard(self, handler: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except ObjectError as e:
            self.instance = None
            raise Err(str(e)) from None
        except Exception as e:
            # The event is rolled back; so is the object's in-memory state. (BaseExceptions
            # such as SystemExit are not caught: they trap, and the host drops the instance.)
            self.instance = None
            print(f"dohost: {self.cls.__name__}.{handler} raised:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            raise Err(f"{type(e).__name__}: {e}") from None


_exported: type[Object] | None = None


def export(cls: type[Object]) -> type[Object]:
    """Make ``cls`` the object this component runs. Call it once, in the app module, as
    ``export(MyObject)`` or as the ``@export`` class decorator.

    It defines the module-level ``Handler`` and ``AlarmHandler`` classes that componentize-py
    looks for in the app module (the WIT exports ``handler`` and ``alarm-handler``).
    """
    global _exported
    if not (isinstance(cls, type) and issubclass(cls, Object)):
        raise TypeError(f"export() takes a subclass of dohost.Object, not {cls!r}")
    if _exported is not None and _exported is not cls:
        raise TypeError(
            f"a component runs one object class: {_exported.__name__} is already exported"
        )
    _exported = cls
    runner = _Runner(cls)

    class Handler(_exports.Handler):
        def handle_request(self, request: Any) -> Any:
            return runner.handle_request(request)

    class AlarmHandler(_exports.AlarmHandler):
        def on_alarm(self, info: Any) -> None:
            runner.on_alarm(info)

    module = sys._getframe(1).f_globals
    module["Handler"] = Handler
    module["AlarmHandler"] = AlarmHandler
    return cls
