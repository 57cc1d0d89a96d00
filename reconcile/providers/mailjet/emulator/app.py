"""Emulator of the Mailjet REST v3 contact-management API (Starlette ASGI app).

Written from the seed document and mailjet-facts.md only, never from the
client: where the two documents disagree, a setting chooses, defaulting to
the real API's behaviour. Modules: settings (knobs), state (records and value
rules), http (auth, errors, paging), routes (handlers), jobs (managemanycontacts).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from reconcile.providers.mailjet.emulator.http import error_response
from reconcile.providers.mailjet.emulator.jobs import JobFaults
from reconcile.providers.mailjet.emulator.routes import MailjetApi
from reconcile.providers.mailjet.emulator.settings import MailjetEmulatorSettings
from reconcile.providers.mailjet.emulator.state import (
    DATATYPES,
    NAMESPACES,
    MailjetState,
    coerce_value,
)
from reconcile.sandbox.common import ControlMiddleware, EmulatorControl, control_routes

__all__ = ["MailjetEmulator", "MailjetEmulatorSettings", "create_mailjet_emulator"]


async def _http_error(_: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer with a Mailjet error body too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
    return error_response(status, message)


class MailjetEmulator:
    def __init__(self, settings: MailjetEmulatorSettings, state: MailjetState) -> None:
        self.settings = settings
        self.control = EmulatorControl()
        self._api = MailjetApi(settings, state)
        routes = self._api.routes() + control_routes(
            self.control, self.dump_state, self.load_state, self._change_settings
        )
        inner = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
        self.app: ASGIApp = ControlMiddleware(inner, self.control)

    def cache_listings(self) -> None:
        """Benchmarks: serve each listing query's later pages from the records its first
        page matched, until a request that may write arrives (anything but a GET, and a
        job's status, whose polls run the job); emptied again when it is answered. A
        real service reads an index; this emulator would scan every record per page.
        Only for a served emulator: seeding it from Python does not empty the cache."""
        self._api.listings = {}
        inner = self.app

        async def emptied_around_writes(scope: Scope, receive: Receive, send: Send) -> None:
            listings = self._api.listings
            writes = scope["type"] == "http" and (
                scope["method"] != "GET" or "managemanycontacts" in scope["path"]
            )
            if writes and listings is not None:
                listings.clear()
            try:
                await inner(scope, receive, send)
            finally:
                if writes and listings is not None:
                    listings.clear()

        self.app = emptied_around_writes

    def _change_settings(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /_emulator/settings {"bulk_updates_name_and_exclusion": bool,
        "stamp_exclusion": bool}; either may be left out."""
        for name in ("bulk_updates_name_and_exclusion", "stamp_exclusion"):
            if name not in payload:
                continue
            switch = payload[name]
            if not isinstance(switch, bool):
                raise ValueError(f"{name} must be true or false, got {switch!r}")
            setattr(self.settings, name, switch)
        return {
            "bulk_updates_name_and_exclusion": self.settings.bulk_updates_name_and_exclusion,
            "stamp_exclusion": self.settings.stamp_exclusion,
        }

    @property
    def _state(self) -> MailjetState:
        return self._api.state

    def dump_state(self) -> dict[str, Any]:
        with self._api.lock:
            return self._state.dump()

    def load_state(self, data: dict[str, Any]) -> None:
        loaded = MailjetState.load(data)
        with self._api.lock:
            self._api.state = loaded

    # ---- seeding and inspection for tests (no HTTP, no rate limit) --------

    def seed_property(self, name: str, datatype: str = "str", namespace: str = "static") -> int:
        if datatype not in DATATYPES or namespace not in NAMESPACES:
            raise ValueError(f"bad datatype or namespace: {datatype!r}, {namespace!r}")
        with self._api.lock:
            if self._state.property_by_name(name) is not None:
                raise ValueError(f"property {name!r} already exists")
            return self._state.add_property(name, datatype, namespace).id

    def seed_list(self, name: str) -> int:
        with self._api.lock:
            if self._state.list_by_name(name) is not None:
                raise ValueError(f"list {name!r} already exists")
            return self._state.add_list(name).id

    def seed_contact(
        self,
        email: str,
        name: str = "",
        excluded: bool = False,
        properties: dict[str, Any] | None = None,
        lists: dict[str, bool] | None = None,
    ) -> int:
        """Create a contact; `lists` maps list name -> IsUnsubscribed (lists must exist)."""
        with self._api.lock:
            state = self._state
            if state.contact_by_email(email) is not None:
                raise ValueError(f"contact {email!r} already exists")
            typed = {}
            for prop, value in (properties or {}).items():
                record = state.property_by_name(prop)
                if record is None:
                    raise KeyError(f"property {prop!r} is not defined")
                typed[prop] = coerce_value(record.datatype, value)
            list_ids = {}
            for list_name, unsubscribed in (lists or {}).items():
                found = state.list_by_name(list_name)
                if found is None:
                    raise KeyError(f"list {list_name!r} does not exist")
                list_ids[found.id] = unsubscribed
            contact = state.add_contact(email, name, excluded)
            if not self.settings.stamp_exclusion:
                contact.unsubscribed_at = ""  # an account that never stamps opt-outs
            contact.properties = typed
            for list_id, unsubscribed in list_ids.items():
                state.add_membership(contact.id, list_id, unsubscribed)
            return contact.id

    def seed_contact_fields(self, email: str, *, excluded: bool) -> None:
        """Another tool changes the contact (no UnsubscribedAt is stamped for a re-include)."""
        with self._api.lock:
            contact = self._state.contact_by_email(email)
            if contact is None:
                raise KeyError(f"contact {email!r} does not exist")
            contact.set_excluded(excluded, stamp=True)

    def seed_unsubscribe(
        self, email: str, list_name: str | None = None, *, unsubscribed: bool = True
    ) -> None:
        """The person unsubscribes (or, `unsubscribed=False`, signs up again): from
        `list_name`, or from everything (excluded)."""
        with self._api.lock:
            state = self._state
            contact = state.contact_by_email(email)
            if contact is None:
                raise KeyError(f"contact {email!r} does not exist")
            if list_name is None:
                contact.set_excluded(unsubscribed, stamp=True)
                return
            found = state.list_by_name(list_name)
            if found is None:
                raise KeyError(f"list {list_name!r} does not exist")
            membership = state.membership_of(contact.id, found.id)
            if membership is None:
                raise KeyError(f"{email!r} is not on list {list_name!r}")
            state.set_unsubscribed(membership, unsubscribed)

    def contact(self, email: str) -> dict[str, Any] | None:
        with self._api.lock:
            state = self._state
            found = state.contact_by_email(email)
            if found is None:
                return None
            record = found.to_api()
            record["Properties"] = dict(found.properties)
            record["Lists"] = {
                state.lists[m.list_id].name: m.is_unsubscribed
                for m in state.memberships.values()
                if m.contact_id == found.id
            }
            return record

    @property
    def job_faults(self) -> JobFaults:
        """Failures still to come in managemanycontacts jobs (see fail_jobs, fail_in_jobs)."""
        return self._api.job_faults

    def fail_jobs(self, count: int = 1, message: str | None = None) -> None:
        """The next `count` managemanycontacts jobs to run end in Status "Error"."""
        with self._api.lock:
            faults = self._api.job_faults
            faults.error_jobs += count
            if message is not None:
                faults.error_message = message

    def fail_in_jobs(self, emails: list[str], times: int = 1, message: str | None = None) -> None:
        """Each of `emails` fails (an ErrorFile row) in the next `times` jobs that carry it."""
        with self._api.lock:
            faults = self._api.job_faults
            for email in emails:
                faults.failing_emails[email.lower()] = times
            if message is not None:
                faults.failure_message = message

    def hide_from_listing(self, email: str, hidden: bool = True) -> None:
        """Eventual consistency: the collection misses it; lookups and POST still see it.
        `hidden=False` is the listing catching up."""
        with self._api.lock:
            found = self._state.contact_by_email(email)
            if found is None:
                raise KeyError(email)
            found.hidden_from_listing = hidden


def create_mailjet_emulator(
    settings: MailjetEmulatorSettings | None = None, state: dict[str, Any] | None = None
) -> MailjetEmulator:
    loaded = MailjetState.load(state) if state else MailjetState()
    return MailjetEmulator(settings or MailjetEmulatorSettings(), loaded)
