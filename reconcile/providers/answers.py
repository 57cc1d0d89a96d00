"""Shared by both clients: a record misread from an answer is reported as an error of
the request that brought it, so the user sees which call answered what."""

from __future__ import annotations

from reconcile.errors import ApiError


def of_request(error: ApiError, method: str, path: str) -> ApiError:
    """`error` (raised reading one record, naming only its resource) as an error of the
    request `method path`; an error that already names its request is returned as is."""
    if error.method:
        return error
    message = str(error)
    if error.path:
        message = message.removeprefix(f"{error.path}: ")
    return ApiError(message, method=method, path=path, status=error.status)
