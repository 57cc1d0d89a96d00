"""The Mailjet provider against the emulator: only what the manifest asks changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.errors import ManifestError
from reconcile.model import NAME, ContactValues
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from tests.support import consent_now, load, opted_back_in_to, plan_and_apply, plan_with, run

MANIFEST = """
provider: mailjet
properties:
  department: {type: str}
  seats: {type: int}
lists:
  newsletter: {}
  beta: {members: exact}
contacts:
  - email: User0001@example.com      # case differs from the account
    name: Renamed One
  - email: user0002@example.com
    properties: {seats: 9}
  - email: user0003@example.com
    properties: {department: null}
  - email: user0004@example.com
    lists: [newsletter]               # unsubscribed in the account: must stay so
  - email: user0005@example.com
    lists: [beta]
  - email: new.person@example.com
    name: New Person
    excluded_from_campaigns: false
    properties: {department: Ops, seats: 2}
    lists: {newsletter: subscribed, beta: unsubscribed}
"""

SEEDED = 1100


def seeded_account(settings: MailjetEmulatorSettings) -> MailjetEmulator:
    emulator = create_mailjet_emulator(settings)
    emulator.seed_property("department")
    emulator.seed_property("seats", "int")
    emulator.seed_property("legacy_score", "float")  # not in the manifest
    emulator.seed_list("newsletter")
    emulator.seed_list("beta")
    emulator.seed_list("partners")  # not in the manifest
    for n in range(1, SEEDED + 1):
        lists: dict[str, bool] = {"partners": False}
        if n % 3 == 0 or n == 4:
            lists["newsletter"] = n == 4  # user0004 unsubscribed from newsletter
        if n in (6, 7):
            lists["beta"] = n == 7  # 6 is undeclared on an exact list; 7 left it
        emulator.seed_contact(
            f"user{n:04d}@example.com",
            name=f"User {n}",
            excluded=n % 10 == 0,
            properties={"department": "Sales", "seats": n, "legacy_score": n / 2},
            lists=lists,
        )
    return emulator


def snapshot(emulator: MailjetEmulator, count: int = SEEDED) -> dict[str, Any]:
    return {
        f"user{n:04d}@example.com": emulator.contact(f"user{n:04d}@example.com")
        for n in range(1, count + 1)
    }


VARIANTS = [
    MailjetEmulatorSettings(job_polls_to_complete=1),
    MailjetEmulatorSettings(
        duplicate_contact="return_existing",
        total_mode="full",
        contact_put="merge",
        job_polls_to_complete=1,
    ),
]


@pytest.mark.parametrize("settings", VARIANTS, ids=["real-api", "seed-document"])
def test_plan_shows_only_what_the_manifest_asks(
    tmp_path: Path, settings: MailjetEmulatorSettings
) -> None:
    emulator = seeded_account(settings)
    made = run(plan_with(emulator, load(tmp_path, MANIFEST)))

    assert [c.address for c in made.changes] == [
        "contact:new.person@example.com",
        "contact:user0001@example.com",
        "contact:user0002@example.com",
        "contact:user0003@example.com",
        "membership:beta/new.person@example.com",
        "membership:beta/user0005@example.com",
        "membership:newsletter/new.person@example.com",
        "membership:beta/user0006@example.com",
    ]
    updates = {c.email: (c.before, c.after) for c in made.changes if c.action.value == "update"}
    assert updates["user0001@example.com"] == (
        ContactValues({NAME: "User 1"}),
        ContactValues({NAME: "Renamed One"}),
    )
    assert updates["user0002@example.com"] == (
        ContactValues(properties={"seats": 2}),
        ContactValues(properties={"seats": 9}),
    )
    assert updates["user0003@example.com"] == (
        ContactValues(properties={"department": "Sales"}),
        ContactValues(properties={"department": None}),
    )
    assert any("user0004@example.com" in w and "unsubscribed" in w for w in made.warnings)


@pytest.mark.parametrize("settings", VARIANTS, ids=["real-api", "seed-document"])
def test_apply_changes_nothing_unmanaged_and_converges(
    tmp_path: Path, settings: MailjetEmulatorSettings
) -> None:
    emulator = seeded_account(settings)
    manifest = load(tmp_path, MANIFEST)
    before = snapshot(emulator)

    _, report = run(plan_and_apply(emulator, manifest))

    assert report.ok, report.outcomes
    after = snapshot(emulator)
    changed = {email for email in before if before[email] != after[email]}
    assert changed == {f"user000{n}@example.com" for n in (1, 2, 3, 5, 6)}
    one, two, three = (after[f"user000{n}@example.com"] for n in (1, 2, 3))
    assert one["Name"] == "Renamed One"
    assert (
        one["IsExcludedFromCampaigns"] == before["user0001@example.com"]["IsExcludedFromCampaigns"]
    )
    assert one["Properties"] == before["user0001@example.com"]["Properties"]
    assert two["Properties"] == {"department": "Sales", "seats": 9, "legacy_score": 1.0}
    assert two["Name"] == "User 2"
    assert "department" not in three["Properties"]
    assert three["Properties"]["legacy_score"] == 1.5
    assert after["user0004@example.com"]["Lists"]["newsletter"] is True  # still unsubscribed
    assert "beta" not in after["user0006@example.com"]["Lists"]  # exact list: removed
    assert after["user0007@example.com"]["Lists"]["beta"] is True  # left it: record kept
    new = emulator.contact("new.person@example.com")
    assert new is not None
    assert new["Name"] == "New Person"
    assert new["Properties"] == {"department": "Ops", "seats": 2}
    assert new["Lists"] == {"newsletter": False, "beta": True}

    again = run(plan_with(emulator, manifest))
    assert again.is_empty, [c.address for c in again.changes]


@pytest.mark.parametrize("duplicate", ["mj18", "return_existing"])
def test_contact_created_by_someone_else_meanwhile_is_updated_not_duplicated(
    tmp_path: Path, duplicate: str
) -> None:
    emulator = create_mailjet_emulator(
        MailjetEmulatorSettings(duplicate_contact=duplicate)  # type: ignore[arg-type]
    )
    emulator.seed_property("tier")
    emulator.seed_contact("late@example.com", name="Old", excluded=True, properties={"tier": "x"})
    emulator.hide_from_listing("late@example.com")  # eventual consistency: plan misses it
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        contacts:
          - email: late@example.com
            name: Fresh
        """,
    )

    made, report = run(plan_and_apply(emulator, manifest))

    assert [c.action.value for c in made.changes] == ["create"]
    assert report.ok, report.outcomes
    contact = emulator.contact("late@example.com")
    assert contact is not None
    assert contact["Name"] == "Fresh"
    assert contact["IsExcludedFromCampaigns"] is True  # unmanaged: kept despite full PUT
    assert contact["Properties"] == {"tier": "x"}


def test_an_opt_in_resubscribes_once(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.seed_contact("left@example.com", lists={"news": True})
    consent = consent_now()  # after the unsubscribe
    manifest = opted_back_in_to(tmp_path, "news", "left@example.com", consent)

    made, report = run(plan_and_apply(emulator, manifest))

    assert [(c.address, sorted(c.flags)) for c in made.changes] == [
        ("membership:news/left@example.com", ["resubscribe"])
    ]
    assert report.ok
    contact = emulator.contact("left@example.com")
    assert contact is not None
    assert contact["Lists"] == {"news": False}
    # They unsubscribe again: the same opt-in does not bring them back.
    emulator.seed_unsubscribe("left@example.com", "news")
    again = run(plan_with(emulator, manifest))
    assert again.is_empty
    assert any("not before the opt-in" in w for w in again.warnings)


def test_a_resubscribe_true_manifest_is_refused_with_the_new_form(tmp_path: Path) -> None:
    with pytest.raises(
        ManifestError, match=r"lists: news: resubscribe: true is replaced by opted_in_at"
    ):
        load(
            tmp_path,
            """
            provider: mailjet
            lists: {news: {}}
            contacts:
              - email: left@example.com
                lists: {news: {status: subscribed, resubscribe: true}}
            """,
        )


def test_property_type_change_is_refused_unless_replace(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_property("seats", "str")
    refused = """
        provider: mailjet
        properties:
          seats: {type: int}
    """
    with pytest.raises(Exception, match=r"audience.yaml:3: properties.seats: .*replace: true"):
        run(plan_with(emulator, load(tmp_path, refused)))

    allowed = refused.replace("{type: int}", "{type: int, replace: true}")
    made, report = run(plan_and_apply(emulator, load(tmp_path, allowed)))
    assert [(c.address, c.action.value) for c in made.changes] == [("property:seats", "update")]
    assert report.ok
    assert run(plan_with(emulator, load(tmp_path, allowed))).is_empty
