"""Live state -> manifest YAML that plans to no changes against the same account."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconcile.errors import ManifestError, ManifestIssue, SourceLocation
from reconcile.model import (
    EXCLUDED,
    NAME,
    PropertyDef,
    PropertyType,
    State,
    SubscriptionStatus,
    ValueTypeError,
    email_key,
    strict_value,
)

SCHEMA_MODELINE = "yaml-language-server: $schema=https://reconcile.dev/schemas/manifest.schema.json"


def infer_definitions(state: State) -> dict[str, PropertyDef]:
    """Definitions for a provider that keeps none (MailJawn): the type its values share."""
    seen: dict[str, set[type]] = {}
    for contact in state.contacts.values():
        for name, value in contact.properties.items():
            if value is not None:
                seen.setdefault(name, set()).add(type(value))
    definitions = dict(state.properties)
    for name, kinds in seen.items():
        if name not in definitions:
            definitions[name] = PropertyDef(name, _common_type(kinds))
    return definitions


def _common_type(kinds: set[type]) -> PropertyType:
    if kinds == {bool}:
        return PropertyType.BOOL
    if kinds == {int}:
        return PropertyType.INT
    if kinds <= {int, float}:
        return PropertyType.FLOAT
    return PropertyType.STR


def state_to_document(state: State, provider: str) -> CommentedMap:
    state = State(infer_definitions(state), state.lists, state.contacts, state.memberships)
    document = CommentedMap()
    document["provider"] = provider
    document["properties"] = CommentedMap(
        (name, _property(state, name)) for name in sorted(state.properties)
    )
    document["lists"] = CommentedMap((name, CommentedMap()) for name in sorted(state.lists))
    memberships: dict[str, dict[str, str]] = {}
    for (list_name, email), membership in sorted(state.memberships.items()):
        memberships.setdefault(email, {})[list_name] = membership.status.value
    contacts = CommentedSeq()
    for key in sorted(state.contacts):
        contacts.append(_contact(state, key, memberships.get(key, {})))
    document["contacts"] = contacts
    return document


def _property(state: State, name: str) -> CommentedMap:
    definition = state.properties[name]
    entry = CommentedMap(type=definition.type.value)
    if definition.namespace.value != "static":
        entry["namespace"] = definition.namespace.value
    return entry


def _contact(state: State, key: str, lists: dict[str, str]) -> CommentedMap:
    contact = state.contacts[key]
    entry = CommentedMap(email=contact.email)
    if contact.fields.get(NAME):
        entry["name"] = contact.fields[NAME]
    if EXCLUDED in contact.fields:
        entry["excluded_from_campaigns"] = bool(contact.fields[EXCLUDED])
    values = {k: v for k, v in sorted(contact.properties.items()) if v is not None}
    if values:
        entry["properties"] = CommentedMap(values)
    if lists:
        subscribed = all(s == SubscriptionStatus.SUBSCRIBED.value for s in lists.values())
        entry["lists"] = (
            CommentedSeq(sorted(lists)) if subscribed else CommentedMap(sorted(lists.items()))
        )
    return entry


def dump_document(document: Any, *, modeline: bool = True) -> str:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    if modeline:
        buffer.write(f"# {SCHEMA_MODELINE}\n")
    yaml.dump(document, buffer)
    return buffer.getvalue()


def export_yaml(state: State, provider: str) -> str:
    return dump_document(state_to_document(state, provider))


def export_files(state: State, provider: str, contacts_per_file: int) -> dict[str, str]:
    """The export split for a directory: audience.yaml (provider, properties, lists) and
    contacts-0001.yaml, ... with at most `contacts_per_file` contacts each."""
    document = state_to_document(state, provider)
    contacts = document.pop("contacts")
    files = {"audience.yaml": dump_document(document)}
    for start in range(0, len(contacts), contacts_per_file):
        part = CommentedMap(contacts=CommentedSeq(contacts[start : start + contacts_per_file]))
        files[f"contacts-{start // contacts_per_file + 1:04d}.yaml"] = dump_document(part)
    return files


def export_into(path: Path, state: State, provider: str) -> str:
    """Re-export into a manifest that exists: entries are updated in place, so its comments,
    order and flow style stay; what is gone from the account is removed, what is new is
    appended in sorted order."""
    text = path.read_text(encoding="utf-8")
    existing = YAML(typ="rt").load(text)  # plain round-trip: timestamps stay as written
    if not isinstance(existing, CommentedMap):
        raise ManifestError(
            [ManifestIssue(SourceLocation(str(path), 1), "", "not a manifest (a mapping)")]
        )
    fresh = state_to_document(state, provider)
    if not isinstance(existing.get("provider"), CommentedMap):
        existing["provider"] = fresh["provider"]
    for section in ("properties", "lists"):
        existing[section] = _merged_map(existing.get(section), fresh[section])
    existing["contacts"] = _merged_contacts(existing.get("contacts"), fresh["contacts"])
    return dump_document(existing, modeline="$schema=" not in text.split("\n", 1)[0])


MANIFEST_ONLY = frozenset({"members", "replace", "resubscribe"})  # not visible in an account


def _merged_map(old: Any, new: CommentedMap, *, adding: bool = True) -> CommentedMap:
    """`old` updated to `new`, keeping settings only a manifest holds; with adding=False,
    a field `old` never mentioned stays unmentioned when its live value is the default."""
    if not isinstance(old, CommentedMap):
        return new
    for key in [k for k in old if k not in new and k not in MANIFEST_ONLY]:
        del old[key]
    for key, value in new.items():
        if key not in old:
            if adding or value not in (False, None):
                old[key] = value
        elif isinstance(old[key], CommentedMap) and isinstance(value, CommentedMap):
            old[key] = _merged_map(old[key], value)
        elif not _same(old[key], value):
            old[key] = value
    return old


def _same(old: Any, new: Any) -> bool:
    """Equal as the manifest means them: lists of names in any order, timestamps by value."""
    if isinstance(old, list) and isinstance(new, list):
        return sorted(map(str, old)) == sorted(map(str, new))
    if isinstance(old, date) and isinstance(new, str):
        try:
            return strict_value(PropertyType.DATETIME, old) == new
        except ValueTypeError:
            return False
    return bool(old == new)


def _merged_contacts(old: Any, new: CommentedSeq) -> CommentedSeq:
    if not isinstance(old, CommentedSeq):
        return new
    fresh = {email_key(entry["email"]): entry for entry in new}
    kept = CommentedSeq()
    seen: set[str] = set()
    for index, entry in enumerate(old):
        key = email_key(str(entry.get("email", ""))) if isinstance(entry, CommentedMap) else ""
        if key in fresh:
            kept.append(_merged_map(entry, fresh[key], adding=False))
            _keep_comment(old, index, kept)
            seen.add(key)
    kept.extend(entry for key, entry in fresh.items() if key not in seen)
    return kept


def _keep_comment(old: CommentedSeq, index: int, kept: CommentedSeq) -> None:
    comment = old.ca.items.get(index)
    if comment is not None:
        kept.ca.items[len(kept) - 1] = comment
