"""The manifest author's side: what the manifest declares, written out as YAML (and CSV),
and read back after `reconcile export` wrote over it (the author continues from there)."""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

OPT_IN_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CHIMP_AUDIENCE_NAME = "Acme Newsletter"  # the sandbox's audience


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(OPT_IN_FORMAT)


@dataclass
class MembershipDecl:
    status: str = "subscribed"  # subscribed | unsubscribed
    opted_in_at: datetime | None = None


@dataclass
class ContactDecl:
    email: str
    name: str | None = None  # None: not managed (the entry does not mention it)
    excluded: bool | None = None
    opted_in_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # a None value clears
    lists: dict[str, MembershipDecl] = field(default_factory=dict)

    def opt_ins(self) -> list[datetime]:
        found = [m.opted_in_at for m in self.lists.values() if m.opted_in_at is not None]
        return found + ([self.opted_in_at] if self.opted_in_at is not None else [])


@dataclass
class PropertyDecl:
    type: str
    replace: bool = False


@dataclass
class Prune:
    contacts: str = "ignore"  # ignore | exclude | unsubscribe | delete
    scope_lists: list[str] | None = None  # None: every declared list
    members: str = "remove"  # remove | unsubscribe
    lists: str = "ignore"  # ignore | delete
    properties: str = "ignore"  # ignore | delete


@dataclass
class Manifest:
    provider: str
    properties: dict[str, PropertyDecl] = field(default_factory=dict)
    lists: dict[str, str] = field(default_factory=dict)  # name -> additive | exact
    contacts: dict[str, ContactDecl] = field(default_factory=dict)  # by email.lower()
    prune: Prune = field(default_factory=Prune)
    protect_contacts: list[str] = field(default_factory=list)
    protect_lists: list[str] = field(default_factory=list)
    csv_contacts: bool = False

    def copy(self) -> Manifest:
        return copy.deepcopy(self)

    # ---- questions the invariants ask -------------------------------------

    def contact(self, email: str) -> ContactDecl | None:
        return self.contacts.get(email.lower())

    def contact_protected(self, email: str) -> bool:
        return email.lower() in {e.lower() for e in self.protect_contacts}

    def list_protected(self, name: str) -> bool:
        return name in self.protect_lists

    def membership(self, email: str, list_name: str) -> MembershipDecl | None:
        declared = self.contact(email)
        return None if declared is None else declared.lists.get(list_name)

    def scope_lists(self) -> list[str]:
        if self.prune.scope_lists is None:
            return list(self.lists)
        return list(self.prune.scope_lists)

    def future_opt_in(self, now: datetime) -> bool:
        return any(moment > now for c in self.contacts.values() for moment in c.opt_ins())

    # ---- writing ----------------------------------------------------------

    def csv_ok(self, contact: ContactDecl) -> bool:
        """What a CSV row can say: no opt-ins, no empty name, no ; or : in list names."""
        return (
            not contact.opt_ins()
            and contact.name != ""
            and not any(";" in n or ":" in n for n in contact.lists)
        )

    def document(self, with_contacts: list[ContactDecl]) -> dict[str, Any]:
        doc: dict[str, Any] = {"provider": self.provider}
        if self.provider == "mailchimp":  # one audience per manifest: the sandbox's
            doc["provider"] = {"type": "mailchimp", "audience": CHIMP_AUDIENCE_NAME}
        props: dict[str, Any] = {}
        for name, prop in self.properties.items():
            spec: dict[str, Any] = {"type": prop.type}
            if prop.replace:
                spec["replace"] = True
            props[name] = spec
        doc["properties"] = props
        doc["lists"] = {
            name: ({"members": "exact"} if members == "exact" else {})
            for name, members in self.lists.items()
        }
        prune: dict[str, Any] = {}
        if self.prune.contacts != "ignore":
            contacts: dict[str, Any] = {"action": self.prune.contacts}
            if self.prune.scope_lists is not None:
                contacts["scope"] = {"lists": list(self.prune.scope_lists)}
            prune["contacts"] = contacts
        if self.prune.members != "remove":
            prune["members"] = self.prune.members
        if self.prune.lists != "ignore":
            prune["lists"] = self.prune.lists
        if self.prune.properties != "ignore":
            prune["properties"] = self.prune.properties
        if prune:
            doc["prune"] = prune
        if self.protect_contacts or self.protect_lists:
            doc["protect"] = {
                "contacts": list(self.protect_contacts),
                "lists": list(self.protect_lists),
            }
        # Small accounts: the thresholds would refuse most plans; the promises are about
        # what a plan does, so the machine allows every share.
        doc["safety"] = {"max_delete_share": 1.0, "max_update_share": 1.0}
        doc["contacts"] = [_contact_entry(c) for c in with_contacts]
        return doc

    def write(self, directory: Path) -> None:
        """Replace the manifest directory's contents with this manifest."""
        directory.mkdir(parents=True, exist_ok=True)
        for old in [*directory.glob("*.yaml"), *directory.glob("*.yml"), *directory.glob("*.csv")]:
            old.unlink()
        in_csv = [c for c in self.contacts.values() if self.csv_contacts and self.csv_ok(c)]
        csv_ids = {id(c) for c in in_csv}
        in_yaml = [c for c in self.contacts.values() if id(c) not in csv_ids]
        doc = self.document(in_yaml)
        if in_csv:
            doc["contacts_from"] = "people.csv"
            (directory / "people.csv").write_text(_csv_text(in_csv), encoding="utf-8")
        (directory / "audience.yaml").write_text(emit(doc), encoding="utf-8")


def _contact_entry(contact: ContactDecl) -> dict[str, Any]:
    entry: dict[str, Any] = {"email": contact.email}
    if contact.name is not None:
        entry["name"] = contact.name
    if contact.excluded is not None:
        entry["excluded_from_campaigns"] = contact.excluded
    if contact.opted_in_at is not None:
        entry["opted_in_at"] = Plain(iso(contact.opted_in_at))
    if contact.properties:
        entry["properties"] = dict(contact.properties)
    if contact.lists:
        lists: dict[str, Any] = {}
        for name, membership in contact.lists.items():
            if membership.opted_in_at is None:
                lists[name] = membership.status
            else:
                lists[name] = {
                    "status": membership.status,
                    "opted_in_at": Plain(iso(membership.opted_in_at)),
                }
        entry["lists"] = lists
    return entry


def _csv_text(contacts: list[ContactDecl]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "excluded_from_campaigns", "lists", "properties"])
    for c in contacts:
        lists = ";".join(
            name if m.status == "subscribed" else f"{name}:{m.status}"
            for name, m in c.lists.items()
        )
        writer.writerow(
            [
                c.email,
                c.name or "",
                "" if c.excluded is None else str(c.excluded).lower(),
                lists,
                json.dumps(c.properties, ensure_ascii=False) if c.properties else "",
            ]
        )
    return out.getvalue()


class Plain(str):
    """A scalar written without quotes (timestamps, as a person writes them)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Plain):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a valid YAML double-quoted scalar


def emit(value: Any, indent: int = 0) -> str:
    """Block-style YAML; every string double-quoted, so any name or value survives."""
    lines: list[str] = []
    _emit_into(lines, value, indent)
    return "\n".join(lines) + "\n"


def _emit_into(lines: list[str], value: Any, indent: int) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, dict | list) and item:
                lines.append(head)
                _emit_into(lines, item, indent + 2)
            elif isinstance(item, dict):
                lines.append(f"{head} {{}}")
            elif isinstance(item, list):
                lines.append(f"{head} []")
            else:
                lines.append(f"{head} {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub: list[str] = []
                _emit_into(sub, item, indent + 2)
                sub[0] = f"{pad}- " + sub[0][indent + 2 :]
                lines.extend(sub)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


# ---- reading back what export wrote -------------------------------------------


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value


def read_documents(directory: Path) -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    docs = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        loaded = yaml.load(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            docs.append(loaded)
    return docs


def csv_rows(directory: Path, doc: dict[str, Any]) -> list[dict[str, str]]:
    """The rows of the CSV files a document takes contacts from (contacts_from)."""
    named = doc.get("contacts_from")
    names = [named] if isinstance(named, str) else list(named or [])
    rows: list[dict[str, str]] = []
    for name in names:
        text = (directory / str(name)).read_text(encoding="utf-8").removeprefix("\ufeff")
        rows += [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]
    return rows


def exported_emails(directory: Path) -> list[str]:
    """Every contact the directory's manifest declares, in its YAML files and CSVs."""
    return [
        str(entry["email"])
        for doc in read_documents(directory)
        for entry in [*(doc.get("contacts") or []), *csv_rows(directory, doc)]
    ]


def _csv_contact(row: dict[str, str]) -> ContactDecl:
    contact = ContactDecl(row["email"])
    if row.get("name"):
        contact.name = row["name"]
    if row.get("excluded_from_campaigns"):
        contact.excluded = row["excluded_from_campaigns"].lower() == "true"
    if row.get("properties"):
        contact.properties = dict(json.loads(row["properties"]))
    for item in (row.get("lists") or "").split(";"):
        name, _, status = item.strip().partition(":")
        if name.strip():
            contact.lists[name.strip()] = MembershipDecl(status.strip() or "subscribed")
    return contact


def adopt(directory: Path, provider: str) -> Manifest:
    """The manifest the directory now holds (after an export wrote into it)."""
    manifest = Manifest(provider)
    for doc in read_documents(directory):
        for name, given in (doc.get("properties") or {}).items():
            spec = given or {}
            manifest.properties[str(name)] = PropertyDecl(
                str(spec.get("type", "str")), bool(spec.get("replace", False))
            )
        for name, spec in (doc.get("lists") or {}).items():
            manifest.lists[str(name)] = str((spec or {}).get("members", "additive"))
        prune = doc.get("prune") or {}
        if prune:
            contacts = prune.get("contacts") or {}
            if isinstance(contacts, str):
                contacts = {"action": contacts}
            scope = (contacts.get("scope") or {}).get("lists")
            manifest.prune = Prune(
                contacts=str(contacts.get("action", "ignore")),
                scope_lists=None if scope is None else [str(s) for s in scope],
                members=str(prune.get("members", "remove")),
                lists=str(prune.get("lists", "ignore")),
                properties=str(prune.get("properties", "ignore")),
            )
        protect = doc.get("protect") or {}
        manifest.protect_contacts += [str(e) for e in protect.get("contacts") or []]
        manifest.protect_lists += [str(n) for n in protect.get("lists") or []]
        for entry in doc.get("contacts") or []:
            contact = ContactDecl(str(entry["email"]))
            if "name" in entry:
                contact.name = str(entry["name"])
            if "excluded_from_campaigns" in entry:
                contact.excluded = bool(entry["excluded_from_campaigns"])
            contact.opted_in_at = _moment(entry.get("opted_in_at"))
            contact.properties = {
                str(k): _value(v) for k, v in (entry.get("properties") or {}).items()
            }
            lists = entry.get("lists") or []
            if isinstance(lists, list):
                contact.lists = {str(n): MembershipDecl() for n in lists}
            else:
                for name, spec in lists.items():
                    if isinstance(spec, dict):
                        contact.lists[str(name)] = MembershipDecl(
                            str(spec.get("status", "subscribed")), _moment(spec.get("opted_in_at"))
                        )
                    else:
                        contact.lists[str(name)] = MembershipDecl(str(spec))
            manifest.contacts[contact.email.lower()] = contact
        for row in csv_rows(directory, doc):
            manifest.csv_contacts = True
            manifest.contacts[row["email"].lower()] = _csv_contact(row)
    return manifest
