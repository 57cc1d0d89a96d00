"""Mailchimp's only documented limit: 10 simultaneous connections per user (API key).

Counted outermost, around the control middleware, so injected latency keeps a
connection open as a slow server would. Over the limit: 429 problem+json
("You have exceeded the limit of 10 simultaneous connections.") or, as the
reference allows "at exceptionally high volumes", a bare 403 without a body.
No Retry-After or rate headers: no source documents any.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailchimp.emulator.validation import ERROR_TYPE
from reconcile.sandbox.common import CONTROL_PREFIX, EmulatorControl


def basic_key(authorization: str) -> str | None:
    """The password of a Basic Authorization header, or None."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    _user, colon, key = decoded.partition(":")
    return key if colon else None


class ConnectionLimit:
    def __init__(
        self, app: ASGIApp, settings: MailchimpEmulatorSettings, control: EmulatorControl
    ) -> None:
        self.app = app
        self.settings = settings
        self.control = control
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.settings.max_connections
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX) or limit <= 0:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        key = basic_key(headers.get("authorization", "")) or ""
        with self._lock:
            allowed = self._open.get(key, 0) < limit
            if allowed:
                self._open[key] = self._open.get(key, 0) + 1
            else:
                self.refused += 1
        if not allowed:
            await self._refuse(scope, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._open[key] -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if self.settings.over_connection_answer == "403":
            status, body, media = 403, b"", b"text/html"
        else:
            instance = str(uuid.uuid4())
            status, media = 429, b"application/problem+json; charset=utf-8"
            body = json.dumps(
                {
                    "type": ERROR_TYPE,
                    "title": self.settings.too_many_requests_title,
                    "status": 429,
                    "detail": "You have exceeded the limit of "
                    f"{self.settings.max_connections} simultaneous connections.",
                    "instance": instance,
                }
            ).encode()
        self.control.record(scope["method"], scope["path"], status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
