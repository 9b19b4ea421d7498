"""The Python conformance object: the JSON command protocol of ``tests/conformance/SPEC.md``,
written with the ``dohost`` helper module. It behaves exactly like the Rust reference,
``objects/rust/src/lib.rs``.

``POST /run`` with ``{"steps": [...]}`` runs each step in order inside one event and answers
``{"results": [...]}``; any other request is echoed back as JSON.
"""

import json
import math
import re
import time

from dohost import (
    AlarmError,
    FetchError,
    Object,
    ObjectError,
    Request,
    Response,
    SqlError,
    export,
    fetch,
)


@export
class Conformance(Object):
    def __init__(self):
        # Memory kept alive by `alloc` steps, for the instance's life.
        self.hoard = []

    def fetch(self, request):
        if request.method != "POST" or request.path != "/run":
            return Response.json(echo(request))
        try:
            steps = request.json()["steps"]
            if not isinstance(steps, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return Response('expected {"steps": [...]}', status=400)
        return Response.json({"results": [self.step(step) for step in steps]})

    def alarm(self, info):
        sql = self.sql
        sql.exec(
            "CREATE TABLE IF NOT EXISTS conformance_alarms"
            " (scheduled_at INTEGER, retry_count INTEGER)"
        )
        sql.exec(
            "INSERT INTO conformance_alarms VALUES (?, ?)", info.scheduled_at, info.retry_count
        )
        # SPEC.md: fail (after writing) while the retry count is below `fail_times`.
        if sql.exec("SELECT name FROM sqlite_master WHERE name = 'conformance_alarm_plan'").rows:
            plan = sql.exec("SELECT fail_times FROM conformance_alarm_plan").one()
            if info.retry_count < plan["fail_times"]:
                raise ObjectError(f"planned failure {info.retry_count}")

    def step(self, step):
        # Like the Rust reference, a missing or mistyped field counts as its default.
        op = text(step, "op", "")
        if op == "exec":
            params = step.get("params") if isinstance(step, dict) else None
            params = [decode_value(p) for p in params] if isinstance(params, list) else []
            try:
                cursor = self.sql.exec(text(step, "query", ""), *params)
            except SqlError as e:
                return err(e.kind, e.message)
            rows = [[encode_value(v) for v in row] for row in cursor.raw()]
            return {"ok": {
                "columns": cursor.columns,
                "rows": rows,
                "rowsRead": cursor.rows_read,
                "rowsWritten": cursor.rows_written,
            }}
        if op == "databaseSize":
            return {"ok": self.sql.database_size}
        if op == "alarmSet":
            try:
                self.set_alarm(integer(step, "at", INT64))
            except AlarmError as e:
                return err("alarm", str(e))
            return {"ok": None}
        if op == "alarmGet":
            return {"ok": self.get_alarm()}
        if op == "alarmDelete":
            self.delete_alarm()
            return {"ok": None}
        if op == "identity":
            return {"ok": {"id": self.id, "name": self.name}}
        if op == "fetch":
            headers = step.get("headers") if isinstance(step, dict) else None
            if not isinstance(headers, list):
                headers = []
            body = text(step, "body", "")
            if not HEX.fullmatch(body):
                raise ObjectError("body is not hex")
            request = Request(
                text(step, "url", ""),
                text(step, "method", "GET"),
                [(text_at(pair, 0), text_at(pair, 1)) for pair in headers],
                bytes.fromhex(body),
            )
            try:
                response = fetch(request)
            except FetchError as e:
                return err(e.kind, e.message)
            return {"ok": {
                "status": response.status,
                "headers": [[name, value] for name, value in response.headers],
                "body": response.body.hex(),
            }}
        if op == "alloc":
            size = integer(step, "bytes", UINT64)
            # Write every byte, so the memory is really used.
            self.hoard.append(b"\x01" * size)
            return {"ok": size}
        if op == "spin":
            ms = integer(step, "ms", UINT64)
            start, x = time.time(), 0
            while ms == 0 or (time.time() - start) * 1000 < ms:
                x += 1
            return {"ok": x}
        if op == "recurse":
            # CPython stops deep recursion itself, with RecursionError (an exception, so the
            # event fails with object-error rather than a wasm stack overflow trap).
            return {"ok": recurse(integer(step, "depth", UINT64))}
        if op == "trap":
            # Not an Exception, so the SDK lets it escape: the instance traps.
            raise SystemExit("conformance object: trap requested")
        if op == "fail":
            raise ObjectError(text(step, "message", "failure requested"))
        return err("unknown-op", f"unknown op {json.dumps(op)}")


INT64 = range(-(2**63), 2**63)
UINT64 = range(0, 2**64)


def text(step, key, default):
    value = step.get(key) if isinstance(step, dict) else None
    return value if isinstance(value, str) else default


def integer(step, key, valid):
    """``step[key]`` if it is a JSON integer in ``valid``, else 0."""
    value = step.get(key) if isinstance(step, dict) else None
    ok = isinstance(value, int) and not isinstance(value, bool) and value in valid
    return value if ok else 0


HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def text_at(pair, index):
    """``pair[index]`` if ``pair`` is a list with a string there, else ``""``."""
    ok = isinstance(pair, list) and len(pair) > index and isinstance(pair[index], str)
    return pair[index] if ok else ""


def recurse(depth):
    """Recursion that keeps some data alive in each frame."""
    frame = [depth] * 16
    return 0 if depth == 0 else recurse(depth - 1) + frame[3]


def err(kind, message):
    return {"err": {"kind": kind, "message": message}}


def echo(request):
    return {
        "method": request.method,
        "url": request.url,
        "path": request.path,
        "query": request.query,
        "headers": [[name, value] for name, value in request.headers],
        "body": request.body.hex(),
    }


# Typed value encoding (SPEC.md): integers as decimal strings, non-finite reals as strings,
# blobs as lower-case hex.

def encode_value(value):
    if value is None:
        return {"type": "null"}
    if isinstance(value, int):
        return {"type": "integer", "value": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"type": "real", "value": "NaN"}
        if math.isinf(value):
            return {"type": "real", "value": "Infinity" if value > 0 else "-Infinity"}
        return {"type": "real", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    return {"type": "blob", "value": value.hex()}


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_value(typed):
    """A Python value for a typed JSON value; ``ObjectError`` (the event fails) if malformed."""
    try:
        kind, value = typed["type"], typed.get("value")
        if kind == "null":
            return None
        if kind == "integer" and isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
            # Out of the 64-bit range, exec raises OverflowError: the event fails either way.
            return int(value)
        if kind == "real" and isinstance(value, str):
            return _NON_FINITE[value]
        if kind == "real" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind == "text" and isinstance(value, str):
            return value
        if kind == "blob" and isinstance(value, str) and HEX.fullmatch(value):
            return bytes.fromhex(value)
    except (KeyError, ValueError, TypeError, AttributeError):
        pass
    raise ObjectError(f"bad typed value {typed}")
