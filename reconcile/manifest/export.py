"""Live state -> manifest YAML that plans to no changes against the same account."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconcile.model import EXCLUDED, NAME, PropertyDef, PropertyType, State, SubscriptionStatus

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


def dump_document(document: Any) -> str:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    buffer.write(f"# {SCHEMA_MODELINE}\n")
    yaml.dump(document, buffer)
    return buffer.getvalue()


def export_yaml(state: State, provider: str) -> str:
    return dump_document(state_to_document(state, provider))
