"""HTTP for objects: the inbound :class:`Request`, the :class:`Response` a handler returns, and
outbound :func:`fetch` through the host's policy.

Bodies are whole ``bytes`` (the host buffers them); header names are lower-case and may repeat.
"""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, Iterator, Mapping, Union
from urllib.parse import parse_qsl, urlsplit

from componentize_py_types import Err
from wit_world.imports import fetch as _wit_fetch
from wit_world.imports import http_types as _wit

__all__ = ["Headers", "Request", "Response", "fetch", "FetchError"]

HeadersInit = Union["Headers", Mapping[str, str], Iterable["tuple[str, str]"], None]
Body = Union[str, bytes, bytearray, memoryview, None]


class Headers:
    """Header fields in order. Names are case-insensitive (stored lower-case) and may repeat.

    Build from a dict or a list of ``(name, value)`` pairs; iterating yields the pairs.
    """

    def __init__(self, init: HeadersInit = None):
        if init is None:
            pairs: Iterable[tuple[str, str]] = ()
        elif isinstance(init, Mapping):
            pairs = init.items()
        else:
            pairs = init
        self._pairs = [(str(n).lower(), str(v)) for n, v in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, or ``default``."""
        name = name.lower()
        return next((v for n, v in self._pairs if n == name), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        name = name.lower()
        return [v for n, v in self._pairs if n == name]

    def set(self, name: str, value: str) -> None:
        """Replace all values of header ``name`` with ``value``."""
        name = name.lower()
        self._pairs = [(n, v) for n, v in self._pairs if n != name] + [(name, str(value))]

    def add(self, name: str, value: str) -> None:
        """Add a value for header ``name``, keeping the ones it has."""
        self._pairs.append((name.lower(), str(value)))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._pairs))

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._pairs == other._pairs

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class _Message:
    """What requests and responses share: headers and a body, readable as text or JSON."""

    headers: Headers
    body: bytes

    def text(self) -> str:
        """The body decoded as UTF-8 (``ValueError`` if it is not)."""
        return self.body.decode("utf-8")

    def _parse_json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return _json.loads(self.body)


class Request(_Message):
    """An HTTP request: the one a handler receives, or one to send with :func:`fetch`.

    For an inbound request, ``url`` is absolute and its path is the part after the object's
    route: a request for ``/<name>/a/b?x=1`` arrives with ``path == "/a/b"`` and
    ``query == "x=1"``. ``path`` and ``query`` are kept exactly as received (still
    percent-encoded); :attr:`params` has the decoded query parameters.
    """

    def __init__(
        self,
        url: str,
        method: str = "GET",
        headers: HeadersInit = None,
        body: Body = None,
    ):
        self.method = method.upper()
        self.url = url
        self.headers = Headers(headers)
        self.body = _encode_body(body, self.headers)

    @property
    def path(self) -> str:
        """The URL's path, percent-encoded as received; ``"/"`` at least."""
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> str | None:
        """The URL's query string without the ``?``, or ``None`` when the URL has no ``?``."""
        url = self.url.split("#", 1)[0]
        return url.split("?", 1)[1] if "?" in url else None

    @property
    def params(self) -> dict[str, str]:
        """Decoded query parameters; for a repeated name, the first value."""
        params: dict[str, str] = {}
        for name, value in parse_qsl(self.query or "", keep_blank_values=True):
            params.setdefault(name, value)
        return params

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not JSON."""
        return self._parse_json()

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"

    @classmethod
    def _from_wit(cls, request: _wit.Request) -> Request:
        self = cls.__new__(cls)
        self.method = request.method
        self.url = request.url
        self.headers = Headers(request.headers)
        self.body = bytes(request.body)
        return self

    def _to_wit(self) -> _wit.Request:
        return _wit.Request(self.method, self.url, list(self.headers), self.body)


class _ClassOrInstanceMethod:
    """``Response.json(obj)`` builds a response; ``response.json()`` parses one (as in the
    Fetch API)."""

    def __init__(self, on_class: Any, on_instance: Any):
        self._on_class, self._on_instance = on_class, on_instance
        self.__doc__ = on_class.__doc__

    def __get__(self, obj: Any, cls: type) -> Any:
        if obj is None:
            return self._on_class.__get__(None, cls)
        return self._on_instance.__get__(obj, cls)


class Response(_Message):
    """An HTTP response: what a handler returns, or what :func:`fetch` gives back.

    ``Response("hello")`` is a 200 ``text/plain`` response; ``Response(b"...", status=201,
    headers={"content-type": "image/png"})`` sets everything; ``Response.json({"ok": True})``
    is compact JSON (``{"ok":true}``) with ``content-type: application/json``.
    """

    def __init__(self, body: Body = None, status: int = 200, headers: HeadersInit = None):
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"HTTP status must be an int in 100..=599, got {status!r}")
        self.status = status
        self.headers = Headers(headers)
        self.body = _encode_body(body, self.headers)

    def _json_response(cls, data: Any, status: int = 200, headers: HeadersInit = None) -> Response:
        """A response whose body is ``data`` as compact JSON (no spaces)."""
        headers = Headers(headers)
        if "content-type" not in headers:
            headers.set("content-type", "application/json")
        body = _json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return cls(body, status, headers)

    json = _ClassOrInstanceMethod(classmethod(_json_response), _Message._parse_json)
    del _json_response

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status <= 299

    def __repr__(self) -> str:
        return f"<Response {self.status}>"

    def _to_wit(self) -> _wit.Response:
        return _wit.Response(self.status, list(self.headers), self.body)

    @classmethod
    def _from_wit(cls, response: _wit.Response) -> Response:
        self = cls.__new__(cls)
        self.status = response.status
        self.headers = Headers(response.headers)
        self.body = bytes(response.body)
        return self


class FetchError(Exception):
    """An outbound :func:`fetch` failed.

    ``kind`` is the WIT ``fetch-error`` case: ``"not-enabled"``, ``"denied"``,
    ``"invalid-request"``, ``"dns"``, ``"connect"``, ``"timeout"``, ``"too-large"`` or
    ``"other"``; ``message`` says more. An HTTP error status is not a ``FetchError``: it is a
    :class:`Response` with that status.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


_FETCH_ERROR_KINDS = {
    _wit_fetch.FetchError_NotEnabled: "not-enabled",
    _wit_fetch.FetchError_Denied: "denied",
    _wit_fetch.FetchError_InvalidRequest: "invalid-request",
    _wit_fetch.FetchError_Dns: "dns",
    _wit_fetch.FetchError_Connect: "connect",
    _wit_fetch.FetchError_Timeout: "timeout",
    _wit_fetch.FetchError_TooLarge: "too-large",
    _wit_fetch.FetchError_Other: "other",
}


def fetch(
    resource: str | Request,
    *,
    method: str | None = None,
    headers: HeadersInit = None,
    body: Body = None,
) -> Response:
    """Send an HTTP request through the host and wait for the whole response.

    ``resource`` is a URL or a :class:`Request`; ``method``, ``headers`` and ``body`` override
    the request's. The object handles nothing else while it waits. Raises :class:`FetchError`
    when no response arrives (policy, DNS, connection, timeout, size cap).

    >>> fetch("https://example.com/api", method="POST", body='{"a": 1}').json()
    """
    if isinstance(resource, Request):
        request = Request(
            resource.url,
            method or resource.method,
            resource.headers if headers is None else headers,
            resource.body if body is None else body,
        )
    else:
        request = Request(resource, method or "GET", headers, body)
    try:
        response = _wit_fetch.send(request._to_wit())
    except Err as e:
        kind = _FETCH_ERROR_KINDS.get(type(e.value), "other")
        raise FetchError(kind, str(getattr(e.value, "value", e.value))) from None
    return Response._from_wit(response)


def _encode_body(body: Body, headers: Headers) -> bytes:
    """Body as bytes; text gets a UTF-8 ``text/plain`` content type unless one is set."""
    if body is None:
        return b""
    if isinstance(body, str):
        if "content-type" not in headers:
            headers.set("content-type", "text/plain; charset=utf-8")
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a body is str or bytes, not {type(body).__name__}")
