"""The product's promises, checked on what one step did to the account.

Each promise has its own exception type, so hypothesis reports each broken promise as a
distinct failure (it tells failures apart by type and place)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.promises.author import Manifest
from tests.promises.world import Person, Snapshot

HARD = ("bounced", "complained", "cleaned")  # Mailchimp: cleaned is a bounce
DAWN = datetime(1970, 1, 1, tzinfo=UTC)

OptOutKey = tuple[str, ...]  # ("global", email) | ("list", email, list)


class PromiseBroken(AssertionError):
    """Base of every broken promise."""


class ConsentBroken(PromiseBroken):
    """1: someone who opted out is subscribed/included again without a later opt-in."""


class OptInMailedAgain(PromiseBroken):
    """1 (Mailchimp): a write by reconcile mailed someone a confirmation (opt-in) email
    that no manifest opt-in asked for (a pending member written with its status again)."""


class ArchivedWritten(PromiseBroken):
    """1 (Mailchimp): an archived member was brought back or written without a consented
    return (excluded_from_campaigns: false with an opt-in after the archiving)."""


class UndeclaredDestroyed(PromiseBroken):
    """2: something deleted/removed/unsubscribed/excluded that no manifest or policy asked for."""


class ProtectedTouched(PromiseBroken):
    """2: something in protect: was deleted/removed/unsubscribed/excluded."""


class ProtectedNotRefused(PromiseBroken):
    """2: a plan that asks to exclude/unsubscribe/erase what protect: covers is refused."""


class UnmanagedChanged(PromiseBroken):
    """3: a field, property, list or membership the manifest does not manage changed."""


class NotConverged(PromiseBroken):
    """4: the plan after a successful apply is not empty."""


class ExportNotRoundTrip(PromiseBroken):
    """5: the export, planned against the account it came from, is not empty."""


class StalePlanWrote(PromiseBroken):
    """6: a saved plan whose resources moved since planning was applied (or wrote)."""


class ForeignPlanWrote(PromiseBroken):
    """6: a plan made against another account was applied (or wrote)."""


class ReadOnlyWrote(PromiseBroken):
    """validate, plan and export changed the account."""


class SecretShown(PromiseBroken):
    """Credentials are never printed (--debug included) and never in a plan file."""


class RedactionLeaked(PromiseBroken):
    """--redact: an email, name or property value of someone was printed."""


class UnmatchedProtectSilent(PromiseBroken):
    """A protect: entry that names nothing (a typo protects nobody) is warned about."""


class CliBroken(PromiseBroken):
    """7: a traceback, or an exit code outside the contract."""


class FutureOptInAccepted(PromiseBroken):
    """An opt-in time in the future must be a validation error."""


def observe(
    optouts: dict[OptOutKey, datetime], before: Snapshot, after: Snapshot, when: datetime
) -> None:
    """Record every opt-out that happened in a step (by anyone), with its time."""
    for email, now in after.people.items():
        was = before.people.get(email)
        if now.opted_out and (was is None or not was.opted_out or was.status != now.status):
            # the account's own record of when (MailJawn: the write that made the change)
            optouts[("global", email)] = now.unsubscribed_at or now.modified or when
        for name, subscribed in now.lists.items():
            if not subscribed and (was is None or was.lists.get(name) is not False):
                moment = now.list_unsubscribed_at.get(name) or when
                optouts[("list", email, name)] = moment
    gone_people = set(before.people) - set(after.people)
    gone_lists = before.lists - after.lists
    for key in list(optouts):
        if key[1] in gone_people or (key[0] == "list" and key[2] in gone_lists):
            del optouts[key]


def check_consent(
    optouts: dict[OptOutKey, datetime], before: Snapshot, after: Snapshot, manifest: Manifest
) -> None:
    for email, now in after.people.items():
        was = before.people.get(email)
        declared = manifest.contact(email)
        _check_chimp_consent(optouts, email, (was, now), (before, after), manifest)
        if was is not None and was.status in HARD and now.status != was.status:
            raise ConsentBroken(f"{email}: status {was.status} changed to {now.status}")
        if not now.opted_out and (was is None or was.opted_out):
            since = _latest(optouts.get(("global", email)), was.unsubscribed_at if was else None)
            if since is None and was is not None and was.opted_out:
                since = DAWN
            opted_in = None if declared is None else declared.opted_in_at
            if since is not None and (opted_in is None or opted_in <= since):
                raise ConsentBroken(
                    f"{email} included again ({was.status if was else 'absent'} -> "
                    f"{now.status}); opted out at {since}, manifest opt-in: {opted_in}"
                )
        for name, subscribed in now.lists.items():
            previously = None if was is None else was.lists.get(name)
            if not subscribed or previously is True:
                continue
            live_at = was.list_unsubscribed_at.get(name) if was and previously is False else None
            since = _latest(optouts.get(("list", email, name)), live_at)
            if since is None and previously is False:
                since = DAWN
            membership = manifest.membership(email, name)
            opted_in = None if membership is None else membership.opted_in_at
            if since is not None and (opted_in is None or opted_in <= since):
                raise ConsentBroken(
                    f"{email} subscribed to {name!r} again; unsubscribed at {since}, "
                    f"manifest opt-in for the list: {opted_in}"
                )


def _check_chimp_consent(
    optouts: dict[OptOutKey, datetime],
    email: str,
    people: tuple[Person | None, Person],
    shots: tuple[Snapshot, Snapshot],
    manifest: Manifest,
) -> None:
    """What only Mailchimp has: confirmation emails, and archived members. The machine
    runs with the default options (new members and consented returns are subscribed), so
    no write of reconcile may send a confirmation email."""
    was, now = people
    sent_before = 0 if was is None else was.opt_in_emails
    if now.opt_in_emails > sent_before:
        raise OptInMailedAgain(
            f"{email}: {now.opt_in_emails - sent_before} more opt-in email(s) sent "
            f"({was.status if was else 'absent'} -> {now.status})"
        )
    if was is None or was.status != "archived":
        return
    declared = manifest.contact(email)
    since = _latest(optouts.get(("global", email)), was.modified) or DAWN
    consented = (
        declared is not None
        and declared.excluded is False
        and declared.opted_in_at is not None
        and declared.opted_in_at > since
    )
    if consented:
        return
    if now.status != "archived":
        raise ArchivedWritten(f"{email}: archived -> {now.status} without a consented return")
    before, after = shots
    kept = {p for p, d in before.properties.items() if after.properties.get(p) == d}
    written = {
        p: (was.properties.get(p), now.properties.get(p))
        for p in kept
        if was.properties.get(p) != now.properties.get(p)
    }
    if written:
        raise ArchivedWritten(
            f"{email}: merge fields of an archived member written (was, now): {written}"
        )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def _in_scope(person: Person, manifest: Manifest) -> bool:
    scope = manifest.scope_lists()
    return any(person.lists.get(name) is True for name in scope)


def check_destruction_and_ownership(
    before: Snapshot, after: Snapshot, manifest: Manifest, planned: Snapshot | None = None
) -> None:
    """2 and 3: what was not asked for did not happen. A prune's scope is judged on the
    account as it was planned (`planned`, for a saved plan), which is what was reviewed."""
    prune = manifest.prune
    seen = before if planned is None else planned

    def in_scope(email: str, was: Person) -> bool:
        return _in_scope(was, manifest) or (
            email in seen.people and _in_scope(seen.people[email], manifest)
        )

    for email, was in before.people.items():
        now = after.people.get(email)
        declared = manifest.contact(email)
        protected = manifest.contact_protected(email)
        if now is None:
            if protected:
                raise ProtectedTouched(f"protected contact {email} was deleted")
            if declared is not None or prune.contacts != "delete" or not in_scope(email, was):
                raise UndeclaredDestroyed(
                    f"{email} deleted (declared: {declared is not None}, prune: {prune.contacts})"
                )
            continue
        if now.status in HARD and now.status != was.status:
            raise UnmanagedChanged(f"{email}: reconcile set status {now.status}")
        if now.opted_out and not was.opted_out:
            if protected:
                raise ProtectedTouched(f"protected contact {email} excluded ({now.status})")
            if declared is not None:
                asked = declared.excluded is True
            else:
                asked = prune.contacts == "exclude" and in_scope(email, was)
            if not asked:
                raise UndeclaredDestroyed(f"{email} excluded/unsubscribed globally, not asked")
        if was.opted_out and not now.opted_out and (declared is None or declared.excluded is None):
            raise UnmanagedChanged(f"{email}: unmanaged exclusion {was.status} -> {now.status}")
        if (declared is None or declared.name is None) and now.name != was.name:
            raise UnmanagedChanged(f"{email}: unmanaged name {was.name!r} -> {now.name!r}")
        _check_properties(email, was, now, before, after, manifest)
        _check_memberships(email, was, now, after, manifest)
    for name in sorted(before.lists - after.lists):
        if manifest.list_protected(name):
            raise ProtectedTouched(f"protected list {name!r} deleted")
        if name in manifest.lists or prune.lists != "delete":
            raise UndeclaredDestroyed(f"list {name!r} deleted (prune lists: {prune.lists})")
    for name, (kind, ident) in before.properties.items():
        later = after.properties.get(name)
        if later is None:
            if name in manifest.properties or prune.properties != "delete":
                raise UndeclaredDestroyed(f"property {name!r} deleted")
        elif later != (kind, ident):
            declared_prop = manifest.properties.get(name)
            if declared_prop is None or not declared_prop.replace:
                raise UnmanagedChanged(f"property {name!r} recreated {kind} -> {later[0]}")


def _check_properties(
    email: str, was: Person, now: Person, before: Snapshot, after: Snapshot, manifest: Manifest
) -> None:
    declared = manifest.contact(email)
    for prop in sorted(set(was.properties) | set(now.properties)):
        if declared is not None and prop in declared.properties:
            continue
        if prop in before.properties and after.properties.get(prop) != before.properties[prop]:
            continue  # the definition was replaced or pruned: its values went with it
        if was.properties.get(prop) != now.properties.get(prop):
            raise UnmanagedChanged(
                f"{email}: unmanaged property {prop!r} "
                f"{was.properties.get(prop)!r} -> {now.properties.get(prop)!r}"
            )


def _check_memberships(
    email: str, was: Person, now: Person, after: Snapshot, manifest: Manifest
) -> None:
    prune = manifest.prune
    declared = manifest.contact(email)
    protected = manifest.contact_protected(email)
    for name, subscribed in was.lists.items():
        if name not in after.lists:
            continue  # the list went: checked with the lists
        later = now.lists.get(name)
        membership = manifest.membership(email, name)
        exact = manifest.lists.get(name) == "exact"
        touched_protected = protected or manifest.list_protected(name)
        if later is None:
            if touched_protected:
                raise ProtectedTouched(f"{email} removed from protected/of protected {name!r}")
            if not (exact and membership is None and prune.members == "remove" and subscribed):
                raise UndeclaredDestroyed(f"{email} removed from {name!r}")
        elif subscribed and not later:
            if touched_protected:
                raise ProtectedTouched(f"{email} unsubscribed from {name!r} (protected)")
            asked = (
                (membership is not None and membership.status == "unsubscribed")
                or (exact and membership is None and prune.members == "unsubscribe")
                or (
                    declared is None
                    and prune.contacts == "unsubscribe"
                    and name in manifest.scope_lists()
                )
            )
            if not asked:
                raise UndeclaredDestroyed(f"{email} unsubscribed from {name!r}, not asked")
    for name in now.lists:
        if name not in was.lists and manifest.membership(email, name) is None:
            raise UnmanagedChanged(f"{email} put on {name!r}, which no manifest entry says")
