"""Handlers of the Mailjet REST v3 contact API, written from the seed and mailjet-facts.md."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from reconcile.providers.mailjet.emulator.http import (
    Query,
    check_basic_auth,
    check_types,
    check_writable,
    error_response,
    not_modified,
    numeric_id,
    one,
    page_response,
    parse_query,
    read_object,
)
from reconcile.providers.mailjet.emulator.jobs import (
    JobBehaviour,
    JobFaults,
    advance_job,
    error_csv,
    job_api,
    new_job,
    parse_job_request,
    parse_list_actions,
)
from reconcile.providers.mailjet.emulator.settings import MailjetEmulatorSettings
from reconcile.providers.mailjet.emulator.state import (
    DATATYPES,
    NAMESPACES,
    ApiError,
    ContactRecord,
    MailjetState,
    coerce_value,
    is_valid_email,
    not_found,
)
from reconcile.sandbox.common import FixedWindowLimiter

Handler = Callable[[Request], Awaitable[Response]]

REST = "/v3/REST"
CONTACT_READ_ONLY = {
    "ID",
    "CreatedAt",
    "LastActivityAt",
    "DeliveredCount",
    "UnsubscribedAt",
    "UnsubscribedBy",
    "IsOptInPending",
    "IsSpamComplaining",
}
CONTACT_TYPES: dict[str, type] = {"Email": str, "Name": str, "IsExcludedFromCampaigns": bool}
LIST_READ_ONLY = {"ID", "Address", "SubscriberCount", "CreatedAt"}
RECIPIENT_READ_ONLY = {"ID", "ListName", "IsActive", "SubscribedAt", "UnsubscribedAt"}


def duplicate_error(resource: str, field: str, value: object) -> ApiError:
    return ApiError(
        400, f'MJ18 A {resource} resource with value "{value}" for {field} already exists.'
    )


class MailjetApi:
    """The /v3/REST (and /v4 erasure) handlers over one MailjetState."""

    def __init__(self, settings: MailjetEmulatorSettings, state: MailjetState) -> None:
        self.settings = settings
        self.state = state
        self.lock = threading.Lock()
        self.job_faults = JobFaults()
        window = 60.0 / settings.time_scale
        self.limiter = FixedWindowLimiter(settings.requests_per_minute, window)
        # Benchmarks only (MailjetEmulator.cache_listings): the records each listing query
        # matched, kept until anything may write. None: every page scans every record.
        self.listings: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] | None = None

    def _listed(self, request: Request, query: Query, build: Callable[[], list[Any]]) -> list[Any]:
        if self.listings is None:
            return build()
        key = (request.url.path, tuple(sorted(query.filters.items())))
        if key not in self.listings:
            self.listings[key] = build()
        return self.listings[key]

    def routes(self) -> list[Route]:
        api = self._endpoint
        return [
            Route(f"{REST}/contact", api(self.list_contacts), methods=["GET"]),
            Route(f"{REST}/contact", api(self.create_contact), methods=["POST"]),
            Route(f"{REST}/contact/managemanycontacts", api(self.post_job), methods=["POST"]),
            Route(
                f"{REST}/contact/managemanycontacts/{{job_id}}", api(self.get_job), methods=["GET"]
            ),
            Route(
                f"{REST}/contact/{{ref}}/managecontactslists",
                api(self.manage_contact_lists),
                methods=["POST"],
            ),
            Route(f"{REST}/contact/{{ref}}", api(self.get_contact), methods=["GET"]),
            Route(f"{REST}/contact/{{ref}}", api(self.update_contact), methods=["PUT"]),
            Route(f"{REST}/contact/{{ref}}", api(self.delete_contact_v3), methods=["DELETE"]),
            Route("/v4/contacts/{ref}", api(self.delete_contact_v4), methods=["DELETE"]),
            Route(f"{REST}/contactmetadata", api(self.list_properties), methods=["GET"]),
            Route(f"{REST}/contactmetadata", api(self.create_property), methods=["POST"]),
            Route(f"{REST}/contactmetadata/{{ref}}", api(self.get_property), methods=["GET"]),
            Route(f"{REST}/contactmetadata/{{ref}}", api(self.update_property), methods=["PUT"]),
            Route(f"{REST}/contactmetadata/{{ref}}", api(self.delete_property), methods=["DELETE"]),
            Route(f"{REST}/contactslist", api(self.list_lists), methods=["GET"]),
            Route(f"{REST}/contactslist", api(self.create_list), methods=["POST"]),
            Route(f"{REST}/contactslist/{{ref}}", api(self.get_list), methods=["GET"]),
            Route(f"{REST}/contactslist/{{ref}}", api(self.update_list), methods=["PUT"]),
            Route(f"{REST}/contactslist/{{ref}}", api(self.delete_list), methods=["DELETE"]),
            Route(f"{REST}/contactdata", api(self.list_contact_data), methods=["GET"]),
            Route(f"{REST}/contactdata/{{ref}}", api(self.get_contact_data), methods=["GET"]),
            Route(f"{REST}/contactdata/{{ref}}", api(self.update_contact_data), methods=["PUT"]),
            Route(f"{REST}/listrecipient", api(self.list_recipients), methods=["GET"]),
            Route(f"{REST}/listrecipient", api(self.create_recipient), methods=["POST"]),
            Route(f"{REST}/listrecipient/{{ref}}", api(self.get_recipient), methods=["GET"]),
            Route(f"{REST}/listrecipient/{{ref}}", api(self.update_recipient), methods=["PUT"]),
            Route(f"{REST}/listrecipient/{{ref}}", api(self.delete_recipient), methods=["DELETE"]),
            Route("/files/mailjet/jobs/{job_id}/errors.csv", self.job_error_file),
        ]

    def _endpoint(self, handler: Handler) -> Handler:
        """Auth, then the per-key rate limit, then the handler; ApiError becomes the body."""

        async def run(request: Request) -> Response:
            try:
                api_key = check_basic_auth(request, self.settings.api_key, self.settings.secret_key)
                # settings may be changed on a live emulator; follow them
                self.limiter.limit = self.settings.requests_per_minute
                self.limiter.window_seconds = 60.0 / self.settings.time_scale
                allowed, _, _ = self.limiter.hit(api_key)
                if not allowed:
                    raise ApiError(429, "Too many requests")
                return await handler(request)
            except ApiError as exc:
                return error_response(exc.status, exc.message)

        return run

    # ---- /contact --------------------------------------------------------

    def _contact(self, ref: str) -> ContactRecord:
        contact = self.state.contact_by_ref(ref)
        if contact is None:
            raise not_found()
        return contact

    async def list_contacts(self, request: Request) -> Response:
        query = parse_query(request, frozenset({"Email"}))
        wanted = query.filters.get("Email", "").lower()
        with self.lock:
            records = self._listed(
                request,
                query,
                lambda: [
                    c
                    for c in self.state.contacts.values()
                    if not c.hidden_from_listing and (not wanted or c.email.lower() == wanted)
                ],
            )
            return page_response(query, records, ContactRecord.to_api, self.settings.total_mode)

    async def get_contact(self, request: Request) -> Response:
        with self.lock:
            return one(self._contact(request.path_params["ref"]).to_api())

    async def create_contact(self, request: Request) -> Response:
        body = await read_object(request)
        check_writable(body, {"Email", "Name", "IsExcludedFromCampaigns"}, CONTACT_READ_ONLY)
        check_types(body, CONTACT_TYPES)
        email = body.get("Email")
        if not isinstance(email, str) or not is_valid_email(email):
            raise ApiError(400, {"Email": "Invalid email"})
        with self.lock:
            existing = self.state.contact_by_email(email)
            if existing is not None:
                if self.settings.duplicate_contact == "mj18":
                    raise duplicate_error("Contact", "Email", email)
                return one(existing.to_api(), 201)
            contact = self.state.add_contact(
                email, body.get("Name", ""), body.get("IsExcludedFromCampaigns", False)
            )
            return one(contact.to_api(), 201)

    async def update_contact(self, request: Request) -> Response:
        contact_id = numeric_id(request.path_params["ref"])
        body = await read_object(request)
        check_writable(body, {"Name", "IsExcludedFromCampaigns"}, CONTACT_READ_ONLY | {"Email"})
        check_types(body, CONTACT_TYPES)
        with self.lock:
            contact = self._contact(str(contact_id))
            if self.settings.contact_put == "replace":
                name, excluded = "", False
            else:
                name, excluded = contact.name, contact.excluded
            name = body.get("Name", name)
            excluded = body.get("IsExcludedFromCampaigns", excluded)
            if (name, excluded) == (contact.name, contact.excluded):
                return not_modified()
            contact.name = name
            contact.set_excluded(excluded, self.settings.stamp_exclusion)
            return one(contact.to_api())

    async def delete_contact_v3(self, request: Request) -> Response:
        if not self.settings.v3_contact_delete:
            raise ApiError(405, "Method not allowed: DELETE is not supported on contact")
        with self.lock:
            self.state.delete_contact(self._contact_id(request.path_params["ref"]))
        return Response(status_code=204)

    async def delete_contact_v4(self, request: Request) -> Response:
        with self.lock:
            self.state.delete_contact(self._contact_id(request.path_params["ref"]))
        return Response(status_code=200)

    def _contact_id(self, ref: str) -> int:
        contact_id = numeric_id(ref)
        if contact_id not in self.state.contacts:
            raise not_found()
        return contact_id

    # ---- /contactmetadata ------------------------------------------------

    async def list_properties(self, request: Request) -> Response:
        query = parse_query(request)
        with self.lock:
            records = list(self.state.properties.values())
            return page_response(query, records, lambda p: p.to_api(), self.settings.total_mode)

    async def get_property(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        with self.lock:
            if ref.isdigit():
                record = self.state.properties.get(int(ref))
            else:
                record = self.state.property_by_name(ref)
            if record is None:
                raise not_found()
            return one(record.to_api())

    async def create_property(self, request: Request) -> Response:
        body = await read_object(request)
        check_writable(body, {"Name", "Datatype", "NameSpace"}, {"ID"})
        name = body.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, {"Name": "A non-empty Name is required"})
        if body.get("Datatype") not in DATATYPES:
            raise ApiError(400, {"Datatype": f"Datatype must be one of {', '.join(DATATYPES)}"})
        namespace = body.get("NameSpace", "static")
        if namespace not in NAMESPACES:
            raise ApiError(400, {"NameSpace": "NameSpace must be static or historic"})
        with self.lock:
            if self.state.property_by_name(name) is not None:
                raise duplicate_error("ContactMetaData", "Name", name)
            record = self.state.add_property(name, body["Datatype"], namespace)
            return one(record.to_api(), 201)

    async def update_property(self, request: Request) -> Response:
        property_id = numeric_id(request.path_params["ref"])
        body = await read_object(request)
        check_writable(body, {"Name", "Datatype", "NameSpace"}, {"ID"})
        with self.lock:
            record = self.state.properties.get(property_id)
            if record is None:
                raise not_found()
            if body.get("Datatype", record.datatype) != record.datatype:
                raise ApiError(400, f'Datatype of property "{record.name}" cannot be changed')
            name = body.get("Name", record.name)
            namespace = body.get("NameSpace", record.namespace)
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, {"Name": "A non-empty Name is required"})
            if namespace not in NAMESPACES:
                raise ApiError(400, {"NameSpace": "NameSpace must be static or historic"})
            if (name, namespace) == (record.name, record.namespace):
                return not_modified()
            if name != record.name and self.state.property_by_name(name) is not None:
                raise duplicate_error("ContactMetaData", "Name", name)
            self.state.rename_property(record, name)
            record.namespace = namespace
            return one(record.to_api())

    async def delete_property(self, request: Request) -> Response:
        property_id = numeric_id(request.path_params["ref"])
        with self.lock:
            if property_id not in self.state.properties:
                raise not_found()
            self.state.delete_property(property_id)
        return Response(status_code=204)

    # ---- /contactslist ---------------------------------------------------

    async def list_lists(self, request: Request) -> Response:
        query = parse_query(request, frozenset({"Name", "IsDeleted"}))
        name, deleted = query.filters.get("Name"), query.bool_filter("IsDeleted")
        with self.lock:
            records = [
                lst
                for lst in self.state.lists.values()
                if (name is None or lst.name == name)
                and (deleted is None or lst.is_deleted == deleted)
            ]
            return page_response(query, records, self.state.list_api, self.settings.total_mode)

    async def get_list(self, request: Request) -> Response:
        list_id = numeric_id(request.path_params["ref"])
        with self.lock:
            record = self.state.lists.get(list_id)
            if record is None:
                raise not_found()
            return one(self.state.list_api(record))

    async def create_list(self, request: Request) -> Response:
        body = await read_object(request)
        check_writable(body, {"Name", "IsDeleted"}, LIST_READ_ONLY)
        check_types(body, {"Name": str, "IsDeleted": bool})
        name = body.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, {"Name": "A non-empty Name is required"})
        with self.lock:
            if self.state.list_by_name(name) is not None:
                raise duplicate_error("ContactsList", "Name", name)
            record = self.state.add_list(name, body.get("IsDeleted", False))
            return one(self.state.list_api(record), 201)

    async def update_list(self, request: Request) -> Response:
        list_id = numeric_id(request.path_params["ref"])
        body = await read_object(request)
        check_writable(body, {"Name", "IsDeleted"}, LIST_READ_ONLY)
        check_types(body, {"Name": str, "IsDeleted": bool})
        with self.lock:
            record = self.state.lists.get(list_id)
            if record is None:
                raise not_found()
            name = body.get("Name", record.name)
            deleted = body.get("IsDeleted", record.is_deleted)
            if not name.strip():
                raise ApiError(400, {"Name": "A non-empty Name is required"})
            if (name, deleted) == (record.name, record.is_deleted):
                return not_modified()
            if name != record.name and self.state.list_by_name(name) is not None:
                raise duplicate_error("ContactsList", "Name", name)
            record.name, record.is_deleted = name, deleted
            return one(self.state.list_api(record))

    async def delete_list(self, request: Request) -> Response:
        list_id = numeric_id(request.path_params["ref"])
        with self.lock:
            if list_id not in self.state.lists:
                raise not_found()
            self.state.delete_list(list_id)
        return Response(status_code=204)

    # ---- /contactdata ----------------------------------------------------

    async def list_contact_data(self, request: Request) -> Response:
        query = parse_query(request)
        with self.lock:
            records = self._listed(request, query, lambda: list(self.state.contacts.values()))
            return page_response(
                query, records, self.state.contact_data_api, self.settings.total_mode
            )

    async def get_contact_data(self, request: Request) -> Response:
        with self.lock:
            contact = self._contact(request.path_params["ref"])
            return one(self.state.contact_data_api(contact))

    async def update_contact_data(self, request: Request) -> Response:
        contact_id = numeric_id(request.path_params["ref"])
        body = await read_object(request)
        check_writable(body, {"Data"}, {"ID", "ContactID"})
        items = body.get("Data")
        if not isinstance(items, list):
            raise ApiError(400, {"Data": "Data must be an array of {Name, Value}"})
        with self.lock:
            contact = self._contact(str(contact_id))
            changes = self._typed_data(items)
            merged = dict(contact.properties)
            for name, value in changes.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            if merged == contact.properties:
                return not_modified()
            contact.properties = merged
            return one(self.state.contact_data_api(contact))

    def _typed_data(self, items: list[Any]) -> dict[str, Any]:
        """Validate [{Name, Value}] against /contactmetadata; all or nothing."""
        changes: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for item in items:
            if not isinstance(item, dict) or set(item) != {"Name", "Value"}:
                raise ApiError(400, {"Data": "Each item must be exactly {Name, Value}"})
            name, value = item["Name"], item["Value"]
            record = self.state.property_by_name(name) if isinstance(name, str) else None
            if record is None:
                raise ApiError(400, f'Invalid key name: "{name}"')
            try:
                changes[name] = None if value is None else coerce_value(record.datatype, value)
            except ValueError as exc:
                errors[name] = f"Invalid value for datatype {record.datatype}: {exc}"
        if errors:
            raise ApiError(400, errors)
        return changes

    # ---- /listrecipient --------------------------------------------------

    async def list_recipients(self, request: Request) -> Response:
        query = parse_query(
            request, frozenset({"ContactsList", "Contact", "ContactEmail", "Unsub"})
        )
        list_id, contact_id = query.int_filter("ContactsList"), query.int_filter("Contact")
        unsub = query.bool_filter("Unsub")
        email = query.filters.get("ContactEmail")
        with self.lock:
            by_email = None if email is None else self.state.contact_by_email(email)
            records = self._listed(
                request,
                query,
                lambda: [
                    m
                    for m in self.state.memberships.values()
                    if (list_id is None or m.list_id == list_id)
                    and (contact_id is None or m.contact_id == contact_id)
                    and (email is None or (by_email is not None and m.contact_id == by_email.id))
                    and (unsub is None or m.is_unsubscribed == unsub)
                ],
            )
            return page_response(
                query, records, self.state.membership_api, self.settings.total_mode
            )

    async def get_recipient(self, request: Request) -> Response:
        membership_id = numeric_id(request.path_params["ref"])
        with self.lock:
            membership = self.state.memberships.get(membership_id)
            if membership is None:
                raise not_found()
            return one(self.state.membership_api(membership))

    async def create_recipient(self, request: Request) -> Response:
        body = await read_object(request)
        check_writable(body, {"ContactID", "ListID", "IsUnsubscribed"}, RECIPIENT_READ_ONLY)
        check_types(body, {"ContactID": int, "ListID": int, "IsUnsubscribed": bool})
        missing = {k: "Required" for k in ("ContactID", "ListID") if k not in body}
        if missing:
            raise ApiError(400, missing)
        contact_id, list_id = body["ContactID"], body["ListID"]
        with self.lock:
            if contact_id not in self.state.contacts:
                raise ApiError(400, {"ContactID": f"Contact {contact_id} not found"})
            if list_id not in self.state.lists:
                raise ApiError(400, {"ListID": f"ContactsList {list_id} not found"})
            if self.state.membership_of(contact_id, list_id) is not None:
                raise duplicate_error(
                    "ListRecipient", "ContactID,ListID", f"{contact_id},{list_id}"
                )
            membership = self.state.add_membership(
                contact_id, list_id, body.get("IsUnsubscribed", False)
            )
            return one(self.state.membership_api(membership), 201)

    async def update_recipient(self, request: Request) -> Response:
        membership_id = numeric_id(request.path_params["ref"])
        body = await read_object(request)
        check_writable(body, {"IsUnsubscribed"}, RECIPIENT_READ_ONLY | {"ContactID", "ListID"})
        check_types(body, {"IsUnsubscribed": bool})
        with self.lock:
            membership = self.state.memberships.get(membership_id)
            if membership is None:
                raise not_found()
            unsubscribed = body.get("IsUnsubscribed", membership.is_unsubscribed)
            if unsubscribed == membership.is_unsubscribed:
                return not_modified()
            self.state.set_unsubscribed(membership, unsubscribed)
            return one(self.state.membership_api(membership))

    async def delete_recipient(self, request: Request) -> Response:
        membership_id = numeric_id(request.path_params["ref"])
        with self.lock:
            if membership_id not in self.state.memberships:
                raise not_found()
            self.state.delete_membership(membership_id)
        return Response(status_code=204)

    # ---- list management and bulk jobs -----------------------------------

    async def manage_contact_lists(self, request: Request) -> Response:
        body = await read_object(request)
        check_writable(body, {"ContactsLists"}, set())
        actions = parse_list_actions(body.get("ContactsLists"))
        if not actions:
            raise ApiError(400, {"ContactsLists": "Must not be empty"})
        with self.lock:
            contact = self._contact(request.path_params["ref"])
            for action in actions:
                if action["ListID"] not in self.state.lists:
                    raise ApiError(400, f"ContactsList {action['ListID']} not found")
            for action in actions:
                self.state.apply_list_action(contact.id, action["ListID"], action["Action"])
        return one({"ContactsLists": actions}, 201)

    async def post_job(self, request: Request) -> Response:
        contacts, actions = parse_job_request(await read_object(request))
        with self.lock:
            job = new_job(self.state, contacts, actions)
        return one({"JobID": job.id}, 201)

    async def get_job(self, request: Request) -> Response:
        job_id = numeric_id(request.path_params["job_id"])
        with self.lock:
            job = self.state.jobs.get(job_id)
            if job is None:
                raise not_found()
            advance_job(
                self.state,
                job,
                self.settings.job_polls_to_complete,
                self.settings.max_job_contacts,
                self.job_faults,
                behaviour=JobBehaviour(
                    self.settings.bulk_updates_name_and_exclusion, self.settings.stamp_exclusion
                ),
            )
            url = f"{request.base_url}files/mailjet/jobs/{job.id}/errors.csv"
            return one(job_api(job, url))

    async def job_error_file(self, request: Request) -> Response:
        """The ErrorFile of a job: a plain download, like a pre-signed file link."""
        job_id = request.path_params["job_id"]
        with self.lock:
            job = self.state.jobs.get(int(job_id)) if job_id.isdigit() else None
            if job is None or not job.failures:
                return PlainTextResponse("Not Found", status_code=404)
            return PlainTextResponse(error_csv(job), media_type="text/csv")
