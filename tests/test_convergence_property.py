"""The central property: plan(desired, apply(plan(desired, live))) is empty, and nothing
the manifest does not manage changed. Random desired and live states, Mailjet emulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.manifest.loader import Manifest
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactList,
    Membership,
    MembersPolicy,
    PropertyDef,
    PropertyType,
    State,
    SubscriptionStatus,
)
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.plugin import MailjetOptions
from tests.support import plan_and_apply, plan_with, run

EMAILS = [f"p{n}@example.com" for n in range(6)]
LISTS = ["alpha", "beta", "gamma"]
PROPERTY_TYPES = {"team": PropertyType.STR, "size": PropertyType.INT, "vip": PropertyType.BOOL}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "team": st.sampled_from(["", "ops", "dev", "Ünïcode"]),
    "size": st.integers(-5, 5),
    "vip": st.booleans(),
}


# No opt-in, one older than every opt-out the emulator records, one newer than all of them.
OLD_CONSENT, NEW_CONSENT = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
OPT_INS = st.sampled_from([None, OLD_CONSENT, NEW_CONSENT])


@dataclass
class LiveContact:
    name: str
    excluded: bool
    properties: dict[str, Any]
    lists: dict[str, bool]  # list -> IsUnsubscribed


@st.composite
def live_accounts(draw: st.DrawFn) -> tuple[list[str], list[str], dict[str, LiveContact]]:
    properties = draw(st.lists(st.sampled_from(sorted(PROPERTY_TYPES)), unique=True))
    lists = draw(st.lists(st.sampled_from(LISTS), unique=True))
    contacts: dict[str, LiveContact] = {}
    for email in draw(st.lists(st.sampled_from(EMAILS), unique=True)):
        values = {p: draw(VALUES[p]) for p in properties if draw(st.booleans())}
        memberships = {name: draw(st.booleans()) for name in lists if draw(st.booleans())}
        contacts[email] = LiveContact(
            draw(st.sampled_from(["", "Old Name", "Ann"])), draw(st.booleans()), values, memberships
        )
    return properties, lists, contacts


@st.composite
def desired_states(draw: st.DrawFn) -> State:
    state = State()
    for name, kind in PROPERTY_TYPES.items():
        state.properties[name] = PropertyDef(name, kind)
    for name in LISTS:
        if draw(st.booleans()):
            state.lists[name] = ContactList(name, draw(st.sampled_from(list(MembersPolicy))))
    for email in draw(st.lists(st.sampled_from(EMAILS), unique=True)):
        fields: dict[str, Any] = {}
        if draw(st.booleans()):
            fields[NAME] = draw(st.sampled_from(["", "New Name", "Ann"]))
        if draw(st.booleans()):
            fields[EXCLUDED] = draw(st.booleans())
        values = {p: draw(st.none() | VALUES[p]) for p in PROPERTY_TYPES if draw(st.booleans())}
        state.add_contact(Contact(email, fields, values, draw(OPT_INS)))
        for list_name in state.lists:
            if draw(st.booleans()):
                status = draw(st.sampled_from(list(SubscriptionStatus)))
                state.add_membership(Membership(list_name, email, status, draw(OPT_INS)))
    return state


def seed(
    live: tuple[list[str], list[str], dict[str, LiveContact]],
    emulator: MailjetEmulator | None = None,
) -> MailjetEmulator:
    """`live` seeded into `emulator` (by default one whose jobs end on the first poll)."""
    properties, lists, contacts = live
    if emulator is None:
        emulator = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=1))
    for name in properties:
        emulator.seed_property(name, PROPERTY_TYPES[name].value)
    for name in lists:
        emulator.seed_list(name)
    for email, contact in contacts.items():
        emulator.seed_contact(
            email, contact.name, contact.excluded, contact.properties, contact.lists
        )
    return emulator


def unmanaged_view(record: dict[str, Any] | None, desired: State, email: str) -> dict[str, Any]:
    """The parts of a contact the desired state does not manage."""
    if record is None:
        return {}
    want = desired.contacts.get(email)
    fields = {} if want is None else want.fields
    managed_props = set() if want is None else set(want.properties)
    view: dict[str, Any] = {
        "Name": None if NAME in fields else record["Name"],
        "Excluded": None if EXCLUDED in fields else record["IsExcludedFromCampaigns"],
        "Properties": {k: v for k, v in record["Properties"].items() if k not in managed_props},
    }
    exact = {n for n, spec in desired.lists.items() if spec.members is MembersPolicy.EXACT}
    view["Lists"] = {
        name: unsubscribed
        for name, unsubscribed in record["Lists"].items()
        if (name, email) not in desired.memberships and name not in exact
    }
    return view


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(live=live_accounts(), desired=desired_states(), jobs_apply_fields=st.booleans())
def test_apply_then_plan_is_empty_and_nothing_unmanaged_changes(
    tmp_path: Path,
    live: tuple[list[str], list[str], dict[str, LiveContact]],
    desired: State,
    jobs_apply_fields: bool,
) -> None:
    emulator = seed(live)
    # Whether bulk jobs upsert Name/exclusion of existing contacts (else: the PUT fallback).
    emulator.settings.bulk_updates_name_and_exclusion = jobs_apply_fields
    manifest = Manifest(MailjetOptions(type="mailjet"), desired, [tmp_path / "m.yaml"])
    before = {email: emulator.contact(email) for email in EMAILS}

    _, report = run(plan_and_apply(emulator, manifest))

    assert report.ok, report.outcomes
    after = {email: emulator.contact(email) for email in EMAILS}
    for email in EMAILS:
        was, now = before[email], after[email]
        if was is None:
            continue  # created by this apply: nothing of it was unmanaged
        assert unmanaged_view(now, desired, email) == unmanaged_view(was, desired, email), email
        if now is not None:
            for list_name, unsubscribed in was["Lists"].items():
                consent = desired.memberships.get((list_name, email))
                if unsubscribed and not (consent and consent.opted_in_at == NEW_CONSENT):
                    assert now["Lists"].get(list_name, True) is True, (email, list_name)
            wanted = desired.contacts.get(email)
            if was["IsExcludedFromCampaigns"] and not (
                wanted and wanted.opted_in_at == NEW_CONSENT
            ):
                assert now["IsExcludedFromCampaigns"] is True, email
    again = run(plan_with(emulator, manifest))
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
