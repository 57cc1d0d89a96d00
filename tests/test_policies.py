"""Prune policies, protect:, safety thresholds and consent effects, against the Mailjet
emulator: only what a policy asks for changes, and nothing outside its scope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconcile import engine
from reconcile.diff import Effect
from reconcile.errors import ManifestError, UnsafePlanError
from reconcile.plan import Plan
from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailjet.emulator.app import MailjetEmulator, create_mailjet_emulator
from reconcile.render.json import render_json
from reconcile.render.markdown import render_markdown
from reconcile.render.redact import redact
from tests.support import load, mailjet_provider, plan_with, run
from tests.test_convergence_property_mailchimp import AUDIENCE as CHIMP_AUDIENCE
from tests.test_convergence_property_mailchimp import provider as chimp_provider

HEAD = """
provider: mailjet
properties:
  source: {type: str}
lists:
  newsletter: {}
  beta: {members: exact}
contacts:
  - email: kept@example.com
    lists: [newsletter, beta]
"""


def account() -> MailjetEmulator:
    """kept (declared), gone1..3 (on managed lists, undeclared), signup (only on an
    unmanaged list: arrived through a form), left (unsubscribed from newsletter)."""
    emulator = create_mailjet_emulator()
    emulator.seed_property("source")
    emulator.seed_property("legacy")
    for name in ("newsletter", "beta", "signups", "old"):
        emulator.seed_list(name)
    emulator.seed_contact("kept@example.com", lists={"newsletter": False, "beta": False})
    for n in (1, 2, 3):
        source = "crm" if n < 3 else "form"
        emulator.seed_contact(
            f"gone{n}@example.com",
            name=f"Gone {n}",
            properties={"source": source},
            lists={"newsletter": False, "beta": False},
        )
    emulator.seed_contact("signup@example.com", lists={"signups": False})
    emulator.seed_contact("left@example.com", lists={"newsletter": True})
    return emulator


def plan_for(tmp_path: Path, emulator: MailjetEmulator, extra: str) -> Plan:
    return run(plan_with(emulator, load(tmp_path, HEAD + extra)))


def addresses(plan: Plan) -> dict[str, str | None]:
    return {c.address: (c.effect.value if c.effect else None) for c in plan.changes}


async def apply(emulator: MailjetEmulator, plan: Plan) -> None:
    provider = mailjet_provider(emulator)
    try:
        report = await engine.apply_plan(plan, provider)
        assert report.ok, report.outcomes
    finally:
        await provider.aclose()


def test_without_a_policy_undeclared_contacts_are_left_alone_and_exact_removes(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path, account(), "")
    assert addresses(plan) == {
        f"membership:beta/gone{n}@example.com": Effect.REMOVE_FROM_LIST.value for n in (1, 2, 3)
    }


def test_exact_members_can_be_unsubscribed_instead_of_removed(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, account(), "prune: {members: unsubscribe}\n")
    assert set(addresses(plan).values()) == {Effect.UNSUBSCRIBE.value}
    assert len(plan.changes) == 3


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("exclude", {f"contact:gone{n}@example.com": Effect.EXCLUDE.value for n in (1, 2, 3)}),
        ("delete", {f"contact:gone{n}@example.com": Effect.ERASE.value for n in (1, 2, 3)}),
    ],
)
def test_contact_prune_touches_only_undeclared_contacts_on_managed_lists(
    tmp_path: Path, action: str, expected: dict[str, str]
) -> None:
    plan = plan_for(tmp_path, account(), f"prune: {{contacts: {{action: {action}}}}}\n")
    changes = {a: e for a, e in addresses(plan).items() if a.startswith("contact:")}
    assert changes == expected  # never signup@ (unmanaged list) nor left@ (unsubscribed)
    if action == "delete":
        # erased contacts need no membership removals first
        assert all(not a.startswith("membership:") for a in addresses(plan))


def test_unsubscribe_prune_applies_and_converges_keeping_unsubscribes(tmp_path: Path) -> None:
    emulator = account()
    extra = "prune: {contacts: {action: unsubscribe}, members: unsubscribe}\n"
    plan = plan_for(tmp_path, emulator, extra)
    assert set(addresses(plan).values()) == {Effect.UNSUBSCRIBE.value}
    run(apply(emulator, plan))
    assert plan_for(tmp_path, emulator, extra).is_empty
    gone = emulator.contact("gone1@example.com")
    assert gone is not None
    assert gone["Lists"] == {"newsletter": True, "beta": True}
    assert gone["Properties"] == {"source": "crm"}  # nothing else changed
    assert emulator.contact("signup@example.com") is not None


def test_a_marker_property_narrows_the_scope(tmp_path: Path) -> None:
    extra = """
prune:
  contacts:
    action: delete
    scope: {lists: [newsletter], marker: {property: source, value: crm}}
"""
    plan = plan_for(tmp_path, account(), extra)
    erased = {a for a, e in addresses(plan).items() if e == Effect.ERASE.value}
    assert erased == {"contact:gone1@example.com", "contact:gone2@example.com"}


def test_undeclared_lists_and_properties_are_deleted_only_when_asked(tmp_path: Path) -> None:
    extra = "prune: {lists: delete, properties: delete}\nprotect: {lists: [signups]}\n"
    plan = plan_for(tmp_path, account(), extra)
    assert {a: e for a, e in addresses(plan).items() if not a.startswith("membership")} == {
        "list:old": Effect.DELETE_LIST.value,
        "property:legacy": Effect.DELETE_PROPERTY.value,
    }


def test_protected_contacts_are_never_pruned(tmp_path: Path) -> None:
    extra = "prune: {contacts: {action: delete}}\nprotect: {contacts: [GONE1@example.com]}\n"
    plan = plan_for(tmp_path, account(), extra)
    assert "contact:gone1@example.com" not in addresses(plan)
    assert "membership:beta/gone1@example.com" not in addresses(plan)
    assert "contact:gone2@example.com" in addresses(plan)


def test_an_explicit_unsubscribe_of_a_protected_contact_is_an_error(tmp_path: Path) -> None:
    extra = """
  - email: gone1@example.com
    lists: {newsletter: unsubscribed}
protect: {contacts: [gone1@example.com]}
"""
    with pytest.raises(ManifestError) as raised:
        plan_for(tmp_path, account(), extra)
    assert "contacts[1].lists.newsletter" in str(raised.value)
    assert "protected" in str(raised.value)


def crowd(size: int) -> MailjetEmulator:
    emulator = create_mailjet_emulator()
    emulator.seed_property("seats", "int")
    emulator.seed_list("newsletter")
    for n in range(size):
        emulator.seed_contact(
            f"p{n}@example.com", properties={"seats": 1}, lists={"newsletter": False}
        )
    return emulator


def crowd_manifest(size: int, changed: int, safety: str = "") -> str:
    lines = ["provider: mailjet", "properties: {seats: {type: int}}", "lists: {newsletter: {}}"]
    lines += [safety, "contacts:"]
    for n in range(size):
        seats = 2 if n < changed else 1
        lines.append(f"  - {{email: p{n}@example.com, properties: {{seats: {seats}}}}}")
    return "\n".join(lines) + "\n"


def test_updates_over_the_threshold_are_refused_unless_forced(tmp_path: Path) -> None:
    emulator = crowd(30)
    plan = run(plan_with(emulator, load(tmp_path, crowd_manifest(30, 10))))
    assert plan.unsafe_reasons() == [
        "10 updates of 30 live contact records (33%, more than the 30% allowed)"
    ]
    with pytest.raises(UnsafePlanError, match="--force"):
        run(apply(emulator, plan))
    assert emulator.contact("p0@example.com")["Properties"] == {"seats": 1}  # type: ignore[index]
    plan.raise_if_unsafe(force=True)  # no error


def test_thresholds_are_configurable_and_need_enough_records(tmp_path: Path) -> None:
    raised = "safety: {max_update_share: 0.5}"
    plan = run(plan_with(crowd(30), load(tmp_path, crowd_manifest(30, 10, raised))))
    assert plan.unsafe_reasons() == []
    small = run(plan_with(crowd(19), load(tmp_path, crowd_manifest(19, 19))))
    assert small.unsafe_reasons() == []


def test_deletes_over_the_threshold_are_refused(tmp_path: Path) -> None:
    emulator = crowd(30)
    manifest = crowd_manifest(27, 0) + "prune: {contacts: {action: delete}}\n"
    plan = run(plan_with(emulator, load(tmp_path, manifest)))
    assert plan.unsafe_reasons() == []  # 3 of 30 is exactly the 10% allowed
    heavy = crowd_manifest(20, 0) + "prune: {contacts: {action: delete}}\n"
    plan = run(plan_with(emulator, load(tmp_path, heavy)))
    assert plan.unsafe_reasons() == [
        "10 deletes, removals and unsubscribes of 30 live contact records "
        "(33%, more than the 10% allowed)"
    ]


def test_the_plan_file_names_effects_and_keeps_the_safety_check(tmp_path: Path) -> None:
    emulator = crowd(30)
    manifest = crowd_manifest(20, 0) + "prune: {contacts: {action: delete}}\n"
    plan = run(plan_with(emulator, load(tmp_path, manifest)))
    data = json.loads(plan.dumps())
    erased = [c for c in data["changes"] if c.get("effect") == Effect.ERASE.value]
    assert len(erased) == 10
    assert all(c["irreversible"] is True for c in erased)
    assert data["safety"]["live_counts"]["contact"] == 30
    saved = Plan.loads(plan.dumps(), "plan.json")
    assert saved.unsafe_reasons() == plan.unsafe_reasons() != []


def test_mailjawn_refuses_policies_it_cannot_carry_out(tmp_path: Path) -> None:
    text = """
provider: mailjawn
lists: {newsletter: {}}
prune: {lists: delete, contacts: {action: unsubscribe}}
"""
    with pytest.raises(ManifestError) as raised:
        engine.validate([write(tmp_path, text)])
    message = str(raised.value)
    assert "prune.lists" in message
    assert "prune.contacts.action" in message


def write(directory: Path, text: str) -> Path:
    path = directory / "audience.yaml"
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def test_redact_masks_emails_names_and_values_in_every_format(tmp_path: Path) -> None:
    extra = """
  - email: new.person@example.com
    name: Secret Name
    properties: {source: private-value}
    lists: [newsletter]
prune: {contacts: {action: exclude}}
"""
    plan = plan_for(tmp_path, account(), extra)
    masked = redact(plan)
    outputs: dict[str, Any] = {
        "json": render_json(masked),
        "markdown": render_markdown(masked),
    }
    for name, text in outputs.items():
        assert "new.person@" not in text, name
        assert "Secret Name" not in text, name
        assert "private-value" not in text, name
        assert "n***@example.com" in text, name
    assert [c.effect for c in masked.changes] == [c.effect for c in plan.changes]


# ---- Mailchimp: delete is permanent, exact removes tags, exclude unsubscribes ------------

CHIMP_HEAD = """
provider: {type: mailchimp, audience: a1b2c3d4e5}
properties:
  SOURCE: {type: str}
lists:
  newsletter: {}
  beta: {members: exact}
contacts:
  - email: kept@acme-widgets.io
    lists: [newsletter, beta]
"""


def chimp_account() -> MailchimpEmulator:
    """As account(): kept (declared), gone1..3 (tagged with managed lists, undeclared),
    signup (only an unmanaged tag), left (unsubscribed, tagged newsletter)."""
    emulator = create_mailchimp_emulator()
    emulator.seed_audience("Acme Newsletter", CHIMP_AUDIENCE)
    emulator.seed_merge_field(CHIMP_AUDIENCE, "SOURCE")
    emulator.seed_merge_field(CHIMP_AUDIENCE, "LEGACY")
    emulator.seed_tag(CHIMP_AUDIENCE, "old")
    emulator.seed_member(CHIMP_AUDIENCE, "kept@acme-widgets.io", tags=["newsletter", "beta"])
    for n in (1, 2, 3):
        emulator.seed_member(
            CHIMP_AUDIENCE,
            f"gone{n}@acme-widgets.io",
            merge_fields={"SOURCE": "crm" if n < 3 else "form", "FNAME": f"Gone {n}"},
            tags=["newsletter", "beta"],
        )
    emulator.seed_member(CHIMP_AUDIENCE, "signup@acme-widgets.io", tags=["signups"])
    emulator.seed_member(
        CHIMP_AUDIENCE, "left@acme-widgets.io", "unsubscribed", tags=["newsletter"]
    )
    return emulator


def chimp_plan(tmp_path: Path, emulator: MailchimpEmulator, extra: str) -> Plan:
    async def make() -> Plan:
        provider = chimp_provider(emulator)
        try:
            made, _ = await engine.make_plan(load(tmp_path, CHIMP_HEAD + extra), provider)
            return made
        finally:
            await provider.aclose()

    return run(make())


def chimp_apply(emulator: MailchimpEmulator, plan: Plan) -> None:
    async def go() -> None:
        provider = chimp_provider(emulator)
        try:
            report = await engine.apply_plan(plan, provider)
            assert report.ok, report.outcomes
        finally:
            await provider.aclose()

    run(go())


def chimp_member(emulator: MailchimpEmulator, email: str) -> dict[str, Any]:
    found = emulator.member(CHIMP_AUDIENCE, email)
    assert found is not None, email
    return found


def chimp_tags(emulator: MailchimpEmulator, email: str) -> set[str]:
    return {t["name"] for t in chimp_member(emulator, email)["tags"]}


def test_mailchimp_exact_list_removes_the_tag_and_nothing_else(tmp_path: Path) -> None:
    emulator = chimp_account()
    plan = chimp_plan(tmp_path, emulator, "")
    assert addresses(plan) == {
        f"membership:beta/gone{n}@acme-widgets.io": Effect.REMOVE_FROM_LIST.value for n in (1, 2, 3)
    }
    chimp_apply(emulator, plan)
    assert chimp_plan(tmp_path, emulator, "").is_empty
    gone = chimp_member(emulator, "gone1@acme-widgets.io")
    assert {t["name"] for t in gone["tags"]} == {"newsletter"}
    assert gone["status"] == "subscribed"
    assert gone["merge_fields"]["SOURCE"] == "crm"
    assert gone["merge_fields"]["FNAME"] == "Gone 1"


def test_mailchimp_exclude_prune_unsubscribes_only_undeclared_members_of_managed_tags(
    tmp_path: Path,
) -> None:
    emulator = chimp_account()
    extra = "prune: {contacts: {action: exclude}}\n"
    plan = chimp_plan(tmp_path, emulator, extra)
    changes = {a: e for a, e in addresses(plan).items() if a.startswith("contact:")}
    assert changes == {f"contact:gone{n}@acme-widgets.io": Effect.EXCLUDE.value for n in (1, 2, 3)}
    chimp_apply(emulator, plan)
    assert chimp_plan(tmp_path, emulator, extra).is_empty
    for n in (1, 2, 3):
        gone = chimp_member(emulator, f"gone{n}@acme-widgets.io")
        assert gone["status"] == "unsubscribed"
        assert gone["merge_fields"]["FNAME"] == f"Gone {n}"
    assert chimp_member(emulator, "signup@acme-widgets.io")["status"] == "subscribed"
    assert chimp_member(emulator, "kept@acme-widgets.io")["status"] == "subscribed"
    assert emulator.opt_in_emails_sent(CHIMP_AUDIENCE, "gone1@acme-widgets.io") == 0


def test_mailchimp_delete_prune_is_a_permanent_delete_and_says_so(tmp_path: Path) -> None:
    emulator = chimp_account()
    extra = (
        "prune: {contacts: {action: delete, scope: {lists: [newsletter], "
        "marker: {property: SOURCE, value: crm}}}}\n"
    )
    plan = chimp_plan(tmp_path, emulator, extra)
    erased = {a for a, e in addresses(plan).items() if e == Effect.ERASE.value}
    assert erased == {"contact:gone1@acme-widgets.io", "contact:gone2@acme-widgets.io"}
    warned = " ".join(str(w) for w in plan.warnings)
    assert "deleted permanently" in warned
    chimp_apply(emulator, plan)
    assert chimp_plan(tmp_path, emulator, extra).is_empty
    assert emulator.member(CHIMP_AUDIENCE, "gone1@acme-widgets.io") is None
    with pytest.raises(ValueError, match=r"(?i)forgotten|permanently"):  # never again by API
        emulator.seed_member(CHIMP_AUDIENCE, "gone1@acme-widgets.io")
    assert chimp_member(emulator, "gone3@acme-widgets.io")["status"] == "subscribed"
    assert emulator.member(CHIMP_AUDIENCE, "signup@acme-widgets.io") is not None


def test_mailchimp_tags_and_merge_fields_are_deleted_only_when_asked(tmp_path: Path) -> None:
    emulator = chimp_account()
    extra = "prune: {lists: delete, properties: delete}\nprotect: {lists: [signups]}\n"
    plan = chimp_plan(tmp_path, emulator, extra)
    definitions = {a: e for a, e in addresses(plan).items() if not a.startswith("membership")}
    assert definitions == {
        "list:old": Effect.DELETE_LIST.value,
        **{
            f"property:{tag}": Effect.DELETE_PROPERTY.value
            for tag in ("LEGACY", "FNAME", "LNAME", "PHONE")
        },
    }
    chimp_apply(emulator, plan)
    assert chimp_plan(tmp_path, emulator, extra).is_empty
    assert chimp_tags(emulator, "signup@acme-widgets.io") == {"signups"}
    assert chimp_tags(emulator, "gone1@acme-widgets.io") == {"newsletter"}


def test_mailchimp_protected_members_are_never_pruned_nor_excluded(tmp_path: Path) -> None:
    emulator = chimp_account()
    extra = "prune: {contacts: {action: delete}}\nprotect: {contacts: [GONE1@acme-widgets.io]}\n"
    plan = chimp_plan(tmp_path, emulator, extra)
    assert "contact:gone1@acme-widgets.io" not in addresses(plan)
    assert "membership:beta/gone1@acme-widgets.io" not in addresses(plan)
    assert "contact:gone2@acme-widgets.io" in addresses(plan)
    explicit = """
  - {email: gone1@acme-widgets.io, excluded_from_campaigns: true}
protect: {contacts: [gone1@acme-widgets.io]}
"""
    with pytest.raises(ManifestError) as raised:
        chimp_plan(tmp_path, emulator, explicit)
    assert "contacts[1]" in str(raised.value)
    assert "protected" in str(raised.value)
