"""The convergence property on Mailchimp: through the engine against the emulator, with
tags as lists, merge fields as properties and the member status as excluded_from_campaigns.
Random manifests and random seeded audiences (every status, archived members, members
who unsubscribed through a campaign link, unmanaged merge fields, tags in another case):
plan, apply; the apply sends exactly the estimated calls; the next plan is empty; what the
manifest does not manage is unchanged; consent holds (a cleaned member stays cleaned, an
archived one is written only for a consented return, a pending one is never mailed again)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.model import (
    EXCLUDED,
    Contact,
    ContactList,
    Membership,
    MembersPolicy,
    PropertyDef,
    PropertyType,
    State,
)
from reconcile.plan import Plan
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune, Policy, Thresholds
from reconcile.providers.base import ApplyReport
from reconcile.providers.mailchimp.client import MailchimpClient
from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailchimp.emulator.settings import SANDBOX_API_KEY
from reconcile.providers.mailchimp.plugin import MailchimpOptions
from reconcile.providers.mailchimp.provider import MailchimpProvider
from reconcile.sandbox.common import EmulatorTransport
from tests.support import FAST_RETRY, run

AUDIENCE = "a1b2c3d4e5"
EMAILS = [f"p{n}@acme-widgets.io" for n in range(6)]
TAGS = ["alpha", "beta", "gamma"]
STATUSES = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"]
# merge tag -> (Mailchimp type, the manifest's type); CRM_ID is never in a manifest
FIELDS = {
    "TEAM": ("text", PropertyType.STR),
    "SEATS": ("number", PropertyType.INT),
    "SCORE": ("number", PropertyType.FLOAT),
    "RENEWAL": ("date", PropertyType.DATETIME),
}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "TEAM": st.sampled_from(["ops", "dev", "Ünïcode ✓", "7"]),
    "SEATS": st.integers(-5, 5),
    "SCORE": st.sampled_from([0.5, -1.25, 3.0]),
    "RENEWAL": st.sampled_from(["2026-01-02T00:00:00Z", "2025-06-30T00:00:00Z"]),
}
OLD_CONSENT, NEW_CONSENT = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
NO_THRESHOLDS = Thresholds(max_delete_share=1.0, max_update_share=1.0, min_records=0)


@dataclass
class LiveMember:
    status: str
    by_link: bool  # unsubscribed through a campaign link: in compliance state
    values: dict[str, Any]
    tags: list[str]


@dataclass
class LiveAudience:
    fields: list[str]
    tags: list[str]  # empty tags too
    members: dict[str, LiveMember] = field(default_factory=dict)


def raw_value(tag: str, value: Any) -> Any:
    """A model value as Mailchimp holds it (a date without its time)."""
    return value[:10] if tag == "RENEWAL" else value


@st.composite
def live_audiences(draw: st.DrawFn) -> LiveAudience:
    fields = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True))
    spelled = st.sampled_from([*TAGS, "Alpha", "BETA", "signup-form"])
    audience = LiveAudience(fields, draw(st.lists(spelled, unique_by=str.casefold)))
    for email in draw(st.lists(st.sampled_from(EMAILS), unique=True)):
        status = draw(st.sampled_from(STATUSES))
        values = {f: raw_value(f, draw(VALUES[f])) for f in fields if draw(st.booleans())}
        if draw(st.booleans()):
            values["CRM_ID"] = "c-1"
        audience.members[email] = LiveMember(
            status,
            status == "unsubscribed" and draw(st.booleans()),
            values,
            draw(st.lists(spelled, unique_by=str.casefold)),
        )
    return audience


@st.composite
def desired_audiences(draw: st.DrawFn) -> State:
    """What a Mailchimp manifest can say: no name, no bool, subscribed memberships, no
    empty text (null clears), dates at midnight UTC, real-looking addresses."""
    state = State()
    for tag, (_, kind) in FIELDS.items():
        if draw(st.booleans()):
            state.properties[tag] = PropertyDef(tag, kind)
    for name in TAGS:
        if draw(st.booleans()):
            state.lists[name] = ContactList(name, draw(st.sampled_from(list(MembersPolicy))))
    for email in draw(st.lists(st.sampled_from(EMAILS), unique=True)):
        fields: dict[str, Any] = {}
        if draw(st.booleans()):
            fields[EXCLUDED] = draw(st.booleans())
        values = {p: draw(st.none() | VALUES[p]) for p in state.properties if draw(st.booleans())}
        consent = draw(st.sampled_from([None, OLD_CONSENT, NEW_CONSENT]))
        state.add_contact(Contact(email, fields, values, consent))
        for name in state.lists:
            if draw(st.booleans()):
                state.add_membership(Membership(name, email))
    return state


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """What Mailchimp carries out: no per-list unsubscribe."""
    return Policy(
        contacts=draw(st.sampled_from([p for p in ContactPrune if p.value != "unsubscribe"])),
        exact_members=MemberPrune.REMOVE,
        lists=draw(st.sampled_from(list(DefinitionPrune))),
        properties=draw(st.sampled_from(list(DefinitionPrune))),
        thresholds=NO_THRESHOLDS,
    )


def seed(audience: LiveAudience) -> MailchimpEmulator:
    emulator = create_mailchimp_emulator()
    emulator.seed_audience("Acme Newsletter", AUDIENCE)
    for tag in audience.fields:
        emulator.seed_merge_field(AUDIENCE, tag, type=FIELDS[tag][0])
    emulator.seed_merge_field(AUDIENCE, "CRM_ID")
    for name in audience.tags:
        emulator.seed_tag(AUDIENCE, name)
    for email, member in audience.members.items():
        emulator.seed_member(
            AUDIENCE,
            email,
            member.status,
            merge_fields=member.values,
            tags=member.tags,
            compliance=member.by_link,
        )
    return emulator


def provider(emulator: MailchimpEmulator, batch_size: int = 500) -> MailchimpProvider:
    client = MailchimpClient(
        api_key=SANDBOX_API_KEY,
        base_url="http://mailchimp.test",
        transport=EmulatorTransport(app=emulator.app),
        timeout=httpx.Timeout(5.0),
        retry=FAST_RETRY,
    )
    return MailchimpProvider(client, audience=AUDIENCE, batch_size=batch_size)


def manifest_of(tmp_path: Path, desired: State, policy: Policy | None = None) -> Manifest:
    options = MailchimpOptions(type="mailchimp", audience=AUDIENCE)
    return Manifest(options, desired, [tmp_path / "m.yaml"], policy=policy or Policy())


async def plan_apply_plan(
    emulator: MailchimpEmulator, manifest: Manifest, batch_size: int = 500
) -> tuple[Plan, ApplyReport, list[str], Plan]:
    """The plan, the apply's report, every request the apply sent, and the next plan."""
    reconcile = provider(emulator, batch_size)
    try:
        made, live = await engine.make_plan(manifest, reconcile)
        before = len(emulator.control.log)
        report = await engine.apply_plan(made, reconcile, live, force=True)
        sent = [f"{call.method} {call.path}" for call in emulator.control.log[before:]]
        again, _ = await engine.make_plan(manifest, reconcile)
        return made, report, sent, again
    finally:
        await reconcile.aclose()


def member(emulator: MailchimpEmulator, email: str) -> dict[str, Any] | None:
    found = emulator.store.data["lists"][AUDIENCE]["members"]
    for record in found.values():
        if record["email_address"].lower() == email.lower():
            return copy.deepcopy(dict(record))
    return None


def tags_of(emulator: MailchimpEmulator, email: str) -> set[str]:
    record = emulator.member(AUDIENCE, email)
    return set() if record is None else {t["name"].casefold() for t in record["tags"]}


def consented(want: Contact | None) -> bool:
    return (
        want is not None and want.fields.get(EXCLUDED) is False and want.opted_in_at == NEW_CONSENT
    )


def assert_unmanaged_kept(
    email: str, was: dict[str, Any], now: dict[str, Any] | None, want: Contact | None
) -> None:
    assert now is not None, f"{email} deleted, not asked"
    managed = set() if want is None else set(want.properties)
    kept = {k: v for k, v in was["merge_fields"].items() if k not in managed}
    assert {k: now["merge_fields"].get(k) for k in kept} == kept, email
    if want is None or EXCLUDED not in want.fields:
        assert now["status"] == was["status"], email
    if was["status"] == "cleaned":
        assert now["status"] == "cleaned", email
    if was["status"] == "archived" and not consented(want):
        assert now["status"] == "archived", email
        assert now["merge_fields"] == was["merge_fields"], f"archived {email} written"
    if was["status"] != "subscribed" and now["status"] == "subscribed":
        assert consented(want), f"{email}: {was['status']} -> subscribed without consent"
    assert now.get("opt_in_emails_sent", 0) == was.get("opt_in_emails_sent", 0), (
        f"{email} mailed a confirmation again ({was['status']} -> {now['status']})"
    )


def consent_refused(audience: LiveAudience, desired: State) -> bool:
    """A consented return Mailchimp refuses or reconcile drops: someone who unsubscribed
    through a campaign link can't be subscribed by the API (Compliance State: that
    member's write fails, as it should); a cleaned one is never brought back (the estimate
    of that case is tests/test_estimate.py's
    test_mailchimp_a_consented_return_of_a_cleaned_member_is_estimated_as_sent)."""
    return any(
        (m.by_link or m.status == "cleaned") and consented(desired.contacts.get(e))
        for e, m in audience.members.items()
    )


SETTINGS = settings(
    max_examples=int(os.environ.get("MAILCHIMP_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(audience=live_audiences(), desired=desired_audiences())
def test_mailchimp_apply_then_plan_is_empty_and_nothing_unmanaged_changes(
    tmp_path: Path, audience: LiveAudience, desired: State
) -> None:
    # Someone who unsubscribed through a campaign link can't be subscribed by the API
    # (Compliance State): a consented return of theirs fails, as it should, per contact.
    assume(not consent_refused(audience, desired))
    emulator = seed(audience)
    before = {email: member(emulator, email) for email in EMAILS}
    tags_before = {email: tags_of(emulator, email) for email in EMAILS}

    made, report, sent, again = run(plan_apply_plan(emulator, manifest_of(tmp_path, desired)))

    assert report.ok, report.outcomes
    assert made.estimate is not None
    assert len(sent) == made.estimate.api_calls, sent
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
    for email in EMAILS:
        was = before[email]
        if was is None:
            continue
        assert_unmanaged_kept(email, was, member(emulator, email), desired.contacts.get(email))
        exact = {n for n, spec in desired.lists.items() if spec.members is MembersPolicy.EXACT}
        assert tags_before[email] - exact <= tags_of(emulator, email), email


@SETTINGS
@given(audience=live_audiences(), desired=desired_audiences(), policy=policies())
def test_mailchimp_apply_sends_exactly_the_estimate_under_any_policy(
    tmp_path: Path, audience: LiveAudience, desired: State, policy: Policy
) -> None:
    """With the default batch size (tests/test_estimate.py varies it)."""
    assume(not consent_refused(audience, desired))
    emulator = seed(audience)

    made, report, sent, again = run(
        plan_apply_plan(emulator, manifest_of(tmp_path, desired, policy))
    )

    assert report.ok, report.outcomes
    assert made.estimate is not None
    changes = [f"{c.action.value} {c.address} {c.after}" for c in made.changes]
    shown = "\n".join([*sent, "changes:", *changes])
    assert len(sent) == made.estimate.api_calls, f"estimate {made.estimate.api_calls}:\n{shown}"
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
