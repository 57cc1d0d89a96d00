"""State of one emulated Mailchimp account: audiences, merge fields, members, tags.

No HTTP here. Everything is plain JSON (`dump()` / `load()`), so a sandbox account
persists between runs. Every public method takes the store's lock.

Tags are static segments: a segment holds {subscriber_hash: date_added}; a member's
`tags` are computed from the segments that hold it.

`last_changed` (whole seconds, settings.clock) moves on every change to a member: a
write that changes anything (status, merge fields, other fields, a rename, a re-sent
opt-in), archiving, and tags added or removed through /tags, the segment routes, a
deleted tag or batch subscribe. A write that changes nothing leaves it alone.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailchimp.emulator.validation import (
    MERGE_FIELD_TYPES,
    MERGE_TAG,
    ApiProblem,
    check_bool,
    check_email,
    check_email_list,
    check_int,
    check_object,
    check_status,
    check_string,
    invalid,
    merge_value,
    not_found,
    schema_error,
    stored_instant,
    subscriber_hash,
    throttled,
)

DEFAULT_MERGE_FIELDS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("FNAME", "First Name", "text", {}),
    ("LNAME", "Last Name", "text", {}),
    ("ADDRESS", "Address", "address", {"default_country": 164}),
    ("PHONE", "Phone Number", "phone", {"phone_format": "none"}),
)
MEMBER_WRITE_FIELDS = (
    "email_type",
    "language",
    "vip",
    "location",
    "interests",
    "marketing_permissions",
    "ip_signup",
    "timestamp_signup",
    "ip_opt",
    "timestamp_opt",
)
ADMIN_UNSUBSCRIBE = "N/A (Unsubscribed by admin)"
# The emulator's wording for a person's own unsubscribe (no recorded value in the reference).
CAMPAIGN_UNSUBSCRIBE = "Unsubscribed via campaign link"
SORT_FIELDS = ("timestamp_opt", "timestamp_signup", "last_changed")
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class MemberQuery:
    """Filters of GET /lists/{id}/members. Timestamps compare as instants; `since_*` and
    `unsubscribed_since` are inclusive, `before_*` exclusive."""

    status: str | None = None
    email_type: str | None = None
    since_last_changed: datetime | None = None
    before_last_changed: datetime | None = None
    since_timestamp_opt: datetime | None = None
    before_timestamp_opt: datetime | None = None
    unsubscribed_since: datetime | None = None
    vip_only: bool = False
    unique_email_id: str | None = None
    sort_field: str | None = None
    sort_dir: str = "ASC"


def _within(value: Any, since: datetime | None, before: datetime | None) -> bool:
    if since is None and before is None:
        return True
    moment = stored_instant(value)
    if moment is None:
        return False
    return (since is None or moment >= since) and (before is None or moment < before)


def _sort_key(value: Any) -> datetime:
    return stored_instant(value) or _EARLIEST


def _record(member: dict[str, Any]) -> dict[str, Any]:
    """A member's stored record without last_changed, to tell whether a write changed it."""
    return {k: copy.deepcopy(v) for k, v in member.items() if k != "last_changed"}


def _digest(*parts: str) -> str:
    return hashlib.md5("|".join(parts).encode(), usedforsecurity=False).hexdigest()


def compliance_problem(email: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed.",
    )


def forgotten_problem(email: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list.",
    )


def member_exists(email: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
        with_type=False,
    )


class MailchimpStore:
    def __init__(self, settings: MailchimpEmulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {"lists": {}, "next_id": 1}

    # -- state ----------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.data)

    def load(self, data: dict[str, Any]) -> None:
        if not isinstance(data.get("lists"), dict) or not isinstance(data.get("next_id"), int):
            raise ValueError("Mailchimp emulator state needs 'lists' (object) and 'next_id'")
        with self.lock:
            self.data = copy.deepcopy(data)

    def now(self) -> str:
        moment = datetime.fromtimestamp(self.settings.clock(), UTC).replace(microsecond=0)
        return moment.isoformat()

    def _next_id(self) -> int:
        value: int = self.data["next_id"]
        self.data["next_id"] = value + 1
        return value

    # -- audiences ------------------------------------------------------------

    def create_audience(self, name: str, list_id: str | None = None) -> str:
        with self.lock:
            number = self._next_id()
            list_id = list_id or _digest("list", str(number), name)[:10]
            if list_id in self.data["lists"]:
                raise ValueError(f"audience {list_id} exists")
            now = self.now()
            audience: dict[str, Any] = {
                "id": list_id,
                "web_id": 380000 + number,
                "name": name,
                "permission_reminder": "You signed up on our website.",
                "use_archive_bar": True,
                "campaign_defaults": {
                    "from_name": "Sandbox",
                    "from_email": "sandbox@acme-widgets.io",
                    "subject": "",
                    "language": "en",
                },
                "notify_on_subscribe": "",
                "notify_on_unsubscribe": "",
                "date_created": now,
                "list_rating": 0,
                "email_type_option": False,
                "visibility": "prv",
                "double_optin": False,
                "has_welcome": False,
                "marketing_permissions": False,
                "modules": [],
                "merge_fields": [],
                "next_merge_id": 1,
                "members": {},
                "segments": {},
                "forgotten": [],
                "last_sub_date": "",
                "last_unsub_date": "",
            }
            self.data["lists"][list_id] = audience
            for tag, field_name, kind, options in DEFAULT_MERGE_FIELDS:
                self._add_merge_field(
                    audience, {"tag": tag, "name": field_name, "type": kind, "options": options}
                )
            return list_id

    def audience(self, list_id: str) -> dict[str, Any]:
        audience = self.data["lists"].get(list_id)
        if audience is None:
            raise not_found()
        result: dict[str, Any] = audience
        return result

    def list_view(self, audience: dict[str, Any], total_contacts: bool = False) -> dict[str, Any]:
        hidden = {"merge_fields", "next_merge_id", "members", "segments", "forgotten"}
        view = {k: copy.deepcopy(v) for k, v in audience.items() if k not in hidden}
        for key in ("last_sub_date", "last_unsub_date"):
            view.pop(key)
        statuses = [m["status"] for m in audience["members"].values()]
        view["stats"] = {
            "member_count": statuses.count("subscribed"),
            "unsubscribe_count": statuses.count("unsubscribed"),
            "cleaned_count": statuses.count("cleaned"),
            "campaign_count": 0,
            "merge_field_count": len(audience["merge_fields"]),
            "last_sub_date": audience["last_sub_date"],
            "last_unsub_date": audience["last_unsub_date"],
        }
        if total_contacts:
            view["stats"]["total_contacts"] = len(statuses)
        view["_links"] = []
        return view

    def lists(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.list_view(a) for a in self.data["lists"].values()]

    # -- merge fields ---------------------------------------------------------

    def merge_fields(self, list_id: str) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            return [self._merge_view(audience, f) for f in audience["merge_fields"]]

    def merge_field(self, list_id: str, merge_id: str) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            return self._merge_view(audience, self._find_merge_field(audience, merge_id))

    def _merge_view(self, audience: dict[str, Any], field_def: dict[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(field_def), "list_id": audience["id"], "_links": []}

    def _find_merge_field(self, audience: dict[str, Any], merge_id: str) -> dict[str, Any]:
        for field_def in audience["merge_fields"]:
            if str(field_def["merge_id"]) == merge_id:
                result: dict[str, Any] = field_def
                return result
        raise not_found()

    def _tag(self, audience: dict[str, Any], raw: Any, own_id: int | None) -> str:
        tag = check_string(raw, "tag")
        if not MERGE_TAG.fullmatch(tag):
            if self.settings.merge_tag_policy == "reject":
                raise invalid(
                    "Your merge field tag is invalid.",
                    [
                        {
                            "field": "tag",
                            "message": "Merge tags are at most 10 characters: "
                            "uppercase letters, digits and underscore.",
                        }
                    ],
                )
            tag = "".join(c if c.isalnum() or c == "_" else "_" for c in tag.upper())[:10]
            if not tag:
                raise invalid("Your merge field tag is invalid.")
        for other in audience["merge_fields"]:
            if other["tag"] == tag and other["merge_id"] != own_id:
                raise invalid(f'A Merge Field with the tag "{tag}" already exists for this list.')
        return tag

    def _add_merge_field(self, audience: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        merge_id: int = audience["next_merge_id"]
        tag = body.get("tag") or f"MMERGE{merge_id}"
        field_def = {
            "merge_id": merge_id,
            "tag": tag,
            "name": body["name"],
            "type": body["type"],
            "required": body.get("required", False),
            "default_value": body.get("default_value", ""),
            "public": body.get("public", True),
            "display_order": body.get("display_order", merge_id + 1),
            "options": body.get("options", {}),
            "help_text": body.get("help_text", ""),
        }
        audience["next_merge_id"] = merge_id + 1
        audience["merge_fields"].append(field_def)
        return field_def

    def create_merge_field(self, list_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            body = check_object(body, "body")
            if "name" not in body:
                raise schema_error("name", "This value should not be blank.")
            if "type" not in body:
                raise schema_error("type", "This value should not be blank.")
            clean = self._merge_body(audience, body, None)
            if clean["type"] not in MERGE_FIELD_TYPES:
                raise schema_error(
                    "type",
                    f"Value is not one of the allowed values: {', '.join(MERGE_FIELD_TYPES)}",
                )
            if len(audience["merge_fields"]) >= self.settings.max_merge_fields:
                raise invalid(
                    f"This audience already has {self.settings.max_merge_fields} merge fields, "
                    "the most your plan allows."
                )
            field_def = self._add_merge_field(audience, clean)
            return self._merge_view(audience, field_def)

    def _merge_body(
        self, audience: dict[str, Any], body: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        if "name" in body:
            clean["name"] = check_string(body["name"], "name")
            if not clean["name"].strip():
                raise schema_error("name", "This value should not be blank.")
        if "type" in body:
            clean["type"] = check_string(body["type"], "type")
        if "tag" in body:
            own_id = current["merge_id"] if current is not None else None
            clean["tag"] = self._tag(audience, body["tag"], own_id)
        for key in ("required", "public"):
            if key in body:
                clean[key] = check_bool(body[key], key)
        for key in ("default_value", "help_text"):
            if key in body:
                clean[key] = check_string(body[key], key)
        if "display_order" in body:
            clean["display_order"] = check_int(body["display_order"], "display_order")
        if "options" in body:
            options = check_object(body["options"], "options")
            kind = clean.get("type") or (current or {}).get("type")
            if (
                current is not None
                and options.get("choices") == []
                and kind not in ("radio", "dropdown")
            ):
                raise invalid(
                    "This resource has not yet implemented array assignment for options.choices."
                )
            clean["options"] = copy.deepcopy(options)
        return clean

    def update_merge_field(self, list_id: str, merge_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            field_def = self._find_merge_field(audience, merge_id)
            body = check_object(body, "body")
            if self.settings.patch_merge_field_requires_name and "name" not in body:
                raise schema_error("name", "This value should not be blank.")
            clean = self._merge_body(audience, body, field_def)
            if (
                "type" in clean
                and clean["type"] != field_def["type"]
                and self.settings.merge_field_type_change == "reject"
            ):
                raise invalid(
                    "A merge field's type cannot be changed.",
                    [{"field": "type", "message": "type is read-only"}],
                )
            clean.pop("type", None)
            if "options" in clean:
                clean["options"] = {**field_def["options"], **clean["options"]}
            if "tag" in clean and clean["tag"] != field_def["tag"]:
                # merge_id is unchanging and the values belong to the field: a new tag keeps
                # every member's value (members hold them by tag here).
                for member in audience["members"].values():
                    if field_def["tag"] in member["merge_fields"]:
                        value = member["merge_fields"].pop(field_def["tag"])
                        member["merge_fields"][clean["tag"]] = value
            field_def.update(clean)
            return self._merge_view(audience, field_def)

    def delete_merge_field(self, list_id: str, merge_id: str) -> None:
        with self.lock:
            audience = self.audience(list_id)
            field_def = self._find_merge_field(audience, merge_id)
            audience["merge_fields"].remove(field_def)
            for member in audience["members"].values():
                member["merge_fields"].pop(field_def["tag"], None)

    # -- members --------------------------------------------------------------

    def _member_view(self, audience: dict[str, Any], key: str) -> dict[str, Any]:
        member = audience["members"][key]
        email = member["email_address"]
        merge = {
            f["tag"]: member["merge_fields"].get(f["tag"], "") for f in audience["merge_fields"]
        }
        tags = self._member_tags(audience, key)
        first, last = merge.get("FNAME", ""), merge.get("LNAME", "")
        view: dict[str, Any] = {
            "id": key,
            "email_address": email,
            "unique_email_id": _digest("unique", audience["id"], key)[:10],
            "contact_id": _digest("contact", audience["id"], key),
            "full_name": f"{first if isinstance(first, str) else ''} "
            f"{last if isinstance(last, str) else ''}".strip(),
            "web_id": member["web_id"],
            "email_type": member.get("email_type", "html"),
            "status": member["status"],
        }
        if member["status"] == "unsubscribed":
            view["unsubscribe_reason"] = member.get("unsubscribe_reason", ADMIN_UNSUBSCRIBE)
        view.update(
            {
                "consents_to_one_to_one_messaging": True,
                "merge_fields": copy.deepcopy(merge),
                "interests": copy.deepcopy(member.get("interests", {})),
                "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
                "ip_signup": member.get("ip_signup", ""),
                "timestamp_signup": member.get("timestamp_signup", ""),
                "ip_opt": member.get("ip_opt", ""),
                "timestamp_opt": member.get("timestamp_opt", ""),
                "member_rating": 2,
                "last_changed": member["last_changed"],
                "language": member.get("language", ""),
                "vip": member.get("vip", False),
                "email_client": "",
                "location": {
                    "latitude": 0,
                    "longitude": 0,
                    "gmtoff": 0,
                    "dstoff": 0,
                    "country_code": "",
                    "timezone": "",
                    **member.get("location", {}),
                },
                "source": member.get("source", "API - Generic"),
                "tags_count": len(tags),
                "tags": [{"id": t["id"], "name": t["name"]} for t in tags[:50]],
                "list_id": audience["id"],
                "_links": [],
            }
        )
        return view

    def _member_tags(self, audience: dict[str, Any], key: str) -> list[dict[str, Any]]:
        return [
            {"id": s["id"], "name": s["name"], "date_added": s["members"][key]}
            for s in audience["segments"].values()
            if key in s["members"]
        ]

    def resolve_member_key(self, slot: str) -> str:
        """The path slot may be the hash or (per the SDK docstrings) the raw address."""
        return subscriber_hash(slot) if "@" in slot else slot.lower()

    def list_members(self, list_id: str, query: MemberQuery) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            result = []
            for key, member in audience["members"].items():
                if query.status is not None and member["status"] != query.status:
                    continue
                if (
                    query.status is None
                    and member["status"] == "archived"
                    and not self.settings.list_members_includes_archived
                ):
                    continue
                if query.email_type is not None and (
                    member.get("email_type", "html") != query.email_type
                ):
                    continue
                if not _within(
                    member["last_changed"], query.since_last_changed, query.before_last_changed
                ):
                    continue
                if not _within(
                    member.get("timestamp_opt", ""),
                    query.since_timestamp_opt,
                    query.before_timestamp_opt,
                ):
                    continue
                if query.unsubscribed_since is not None and (
                    member["status"] != "unsubscribed"
                    or not _within(
                        member.get("unsubscribed_at") or member["last_changed"],
                        query.unsubscribed_since,
                        None,
                    )
                ):
                    continue
                if query.vip_only and member.get("vip") is not True:
                    continue
                view = self._member_view(audience, key)
                if (
                    query.unique_email_id is not None
                    and view["unique_email_id"] != query.unique_email_id
                ):
                    continue
                result.append(view)
            if query.sort_field is not None:
                name = query.sort_field
                result.sort(key=lambda v: _sort_key(v[name]), reverse=query.sort_dir == "DESC")
            return result

    def get_member(self, list_id: str, slot: str) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            key = self.resolve_member_key(slot)
            if key not in audience["members"]:
                raise not_found()
            return self._member_view(audience, key)

    def write_member(
        self,
        list_id: str,
        method: str,
        slot: str | None,
        body: Any,
        skip_merge_validation: bool,
    ) -> tuple[dict[str, Any], bool]:
        """POST (slot None), PUT or PATCH one member. Returns (member view, created)."""
        with self.lock:
            audience = self.audience(list_id)
            body = check_object(body, "body")
            key, created = self._write(
                audience=audience,
                method=method,
                slot=slot,
                body=body,
                skip_merge_validation=skip_merge_validation,
            )
            return self._member_view(audience, key), created

    def _write(
        self,
        *,
        audience: dict[str, Any],
        method: str,
        slot: str | None,
        body: dict[str, Any],
        skip_merge_validation: bool,
        allow_update: bool = True,
        replace_merge_fields: bool = False,
    ) -> tuple[str, bool]:
        members: dict[str, dict[str, Any]] = audience["members"]
        email: str | None = None
        if "email_address" in body:
            email = check_email(body["email_address"], self.settings.fake_domains)
        path_key = self.resolve_member_key(slot) if slot is not None else None
        if method == "POST":
            if email is None:
                raise schema_error("email_address", "This value should not be blank.")
            path_key = subscriber_hash(email)
        assert path_key is not None
        existing = members.get(path_key)
        if method == "PATCH" and existing is None:
            raise not_found()
        if existing is None:
            return self._create(
                audience=audience,
                method=method,
                path_key=path_key,
                email=email,
                body=body,
                skip_merge_validation=skip_merge_validation,
            )
        if method == "POST" and not (
            existing["status"] == "archived" and self.settings.post_revives_archived
        ):
            raise member_exists(existing["email_address"])
        if not allow_update:
            raise member_exists(existing["email_address"])
        key = path_key
        if email is not None and subscriber_hash(email) != path_key:
            new_key = subscriber_hash(email)
            if new_key in members:
                raise member_exists(email)
            if new_key in audience["forgotten"]:
                raise forgotten_problem(email)
        status = self._next_status(existing, body, method)
        current = {} if replace_merge_fields else existing["merge_fields"]
        merged = self._merge_values(audience, current, body, skip_merge_validation)
        extra = self._member_extras(body)
        # Every check passed: apply.
        before = _record(existing)
        if email is not None and subscriber_hash(email) != path_key:
            key = subscriber_hash(email)
            members[key] = members.pop(path_key)
            for segment in audience["segments"].values():
                if path_key in segment["members"]:
                    segment["members"][key] = segment["members"].pop(path_key)
            members[key]["email_address"] = email
        member = members[key]
        member["merge_fields"] = merged
        member.update(extra)
        resend = "status" in body and self.settings.pending_write_resends_opt_in
        self._set_status(audience, member, status, resend=resend)
        if _record(member) != before:
            member["last_changed"] = self.now()
        return key, False

    def _next_status(self, existing: dict[str, Any], body: dict[str, Any], method: str) -> str:
        if "status" in body:
            allowed: tuple[str, ...] = ("subscribed", "unsubscribed", "cleaned", "pending")
            if method != "PATCH" or self.settings.patch_accepts_transactional:
                allowed = (*allowed, "transactional")
            wanted = check_status(body["status"], "status", allowed)
            return self._transition(existing, wanted, method)
        if method == "POST":
            return self._transition(existing, check_status(body.get("status"), "status"), method)
        if existing["status"] == "archived" and method == "PUT":
            return self._transition(
                existing,
                check_status(
                    body.get("status_if_new", existing.get("status_before_archive", "subscribed")),
                    "status_if_new",
                ),
                method,
            )
        status: str = existing["status"]
        return status

    def _create(
        self,
        *,
        audience: dict[str, Any],
        method: str,
        path_key: str,
        email: str | None,
        body: dict[str, Any],
        skip_merge_validation: bool,
        throttle: bool = True,
    ) -> tuple[str, bool]:
        if email is None:
            raise schema_error("email_address", "This value should not be blank.")
        key = subscriber_hash(email)
        if key in audience["forgotten"]:
            raise forgotten_problem(email)
        if key != path_key and key in audience["members"]:
            raise member_exists(email)
        if method == "PUT":
            raw = body.get("status_if_new", body.get("status"))
            if raw is None:
                raise schema_error("status_if_new", "This value should not be blank.")
            status = check_status(raw, "status_if_new" if "status_if_new" in body else "status")
        else:
            if "status" not in body:
                raise schema_error("status", "This value should not be blank.")
            status = check_status(body["status"], "status")
        if throttle:
            self._check_throttle(email)
        merged = self._merge_values(audience, {}, body, skip_merge_validation)
        extra = self._member_extras(body)
        tags: list[str] = []
        if "tags" in body:
            raw_tags = body["tags"]
            if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
                raise schema_error("tags", "Schema describes array of strings")
            tags = [self._check_tag_name(t) for t in raw_tags]
        now = self.now()
        member: dict[str, Any] = {
            "email_address": email,
            "status": "",
            "merge_fields": merged,
            "web_id": 400000000 + self._next_id(),
            "last_changed": now,
            "source": "API - Generic",
            "timestamp_signup": "",
            "timestamp_opt": "",
            "compliance": False,
            "opt_in_emails_sent": 0,
            **extra,
        }
        audience["members"][key] = member
        self._set_status(audience, member, status)
        for name in tags:
            self._tag_member(audience, key, name)
        return key, True

    def _member_extras(self, body: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for name in MEMBER_WRITE_FIELDS:
            if name not in body:
                continue
            value = body[name]
            if name == "email_type" and value not in ("html", "text"):
                raise schema_error(name, "Value is not one of the allowed values: html, text")
            if name == "vip":
                check_bool(value, name)
            if name in ("location", "interests"):
                check_object(value, name)
            extra[name] = copy.deepcopy(value)
        return extra

    def _merge_values(
        self,
        audience: dict[str, Any],
        current: dict[str, Any],
        body: dict[str, Any],
        skip_merge_validation: bool,
    ) -> dict[str, Any]:
        merged = copy.deepcopy(current)
        errors: list[dict[str, str]] = []
        by_tag = {f["tag"]: f for f in audience["merge_fields"]}
        if "merge_fields" in body:
            values = check_object(body["merge_fields"], "merge_fields")
            for tag, raw in values.items():
                field_def = by_tag.get(tag)
                if field_def is None:
                    continue  # unknown (or lowercase) tags are dropped silently
                value, message = merge_value(field_def, raw)
                if message is not None:
                    errors.append({"field": tag, "message": message})
                elif value == "":
                    merged.pop(tag, None)
                else:
                    merged[tag] = value
        if not skip_merge_validation:
            for field_def in audience["merge_fields"]:
                if field_def["required"] and merged.get(field_def["tag"], "") == "":
                    errors.append({"field": field_def["tag"], "message": "Please enter a value"})
        if errors:
            raise invalid("Your merge fields were invalid.", errors)
        return merged

    def _transition(self, member: dict[str, Any], wanted: str, method: str) -> str:
        current = member["status"]
        if current == "archived" and method == "PATCH" and not self.settings.patch_revives_archived:
            return "archived"
        if wanted == "subscribed" and current != "subscribed" and member.get("compliance"):
            raise compliance_problem(member["email_address"])
        if wanted in ("subscribed", "pending") and current != wanted:
            self._check_throttle(member["email_address"])
        return wanted

    def _check_throttle(self, email: str) -> None:
        if email.strip().lower() in self.settings.throttled_addresses:
            raise throttled(email)

    def _set_status(
        self,
        audience: dict[str, Any],
        member: dict[str, Any],
        status: str,
        *,
        resend: bool = False,
    ) -> None:
        """resend: a write set `pending` explicitly; on a member already pending it counts
        another opt-in email."""
        previous = member["status"]
        if status == previous:
            if status == "pending" and resend:
                member["opt_in_emails_sent"] = member.get("opt_in_emails_sent", 0) + 1
            return
        now = self.now()
        member["status"] = status
        if status == "subscribed":
            audience["last_sub_date"] = now
            member["timestamp_opt"] = member.get("timestamp_opt") or now
            member.pop("unsubscribe_reason", None)
        elif status == "unsubscribed":
            audience["last_unsub_date"] = now
            member["unsubscribed_at"] = now
            member.setdefault("unsubscribe_reason", ADMIN_UNSUBSCRIBE)
            if self.settings.api_unsubscribe_is_compliance:
                member["compliance"] = True
        elif status == "cleaned":
            member["compliance"] = True
        elif status == "pending":
            member["opt_in_emails_sent"] = member.get("opt_in_emails_sent", 0) + 1

    def archive_member(self, list_id: str, slot: str) -> None:
        with self.lock:
            audience = self.audience(list_id)
            key = self.resolve_member_key(slot)
            member = audience["members"].get(key)
            if member is None:
                raise not_found()
            if member["status"] in ("pending", "cleaned", "archived"):
                raise ApiProblem(
                    405,
                    "Method Not Allowed",
                    "This list member cannot be removed. Can not archive a contact that is "
                    "bounced, pending or archived",
                    headers={"Allow": "GET, PUT"},
                )
            member["status_before_archive"] = member["status"]
            member["status"] = "archived"
            member["last_changed"] = self.now()

    def delete_permanent(self, list_id: str, slot: str) -> None:
        with self.lock:
            audience = self.audience(list_id)
            key = self.resolve_member_key(slot)
            if key not in audience["members"]:
                raise not_found()
            del audience["members"][key]
            for segment in audience["segments"].values():
                segment["members"].pop(key, None)
            audience["forgotten"].append(key)

    # -- batch subscribe ------------------------------------------------------

    def batch_subscribe(
        self, list_id: str, body: Any, skip_merge_validation: bool, skip_duplicate_check: bool
    ) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            body = check_object(body, "body")
            items = body.get("members")
            if not isinstance(items, list):
                raise schema_error("members", "This value should not be blank.")
            if len(items) > 500:
                raise invalid(
                    "You can only add 500 members per request.",
                    [{"field": "members", "message": f"got {len(items)} members, at most 500"}],
                )
            update_existing = check_bool(body.get("update_existing", False), "update_existing")
            sync_tags = check_bool(body.get("sync_tags", False), "sync_tags")
            created: list[dict[str, Any]] = []
            updated: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            seen: set[str] = set()
            for index, raw_item in enumerate(items):
                email = raw_item.get("email_address") if isinstance(raw_item, dict) else None
                label = email if isinstance(email, str) else ""
                try:
                    item = check_object(raw_item, f"members.{index}")
                    if isinstance(email, str) and subscriber_hash(email) in seen:
                        if skip_duplicate_check:
                            continue
                        raise invalid(f"{email} appears more than once in this request.")
                    if isinstance(email, str):
                        seen.add(subscriber_hash(email))
                    member_body = {k: v for k, v in item.items() if k != "tags"}
                    key_before = subscriber_hash(label) if label else ""
                    exists = key_before in audience["members"]
                    if exists and not update_existing:
                        raise member_exists(label)
                    method = "PUT" if exists else "POST"
                    if "status" not in member_body and (
                        not exists or self.settings.batch_subscribe_existing_requires_status
                    ):
                        raise invalid(
                            "status: This value should not be blank.",
                            [{"field": "status", "message": "This value should not be blank."}],
                        )
                    key, was_created = self._write(
                        audience=audience,
                        method=method,
                        slot=key_before if exists else None,
                        body=member_body,
                        skip_merge_validation=skip_merge_validation,
                        replace_merge_fields=self.settings.batch_subscribe_merge_fields
                        == "replace",
                    )
                    if "tags" in item:
                        self._batch_tags(audience, key, item["tags"], sync_tags)
                    (created if was_created else updated).append(self._member_view(audience, key))
                except ApiProblem as problem:
                    field_name = problem.errors[0]["field"] if problem.errors else ""
                    field_message = problem.errors[0]["message"] if problem.errors else ""
                    errors.append(
                        {
                            "email_address": label,
                            "error": problem.detail,
                            "error_code": "ERROR_CONTACT_EXISTS"
                            if problem.title == "Member Exists"
                            else "ERROR_GENERIC",
                            "field": field_name,
                            "field_message": field_message,
                        }
                    )
            return {
                "new_members": created,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
                "_links": [],
            }

    def _batch_tags(self, audience: dict[str, Any], key: str, raw: Any, sync: bool) -> None:
        policy = self.settings.batch_subscribe_tags
        if policy == "ignore":
            return
        if policy == "reject":
            raise schema_error("tags", "tags are not accepted by batch subscribe")
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            raise schema_error("tags", "Schema describes array of strings")
        names = [self._check_tag_name(t) for t in raw]
        if sync:
            wanted = {n.lower() for n in names}
            for segment in audience["segments"].values():
                if segment["name"].lower() not in wanted:
                    self._untag_member(audience, segment, key)
        for name in names:
            self._tag_member(audience, key, name)

    # -- tags and static segments ---------------------------------------------

    def _check_tag_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise schema_error("name", "This value should not be blank.")
        limit = self.settings.max_tag_name_length
        if limit is not None and len(name) > limit:
            raise invalid(
                f"Tag names are at most {limit} characters.",
                [{"field": "name", "message": f"longer than {limit} characters"}],
            )
        return name

    def _segment_by_name(self, audience: dict[str, Any], name: str) -> dict[str, Any] | None:
        for segment in audience["segments"].values():
            if segment["name"].lower() == name.lower():
                result: dict[str, Any] = segment
                return result
        return None

    def _new_segment(self, audience: dict[str, Any], name: str) -> dict[str, Any]:
        now = self.now()
        segment_id = 4788000 + self._next_id()
        segment: dict[str, Any] = {
            "id": segment_id,
            "name": name,
            "type": "static",
            "created_at": now,
            "updated_at": now,
            "members": {},
        }
        audience["segments"][str(segment_id)] = segment
        return segment

    def _touch(self, audience: dict[str, Any], key: str) -> None:
        member = audience["members"].get(key)
        if member is not None:
            member["last_changed"] = self.now()

    def _tag_member(self, audience: dict[str, Any], key: str, name: str) -> None:
        segment = self._segment_by_name(audience, name) or self._new_segment(audience, name)
        self._add_to_segment(audience, segment, key)

    def _add_to_segment(self, audience: dict[str, Any], segment: dict[str, Any], key: str) -> bool:
        if key in segment["members"]:
            return False
        segment["members"][key] = self.now()
        segment["updated_at"] = self.now()
        self._touch(audience, key)
        return True

    def _untag_member(self, audience: dict[str, Any], segment: dict[str, Any], key: str) -> bool:
        if segment["members"].pop(key, None) is None:
            return False
        segment["updated_at"] = self.now()
        self._touch(audience, key)
        return True

    def member_tags(self, list_id: str, slot: str) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            key = self.resolve_member_key(slot)
            if key not in audience["members"]:
                raise not_found()
            return self._member_tags(audience, key)

    def write_member_tags(self, list_id: str, slot: str, body: Any) -> None:
        with self.lock:
            audience = self.audience(list_id)
            key = self.resolve_member_key(slot)
            if key not in audience["members"]:
                raise not_found()
            if not isinstance(body, dict) or "tags" not in body:
                return  # answered 204 and changed nothing (codegen#141)
            raw = body["tags"]
            if not isinstance(raw, list):
                raise schema_error("tags", "Schema describes array, found something else")
            changes: list[tuple[str, str]] = []
            for index, raw_item in enumerate(raw):
                item = check_object(raw_item, f"tags.{index}")
                name = self._check_tag_name(check_string(item.get("name"), f"tags.{index}.name"))
                status = item.get("status")
                if status not in ("active", "inactive"):
                    raise schema_error(
                        f"tags.{index}.status",
                        "Value is not one of the allowed values: active, inactive",
                    )
                changes.append((name, status))
            if "is_syncing" in body:
                check_bool(body["is_syncing"], "is_syncing")
            for name, status in changes:
                if status == "active":
                    self._tag_member(audience, key, name)
                else:
                    segment = self._segment_by_name(audience, name)
                    if segment is not None:
                        self._untag_member(audience, segment, key)

    def tag_search(self, list_id: str, prefix: str | None) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            return [
                {"id": s["id"], "name": s["name"]}
                for s in audience["segments"].values()
                if prefix is None or s["name"].lower().startswith(prefix.lower())
            ]

    def _segment_view(self, audience: dict[str, Any], segment: dict[str, Any]) -> dict[str, Any]:
        count = sum(
            1
            for key in segment["members"]
            if audience["members"].get(key, {}).get("status") == "subscribed"
        )
        return {
            "id": segment["id"],
            "name": segment["name"],
            "member_count": count,
            "type": segment["type"],
            "created_at": segment["created_at"],
            "updated_at": segment["updated_at"],
            "options": {},
            "list_id": audience["id"],
            "_links": [],
        }

    def _segment(self, audience: dict[str, Any], segment_id: str) -> dict[str, Any]:
        segment = audience["segments"].get(segment_id)
        if segment is None:
            raise not_found()
        result: dict[str, Any] = segment
        return result

    def segments(self, list_id: str, kind: str | None) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            return [
                self._segment_view(audience, s)
                for s in audience["segments"].values()
                if kind is None or s["type"] == kind
            ]

    def segment(self, list_id: str, segment_id: str) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            return self._segment_view(audience, self._segment(audience, segment_id))

    def create_segment(self, list_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            body = check_object(body, "body")
            name = self._check_tag_name(check_string(body.get("name"), "name"))
            if "options" in body and "static_segment" in body:
                raise invalid("static_segment and options cannot be combined.")
            if "static_segment" not in body:
                raise invalid(
                    "Only static segments (tags) are emulated; send static_segment.",
                    [{"field": "static_segment", "message": "required by this emulator"}],
                )
            emails = body["static_segment"]
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise schema_error("static_segment", "Schema describes array of strings")
            if self._segment_by_name(audience, name) is not None:
                raise invalid(f'A tag named "{name}" already exists.')
            segment = self._new_segment(audience, name)
            for email in emails:
                key = subscriber_hash(email)
                if key in audience["members"]:
                    self._add_to_segment(audience, segment, key)
            return self._segment_view(audience, segment)

    def delete_segment(self, list_id: str, segment_id: str) -> None:
        with self.lock:
            audience = self.audience(list_id)
            segment = self._segment(audience, segment_id)
            del audience["segments"][segment_id]
            for key in segment["members"]:
                self._touch(audience, key)

    def batch_segment(self, list_id: str, segment_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            segment = self._segment(audience, segment_id)
            body = check_object(body, "body")
            to_add = check_email_list(body.get("members_to_add", []), "members_to_add", 500)
            to_remove = check_email_list(
                body.get("members_to_remove", []), "members_to_remove", 500
            )
            added: list[dict[str, Any]] = []
            removed: list[dict[str, Any]] = []
            unknown: list[str] = []
            for email in to_add:
                key = subscriber_hash(email)
                if key not in audience["members"]:
                    unknown.append(email)
                elif self._add_to_segment(audience, segment, key):
                    added.append(self._member_view(audience, key))
            for email in to_remove:
                key = subscriber_hash(email)
                if key not in audience["members"]:
                    unknown.append(email)
                elif self._untag_member(audience, segment, key):
                    removed.append(self._member_view(audience, key))
            errors: list[dict[str, Any]] = []
            if unknown and self.settings.segment_batch_reports_unknown:
                errors.append(
                    {"email_addresses": unknown, "error": "Email addresses are not on the list."}
                )
            return {
                "members_added": added,
                "members_removed": removed,
                "errors": errors,
                "total_added": len(added),
                "total_removed": len(removed),
                "error_count": len(errors),
                "_links": [],
            }

    def segment_members(
        self, list_id: str, segment_id: str, include: set[str]
    ) -> list[dict[str, Any]]:
        with self.lock:
            audience = self.audience(list_id)
            segment = self._segment(audience, segment_id)
            shown = {"subscribed", "pending", *include}
            return [
                self._member_view(audience, key)
                for key in segment["members"]
                if audience["members"][key]["status"] in shown
            ]

    def add_segment_member(self, list_id: str, segment_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            audience = self.audience(list_id)
            segment = self._segment(audience, segment_id)
            body = check_object(body, "body")
            email = check_string(body.get("email_address"), "email_address")
            key = subscriber_hash(email)
            if key not in audience["members"]:
                raise not_found()
            self._add_to_segment(audience, segment, key)
            return self._member_view(audience, key)

    def remove_segment_member(self, list_id: str, segment_id: str, slot: str) -> None:
        with self.lock:
            audience = self.audience(list_id)
            segment = self._segment(audience, segment_id)
            key = self.resolve_member_key(slot)
            if not self._untag_member(audience, segment, key):
                raise not_found()

    # -- test helpers ---------------------------------------------------------

    def seed_member(
        self,
        *,
        list_id: str,
        email: str,
        status: str,
        merge_fields: dict[str, Any] | None,
        tags: list[str],
        compliance: bool,
    ) -> str:
        with self.lock:
            audience = self.audience(list_id)
            target = status
            body: dict[str, Any] = {
                "email_address": email,
                "status": "subscribed" if status == "archived" else status,
                "merge_fields": merge_fields or {},
                "tags": tags,
            }
            key, _ = self._create(
                audience=audience,
                method="POST",
                path_key=subscriber_hash(email),
                email=email,
                body=body,
                skip_merge_validation=True,
                throttle=False,
            )
            member = audience["members"][key]
            if target == "archived":
                member["status_before_archive"] = "subscribed"
                member["status"] = "archived"
            if compliance:
                member["compliance"] = True
                if status == "unsubscribed":
                    member["unsubscribe_reason"] = CAMPAIGN_UNSUBSCRIBE
            return key

    def _existing(self, audience: dict[str, Any], slot: str) -> tuple[str, dict[str, Any]]:
        key = self.resolve_member_key(slot)
        member = audience["members"].get(key)
        if member is None:
            raise not_found()
        result: dict[str, Any] = member
        return key, result

    def self_unsubscribe(self, list_id: str, email: str) -> None:
        """The person unsubscribed through a campaign link: unsubscribed, in compliance."""
        with self.lock:
            audience = self.audience(list_id)
            key, member = self._existing(audience, email)
            self._set_status(audience, member, "unsubscribed")
            member["unsubscribe_reason"] = CAMPAIGN_UNSUBSCRIBE
            member["compliance"] = True
            self._touch(audience, key)

    def bounce(self, list_id: str, email: str) -> None:
        """The address bounced: cleaned (and so in compliance)."""
        with self.lock:
            audience = self.audience(list_id)
            key, member = self._existing(audience, email)
            self._set_status(audience, member, "cleaned")
            self._touch(audience, key)

    def opt_in_emails_sent(self, list_id: str, email: str) -> int:
        """Opt-in emails counted for the member (0 when it is not on the list)."""
        with self.lock:
            audience = self.audience(list_id)
            member = audience["members"].get(self.resolve_member_key(email))
            return int(member.get("opt_in_emails_sent", 0)) if member is not None else 0
