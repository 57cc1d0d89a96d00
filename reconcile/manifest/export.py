"""Live state -> manifest YAML that plans to no changes against the same account.

Export never writes what the loader refuses (what is skipped is named in a warning), keeps
what a manifest already says where it says it (comments, order, manifest-only settings,
contacts in a CSV), and in a directory rewrites or removes only the files it wrote itself.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter

from reconcile.diff import Finding, ResourceType
from reconcile.errors import ManifestError, ManifestIssue, SourceLocation
from reconcile.manifest.emails import email_problem
from reconcile.manifest.export_csv import ExportError, update_csv
from reconcile.manifest.yaml_source import read_yaml
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    PropertyDef,
    PropertyType,
    PropertyValue,
    State,
    SubscriptionStatus,
    ValueTypeError,
    email_key,
    strict_value,
    text_problem,
)

__all__ = ["ExportError", "ExportResult", "export_audience", "exportable"]

SCHEMA_MODELINE = "yaml-language-server: $schema=https://reconcile.dev/schemas/manifest.schema.json"
# The second line of every contacts file export writes into a directory: a re-export
# rewrites or removes files carrying it, and refuses to touch any other manifest file.
MARKER = "# written by reconcile export: the next export into this directory rewrites or removes it"
MAIN_FILE = "audience.yaml"
MANIFEST_SUFFIXES = (".yaml", ".yml")
MANIFEST_ONLY = frozenset({"members", "replace", "opted_in_at"})  # not visible in an account


# ---- what can be exported --------------------------------------------------------------


Refusals = Callable[[State], Iterable[Finding]]  # what a provider's validate refuses


def exportable(state: State, refused: Refusals | None = None) -> tuple[State, list[str]]:
    """`state` without what the loader (or, with `refused`, the provider's `validate`)
    would refuse, and a warning naming each thing left out: contacts whose address it
    refuses, names and values it refuses."""
    state, warnings = _without_refused(state, refused) if refused else (state, [])
    definitions = infer_definitions(state)
    contacts: dict[str, Contact] = {}
    for key, contact in sorted(state.contacts.items()):
        problem = email_problem(contact.email)
        if problem:
            warnings.append(
                f"contact {contact.email!r} not exported: the address {problem}; it is put "
                "under protect: so that no prune of this manifest touches them"
            )
            continue
        contacts[key] = _exportable_contact(contact, definitions, warnings)
    memberships = {k: m for k, m in state.memberships.items() if m.email in contacts}
    return State(definitions, dict(state.lists), contacts, memberships), warnings


def _without_refused(state: State, refused: Refusals) -> tuple[State, list[str]]:
    """What the provider's validate would refuse left out whole: a contact (then under
    protect:), a list (with its memberships) or a property (with its values)."""
    found = list(refused(state))
    if not found:
        return state, []
    out = {(finding.ref.type, finding.ref.key) for finding in found}
    warnings = [f"{finding.address} not exported: {finding.message}" for finding in found]
    lists = {n: v for n, v in state.lists.items() if (ResourceType.LIST, (n,)) not in out}
    properties = {
        n: v for n, v in state.properties.items() if (ResourceType.PROPERTY, (n,)) not in out
    }
    contacts = {
        key: contact.replaced(
            properties={n: v for n, v in contact.properties.items() if n in properties}
        )
        for key, contact in state.contacts.items()
        if (ResourceType.CONTACT, (key,)) not in out
    }
    memberships = {
        key: m
        for key, m in state.memberships.items()
        if m.email in contacts and m.list_name in lists
    }
    return State(properties, lists, contacts, memberships, state.provider_records), warnings


def _exportable_contact(
    contact: Contact, definitions: dict[str, PropertyDef], warnings: list[str]
) -> Contact:
    fields = dict(contact.fields)
    name = fields.get(NAME)
    problem = text_problem(name) if isinstance(name, str) else None
    if problem:
        warnings.append(f"contact {contact.email}: name not exported: it {problem}")
        del fields[NAME]
    values: dict[str, PropertyValue] = {}
    for prop, value in contact.properties.items():
        definition = definitions.get(prop)
        try:
            if definition is None:
                raise ValueTypeError("it has no definition")
            values[prop] = strict_value(definition.type, value)
        except ValueTypeError as error:
            shown = f"declared {definition.type}" if definition else "undeclared"
            warnings.append(
                f"contact {contact.email}: property {prop!r} not exported: {error} ({shown})"
            )
    return Contact(contact.email, fields, values)


def infer_definitions(state: State) -> dict[str, PropertyDef]:
    """Definitions of every property with values, where the account declares none (a
    provider without remote definitions): the type its values share."""
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


# ---- state -> YAML -----------------------------------------------------------------------


def provider_entry(provider: str, options: Mapping[str, Any]) -> str | CommentedMap:
    """What an export writes under `provider:`: the name, or a mapping with its options."""
    if not options:
        return provider
    return CommentedMap([("type", provider), *((k, v) for k, v in options.items())])


@dataclass(frozen=True)
class Declared:
    """What the manifest an export updates already says that decides how to read: the
    provider's options (re-exporting reads the same account) and the list names (a
    provider that matches names without case reads the live ones in this spelling)."""

    options: dict[str, Any] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()


def declared_in(output: Path | None, provider: str, into_directory: bool) -> Declared:
    """Nothing when there is no such manifest, it can't be read, or it is another
    provider's (whose options would point at another account)."""
    if output is None:
        return Declared()
    path = output / MAIN_FILE if into_directory else output
    try:
        existing = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return Declared()
    if not isinstance(existing, dict):
        return Declared()
    declared = existing.get("provider")
    if isinstance(declared, dict) and declared.get("type") == provider:
        options = {str(k): v for k, v in declared.items() if k != "type"}
    elif declared == provider:
        options = {}
    else:
        return Declared()
    lists = existing.get("lists")
    names = frozenset(str(name) for name in lists) if isinstance(lists, dict) else frozenset()
    return Declared(options, names)


def _provider_name(entry: Any) -> Any:
    return entry.get("type") if isinstance(entry, Mapping) else entry


def state_to_document(
    state: State, provider: str, options: Mapping[str, Any] | None = None
) -> CommentedMap:
    state = State(infer_definitions(state), state.lists, state.contacts, state.memberships)
    document = CommentedMap()
    document["provider"] = provider_entry(provider, options or {})
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


# Characters ruamel's emitter takes for line breaks in plain and single-quoted text (they
# would come back as spaces): such strings are written double-quoted, with escapes.
_BREAKS = re.compile("[\x85\u2028\u2029]")


class _Representer(RoundTripRepresenter):
    def represent_str(self, data: str) -> Any:
        if _BREAKS.search(data):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


_Representer.add_representer(str, _Representer.represent_str)


def dump_document(document: Any, *, modeline: bool = True, marker: bool = False) -> str:
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.width = 4096  # long values stay on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    if modeline:
        buffer.write(f"# {SCHEMA_MODELINE}\n")
    if marker:
        buffer.write(f"{MARKER}\n")
    yaml.dump(document, buffer)
    return buffer.getvalue()


# ---- where it goes -------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What one export writes (nothing is written until carry_out), and what it left out."""

    warnings: list[str]
    stdout: str = ""
    writes: dict[Path, str] = field(default_factory=dict)
    removes: list[Path] = field(default_factory=list)
    summary: str = ""

    def carry_out(self) -> None:
        try:
            for path, text in self.writes.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.partial")
                partial.write_text(text, encoding="utf-8", newline="")
                os.replace(partial, path)
            for path in self.removes:
                path.unlink(missing_ok=True)
        except OSError as error:
            raise ExportError(f"cannot write {error.filename}: {error.strerror}") from None


def export_audience(
    live: State,
    provider: str,
    output: Path | None,
    contacts_per_file: int | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    refused: Refusals | None = None,
) -> ExportResult:
    """The export of `live` to stdout (no output), a file (new or updated in place), or a
    directory (audience.yaml and contacts-NNNN.yaml files). `options`: the provider
    options it was read with, written with the provider's name."""
    state, warnings = exportable(live, refused)
    document = state_to_document(state, provider, options)
    skipped = sorted(key for key in live.contacts if key not in state.contacts)
    if skipped:
        # Undeclared, they would be in a prune's scope: protected, a prune leaves them be.
        document["protect"] = CommentedMap(contacts=CommentedSeq(skipped))
    if output is None:
        return ExportResult(warnings, stdout=dump_document(document))
    fresh = {email_key(entry["email"]): entry for entry in document.pop("contacts")}
    if contacts_per_file is not None:
        writes, removes = _into_directory(output, document, fresh, contacts_per_file)
        files = sum(1 for path in writes if path.name.startswith("contacts-"))
        summary = f"Wrote {output}/ ({MAIN_FILE} and {files} contacts file(s))"
        return ExportResult(warnings, writes=writes, removes=removes, summary=summary)
    if output.is_dir():
        raise ExportError(
            f"{output} is a directory: give a file (-o {output / MAIN_FILE}), or "
            "--contacts-per-file N to split the export into it"
        )
    if output.exists() and not output.is_file():
        raise ExportError(f"{output} is not a regular file: give a manifest file to write")
    if not output.exists():
        document["contacts"] = CommentedSeq(fresh.values())
        return ExportResult(
            warnings, writes={output: dump_document(document)}, summary=f"Wrote {output}"
        )
    writes = _update_manifest(output, document, fresh, append=True)
    return ExportResult(warnings, writes=writes, summary=_updated(output, writes))


def _updated(main: Path, writes: dict[Path, str]) -> str:
    also = [str(path) for path in writes if path != main and path.suffix == ".csv"]
    return f"Updated {main} (comments and order kept)" + (f" and {', '.join(also)}" if also else "")


def _into_directory(
    output: Path, document: CommentedMap, fresh: dict[str, CommentedMap], per_file: int
) -> tuple[dict[Path, str], list[Path]]:
    """audience.yaml (updated in place when it exists) and contacts-NNNN.yaml files; the
    files an earlier export wrote are rewritten or removed, their entries' edits kept."""
    if output.exists() and not output.is_dir():
        raise ExportError(f"{output} is a file: --contacts-per-file writes into a directory")
    own = _own_files(output)
    main = output / MAIN_FILE
    if main.is_file():
        writes = _update_manifest(main, document, fresh, append=False)
    else:
        writes = {main: dump_document(document)}
    previous = _previous_entries(own)
    entries = [
        _merged_map(previous[key], entry, adding=False) if key in previous else entry
        for key, entry in sorted(fresh.items())
    ]
    for number, start in enumerate(range(0, len(entries), per_file), 1):
        part = CommentedMap(contacts=CommentedSeq(entries[start : start + per_file]))
        writes[output / f"contacts-{number:04d}.yaml"] = dump_document(part, marker=True)
    return writes, [path for path in own if path not in writes]


def _own_files(directory: Path) -> list[Path]:
    """The manifest files export wrote into `directory`; any other one (audience.yaml
    aside) is refused, since the directory must come out as exactly the live account."""
    if not directory.is_dir():
        return []
    own: list[Path] = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in MANIFEST_SUFFIXES or path.name == MAIN_FILE or not path.is_file():
            continue
        if not _is_marked(path):
            raise ExportError(
                f"{path} was not written by reconcile export (it lacks the line "
                f"'{MARKER}'); export will not overwrite or remove it: move it out of "
                f"{directory} or merge what it holds into {MAIN_FILE}, then export again"
            )
        own.append(path)
    return own


def _is_marked(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            head = [file.readline().rstrip("\r\n") for _ in range(3)]
    except OSError:
        return False
    return MARKER in head


def _previous_entries(files: Iterable[Path]) -> dict[str, CommentedMap]:
    """The contact entries of the files export wrote before (read the fast way: plain data,
    so what an edit added to an entry is kept, its comments are not)."""
    entries: dict[str, CommentedMap] = {}
    for path in files:
        data = read_yaml(path).data
        contacts = data.get("contacts") if isinstance(data, dict) else None
        for entry in contacts if isinstance(contacts, list) else ():
            if isinstance(entry, dict) and isinstance(entry.get("email"), str):
                entries[email_key(entry["email"])] = _commented(entry)
    return entries


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        return CommentedMap((key, _commented(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(item) for item in value)
    return value


# ---- updating a manifest in place ----------------------------------------------------------


def _update_manifest(
    path: Path, document: CommentedMap, fresh: dict[str, CommentedMap], append: bool
) -> dict[Path, str]:
    """Entries are updated in place, so comments, order and flow style stay; what is gone
    from the account is removed. Contacts in the CSV files it takes contacts from are
    updated there. New contacts are appended when `append`; the contacts this file and its
    CSVs hold are taken out of `fresh`."""
    text = _read(path)
    existing = YAML(typ="rt").load(text)  # plain round-trip: timestamps stay as written
    if not isinstance(existing, CommentedMap):
        raise ManifestError(
            [ManifestIssue(SourceLocation(str(path), 1), "", "not a manifest (a mapping)")]
        )
    datetimes = {
        str(name)
        for name, spec in document["properties"].items()
        if isinstance(spec, Mapping) and spec.get("type") == PropertyType.DATETIME.value
    }
    writes = {
        csv_path: update_csv(csv_path, fresh, zone, datetimes)
        for csv_path, zone in _csv_sources(path, existing)
    }
    declared = existing.get("provider")
    # Options are kept only for the provider exported: another provider's would point the
    # file (and its prune policies) at the account it was not read from.
    exported = document["provider"]
    if not isinstance(declared, CommentedMap) or declared.get("type") != _provider_name(exported):
        existing["provider"] = exported
    elif isinstance(exported, CommentedMap):
        declared.update((key, value) for key, value in exported.items() if key != "type")
    for section in ("properties", "lists"):
        existing[section] = _merged_map(existing.get(section), document[section])
    if "protect" in document:
        existing["protect"] = _with_protected(existing.get("protect"), document["protect"])
    contacts = _merged_contacts(existing.get("contacts"), fresh, append)
    if contacts or "contacts" in existing:
        existing["contacts"] = contacts
    first_line = text.split("\n", 1)[0]
    return {path: dump_document(existing, modeline="$schema=" not in first_line), **writes}


def _with_protected(existing: Any, wanted: CommentedMap) -> Any:
    """The manifest's protect: with the contacts export had to leave out added to it."""
    if not isinstance(existing, CommentedMap):
        return wanted
    contacts = existing.get("contacts")
    if not isinstance(contacts, list):
        existing["contacts"] = wanted["contacts"]
        return existing
    known = {email_key(str(email)) for email in contacts}
    contacts.extend(email for email in wanted["contacts"] if email_key(email) not in known)
    return existing


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: cannot read it to update it ({error})") from None


def _csv_sources(path: Path, document: CommentedMap) -> list[tuple[Path, ZoneInfo | None]]:
    """The CSV files `contacts_from` names, each with its `timezone:`."""
    named = document.get("contacts_from")
    items = named if isinstance(named, list) else [] if named is None else [named]
    sources: list[tuple[Path, ZoneInfo | None]] = []
    for item in items:
        spec = item if isinstance(item, Mapping) else {"path": item}
        source = path.parent / str(spec.get("path"))
        if not source.is_file():
            raise ExportError(f"{path}: contacts_from names {source}, which is not a file")
        zone = spec.get("timezone")
        try:
            sources.append((source, None if zone is None else ZoneInfo(str(zone))))
        except (ZoneInfoNotFoundError, ValueError):
            message = f"{path}: contacts_from: unknown time zone {str(zone)[:60]!r}"
            raise ExportError(f"{message} (reconcile validate)") from None
    return sources


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
        elif key == "email" and email_key(str(old[key])) == email_key(str(value)):
            continue  # the address as the manifest spells it
        elif key == "lists" and isinstance(old[key], CommentedMap):
            old[key] = _merged_lists(old[key], value)
        elif isinstance(old[key], CommentedMap) and isinstance(value, CommentedMap):
            old[key] = _merged_map(old[key], value)
        elif not _same(old[key], value) or _kind(value) is float:
            old[key] = value  # floats too: ruamel re-renders a float it read inexactly
    return old


def _merged_lists(old: CommentedMap, new: Any) -> CommentedMap:
    """A contact's `lists:` mapping updated to the live statuses; a membership written as
    {status: ..., opted_in_at: ...} keeps its opt-in record."""
    statuses = (
        dict(new.items())
        if isinstance(new, dict)
        else dict.fromkeys(new, SubscriptionStatus.SUBSCRIBED.value)
    )
    for name in [n for n in old if n not in statuses]:
        del old[name]
    for name, status in statuses.items():
        held = old.get(name)
        if isinstance(held, CommentedMap):
            held["status"] = status
        elif held != status:
            old[name] = status
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
    return _kind(old) is _kind(new) and bool(old == new)


def _kind(value: Any) -> type:
    """bool, int, float or str for a value of a subclass (ruamel's ScalarFloat...)."""
    return next((kind for kind in (bool, int, float, str) if isinstance(value, kind)), object)


def _merged_contacts(old: Any, fresh: dict[str, CommentedMap], append: bool) -> CommentedSeq:
    """Entries of `old` still live, updated where they are (their keys taken out of
    `fresh`), then, when `append`, every contact left in `fresh`, sorted."""
    kept = CommentedSeq()
    for index, entry in enumerate(old if isinstance(old, CommentedSeq) else ()):
        key = email_key(str(entry.get("email", ""))) if isinstance(entry, CommentedMap) else ""
        if key in fresh:
            kept.append(_merged_map(entry, fresh.pop(key), adding=False))
            _keep_comment(old, index, kept)
    if append:
        kept.extend(fresh.pop(key) for key in sorted(fresh))
    return kept


def _keep_comment(old: CommentedSeq, index: int, kept: CommentedSeq) -> None:
    comment = old.ca.items.get(index)
    if comment is not None:
        kept.ca.items[len(kept) - 1] = comment
