"""Shared by both clients: answers that can't be used, and answers that never came.

A record misread from an answer is reported as an error of the request that brought
it; a failed exchange (timeout, TLS, refused connection) is explained in terms the
user can act on (which timeout ran out and which setting sets it).
"""

from __future__ import annotations

import ssl

import httpx

from reconcile import fastjson
from reconcile.errors import ApiError

TIMEOUT_SETTINGS = {
    httpx.ConnectTimeout: ("connect", "could not connect within", "RECONCILE_CONNECT_TIMEOUT"),
    httpx.ReadTimeout: ("read", "no answer within", "RECONCILE_READ_TIMEOUT"),
    httpx.WriteTimeout: ("write", "could not send the request within", "RECONCILE_READ_TIMEOUT"),
}


def of_request(error: ApiError, method: str, path: str) -> ApiError:
    """`error` (raised reading one record, naming only its resource) as an error of the
    request `method path`; an error that already names its request is returned as is."""
    if error.method:
        return error
    message = str(error)
    if error.path:
        message = message.removeprefix(f"{error.path}: ")
    return ApiError(message, method=method, path=path, status=error.status)


def is_tls_failure(error: BaseException) -> bool:
    """A TLS handshake or certificate failure somewhere in the chain of `error`."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def explained(error: httpx.TransportError) -> httpx.TransportError:
    """The same kind of error, its message saying what failed and what sets the limit."""
    return type(error)(_problem(error), request=_request_of(error))


def _problem(error: httpx.TransportError) -> str:
    if is_tls_failure(error):
        return (
            f"TLS handshake failed: {error}; check that the URL's scheme (https or http) "
            "and the server's certificate are right"
        )
    for kind, (name, what, setting) in TIMEOUT_SETTINGS.items():
        if isinstance(error, kind):
            request = _request_of(error)
            limits = request.extensions.get("timeout", {}) if request is not None else {}
            seconds = limits.get(name)
            within = f"{what} {seconds:g} s" if isinstance(seconds, int | float) else what
            return f"{within}; {setting} sets the limit"
    return str(error) or type(error).__name__


def _request_of(error: httpx.TransportError) -> httpx.Request | None:
    try:
        return error.request
    except RuntimeError:  # raised without a request
        return None


NO_BODY = object()  # a success without a body (204, 304): callers return None for it


def json_body(response: httpx.Response, method: str, path: str) -> object:
    """The answer's JSON (None for an error page that is not JSON), NO_BODY for an empty
    success; a success whose body is not JSON is an error, so nothing acts on it."""
    status = response.status_code
    if status == 304 or (status < 300 and not response.content):
        return NO_BODY
    try:
        return fastjson.loads(response.content)
    except ValueError:
        if status < 300:
            raise ApiError(
                "answered with a body that is not JSON; nothing was changed based on it",
                method=method,
                path=path,
                status=status,
            ) from None
        return None
