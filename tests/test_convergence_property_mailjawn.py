"""The convergence property on MailJawn: through the engine, with tags as lists,
custom fields as properties and status as excluded_from_campaigns."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.model import EXCLUDED, NAME, Contact, ContactList, Membership, State
from reconcile.providers.mailjawn.emulator.app import MailJawnEmulator
from reconcile.providers.mailjawn.plugin import MailJawnOptions
from reconcile.providers.mailjawn.provider import MailJawnProvider
from tests.providers.test_mailjawn_client import make_client, make_emulator
from tests.support import run
from tests.test_convergence_property import PROPERTY_TYPES, VALUES, desired_states

EMAILS = [f"p{n}@example.com" for n in range(6)]
TAGS = ["alpha", "beta", "gamma"]
STATUSES = ["active", "unsubscribed", "bounced", "complained"]


@st.composite
def live_projects(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    subscribers: dict[str, dict[str, Any]] = {}
    for email in draw(st.lists(st.sampled_from(EMAILS), unique=True)):
        subscribers[email] = {
            "name": draw(st.sampled_from(["", "Old Name", "Ann"])),
            "status": draw(st.sampled_from(STATUSES)),
            "custom_fields": {
                **{p: draw(VALUES[p]) for p in PROPERTY_TYPES if draw(st.booleans())},
                **({"crm_id": "c-1"} if draw(st.booleans()) else {}),  # never in a manifest
            },
            "tags": draw(st.lists(st.sampled_from([*TAGS, "signup-form"]), unique=True)),
        }
    return subscribers


def additive_and_subscribed(state: State) -> State:
    """What MailJawn can hold: additive lists, subscribed memberships."""
    lists = {name: ContactList(name) for name in state.lists}
    memberships = {key: Membership(m.list_name, m.email) for key, m in state.memberships.items()}
    return State(dict(state.properties), lists, dict(state.contacts), memberships)


def seed(project: dict[str, dict[str, Any]]) -> MailJawnEmulator:
    emulator = make_emulator()
    for email, subscriber in project.items():
        emulator.seed_subscriber(
            email,
            subscriber["name"],
            subscriber["status"],
            custom_fields=subscriber["custom_fields"],
            tags=subscriber["tags"],
        )
    return emulator


def unmanaged(record: dict[str, Any] | None, want: Contact | None) -> dict[str, Any]:
    if record is None:
        return {}
    fields = {} if want is None else want.fields
    managed = set() if want is None else set(want.properties)
    return {
        "name": None if NAME in fields else record["name"],
        "status": None if EXCLUDED in fields else record["status"],
        "custom_fields": {k: v for k, v in record["custom_fields"].items() if k not in managed},
    }


async def plan_apply_plan(emulator: MailJawnEmulator, manifest: Manifest) -> tuple[Any, Any]:
    provider = MailJawnProvider(make_client(emulator))
    try:
        made, live = await engine.make_plan(manifest, provider)
        report = await engine.apply_plan(made, provider, live, force=True)
        again, _ = await engine.make_plan(manifest, provider)
        return report, again
    finally:
        await provider.aclose()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(project=live_projects(), generated=desired_states(), upserts=st.booleans())
def test_mailjawn_apply_then_plan_is_empty_and_nothing_unmanaged_changes(
    tmp_path: Path, project: dict[str, dict[str, Any]], generated: State, upserts: bool
) -> None:
    """`upserts`: whether the emulator's bulk import updates existing subscribers (the
    document does not say; apply finds out)."""
    desired = additive_and_subscribed(generated)
    emulator = seed(project)
    emulator.set_upsert(import_updates_existing=upserts)
    before = {email: copy.deepcopy(emulator.subscriber(email)) for email in EMAILS}
    manifest = Manifest(MailJawnOptions(type="mailjawn"), desired, [tmp_path / "m.yaml"])

    report, again = run(plan_apply_plan(emulator, manifest))

    assert report.ok, report.outcomes
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
    for email in EMAILS:
        was, now = before[email], emulator.subscriber(email)
        if was is None:
            continue
        assert now is not None
        want = desired.contacts.get(email)
        assert unmanaged(now, want) == unmanaged(was, want), email
        assert {t["slug"] for t in was["tags"]} <= {t["slug"] for t in now["tags"]}
        if was["status"] in ("bounced", "complained"):
            assert now["status"] == was["status"]
