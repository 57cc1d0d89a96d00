"""The Plan: an ordered, immutable list of changes, with its JSON form and freshness check."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconcile.diff import (
    DESTRUCTIVE,
    KEY_LENGTH,
    VALUES_OF,
    Action,
    Change,
    Effect,
    Flag,
    ResourceType,
    Values,
    as_renamed,
    renames_in,
)
from reconcile.errors import PlanError, ReconcileError, StalePlanError, UnsafePlanError
from reconcile.model import Membership, ReadScope, State, fingerprint
from reconcile.policy import Thresholds
from reconcile.prune import memberships_by_email, prune_basis

FORMAT_VERSION = 1
PERSONAL_DATA_NOTICE = (
    "This plan contains personal data (email addresses, names, property values). "
    "Store and share it as you would the audience itself."
)

# Apply order: definitions before the data that uses them; removals in reverse.
_BUILD_ORDER = (
    ResourceType.PROPERTY,
    ResourceType.LIST,
    ResourceType.CONTACT,
    ResourceType.MEMBERSHIP,
)


_PHASES = {
    (kind, deleting): len(_BUILD_ORDER) * 2 - position if deleting else position
    for position, kind in enumerate(_BUILD_ORDER)
    for deleting in (False, True)
}


def ordered(changes: Iterable[Change]) -> tuple[Change, ...]:
    phases = _PHASES
    delete = Action.DELETE
    return tuple(sorted(changes, key=lambda c: (phases[c.type, c.action is delete], c.key)))


def describe_account(account: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in sorted(account.items())) or "unknown"


@dataclass(frozen=True)
class Estimate:
    """What apply will cost: API calls, and minutes at the pace the client keeps."""

    api_calls: int
    calls_per_minute: float
    assumes: str = ""  # what the count takes for granted that only apply finds out

    @property
    def minutes(self) -> float:
        return self.api_calls / self.calls_per_minute

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "api_calls": self.api_calls,
            "calls_per_minute": self.calls_per_minute,
            "minutes": round(self.minutes, 1),
        }
        if self.assumes:
            data["assumes"] = self.assumes
        return data

    def describe(self) -> str:
        pace = f"{self.calls_per_minute:g} calls/minute"
        took = _duration(self.minutes)
        said = f"Apply will make about {self.api_calls} API calls (~{took} at {pace})."
        return f"{said} Assumes {self.assumes}" if self.assumes else said


def _duration(minutes: float) -> str:
    if minutes < 1:
        return f"{max(1, round(minutes * 60))} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


@dataclass(frozen=True)
class Plan:
    provider: str
    # Not in the repr: asyncio.run reprs the main task's result (Python 3.11, on leaving),
    # and a plan of a million changes would take seconds and hundreds of MB to show.
    changes: tuple[Change, ...] = field(repr=False)
    scope: ReadScope = field(default_factory=ReadScope)
    warnings: tuple[str, ...] = ()
    provider_options: Mapping[str, Any] = field(default_factory=dict)  # pacing etc.; no secrets
    estimate: Estimate | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    live_counts: Mapping[str, int] = field(default_factory=dict)  # per type, as read
    account: Mapping[str, str] = field(default_factory=dict)  # public identity, never a secret
    target: str = ""  # what the provider resolved the account to, for people (Provider.target)
    partial: Mapping[str, list[str]] = field(default_factory=dict)  # --target/--exclude used

    @classmethod
    def build(
        cls,
        provider: str,
        changes: Iterable[Change],
        scope: ReadScope,
        warnings: Iterable[str] = (),
        *,
        provider_options: Mapping[str, Any] | None = None,
        estimate: Estimate | None = None,
        thresholds: Thresholds | None = None,
        live: State | None = None,
        account: Mapping[str, str] | None = None,
        target: str = "",
        partial: Mapping[str, list[str]] | None = None,
    ) -> Plan:
        return cls(
            provider,
            ordered(changes),
            scope,
            tuple(warnings),
            dict(provider_options or {}),
            estimate,
            thresholds or Thresholds(),
            live_counts(live) if live is not None else {},
            dict(account or {}),
            target,
            dict(partial or {}),
        )

    @property
    def nothing_to_do(self) -> str:
        """What an empty plan says: the account matches, or, for a partial plan, only
        that nothing matched its patterns (the rest was not compared)."""
        if self.partial:
            return (
                "No changes match the targets; the rest of the manifest was not planned, "
                "so this says nothing about whether the account matches it."
            )
        return f"No changes. The {self.provider} account{self.target_note} matches the manifest."

    @property
    def partial_note(self) -> str:
        """`Partial plan (--target list:news): ...`, or "" for a whole plan."""
        if not self.partial:
            return ""
        given = [
            f"--{option} {pattern}"
            for option in ("target", "exclude")
            for pattern in self.partial.get(option, [])
        ]
        return (
            f"Partial plan ({', '.join(given)}): only the matching changes and what they "
            "need; the rest of the manifest is not planned."
        )

    @property
    def target_note(self) -> str:
        """` (audience 'News', a1b2c3d4e5)`: what the provider resolved, or nothing."""
        return f" ({self.target})" if self.target else ""

    def raise_if_other_account(self, account: Mapping[str, str], *, partial: bool = False) -> None:
        """A saved plan applies only to the account it was made against. `partial`: what is
        known before reading (checked first, so another account is not even read) must
        match; the rest is checked once read."""
        if not self.account:
            raise PlanError(
                "the plan records no account (made by an older reconcile?); nothing was "
                "applied. Run plan again against this account."
            )
        recorded = dict(self.account)
        if partial:
            recorded = {key: value for key, value in recorded.items() if key in account}
        if recorded != dict(account):
            raise PlanError(
                f"the plan was made against another account ({describe_account(self.account)}), "
                f"not this one ({describe_account(account)}); nothing was applied. Run plan "
                "against this account and review that plan."
            )

    def unsafe_reasons(self) -> list[str]:
        """Where the plan exceeds its thresholds, per resource type (empty when safe)."""
        limits = self.thresholds
        destructive: Counter[str] = Counter()
        updates: Counter[str] = Counter()
        for change in self.changes:
            if change.effect in DESTRUCTIVE:
                destructive[change.type.value] += 1
            elif change.action is Action.UPDATE:
                updates[change.type.value] += 1
        reasons: list[str] = []
        for kind, existing in sorted(self.live_counts.items()):
            if existing < limits.min_records:
                continue
            for what, counted, share in (
                ("deletes, removals and unsubscribes", destructive[kind], limits.max_delete_share),
                ("updates", updates[kind], limits.max_update_share),
            ):
                if counted > share * existing:
                    reasons.append(
                        f"{counted:,} {what} of {existing:,} live {kind} records "
                        f"({counted / existing:.0%}, more than the {share:.0%} allowed)"
                    )
        return reasons

    def raise_if_unsafe(self, force: bool) -> None:
        reasons = self.unsafe_reasons()
        if reasons and not force:
            raise UnsafePlanError(
                "the plan exceeds the safety thresholds: "
                + "; ".join(reasons)
                + ". Review it, then run again with --force if it is intended "
                "(thresholds: safety: in the manifest; a re-run that finishes a partial "
                "apply counts what is left against what exists now)."
            )

    def raise_if_warned(self, strict: bool) -> None:
        """--strict: every warning (an unmatched protect: entry, someone kept out for want
        of consent...) is an error, before anything is saved or applied."""
        if strict and self.warnings:
            raise UnsafePlanError(
                f"--strict: the plan has {len(self.warnings):,} warning(s), listed above; "
                "nothing was saved or applied. Resolve them, or run without --strict."
            )

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, int]:
        counts = Counter(change.action.value for change in self.changes)
        return {action.value: counts.get(action.value, 0) for action in Action}

    def to_json(self) -> dict[str, Any]:
        data = {
            "format_version": FORMAT_VERSION,
            "notice": PERSONAL_DATA_NOTICE,
            "provider": self.provider,
            "account": dict(self.account),
            **({"target": self.target} if self.target else {}),
            **({"partial": dict(self.partial)} if self.partial else {}),
            "summary": self.summary(),
            "changes": [change_to_json(c) for c in self.changes],
            "warnings": list(self.warnings),
            "scope": self.scope.to_json(),
            "provider_options": dict(self.provider_options),
            "estimate": self.estimate.to_json() if self.estimate else None,
            "safety": {**self.thresholds.to_json(), "live_counts": dict(self.live_counts)},
        }
        data["fingerprint"] = _file_fingerprint(data)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def loads(cls, text: str, source: str) -> Plan:
        """The plan saved in `text`, refused if any part of it was edited (fingerprint)."""
        try:
            data = json.loads(text, object_pairs_hook=_without_repeated_keys)
        except _RepeatedKeyError as error:
            message = f"{source}: plan file was edited after it was made ({error})"
            raise ReconcileError(message) from None
        except ValueError:
            raise ReconcileError(f"{source}: not a reconcile plan file (not JSON)") from None
        if not isinstance(data, dict) or "format_version" not in data:
            raise ReconcileError(f"{source}: not a reconcile plan file (no format_version)")
        # Before the shape is checked: an edit is reported as one, whatever it broke.
        if data.get("fingerprint") != _file_fingerprint(data):
            raise ReconcileError(f"{source}: plan file was edited after it was made (fingerprint)")
        try:
            raw = PlanFile.model_validate(data)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"{source}: not a reconcile plan file ({where}: {first['msg']})"
            raise ReconcileError(message) from None
        if raw.format_version != FORMAT_VERSION:
            raise ReconcileError(
                f"{source}: plan format_version {raw.format_version} is not supported "
                f"(this reconcile reads {FORMAT_VERSION})"
            )
        return cls(
            raw.provider,
            tuple(change_from_json(c) for c in raw.changes),
            ReadScope.from_json(raw.scope),
            tuple(raw.warnings),
            raw.provider_options,
            _estimate(raw.estimate),
            thresholds=Thresholds.from_json(raw.safety),
            live_counts={k: int(v) for k, v in raw.safety.get("live_counts", {}).items()},
            account=raw.account,
            target=raw.target,
            partial=raw.partial,
        )


class ChangeFile(BaseModel):
    """One change of a saved plan (`changes[]`), in apply order."""

    model_config = ConfigDict(extra="ignore")
    address: str = Field(
        description="For display only (`membership:newsletter/ann@example.com`); "
        "identify a change by `type` and `key`."
    )
    key: list[str] = Field(
        description="What the change is about: [name] for a property or list, [email] for a "
        "contact, [list, email] for a membership."
    )
    type: ResourceType = Field(description="The kind of record the change writes.")
    action: Action = Field(description="What apply does to the record.")
    before: dict[str, Any] | None = Field(
        description="The live record as read (null for a create)."
    )
    after: dict[str, Any] | None = Field(description="The record once applied (null for a delete).")
    fingerprint: str | None = Field(
        default=None,
        description="Digest of the live record the change was planned against: apply --plan "
        "refuses the plan when the record moved since.",
    )
    flags: list[Flag] = Field(
        default=[],
        description="resubscribe: undoes an opt-out with consent recorded after it; replace: "
        "delete and recreate; prune: asked by a prune policy; archive: the exclusion is the "
        "provider's archiving.",
    )


class EstimateFile(BaseModel):
    """What apply will cost (`estimate`)."""

    model_config = ConfigDict(extra="ignore")
    api_calls: int = Field(description="Requests apply will send when nothing fails.")
    calls_per_minute: int | float = Field(  # as written, so that the file reads back the same
        description="The pace the client keeps (the provider's rate limit)."
    )
    assumes: str = Field(
        default="",
        description="What the count takes for granted that only apply can find out (how "
        "the API behaves), and what apply costs otherwise. Written only when there is one.",
    )


class PlanFile(BaseModel):
    """A saved plan (`reconcile plan --out plan.json`, or `--format json`)."""

    model_config = ConfigDict(extra="ignore")
    format_version: int = Field(
        description="1. A reader of format 1 may rely on every key documented here; new "
        "optional keys may appear; a change that breaks such a reader bumps this number."
    )
    provider: str = Field(description="The provider type name, as in the manifest's `provider:`.")
    account: dict[str, str] = Field(
        default={},
        description="The public identity of the account planned against (base URL, digests): "
        "apply --plan refuses a plan made against another account. Never a secret.",
    )
    target: str = Field(
        default="",
        description="What the provider resolved the account to, for people "
        "(`audience 'News', a1b2c3d4e5`). Written only when there is one.",
    )
    partial: dict[str, list[str]] = Field(
        default={},
        description="The --target and --exclude patterns of a partial plan (`target`, "
        "`exclude`). Written only for a partial plan.",
    )
    changes: list[ChangeFile] = Field(description="Every change, in apply order.")
    warnings: list[str] = Field(default=[], description="The plan's warnings, as printed.")
    scope: dict[str, Any] = Field(
        default={}, description="What was read: the lists, and whether contact data."
    )
    provider_options: dict[str, Any] = Field(
        default={}, description="The manifest's provider options (pacing etc.; no secrets)."
    )
    estimate: EstimateFile | None = Field(
        default=None, description="What apply will cost, when the provider estimates it."
    )
    safety: dict[str, Any] = Field(
        default={},
        description="The thresholds the plan was checked against, and the live record counts "
        "per type (`live_counts`).",
    )
    fingerprint: str | None = Field(
        default=None,
        description="Digest of the whole file: a plan edited after it was made is refused.",
    )


def _file_fingerprint(data: Mapping[str, Any]) -> str:
    """Covers the whole file, so no field (the account included) can be edited unseen."""
    return fingerprint({k: v for k, v in data.items() if k != "fingerprint"})


def _estimate(raw: EstimateFile | None) -> Estimate | None:
    return None if raw is None else Estimate(raw.api_calls, raw.calls_per_minute, raw.assumes)


class _RepeatedKeyError(ValueError):
    pass


def _without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice is read as its last value: an edit the fingerprint can't see."""
    data = dict(pairs)
    if len(data) != len(pairs):
        repeated = sorted(key for key, count in Counter(k for k, _ in pairs).items() if count > 1)
        raise _RepeatedKeyError(f"{', '.join(map(repr, repeated))} given twice")
    return data


def change_to_json(change: Change) -> dict[str, Any]:
    data: dict[str, Any] = {
        "address": change.address,
        "type": change.type.value,
        "key": list(change.key),
        "action": change.action.value,
        "before": None if change.before is None else change.before.to_json(),
        "after": None if change.after is None else change.after.to_json(),
    }
    if change.fingerprint:
        data["fingerprint"] = change.fingerprint
    if change.flags:
        data["flags"] = sorted(flag.value for flag in change.flags)
    effect = change.effect
    if effect is not None:
        data["effect"] = effect.value
        if effect is Effect.ERASE:
            data["irreversible"] = True
    return data


def change_from_json(raw: ChangeFile) -> Change:
    if len(raw.key) != KEY_LENGTH[raw.type] or not all(raw.key):
        raise ReconcileError(f"plan change {raw.address!r} has a bad key {raw.key!r}")
    try:
        return Change(
            raw.type,
            raw.action,
            tuple(raw.key),
            _values_from_json(raw.type, raw.before),
            _values_from_json(raw.type, raw.after),
            raw.fingerprint,
            frozenset(raw.flags),
        )
    except (TypeError, ValueError) as error:
        raise ReconcileError(f"plan change {raw.address!r}: {error}") from None


def _values_from_json(kind: ResourceType, data: Mapping[str, Any] | None) -> Values | None:
    return None if data is None else VALUES_OF[kind].from_json(data)


def live_counts(live: State) -> dict[str, int]:
    return {
        ResourceType.PROPERTY.value: len(live.properties),
        ResourceType.LIST.value: len(live.lists),
        ResourceType.CONTACT.value: len(live.contacts),
        ResourceType.MEMBERSHIP.value: len(live.memberships),
    }


def live_record(
    live: State, change: Change, lists_of: Mapping[str, list[Membership]] | None = None
) -> dict[str, Any] | None:
    """The live record a change concerns, in the form its fingerprint was taken from
    (`lists_of`, memberships by email, for the changes a contact prune made)."""
    if change.type is ResourceType.PROPERTY:
        prop = live.properties.get(change.key[0])
        return None if prop is None else prop.record()
    if change.type is ResourceType.LIST:
        found = live.lists.get(change.list_name)
        return None if found is None else found.record()
    if change.type is ResourceType.CONTACT:
        contact = live.contacts.get(change.email)
        if contact is None:
            return None
        if Flag.PRUNE in change.flags:
            return prune_basis(contact, (lists_of or {}).get(change.email, []))
        return contact.record()
    membership = live.memberships.get((change.list_name, change.email))
    return None if membership is None else membership.record()


def moved_since_planning(changes: Sequence[Change], live: State) -> list[str]:
    """Why each change no longer fits live state; empty when the plan is still fresh."""
    moved: list[str] = []
    read = live
    # Everything else was planned against live as renamed (diff_states), and is checked so.
    live = as_renamed(live, renames_in(changes))
    pruned = any(Flag.PRUNE in change.flags for change in changes)
    lists_of = memberships_by_email(live) if pruned else None
    for change in changes:
        if change.renamed_from is not None:
            moved.extend(_moved_rename(change, change.renamed_from, read))
            continue
        record = live_record(live, change, lists_of)
        if change.action is Action.CREATE:
            if record is not None:
                moved.append(f"{change.address} was created by someone else since planning")
        elif record is None:
            moved.append(f"{change.address} no longer exists")
        elif change.fingerprint and fingerprint(record) != change.fingerprint:
            moved.append(f"{change.address} was changed since planning")
    return moved


def _moved_rename(change: Change, old: str, read: State) -> list[str]:
    """A rename is stale when the old one vanished or changed, or the new name appeared."""
    found = read.lists if change.type is ResourceType.LIST else read.properties
    if change.key[0] in found:
        return [
            f"{change.address} was created by someone else since planning (to be renamed "
            f"from {old})"
        ]
    have = found.get(old)
    if have is None:
        return [f"{change.address}: {old}, to be renamed to it, no longer exists"]
    if change.fingerprint and fingerprint(have.record()) != change.fingerprint:
        return [f"{change.address}: {old}, to be renamed to it, was changed since planning"]
    return []


def raise_if_stale(plan: Plan, live: State) -> None:
    moved = moved_since_planning(plan.changes, live)
    if moved:
        shown = "\n  ".join(moved[:20])
        more = f"\n  ... and {len(moved) - 20} more" if len(moved) > 20 else ""
        raise StalePlanError(
            f"live state moved since this plan was made; nothing was applied:\n  {shown}{more}\n"
            "Run plan again and review the new plan."
        )
