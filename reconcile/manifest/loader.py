"""Manifest files -> desired State: validate each file, merge them, check references."""

from __future__ import annotations

import bisect
import functools
import math
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from reconcile import collector
from reconcile.diff import Ref, ResourceType, list_ref, property_ref
from reconcile.errors import (
    WHOLE_FILE,
    ConfigError,
    ManifestError,
    ManifestIssue,
    SourceLocation,
)
from reconcile.manifest.csv_source import CsvRow, read_contacts_csv
from reconcile.manifest.emails import email_problem
from reconcile.manifest.entries import ContactEntry, plain_contact
from reconcile.manifest.paths import data_path, field_name, path_of, validation_messages
from reconcile.manifest.schema import (
    ContactSpec,
    CsvSource,
    CsvSourceSpec,
    ManifestDocument,
    MembershipSpec,
    ProtectSpec,
    PruneSpec,
    SafetySpec,
    document_model,
)
from reconcile.manifest.suggest import closest, did_you_mean
from reconcile.manifest.yaml_source import YamlDocument, read_yaml
from reconcile.model import (
    EXCLUDED,
    INT_RANGE,
    NAME,
    Contact,
    ContactList,
    PropertyDef,
    PropertyType,
    PropertyValue,
    ReadScope,
    State,
    SubscriptionStatus,
    ValueTypeError,
    email_key,
    strict_value,
)
from reconcile.policy import ContactScope, Policy, Thresholds
from reconcile.providers import registry
from reconcile.providers.registry import ProviderOptions

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass
class Manifest:
    provider: ProviderOptions
    desired: State
    files: list[Path]
    sources: dict[str, SourceLocation] = field(default_factory=dict)
    # (a lambda: ContactSources is defined below)
    contact_sources: Mapping[str, ContactSource] = field(default_factory=lambda: ContactSources())  # noqa: PLW0108
    policy: Policy = field(default_factory=Policy)
    # the file that declared each top-level key (prune, ...), to locate the fields under it
    declared_in: dict[str, YamlDocument] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for stderr: what PATHs left unread
    address_changes: list[str] = field(default_factory=list)  # contacts with renamed_from:

    def locate(self, name: str) -> SourceLocation:
        """The line of a field under a top-level key (`prune.members`) in the file that
        declared that key; the key's own line when the field is not written there."""
        parts = name.split(".")
        document = self.declared_in.get(parts[0])
        if document is None:
            return self.source_of(parts[0])
        return document.location(parts)

    def read_scope(self) -> ReadScope:
        manages_data = any(c.properties for c in self.desired.contacts.values())
        managed = frozenset(self.desired.lists)
        # The members of a list renamed in place are read under its old name.
        earlier = {old for spec in self.desired.lists.values() for old in spec.renamed_from}
        return ReadScope(
            managed | earlier | self.policy.scope_lists(managed),
            manages_data or self.policy.needs_contact_data,
        )

    def issue(self, ref: Ref, message: str, at: tuple[str, ...] = ()) -> ManifestIssue:
        """An issue about a planned resource (and `at`, a field of a contact's entry such
        as ("properties", "PLAN")), located and named as the manifest writes it."""
        return ManifestIssue(self.source_of(ref, at), self.field_of(ref, at), message)

    def field_of(self, ref: Ref, at: tuple[str, ...] = ()) -> str:
        """membership (news, a@x.com) -> `contacts[3].lists.news`, list news -> `lists.news`."""
        if ref.type is ResourceType.PROPERTY:
            return f"properties.{ref.key[0]}"
        if ref.type is ResourceType.LIST:
            return f"lists.{ref.key[0]}"
        contact = self.contact_sources.get(ref.key[-1])
        if contact is None:
            return ref.address
        if ref.type is ResourceType.MEMBERSHIP:
            tail = f"lists.{ref.key[0]}"
        else:
            tail = ".".join(at) or "email"
        return f"{contact.label}.{tail}" if contact.label else tail

    def source_of(self, ref: Ref | str, at: tuple[str, ...] = ()) -> SourceLocation:
        """Where the manifest declares `ref` (contacts and memberships are located on demand
        from their entry, so a big audience keeps no location per record); a str names a
        top-level key such as `prune`."""
        if isinstance(ref, str):
            return self.sources.get(ref, SourceLocation(str(self.files[0]), 1))
        if ref.type in (ResourceType.CONTACT, ResourceType.MEMBERSHIP):
            contact = self.contact_sources.get(ref.key[-1])
            if contact is not None:
                loc = ("lists", ref.key[0]) if ref.type is ResourceType.MEMBERSHIP else at
                return contact.location(loc)
        return self.sources.get(ref.address, SourceLocation(str(self.files[0]), 1))


@dataclass(frozen=True)
class FoundFiles:
    files: list[Path]
    notes: list[str]  # what the PATHs hold that is not read


def manifest_files(paths: Iterable[Path]) -> FoundFiles:
    """The files PATHs name, each once however it is named (`a.yaml ./a.yaml`, `dir
    dir/a.yaml`, a symlink). A directory gives the *.yaml and *.yml files directly in it,
    without hidden files or editor leftovers; a note names its subdirectories that hold
    manifests, which are not read."""
    files: dict[Path, Path] = {}  # resolved -> as named
    notes: list[str] = []
    for path in paths:
        if path.is_dir():
            found, subdirectories = _directory_files(path)
            if not found:
                message = "directory holds no *.yaml or *.yml file"
                raise _issue(path, WHOLE_FILE, "", message + _unread(subdirectories))
            if subdirectories:
                notes.append(_subdirectories_note(path, subdirectories))
        elif path.exists():
            found = [path]
        else:
            raise _issue(path, WHOLE_FILE, "", "no such file or directory")
        for file in found:
            files.setdefault(file.resolve(), file)
    return FoundFiles(list(files.values()), notes)


def _directory_files(directory: Path) -> tuple[list[Path], list[str]]:
    """(manifest files, `name/` of subdirectories holding some) directly in `directory`."""
    try:
        entries = _entries(directory)
    except OSError as error:
        problem = f"cannot read directory: {error.strerror}"
        raise _issue(directory, WHOLE_FILE, "", problem) from None
    files = [entry for entry in entries if _is_manifest(entry)]
    subdirectories = [f"{entry.name}/" for entry in entries if _holds_manifests(entry)]
    return files, subdirectories


def _entries(directory: Path) -> list[Path]:
    """What a directory holds, by name, without hidden entries and editor leftovers
    (`.#a.yaml` lock, `#a.yaml#` autosave, `a.yaml~` backup, `.a.yaml.swp` swap)."""
    names = sorted(directory.iterdir())
    return [e for e in names if not e.name.startswith((".", "#")) and not e.name.endswith("~")]


def _holds_manifests(path: Path) -> bool:
    try:
        return path.is_dir() and any(_is_manifest(entry) for entry in _entries(path))
    except OSError:
        return False


def _is_manifest(path: Path) -> bool:
    return path.suffix in MANIFEST_SUFFIXES and path.is_file()


def _subdirectories_note(directory: Path, subdirectories: list[str]) -> str:
    what = "subdirectory" if len(subdirectories) == 1 else "subdirectories"
    read = f"only files directly in {directory}/ are read"
    return f"ignored {what} {', '.join(subdirectories)} ({read})"


def _unread(subdirectories: list[str]) -> str:
    return f" (subdirectories are not read: {', '.join(subdirectories)})" if subdirectories else ""


def load_manifest(paths: Sequence[Path]) -> Manifest:
    """Every problem of the manifest in one pass: each file's schema errors, then what the
    valid rest of every file declares and references (undeclared lists and properties,
    duplicates, CSV rows), without the errors that only follow from an earlier one (a list
    whose definition is invalid is not also reported as undeclared where it is used)."""
    with collector.paused():
        loaded = _load(paths)
    collector.settled(len(loaded.desired.contacts) + len(loaded.desired.memberships))
    return loaded


def _load(paths: Sequence[Path]) -> Manifest:
    found = manifest_files(paths)
    files = found.files
    documents: list[YamlDocument] = []
    issues: list[ManifestIssue] = []
    for path in files:
        try:
            documents.append(read_yaml(path))
        except ManifestError as error:
            issues.extend(error.issues)
    if issues:
        # A file that cannot be read may declare what the others use: checking references
        # without it would report names that are declared.
        raise ManifestError(issues)
    model = document_model(tuple(registry.option_models()))
    builder = _Builder(files)
    for document in documents:
        checked = _checked(document, model, builder.late_schema_issues)
        issues.extend(checked.issues)
        builder.add(document, checked)
    loaded = builder.finish(issues)
    loaded.notes.extend(found.notes)
    return loaded


@dataclass
class Broken:
    """What a schema error took out of the manifest: its uses are not reported again."""

    properties: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    all_properties: bool = False
    all_lists: bool = False
    provider: bool = False

    def note(self, path: Sequence[str | int], data: Any) -> None:
        """`path` (of a top-level section) was dropped from document `data`."""
        if not path:
            return
        key = path[0]
        if key == "provider":
            self.provider = True
        elif key in ("properties", "lists"):
            if len(path) == 1:
                self._all(str(key))
            else:
                (self.properties if key == "properties" else self.lists).add(str(path[1]))
        elif len(path) == 1 and isinstance(key, str):
            meant = closest(key, ("properties", "lists", "provider"))
            if meant == "provider":
                self.provider = True
            elif meant is not None:
                # `propertes:` declares what it holds, misspelled
                value = data.get(key) if isinstance(data, dict) else None
                if isinstance(value, dict):
                    names = {str(name) for name in value}
                    (self.properties if meant == "properties" else self.lists).update(names)
                else:
                    self._all(meant)

    def _all(self, section: str) -> None:
        if section == "properties":
            self.all_properties = True
        else:
            self.all_lists = True

    def has_property(self, name: str) -> bool:
        return self.all_properties or name in self.properties

    def has_list(self, name: str) -> bool:
        return self.all_lists or name in self.lists


@dataclass
class Checked:
    """One file validated: what of it is valid, its schema issues, what they took out."""

    manifest: ManifestDocument
    contacts: Iterable[tuple[int, ContactEntry]]  # (index in contacts:, entry), maybe streamed
    issues: list[ManifestIssue] = field(default_factory=list)
    broken: Broken = field(default_factory=Broken)


SALVAGE_ROUNDS = 20
_Model = TypeVar("_Model", bound=BaseModel)


def _checked(
    document: YamlDocument, model: type[ManifestDocument], late_issues: list[ManifestIssue]
) -> Checked:
    """A file validated. A big one (read by the fast path) has its contact entries validated
    one at a time as they are added (`_streamed`), so its entries are never all held twice,
    as YAML values and as specs; `late_issues` receives the schema issues found then."""
    data = document.data
    raw_contacts = data.get("contacts") if isinstance(data, dict) else None
    if document.fast_lines is not None and isinstance(raw_contacts, list) and raw_contacts:
        try:
            manifest = model.model_validate({k: v for k, v in data.items() if k != "contacts"})
        except ValidationError:
            pass  # the whole file's issues, as below
        else:
            return Checked(manifest, _streamed(document, model, raw_contacts, late_issues))
    try:
        manifest = model.model_validate(data)
    except ValidationError as error:
        return _salvaged(document, model, error)
    return Checked(manifest, list(enumerate(manifest.contacts)))


def _streamed(
    document: YamlDocument,
    model: type[ManifestDocument],
    raw_contacts: list[Any],
    late_issues: list[ManifestIssue],
) -> Iterator[tuple[int, ContactEntry]]:
    """Each entry of `contacts:` validated, then let go of. An entry the schema refuses
    gives what of it is valid, as `_salvaged` does; its issues are those of the whole file
    validated at once (read again: the entries are gone by then), so they read exactly as
    for a file validated in one piece. An entry of the common plain shape is checked by
    hand (`plain_contact`), the rest by the schema."""
    refused = False
    for index, raw in enumerate(raw_contacts):
        raw_contacts[index] = None
        spec: ContactEntry | None = plain_contact(raw)
        if spec is None:
            try:
                spec = ContactSpec.model_validate(raw)
            except ValidationError:
                refused = True
                spec = _valid_part(ContactSpec, raw, _ignore)
        if spec is not None:
            yield index, spec
    if refused:
        again = read_yaml(document.path)
        try:
            model.model_validate(again.data)
        except ValidationError as error:
            late_issues.extend(_validation_issues(again, error, model))


def _salvaged(
    document: YamlDocument, model: type[ManifestDocument], error: ValidationError
) -> Checked:
    """The schema issues of a file, and the file without the parts they are about, so
    that the rest is still checked (references, duplicates, values)."""
    data = document.data
    issues = _validation_issues(document, error, model)
    broken = Broken()
    rest = {key: value for key, value in data.items() if key != "contacts"}
    manifest = _valid_part(model, rest, broken.note) or model()
    contacts: list[tuple[int, ContactSpec]] = []
    raw_contacts = data.get("contacts")
    if isinstance(raw_contacts, list):
        bad = {
            path[1]
            for path in (
                data_path(data, item["loc"], item["type"] == "missing")
                for item in error.errors(include_url=False)
            )
            if len(path) > 1 and path[0] == "contacts" and isinstance(path[1], int)
        }
        for index, raw in enumerate(raw_contacts):
            if index in bad:
                spec = _valid_part(ContactSpec, raw, _ignore)
            else:
                spec = _valid_part(ContactSpec, raw, _ignore, rounds=1)
            if spec is not None:
                contacts.append((index, spec))
    return Checked(manifest, contacts, issues, broken)


def _valid_part(
    model: type[_Model],
    data: Any,
    dropped: Callable[[Sequence[str | int], Any], None],
    rounds: int = SALVAGE_ROUNDS,
) -> _Model | None:
    """`data` validated once what the schema refuses is dropped from it (the key of each
    error, the mapping that misses a required key, a list with a bad item), or None
    when nothing valid is left."""
    current = data
    for _ in range(rounds):
        try:
            return model.model_validate(current)
        except ValidationError as error:
            drops = {
                _drop_path(current, item["loc"], item["type"] == "missing")
                for item in error.errors(include_url=False)
            }
        if () in drops or not isinstance(current, dict):
            return None
        for path in sorted(drops, key=len):
            dropped(path, current)
            current = _without(current, path)
    return None


def _ignore(_path: Sequence[str | int], _data: Any) -> None:
    """Nothing a contact's entry drops is used elsewhere."""


def _drop_path(data: Any, loc: Sequence[str | int], missing: bool) -> tuple[str | int, ...]:
    path = data_path(data, loc, missing)
    if missing and path:
        path = path[:-1]  # the mapping that lacks a required key
    if path and path[0] == "contacts_from":
        return ("contacts_from",)  # no CSV is read half-configured (without its timezone)
    for position, part in enumerate(path):
        if isinstance(part, int):
            return tuple(path[:position])  # the key holding a list with a bad item
    return tuple(path)


def _without(node: Any, path: Sequence[str | int]) -> Any:
    """`node` without the entry at `path` (copied along the path, the rest shared)."""
    if not path or not isinstance(node, dict) or path[0] not in node:
        return node
    key = path[0]
    if len(path) == 1:
        return {k: v for k, v in node.items() if k != key}
    return {k: (_without(v, path[1:]) if k == key else v) for k, v in node.items()}


class _Builder:
    """Merges validated documents and checks what spans them: duplicates and references."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.state = State()
        self.sources: dict[str, SourceLocation] = {}
        self.provider: ProviderOptions | None = None
        self.prune: PruneSpec | None = None
        self.protect: ProtectSpec | None = None
        self.safety: SafetySpec | None = None
        self.issues: list[ManifestIssue] = []
        self.documents: list[YamlDocument] = []
        self.contact_sources = ContactSources()
        self.declared_in: dict[str, YamlDocument] = {}
        self.pending_contacts: list[Iterator[tuple[ContactSource, ContactEntry]]] = []
        self.broken = Broken()
        self.address_changes: list[str] = []
        self.late_schema_issues: list[ManifestIssue] = []  # of entries validated as added

    def add(self, document: YamlDocument, checked: Checked) -> None:
        manifest = checked.manifest
        broken = checked.broken
        self.broken.properties |= broken.properties
        self.broken.lists |= broken.lists
        self.broken.all_properties |= broken.all_properties
        self.broken.all_lists |= broken.all_lists
        self.broken.provider |= broken.provider
        document = document.for_locating()
        self.documents.append(document)
        if manifest.provider is not None:
            where = document.location(("provider",))
            if self._claim("provider", where, "provider"):
                try:
                    self.provider = _provider_options(manifest.provider, where)
                except ManifestError as error:
                    self.issues.extend(error.issues)
                    self.broken.provider = True
        for key in ("prune", "protect", "safety"):
            if getattr(manifest, key) is not None and self._claim(
                key, document.location((key,)), key
            ):
                setattr(self, key, getattr(manifest, key))
                self.declared_in[key] = document
        for name, spec in manifest.properties.items():
            where = document.location(("properties", name))
            if self._claim(property_ref(name).address, where, f"properties.{name}"):
                renamed = self._renamed_from(document, "properties", name, spec.renamed_from)
                self.state.properties[name] = PropertyDef(
                    name, spec.type, spec.namespace, spec.replace, renamed
                )
        for name, list_spec in manifest.lists.items():
            where = document.location(("lists", name))
            if self._claim(list_ref(name).address, where, f"lists.{name}"):
                renamed = self._renamed_from(document, "lists", name, list_spec.renamed_from)
                self.state.lists[name] = ContactList(name, list_spec.members, renamed)
        self.pending_contacts.append(
            (YamlContact(document, index), contact) for index, contact in checked.contacts
        )
        for loc, source in _csv_sources(manifest.contacts_from):
            csv_path = document.path.parent / source.path
            if not csv_path.is_file():
                problem = "is not a file" if csv_path.exists() else "does not exist"
                message = f"{csv_path} {problem} (a CSV file, relative to this manifest)"
                self.issues.append(ManifestIssue(document.location(loc), field_name(loc), message))
                continue
            zone = None if source.timezone is None else ZoneInfo(source.timezone)
            self.pending_contacts.append(read_contacts_csv(csv_path, self.issues, zone))

    def _renamed_from(
        self, document: YamlDocument, kind: str, name: str, names: list[str]
    ) -> tuple[str, ...]:
        """Earlier names of a list or property; where they are written is kept (as the
        source of the field `lists.NAME.renamed_from`) for what refuses them."""
        if names:
            where = document.location((kind, name, "renamed_from"))
            self.sources[f"{kind}.{name}.renamed_from"] = where
        return tuple(names)

    def _check_renames(self) -> None:
        """An earlier name is not declared itself, nor claimed by two entries."""
        for kind, declared in (("lists", self.state.lists), ("properties", self.state.properties)):
            claimed: dict[str, str] = {}
            for name, spec in declared.items():
                for old in spec.renamed_from:
                    field_path = f"{kind}.{name}.renamed_from"
                    where = self.sources[field_path]
                    if old in declared:
                        problem = (
                            f"{old!r} is declared under {kind}: too; a rename can't keep the "
                            "old one (drop it from renamed_from, or its own entry)"
                        )
                    elif old in claimed and claimed[old] != name:
                        problem = f"{old!r} is also renamed to {claimed[old]!r}"
                    else:
                        claimed[old] = name
                        continue
                    self.issues.append(ManifestIssue(where, field_path, problem))

    def finish(self, schema_issues: Sequence[ManifestIssue] = ()) -> Manifest:
        # Contacts come last, once every file's properties and lists are known.
        for contacts in self.pending_contacts:
            for source, spec in contacts:
                self._add_contact(source, spec)
        if self.provider is None and not self.broken.provider:
            self.issues.append(
                ManifestIssue(
                    SourceLocation(str(self.files[0]), 1),
                    "provider",
                    "no file declares the provider (one of: "
                    f"{', '.join(registry.names()) or 'none installed'})",
                )
            )
        policy = self._policy()
        self._check_renames()
        schema_issues = [*schema_issues, *self.late_schema_issues]
        if schema_issues or self.issues:
            raise ManifestError(self._in_order([*schema_issues, *self.issues]))
        assert self.provider is not None
        return Manifest(
            self.provider,
            self.state,
            self.files,
            self.sources,
            self.contact_sources,
            policy,
            self.declared_in,
            address_changes=self.address_changes,
        )

    def _in_order(self, issues: list[ManifestIssue]) -> list[ManifestIssue]:
        """By file (in the order read), then line; as found within a line."""
        order = {str(path): position for position, path in enumerate(self.files)}
        return sorted(
            issues, key=lambda i: (order.get(i.location.file, len(order)), i.location.line)
        )

    def _policy(self) -> Policy:
        prune = self.prune or PruneSpec()
        protect = self.protect or ProtectSpec()
        safety = self.safety or SafetySpec()
        scope = prune.contacts.scope
        marker = None
        if scope.marker is not None:
            loc = ("prune", "contacts", "scope", "marker")
            definition = self.state.properties.get(scope.marker.property)
            try:
                if definition is None:
                    name = scope.marker.property
                    if self.broken.has_property(name):
                        raise _Reported
                    hint = did_you_mean(name, self.state.properties)
                    message = f"property {name!r} is not declared under properties:{hint}"
                    raise ValueTypeError(message)
                marker = (definition.name, strict_value(definition.type, scope.marker.value))
            except ValueTypeError as error:
                where = self._where("prune", loc)
                self.issues.append(ManifestIssue(where, field_name(loc), str(error)))
            except _Reported:
                pass
        return Policy(
            contacts=prune.contacts.action,
            contact_scope=ContactScope(
                None if scope.lists is None else frozenset(scope.lists), marker
            ),
            exact_members=prune.members,
            lists=prune.lists,
            properties=prune.properties,
            protected_contacts=frozenset(email_key(e) for e in protect.contacts),
            protected_lists=frozenset(protect.lists),
            thresholds=Thresholds(
                safety.max_delete_share, safety.max_update_share, safety.min_records
            ),
        )

    def _where(self, key: str, loc: Sequence[str | int]) -> SourceLocation:
        """The line of `loc` in the file that declared top-level `key`."""
        declared = self.sources.get(key)
        for document in self.documents:
            if declared is not None and str(document.path) == declared.file:
                return document.location(loc)
        return declared or SourceLocation(str(self.files[0]), 1)

    def _claim(self, address: str, where: SourceLocation, field_name: str) -> bool:
        earlier = self.sources.get(address)
        if earlier is not None:
            self.issues.append(ManifestIssue(where, field_name, f"already defined at {earlier}"))
            return False
        self.sources[address] = where
        return True

    def _add_contact(self, source: ContactSource, spec: ContactEntry) -> None:
        problem = email_problem(spec.email)
        if problem:
            shown = spec.email if len(spec.email) <= 80 else f"{spec.email[:60]}..."
            self._error(source, ("email",), f"{shown!r} {problem}")
            return
        key = email_key(spec.email)
        if key in self.state.contacts:  # every contact of contact_sources, and only those
            earlier = self.contact_sources[key]
            message = f"already defined at {earlier.location(())}"
            self._error(source, (), message, "email")
            return
        self.contact_sources.add(key, source)
        if spec.renamed_from is not None:
            self.address_changes.append(key)  # refused, naming what the provider offers
        properties = self._contact_properties(source, spec)
        fields: dict[str, Any] = {}
        if spec.name is not None:
            fields[NAME] = spec.name
        if spec.excluded_from_campaigns is not None:
            fields[EXCLUDED] = spec.excluded_from_campaigns
        opted_in = spec.opted_in_at
        if opted_in is not None:
            opted_in = self._opt_in(source, ("opted_in_at",), opted_in)
        # Keys and names below reuse one string object each (the contact's key, the
        # declared list's name): at 100k contacts, per-row copies cost tens of MB.
        self.state.contacts[key] = Contact(spec.email, fields, properties, opted_in)
        lists = self.state.lists
        for list_name, membership in _memberships(spec):
            declared = lists.get(list_name)
            if declared is None:
                if not self.broken.has_list(list_name):
                    hint = did_you_mean(list_name, lists)
                    message = f"list {list_name!r} is not declared under lists:{hint}"
                    self._error(source, ("lists", list_name), message, "lists")
                continue
            member_opted_in = membership.opted_in_at
            if member_opted_in is not None:
                loc = ("lists", list_name, "opted_in_at")
                member_opted_in = self._opt_in(source, loc, member_opted_in)
            self.state.memberships.put(declared.name, key, membership.status, member_opted_in)

    def _opt_in(self, source: ContactSource, loc: Sequence[str | int], raw: Any) -> str | None:
        """An opt-in time: a real moment, not in the future (that would be an opt-in used
        for every opt-out until then), normalised to UTC."""
        if raw is None:
            return None
        try:
            moment = strict_value(PropertyType.DATETIME, raw)
        except ValueTypeError as error:
            self._error(source, loc, f"{error} (the time consent was given)")
            return None
        assert isinstance(moment, str)
        # Not even a little in the future: an opt-out after the plan must always be newer.
        if moment > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"):
            self._error(
                source,
                loc,
                f"{moment} is in the future; an opt-in records when consent was given",
            )
            return None
        return moment

    def _contact_properties(
        self, source: ContactSource, spec: ContactEntry
    ) -> dict[str, PropertyValue]:
        values: dict[str, PropertyValue] = {}
        declared = self.state.properties
        zoned = source.zoned if isinstance(source, CsvRow) else None
        for name, raw in spec.properties.items():
            definition = declared.get(name)
            if definition is None:
                if not self.broken.has_property(name):
                    hint = did_you_mean(name, declared)
                    message = f"property {name!r} is not declared under properties:{hint}"
                    self._error(source, ("properties", name), message)
                continue
            kind = definition.type
            if kind is STR and type(raw) is str and len(raw) <= 64 and raw.isprintable():
                # Most values: short text, checked as strict_value would, shared below.
                values[definition.name] = sys.intern(raw)
                continue
            plain = type(raw)
            if (
                (plain is bool and kind is BOOL)
                or (plain is int and kind is INT and INT_RANGE[0] <= raw <= INT_RANGE[1])
                or (plain is float and kind is FLOAT and math.isfinite(raw))
            ):
                values[definition.name] = raw  # a number or boolean as strict_value takes it
                continue
            written = raw
            if zoned is not None and kind is PropertyType.DATETIME:
                try:
                    written = zoned(raw)
                except ValueTypeError as error:
                    self._error(source, ("properties", name), str(error))
                    continue
            try:
                value = strict_value(kind, written)
            except ValueTypeError as error:
                self._error(source, ("properties", name), f"{error} (declared {kind})")
                continue
            # Repeated short values (a department, a plan) share one string object.
            if type(value) is str and len(value) <= 64:
                value = sys.intern(value)
            values[definition.name] = value
        return values

    def _error(
        self,
        source: ContactSource,
        loc: Sequence[str | int],
        message: str,
        field_name: str | None = None,
    ) -> None:
        named = field_name if field_name is not None else ".".join(str(p) for p in loc)
        self.issues.append(ManifestIssue(source.location(loc), _field(source, named), message))


STR, BOOL, INT, FLOAT = PropertyType.STR, PropertyType.BOOL, PropertyType.INT, PropertyType.FLOAT


def _source_maker(source: ContactSource) -> Callable[[int], ContactSource]:
    """What makes the source of another contact of `source`'s run from its int."""
    if isinstance(source, CsvRow):
        return functools.partial(CsvRow, source.path, zone=source.zone)
    if isinstance(source, YamlContact):
        return functools.partial(YamlContact, source.document)
    return functools.partial(_same, source)


class ContactSources(Mapping[str, "ContactSource"]):
    """Where each contact entry is, by email key, kept compactly: per contact its key and one
    int (its line in a CSV file, its index in a YAML file's contacts:), and per run of
    contacts from one file what that int is in. A source object is made when asked for
    (errors only): at a million contacts, one object per contact would cost 130 MB."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._where = array("q")
        self._starts: list[int] = []  # the first position of each run
        self._runs: list[Callable[[int], ContactSource]] = []
        self._run_of: Any = None  # what the last run is of: (kind, file, ...)
        self._positions: dict[str, int] | None = None  # made on the first lookup

    def add(self, key: str, source: ContactSource) -> None:
        run_of: Any
        if isinstance(source, CsvRow):
            run_of, where = ("csv", source.path, source.zone), source.line
        elif isinstance(source, YamlContact):
            run_of, where = ("yaml", id(source.document)), source.index
        else:  # any other kind: one run of its own
            run_of, where = ("object", id(source)), 0
        if run_of != self._run_of or not self._runs:
            self._run_of = run_of
            self._starts.append(len(self._keys))
            self._runs.append(_source_maker(source))
        if self._positions is not None:
            self._positions[key] = len(self._keys)
        self._keys.append(key)
        self._where.append(where)

    def _position(self, key: str) -> int | None:
        if self._positions is None:
            self._positions = {k: position for position, k in enumerate(self._keys)}
        return self._positions.get(key)

    def __getitem__(self, key: str) -> ContactSource:
        position = self._position(key)
        if position is None:
            raise KeyError(key)
        run = bisect.bisect_right(self._starts, position) - 1
        return self._runs[run](self._where[position])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._position(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _same(source: ContactSource, _where: int) -> ContactSource:
    return source


class ContactSource(Protocol):
    @property
    def label(self) -> str: ...

    def location(self, loc: Sequence[str | int]) -> SourceLocation: ...


@dataclass(frozen=True, slots=True)
class YamlContact:
    """A contact entry of a YAML file: contacts[index]."""

    document: YamlDocument
    index: int

    @property
    def label(self) -> str:
        return f"contacts[{self.index}]"

    def location(self, loc: Sequence[str | int]) -> SourceLocation:
        return self.document.location(("contacts", self.index, *loc))


def _field(source: ContactSource, name: str) -> str:
    return f"{source.label}.{name}" if source.label else name


class _Reported(Exception):
    """A problem already reported (by the schema) under another name."""


def _csv_sources(
    value: CsvSource | list[CsvSource] | None,
) -> list[tuple[tuple[str | int, ...], CsvSourceSpec]]:
    """(where in the manifest, the source) of each CSV file `contacts_from` names."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [(("contacts_from",), _csv_source(value))]
    return [(("contacts_from", index), _csv_source(item)) for index, item in enumerate(value)]


def _csv_source(value: CsvSource) -> CsvSourceSpec:
    return CsvSourceSpec(path=value) if isinstance(value, str) else value


# One spec per status, shared (a spec is frozen): building one per membership is a pydantic
# validation each, a second per contact at a million contacts.
_STATUS_SPECS = {status: MembershipSpec(status=status) for status in SubscriptionStatus}


def _memberships(spec: ContactEntry) -> list[tuple[str, MembershipSpec]]:
    if isinstance(spec.lists, list):
        subscribed = _STATUS_SPECS[SubscriptionStatus.SUBSCRIBED]
        return [(name, subscribed) for name in spec.lists]
    result = []
    for name, value in spec.lists.items():
        if isinstance(value, SubscriptionStatus):
            result.append((name, _STATUS_SPECS[value]))
        else:
            result.append((name, value))
    return result


def _provider_options(value: object, where: SourceLocation) -> ProviderOptions:
    """A bare provider name means that provider's default options (when it has them)."""
    if isinstance(value, str):
        try:
            return registry.plugin(value).options({})
        except ConfigError as error:
            message = f"{error}: write provider: {{type: {value}, ...}} with them"
            raise ManifestError([ManifestIssue(where, "provider", message)]) from None
    assert isinstance(value, ProviderOptions)
    return value


def _validation_issues(
    document: YamlDocument, error: ValidationError, model: type[BaseModel]
) -> list[ManifestIssue]:
    return [
        ManifestIssue(document.location(path_of(document.data, field)), field, message)
        for field, message in validation_messages(document.data, error, model)
    ]


def _issue(path: Path, line: int, field_name: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field_name, message)])
