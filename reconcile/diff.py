"""Pure comparison of desired and live state, key by key. No I/O.

Only what the desired state mentions is compared: a contact field or property the
manifest leaves out is never part of a change, so it can never be reset. Consent is
decided here for every provider: nobody who opted out is brought back (to a list, or
into campaigns) without an opt-in recorded after their opt-out. What the manifest does
not declare is never touched here: prune.py decides that, and enforces protect:.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple, TypeAlias, TypeVar, cast

from reconcile.model import (
    CONTACT_FIELDS,
    EXCLUDED,
    Contact,
    ContactField,
    ContactList,
    ContactValues,
    FieldValue,
    Key,
    ListValues,
    Membership,
    Memberships,
    MembershipValues,
    PropertyDef,
    PropertyValue,
    PropertyValues,
    State,
    SubscriptionStatus,
    fingerprint,
    wanted_status,
)


class ResourceType(StrEnum):
    PROPERTY = "property"
    LIST = "list"
    CONTACT = "contact"
    MEMBERSHIP = "membership"


KEY_LENGTH = {
    ResourceType.PROPERTY: 1,
    ResourceType.LIST: 1,
    ResourceType.CONTACT: 1,
    ResourceType.MEMBERSHIP: 2,
}


class Ref(NamedTuple):
    """What a change or finding is about: its type and structured key."""

    type: ResourceType
    key: Key

    @property
    def address(self) -> str:
        """For display only: `membership:Sales/EMEA/a@x.com` is ambiguous, the key is not."""
        return f"{self.type.value}:{'/'.join(self.key)}"


def contact_ref(email_key: str) -> Ref:
    return Ref(ResourceType.CONTACT, (email_key,))


def membership_ref(list_name: str, email_key: str) -> Ref:
    return Ref(ResourceType.MEMBERSHIP, (list_name, email_key))


def list_ref(name: str) -> Ref:
    return Ref(ResourceType.LIST, (name,))


def property_ref(name: str) -> Ref:
    return Ref(ResourceType.PROPERTY, (name,))


PLURAL = {"property": "properties"}


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Flag(StrEnum):
    RESUBSCRIBE = "resubscribe"  # undoes an opt-out, with consent recorded after it
    REPLACE = "replace"  # delete and recreate; values held by it are lost
    PRUNE = "prune"  # asked by a prune policy: its fingerprint covers the reason (scope lists)
    ARCHIVE = "archive"  # the exclusion is the provider's archiving of the contact
    RENAME = "rename"  # a list or property renamed in place (renamed_from:): history kept


class Effect(StrEnum):
    """What a change means for the people in the audience; the plan names each one."""

    UNSUBSCRIBE = "unsubscribe"  # stays on the list, receives nothing from it
    REMOVE_FROM_LIST = "remove from list"  # membership (and its history) removed
    EXCLUDE = "exclude from campaigns"  # no campaign reaches them; lists unchanged
    ARCHIVE = "archive"  # set aside by the provider: no campaigns, record kept
    RESUBSCRIBE = "re-subscribe"  # only with consent recorded in the manifest
    INCLUDE = "re-include in campaigns"  # only with consent recorded in the manifest
    ERASE = "erase (irreversible)"  # GDPR erasure of the contact
    DELETE_LIST = "delete list"
    DELETE_PROPERTY = "delete property (every value of it is lost)"


DESTRUCTIVE = frozenset(
    {
        Effect.UNSUBSCRIBE,
        Effect.REMOVE_FROM_LIST,
        Effect.EXCLUDE,
        Effect.ARCHIVE,
        Effect.ERASE,
        Effect.DELETE_LIST,
        Effect.DELETE_PROPERTY,
    }
)


Values: TypeAlias = PropertyValues | ListValues | ContactValues | MembershipValues
VALUES_OF: Mapping[ResourceType, type[Values]] = {
    ResourceType.PROPERTY: PropertyValues,
    ResourceType.LIST: ListValues,
    ResourceType.CONTACT: ContactValues,
    ResourceType.MEMBERSHIP: MembershipValues,
}

_V = TypeVar("_V", PropertyValues, ListValues, ContactValues, MembershipValues)


@dataclass(frozen=True, slots=True)
class Change:
    """One planned change. `before` and `after` are the values type of its resource type
    (checked when it is made): `before` is None on a creation, `after` on a deletion.

    One class for every resource type keeps a plan one ordered tuple of value objects;
    the typed accessors (`contact_after`, `membership_after`...) give a consumer the
    values it expects, or raise TypeError, so none of them needs an isinstance check.
    """

    type: ResourceType
    action: Action
    key: Key
    before: Values | None
    after: Values | None
    fingerprint: str | None = None  # of the live record the change was planned against
    flags: frozenset[Flag] = frozenset()

    def __post_init__(self) -> None:
        kind = VALUES_OF[self.type]
        creates, deletes = self.action is Action.CREATE, self.action is Action.DELETE
        if (self.before is None if creates else type(self.before) is kind) and (
            self.after is None if deletes else type(self.after) is kind
        ):
            if Flag.RENAME in self.flags:
                self._check_rename()
            return
        wanted = ("None" if absent else kind.__name__ for absent in (creates, deletes))
        raise TypeError(
            f"{self.address}: a {self.action.value} has before {next(wanted)} and after "
            f"{next(wanted)}, not {self.before!r} and {self.after!r}"
        )

    def _check_rename(self) -> None:
        """A rename is an update of a list or property whose before names the old name and
        whose after names the new one, its key."""
        before, after = self.before, self.after
        if (
            self.action is not Action.UPDATE
            or not isinstance(before, ListValues | PropertyValues)
            or not isinstance(after, ListValues | PropertyValues)
            or after.name != self.key[0]
            or not before.name
            or before.name == after.name
        ):
            raise TypeError(
                f"{self.address}: a rename is an update from the old name to the new one, "
                f"not {self.before!r} -> {self.after!r}"
            )

    @property
    def renamed_from(self) -> str | None:
        """The old name of a list or property this change renames in place, or None."""
        if Flag.RENAME not in self.flags or not isinstance(
            self.before, ListValues | PropertyValues
        ):
            return None
        return self.before.name

    @property
    def ref(self) -> Ref:
        return Ref(self.type, self.key)

    @property
    def address(self) -> str:
        return self.ref.address

    @property
    def email(self) -> str:
        """The contact a contact or membership change concerns (its email key)."""
        return self.key[-1]

    @property
    def list_name(self) -> str:
        """The list a membership or list change concerns."""
        return self.key[0]

    @property
    def contact_before(self) -> ContactValues:
        return _expected(self, self.before, ContactValues)

    @property
    def contact_after(self) -> ContactValues:
        return _expected(self, self.after, ContactValues)

    @property
    def membership_after(self) -> MembershipValues:
        return _expected(self, self.after, MembershipValues)

    @property
    def property_after(self) -> PropertyValues:
        return _expected(self, self.after, PropertyValues)

    @property
    def effect(self) -> Effect | None:
        if self.action is Action.DELETE:
            return _DELETION_EFFECTS[self.type]
        if self.action is Action.CREATE:
            return None
        if self.type is ResourceType.MEMBERSHIP:
            if self.membership_after.status is SubscriptionStatus.UNSUBSCRIBED:
                return Effect.UNSUBSCRIBE
            return Effect.RESUBSCRIBE
        if self.type is ResourceType.CONTACT:
            excluded = self.contact_after.fields.get(EXCLUDED)
            if excluded is True:
                return Effect.ARCHIVE if Flag.ARCHIVE in self.flags else Effect.EXCLUDE
            if excluded is False:
                return Effect.INCLUDE
        return None


def _expected(change: Change, values: Values | None, kind: type[_V]) -> _V:
    if not isinstance(values, kind):
        raise TypeError(f"{change.action.value} of {change.address} has no {kind.__name__}")
    return values


_DELETION_EFFECTS = {
    ResourceType.CONTACT: Effect.ERASE,
    ResourceType.MEMBERSHIP: Effect.REMOVE_FROM_LIST,
    ResourceType.LIST: Effect.DELETE_LIST,
    ResourceType.PROPERTY: Effect.DELETE_PROPERTY,
}


@dataclass(frozen=True, slots=True)
class Finding:
    ref: Ref
    message: str
    at: tuple[str, ...] = ()  # the field of the resource it is about: ("properties", "PLAN")

    @property
    def address(self) -> str:
        return self.ref.address

    def __str__(self) -> str:
        return f"{self.address}: {self.message}"


@dataclass
class DiffResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)


def consent_blocker(
    opted_out_at: str | None, opted_in_at: str | None, *, event: str = "they opted out"
) -> str | None:
    """Why the manifest's opt-in does not undo this opt-out; None when it does.

    An opt-in records when consent was given and undoes only an opt-out from before
    it, so it is used once: opting out again later is respected by every later plan.
    Times are UTC `YYYY-MM-DDTHH:MM:SSZ`, which compare as text.
    """
    if opted_in_at is None:
        return "no opt-in (opted_in_at) is recorded for this in the manifest"
    if opted_out_at is None:
        return (
            f"the provider gives no time for the opt-out, so the opt-in of {opted_in_at} "
            "can't be shown to be newer"
        )
    if opted_out_at >= opted_in_at:
        return f"{event} at {opted_out_at}, not before the opt-in of {opted_in_at}"
    return None


def diff_states(desired: State, live: State) -> DiffResult:
    """What makes live match what desired declares: nothing about what it leaves out.

    A list or property renamed in place (`renamed_from:`) is one rename change; everything
    else is compared with live as it will be once renamed (`as_renamed`), so its members,
    their unsubscribes and the values of a renamed property are neither added nor removed.
    """
    result = DiffResult()
    renames = planned_renames(desired, live, result.errors, result.warnings)
    view = as_renamed(live, renames)
    replaced = _replaced_properties(desired, view)
    result.changes.extend(_property_changes(desired, view, result.errors, renames, live))
    result.changes.extend(_list_changes(desired, view, renames, live))
    result.changes.extend(_contact_changes(desired, view, replaced, result.warnings))
    result.changes.extend(_membership_changes(desired, view, result.warnings))
    return result


# ---- renames ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Renames:
    """Lists and properties renamed in place, old name -> new name."""

    lists: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.lists or self.properties)


def planned_renames(
    desired: State, live: State, errors: list[Finding], warnings: list[Finding]
) -> Renames:
    """What `renamed_from:` asks: a rename when exactly one old name exists live and the new
    one does not; nothing once it has happened (the new name live, the old one gone), so a
    manifest may keep `renamed_from` for ever; a warning when old and new both exist
    (nothing is renamed: the old one is another list or property now)."""
    return Renames(
        _renames(list_ref, "list", desired.lists, live.lists, errors=errors, warnings=warnings),
        _renames(
            property_ref,
            "property",
            desired.properties,
            live.properties,
            errors=errors,
            warnings=warnings,
        ),
    )


def _renames(
    ref: Callable[[str], Ref],
    kind: str,
    wanted: Mapping[str, ContactList | PropertyDef],
    have: Mapping[str, object],
    *,
    errors: list[Finding],
    warnings: list[Finding],
) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, want in wanted.items():
        if not want.renamed_from:
            continue
        old = [earlier for earlier in want.renamed_from if earlier in have and earlier != name]
        if name in have:
            if old:
                # Renamed already, and the old name made again since (or never renamed):
                # either way nothing to rename, and a stale hint must not stop every plan.
                warnings.append(
                    Finding(
                        ref(name),
                        f"renamed_from: both {old[0]!r} and {name!r} exist in the account, so "
                        f"nothing is renamed and {old[0]!r} is left as it is, another "
                        f"{kind} (a rename never merges two {PLURAL.get(kind, kind + 's')}); "
                        f"drop {old[0]!r} from renamed_from, or delete or rename one of them "
                        "in the provider",
                    )
                )
            continue  # renamed already: renamed_from asks nothing more
        if len(old) > 1:
            errors.append(
                Finding(
                    ref(name),
                    f"renamed_from: {', '.join(map(repr, old))} all exist in the account; "
                    f"only one of them can be renamed to {name!r}",
                )
            )
        elif old:
            found[old[0]] = name
        else:
            earlier = ", ".join(map(repr, want.renamed_from))
            warnings.append(
                Finding(
                    ref(name),
                    f"renamed_from: {earlier} is not in the account, so {name!r} is created "
                    f"as a new {kind} (a typo in renamed_from?)",
                )
            )
    return found


def renames_in(changes: Iterable[Change]) -> Renames:
    """The renames a plan makes, old name -> new name."""
    lists: dict[str, str] = {}
    properties: dict[str, str] = {}
    for change in changes:
        old = change.renamed_from
        if old is not None:
            (lists if change.type is ResourceType.LIST else properties)[old] = change.key[0]
    return Renames(lists, properties)


def as_renamed(live: State, renames: Renames) -> State:
    """`live` as it will be once `renames` are made (only those whose old name exists and
    new name does not): lists, definitions, memberships and contacts' values under the new
    names, every record otherwise as read. `live` itself when nothing is renamed."""
    lists = {o: n for o, n in renames.lists.items() if o in live.lists and n not in live.lists}
    props = {
        o: n
        for o, n in renames.properties.items()
        if o in live.properties and n not in live.properties
    }
    if not (lists or props):
        return live
    contacts = live.contacts
    if props:
        contacts = {
            key: contact
            if props.keys().isdisjoint(contact.properties)
            else contact.replaced(
                properties={props.get(k, k): v for k, v in contact.properties.items()}
            )
            for key, contact in live.contacts.items()
        }
    memberships = live.memberships
    if lists:
        memberships = Memberships()
        for membership in live.memberships.values():
            new = lists.get(membership.list_name)
            memberships.add(membership if new is None else replace(membership, list_name=new))
    return State(
        {props.get(k, k): replace(d, name=props.get(k, k)) for k, d in live.properties.items()},
        {lists.get(k, k): replace(d, name=lists.get(k, k)) for k, d in live.lists.items()},
        dict(contacts),
        memberships,
        live.provider_records,
    )


def _rename(kind: ResourceType, new: str, have: ContactList | PropertyDef) -> Change:
    before: ListValues | PropertyValues
    after: ListValues | PropertyValues
    if isinstance(have, ContactList):
        before, after = ListValues(have.name), ListValues(new)
    else:
        before = PropertyValues(have.type, have.namespace, have.name)
        after = PropertyValues(have.type, have.namespace, new)
    flags = frozenset({Flag.RENAME})
    return Change(kind, Action.UPDATE, (new,), before, after, fingerprint(have.record()), flags)


def _replaced_properties(desired: State, live: State) -> frozenset[str]:
    """Properties this plan deletes and recreates: every live value of them is lost."""
    return frozenset(
        name
        for name, want in desired.properties.items()
        if want.replace
        and (have := live.properties.get(name)) is not None
        and want.values() != have.values()
    )


def _property_changes(
    desired: State, live: State, errors: list[Finding], renames: Renames, read: State
) -> Iterator[Change]:
    """`live` as renamed; `read`, as read (the old names of renamed definitions)."""
    renamed = {new: old for old, new in renames.properties.items()}
    for name, want in desired.properties.items():
        have = live.properties.get(name)
        if have is None:
            yield Change(ResourceType.PROPERTY, Action.CREATE, (name,), None, want.values())
        elif name in renamed:
            old = read.properties[renamed[name]]
            if want.values() != have.values():
                errors.append(
                    Finding(
                        property_ref(name),
                        f"is renamed from {old.name!r}, which is {have.type}/{have.namespace} "
                        f"live and {want.type}/{want.namespace} in the manifest: rename it "
                        "first (one apply), then change its definition",
                    )
                )
            else:
                yield _rename(ResourceType.PROPERTY, name, old)
        elif want.values() != have.values():
            if want.replace:
                yield _replace_property(want, have)
            else:
                errors.append(
                    Finding(
                        property_ref(name),
                        f"is {have.type}/{have.namespace} live and {want.type}/{want.namespace} "
                        "in the manifest; a definition can't change in place. Set replace: true "
                        "to delete and recreate it (every contact's value of it is lost).",
                    )
                )


def _replace_property(want: PropertyDef, have: PropertyDef) -> Change:
    return Change(
        ResourceType.PROPERTY,
        Action.UPDATE,
        (want.name,),
        have.values(),
        want.values(),
        fingerprint(have.record()),
        frozenset({Flag.REPLACE}),
    )


def _list_changes(desired: State, live: State, renames: Renames, read: State) -> Iterator[Change]:
    """`live` as renamed; `read`, as read (the old names of renamed lists)."""
    for old, new in renames.lists.items():
        yield _rename(ResourceType.LIST, new, read.lists[old])
    for name, want in desired.lists.items():
        if name not in live.lists:
            yield Change(ResourceType.LIST, Action.CREATE, (name,), None, want.values())


def _contact_changes(
    desired: State, live: State, replaced: frozenset[str], warnings: list[Finding]
) -> Iterator[Change]:
    for key, want in desired.contacts.items():
        have = live.contacts.get(key)
        if have is None:
            yield Change(ResourceType.CONTACT, Action.CREATE, (key,), None, _creation(want))
            continue
        change = _contact_update(key, want, have, replaced, warnings)
        if change is not None:
            yield change


# Shared by every update that changes properties only: two empty dicts each are 25 MB
# over a plan of a million contacts. Never mutated (a change's values are immutable).
_NO_FIELDS: Mapping[ContactField, FieldValue] = MappingProxyType({})


def _contact_update(
    key: str, want: Contact, have: Contact, replaced: frozenset[str], warnings: list[Finding]
) -> Change | None:
    """What `want` manages that `have` holds otherwise. Most contacts are equal: they are
    told apart in one comparison before any mapping is built."""
    if not replaced and have.holds(want):
        return None
    old_fields: dict[ContactField, FieldValue] = {}
    new_fields: dict[ContactField, FieldValue] = {}
    for name, wanted in want.fields.items():
        current = have.get_field(name)
        if current != wanted:
            known = CONTACT_FIELDS[name]
            old_fields[known] = current
            new_fields[known] = wanted
    old_values: dict[str, PropertyValue] = {}
    new_values: dict[str, PropertyValue] = {}
    for name, value in want.properties.items():
        # A replaced property starts empty: its declared values are written again.
        current = None if name in replaced else have.get_property(name)
        if current != value:
            old_values[name] = current
            new_values[name] = value
    flags: frozenset[Flag] = frozenset()
    if new_fields.get(EXCLUDED) is False:
        undecided = have.get_field(EXCLUDED) is None
        event = "their status last changed" if undecided else "they opted out"
        blocked = consent_blocker(have.opted_out_at, want.opted_in_at, event=event)
        if blocked is None:
            flags = frozenset({Flag.RESUBSCRIBE})
        else:
            warnings.append(_kept_out(contact_ref(key), blocked, undecided=undecided))
            del old_fields[EXCLUDED], new_fields[EXCLUDED]
    if not (new_fields or new_values):
        return None
    return Change(
        ResourceType.CONTACT,
        Action.UPDATE,
        (key,),
        ContactValues(old_fields or _NO_FIELDS, old_values or None),
        ContactValues(new_fields or _NO_FIELDS, new_values or None),
        fingerprint(have.record()),
        flags,
    )


def _kept_out(ref: Ref, why: str, *, undecided: bool = False) -> Finding:
    """`undecided`: the account holds no consent either way (e.g. a double opt-in not
    confirmed yet); including them would still need theirs."""
    if undecided:
        state = "not opted in yet (the account records no consent to campaigns either way)"
        wish = "the manifest would include them"
    else:
        what = "unsubscribed from this list" if ref.type is ResourceType.MEMBERSHIP else "excluded"
        state, wish = f"opted out ({what})", "the manifest would bring them back"
    return Finding(
        ref,
        f"{state}; {wish}, but {why}: left as they are. If they gave consent, record when "
        "with opted_in_at (see README, Consent).",
    )


def _creation(want: Contact) -> ContactValues:
    """The desired contact's own mappings when they already say it (a loaded manifest's
    do): a fifth of a million contacts new is otherwise 80 MB of copies."""
    fields: Mapping[ContactField, FieldValue]
    if all(type(name) is ContactField for name in want.fields):
        fields = cast(Mapping[ContactField, FieldValue], want.fields)
    else:
        fields = {CONTACT_FIELDS[name]: value for name, value in want.fields.items()}
    properties: Mapping[str, PropertyValue] = want.properties
    if None in properties.values():
        properties = {k: v for k, v in properties.items() if v is not None}
    return ContactValues(fields, properties or None, want.email)


def _membership_changes(desired: State, live: State, warnings: list[Finding]) -> Iterator[Change]:
    for list_name, email, wanted, status in desired.memberships.differing(live.memberships):
        key = (list_name, email)
        if status is None:
            yield Change(ResourceType.MEMBERSHIP, Action.CREATE, key, None, wanted_status(wanted))
        else:
            change = _status_change(desired.memberships[key], live.memberships[key], warnings)
            if change is not None:
                yield change


def _status_change(want: Membership, have: Membership, warnings: list[Finding]) -> Change | None:
    flags: frozenset[Flag] = frozenset()
    if want.status is SubscriptionStatus.SUBSCRIBED:
        blocked = consent_blocker(have.opted_out_at, want.opted_in_at)
        if blocked is not None:
            warnings.append(_kept_out(membership_ref(*have.key), blocked))
            return None
        flags = frozenset({Flag.RESUBSCRIBE})
    return Change(
        ResourceType.MEMBERSHIP,
        Action.UPDATE,
        have.key,
        have.values(),
        want.wanted(),
        fingerprint(have.record()),
        flags,
    )
