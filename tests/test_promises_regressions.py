"""Regressions of issue #11 defects found in real use: consent through every field, opt-ins
used once, structured identities, one apply converges, protection, account-bound plans.

Each test talks HTTP to an emulator (in-process ASGI transport) through the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from reconcile import engine
from reconcile.cli import app
from reconcile.errors import ManifestError, PlanError, StalePlanError
from reconcile.manifest.loader import Manifest
from reconcile.plan import Plan
from reconcile.providers.base import ApplyReport
from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.emulator.app import MailJawnEmulator, create_mailjawn_emulator
from reconcile.providers.mailjawn.provider import MailJawnProvider
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.provider import MailjetIds
from reconcile.sandbox.common import EmulatorTransport
from tests.support import (
    FAST_RETRY,
    consent_now,
    load,
    mailjet_provider,
    opted_back_in_to,
    plan_and_apply,
    plan_with,
    run,
)
from tests.test_convergence_property_mailchimp import AUDIENCE as CHIMP_AUDIENCE
from tests.test_convergence_property_mailchimp import provider as chimp_provider


def opted_back_in(tmp_path: Path, provider: str, email: str, consent: str) -> Manifest:
    """A manifest that brings `email` back into campaigns with consent given at `consent`."""
    return load(
        tmp_path,
        f"""
        provider: {provider}
        contacts:
          - {{email: {email}, excluded_from_campaigns: false, opted_in_at: "{consent}"}}
        """,
    )


def converged(emulator: MailjetEmulator, manifest: Manifest) -> Plan:
    _, report = run(plan_and_apply(emulator, manifest))
    assert report.ok, report.outcomes
    again = run(plan_with(emulator, manifest))
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
    return again


# ---- consent through every field ------------------------------------------------------


def test_excluded_false_does_not_reinclude_a_globally_unsubscribed_contact(
    tmp_path: Path,
) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_contact("gone@example.com", "Gone", excluded=True)
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        contacts:
          - {email: gone@example.com, name: Gone Again, excluded_from_campaigns: false}
        """,
    )

    again = converged(emulator, manifest)

    contact = emulator.contact("gone@example.com")
    assert contact is not None
    assert contact["IsExcludedFromCampaigns"] is True
    assert contact["Name"] == "Gone Again"  # the rest of the entry still applies
    assert any(w.startswith("contact:gone@example.com: opted out") for w in again.warnings)


def test_a_contact_opt_in_reincludes_once(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_contact("back@example.com", excluded=True)
    consent = consent_now()
    manifest = opted_back_in(tmp_path, "mailjet", "back@example.com", consent)

    made, report = run(plan_and_apply(emulator, manifest))

    assert report.ok
    assert [(c.address, c.effect and c.effect.value) for c in made.changes] == [
        ("contact:back@example.com", "re-include in campaigns")
    ]
    assert (emulator.contact("back@example.com") or {})["IsExcludedFromCampaigns"] is False
    time.sleep(1.05)
    emulator.seed_unsubscribe("back@example.com")  # they leave again, after the opt-in
    converged(emulator, manifest)
    assert (emulator.contact("back@example.com") or {})["IsExcludedFromCampaigns"] is True


def test_an_unknown_opt_out_time_is_never_undone(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator(MailjetEmulatorSettings(stamp_exclusion=False))
    emulator.seed_contact("someone@example.com")
    manifest = load(tmp_path, "provider: mailjet\ncontacts: [{email: someone@example.com}]\n")
    provider = mailjet_provider(emulator)

    async def exclude_through_the_api() -> None:
        try:
            live = await provider.read(manifest.read_scope())
            assert isinstance(live.provider_records, MailjetIds)
            contact_id = live.provider_records.contacts["someone@example.com"]
            assert live.contacts
            await provider.client.put(
                f"/contact/{contact_id}", {"Name": "", "IsExcludedFromCampaigns": True}
            )
        finally:
            await provider.aclose()

    run(exclude_through_the_api())
    consent = consent_now()
    manifest = opted_back_in(tmp_path, "mailjet", "someone@example.com", consent)

    again = converged(emulator, manifest)

    assert (emulator.contact("someone@example.com") or {})["IsExcludedFromCampaigns"] is True
    assert any("gives no time for the opt-out" in w for w in again.warnings)


def mailjawn_provider(emulator: MailJawnEmulator) -> MailJawnProvider:
    client = MailJawnClient(
        api_key=next(iter(emulator.settings.api_keys)),
        project_id=emulator.settings.project_id,
        base_url="http://mailjawn.test",
        transport=EmulatorTransport(app=emulator.app),
        reads_per_minute=1_000_000,
        writes_per_minute=1_000_000,
        retry=FAST_RETRY,
    )
    return MailJawnProvider(client)


async def mailjawn_plan_and_apply(emulator: MailJawnEmulator, manifest: Manifest) -> Plan:
    provider = mailjawn_provider(emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        report = await engine.apply_plan(made, provider, live, force=True)
        assert report.ok, report.outcomes
        again, _ = await engine.make_plan(manifest, provider)
        assert again.is_empty, [(c.address, c.after) for c in again.changes]
        return made
    finally:
        await provider.aclose()


def test_mailjawn_unsubscribed_comes_back_only_with_an_opt_in_newer_than_the_record(
    tmp_path: Path,
) -> None:
    emulator = create_mailjawn_emulator()
    emulator.seed_subscriber("left@example.com", status="unsubscribed")
    plain = load(
        tmp_path,
        """
        provider: mailjawn
        contacts: [{email: left@example.com, excluded_from_campaigns: false}]
        """,
    )

    made = run(mailjawn_plan_and_apply(emulator, plain))

    assert made.is_empty
    assert any(w.startswith("contact:left@example.com: opted out") for w in made.warnings)
    assert (emulator.subscriber("left@example.com") or {})["status"] == "unsubscribed"

    consent = consent_now()
    opted_in = opted_back_in(tmp_path, "mailjawn", "left@example.com", consent)
    made = run(mailjawn_plan_and_apply(emulator, opted_in))
    assert [c.address for c in made.changes] == ["contact:left@example.com"]
    assert (emulator.subscriber("left@example.com") or {})["status"] == "active"

    time.sleep(1.05)
    unsubscribe_through_the_api(emulator, "left@example.com")  # they leave again
    made = run(mailjawn_plan_and_apply(emulator, opted_in))
    assert made.is_empty
    assert (emulator.subscriber("left@example.com") or {})["status"] == "unsubscribed"


async def patch_status(emulator: MailJawnEmulator, email: str, status: str) -> None:
    """Another tool (or the person, through a link) sets a subscriber's status."""
    found = emulator.subscriber(email)
    assert found is not None
    transport = EmulatorTransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        answer = await http.patch(
            f"/api/v1/projects/{emulator.settings.project_id}/subscribers/{found['id']}/",
            headers={"Authorization": f"Bearer {next(iter(emulator.settings.api_keys))}"},
            json={"status": status},
        )
    assert answer.status_code == 200, answer.text


def unsubscribe_through_the_api(emulator: MailJawnEmulator, email: str) -> None:
    run(patch_status(emulator, email, "unsubscribed"))


def test_an_opt_in_in_the_future_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"contacts\[0\]\.opted_in_at: .* is in the future"):
        load(
            tmp_path,
            """
            provider: mailjet
            contacts: [{email: a@example.com, opted_in_at: "2999-01-01T00:00:00Z"}]
            """,
        )


# ---- identities are structured ---------------------------------------------------------


def test_list_names_with_slashes_and_emails_with_slashes_keep_their_identity(
    tmp_path: Path,
) -> None:
    emulator = create_mailjet_emulator()
    for name in ("a", "a/b", "Sales/EMEA", "x ?#%&+", ".dot", "Ünï", "CASE", "case"):
        emulator.seed_list(name)
    # `membership:a/b/x@example.com` is both ("a", "b/x@...") and ("a/b", "x@...").
    emulator.seed_contact("b/x@example.com", lists={"a": False})
    emulator.seed_contact("x@example.com", lists={"a/b": False})
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        lists:
          a: {members: exact}
          a/b: {members: exact}
          Sales/EMEA: {}
          "x ?#%&+": {}
          .dot: {}
          Ünï: {}
          CASE: {}
          case: {members: exact}
        contacts:
          - email: b/x@example.com
            lists: [a, Sales/EMEA, "x ?#%&+", .dot, Ünï, CASE]
        """,
    )

    made = run(plan_with(emulator, manifest))
    removals = [c.key for c in made.changes if c.action.value == "delete"]
    assert removals == [("a/b", "x@example.com")]

    converged(emulator, manifest)

    assert (emulator.contact("b/x@example.com") or {})["Lists"] == {
        "a": False,
        "Sales/EMEA": False,
        "x ?#%&+": False,
        ".dot": False,
        "Ünï": False,
        "CASE": False,
    }
    assert (emulator.contact("x@example.com") or {})["Lists"] == {}


def test_a_saved_plan_round_trips_structured_keys(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("a/b")
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        lists: {a/b: {}}
        contacts: [{email: c/d@example.com, lists: [a/b]}]
        """,
    )
    made = run(plan_with(emulator, manifest))

    loaded = Plan.loads(made.dumps(), "plan.json")

    assert [c.key for c in loaded.changes] == [c.key for c in made.changes]
    assert ("a/b", "c/d@example.com") in [c.key for c in loaded.changes]


# ---- one apply converges ---------------------------------------------------------------


def test_replacing_a_property_rewrites_declared_values_in_the_same_apply(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_property("seats", "str")
    emulator.seed_contact("a@example.com", properties={"seats": "3"})
    emulator.seed_contact("b@example.com", properties={"seats": "4"})
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        properties: {seats: {type: int, replace: true}}
        contacts:
          - {email: a@example.com, properties: {seats: 3}}
          - {email: b@example.com}
        """,
    )

    converged(emulator, manifest)

    assert (emulator.contact("a@example.com") or {})["Properties"] == {"seats": 3}
    assert (emulator.contact("b@example.com") or {})["Properties"] == {}  # lost, as the plan said


# ---- protection ------------------------------------------------------------------------


def test_protection_covers_exclusion_by_prune_and_refuses_it_in_the_manifest(
    tmp_path: Path,
) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.seed_contact("ceo@example.com", lists={"news": False})
    emulator.seed_contact("other@example.com", lists={"news": False})
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        lists: {news: {}}
        prune: {contacts: {action: exclude}}
        protect: {contacts: [ceo@example.com, typo@exmaple.com]}
        safety: {max_delete_share: 1.0}
        """,
    )

    made = run(plan_with(emulator, manifest))

    assert [(c.address, c.effect and c.effect.value) for c in made.changes] == [
        ("contact:other@example.com", "exclude from campaigns")
    ]
    assert any(w.startswith("contact:typo@exmaple.com: is under protect") for w in made.warnings)
    path = tmp_path / "audience.yaml"
    path.write_text(
        "provider: mailjet\nprotect: {contacts: [ceo@example.com]}\n"
        "contacts:\n  - {email: ceo@example.com, excluded_from_campaigns: true}\n",
        encoding="utf-8",
    )
    # Offline, a note (an export declares a protected contact who excluded themselves)...
    notes = engine.validate([path]).notes
    assert any(
        n.endswith(
            "audience.yaml:4: contacts[0].email: is protected (protect: in the "
            "manifest), so a plan that would exclude it from campaigns is refused (unless "
            "it already is)"
        )
        for n in notes
    ), notes
    # ...and an error when the plan would exclude them.
    with pytest.raises(ManifestError, match=r"audience.yaml:4: contacts\[0\]\.email: is protected"):
        run(plan_with(emulator, engine.validate([path])))


# ---- plans belong to one account -------------------------------------------------------


def test_a_plan_is_refused_by_another_account_and_writes_nothing(tmp_path: Path) -> None:
    ours = create_mailjet_emulator()
    theirs = create_mailjet_emulator(MailjetEmulatorSettings(api_key="other-key"))
    manifest = load(tmp_path, "provider: mailjet\ncontacts: [{email: a@example.com}]\n")
    made = run(plan_with(ours, manifest))
    saved = Plan.loads(made.dumps(), "plan.json")
    assert saved.account == {
        "kind": "service",
        "url": "http://mailjet.test",
        "api_key_sha256": "db6bcf6a2a36ee93",  # the key itself is never written
    }

    async def apply_elsewhere() -> None:
        provider = mailjet_provider(theirs)
        try:
            await engine.apply_plan(saved, provider)
        finally:
            await provider.aclose()

    with pytest.raises(PlanError, match="made against another account"):
        run(apply_elsewhere())
    assert theirs.contact("a@example.com") is None
    assert theirs.control.calls() == []  # refused before reading or writing anything


# ---- full-replacement writes between plan and apply -------------------------------------


async def plan_then_apply_after(
    emulator: MailjetEmulator, manifest: Manifest, meanwhile: Callable[[], None]
) -> ApplyReport:
    """Plan, let the world act, then apply that plan with the live state it was made from
    (what `apply PATH` does after the confirmation prompt)."""
    provider = mailjet_provider(emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        meanwhile()
        return await engine.apply_plan(made, provider, live, force=True)
    finally:
        await provider.aclose()


def test_a_rename_does_not_undo_an_opt_out_made_after_planning(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_contact("ann@example.com", "Ann")
    manifest = load(
        tmp_path, "provider: mailjet\ncontacts: [{email: ann@example.com, name: Anna}]\n"
    )

    report = run(
        plan_then_apply_after(
            emulator, manifest, lambda: emulator.seed_unsubscribe("ann@example.com")
        )
    )

    assert report.ok
    contact = emulator.contact("ann@example.com") or {}
    assert (contact["Name"], contact["IsExcludedFromCampaigns"]) == ("Anna", True)


def test_an_opt_in_does_not_undo_an_opt_out_made_after_planning(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_contact("bo@example.com", excluded=True)
    consent = consent_now()
    manifest = opted_back_in(tmp_path, "mailjet", "bo@example.com", consent)

    def include_then_leave_again() -> None:
        emulator.seed_contact_fields("bo@example.com", excluded=False)
        time.sleep(1.05)
        emulator.seed_unsubscribe("bo@example.com")

    report = run(plan_then_apply_after(emulator, manifest, include_then_leave_again))

    assert not report.ok
    assert "opted out again since planning" in report.outcomes[0].message
    assert (emulator.contact("bo@example.com") or {})["IsExcludedFromCampaigns"] is True


def test_mailjawn_does_not_reactivate_someone_whose_record_moved_since_planning(
    tmp_path: Path,
) -> None:
    emulator = create_mailjawn_emulator()
    emulator.seed_subscriber("cy@example.com", status="unsubscribed")
    consent = consent_now()
    manifest = opted_back_in(tmp_path, "mailjawn", "cy@example.com", consent)

    async def scenario() -> ApplyReport:
        provider = mailjawn_provider(emulator)
        try:
            made, live = await engine.make_plan(manifest, provider)
            assert [c.address for c in made.changes] == ["contact:cy@example.com"]
            time.sleep(1.05)
            await patch_status(emulator, "cy@example.com", "unsubscribed")  # they leave again
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    report = run(scenario())

    assert not report.ok
    assert "changed since planning" in report.outcomes[0].message
    assert (emulator.subscriber("cy@example.com") or {})["status"] == "unsubscribed"


def test_strict_turns_an_unmatched_protect_entry_into_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audience.yaml").write_text(
        "provider: mailjet\nprotect: {lists: [newsleter]}\nlists: {newsletter: {}}\n",
        encoding="utf-8",
    )

    lenient = CliRunner().invoke(app, ["plan", "--sandbox", "audience.yaml"])
    strict = CliRunner().invoke(app, ["plan", "--sandbox", "--strict", "audience.yaml"])
    applied = CliRunner().invoke(
        app, ["apply", "--sandbox", "--strict", "--auto-approve", "audience.yaml"]
    )

    assert lenient.exit_code == 0, lenient.output
    assert "list:newsleter: is under protect:lists" in lenient.output
    assert strict.exit_code == 1
    assert "--strict: the plan has 1 warning(s)" in strict.output
    assert applied.exit_code == 1
    assert "Apply complete" not in applied.output


def test_a_saved_prune_is_stale_when_its_reason_moved(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.seed_contact("undeclared@example.com", lists={"news": False})
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        lists: {news: {}}
        prune: {contacts: {action: exclude}}
        """,
    )
    made = run(plan_with(emulator, manifest))
    assert [c.address for c in made.changes] == ["contact:undeclared@example.com"]
    saved = Plan.loads(made.dumps(), "plan.json")
    emulator.seed_unsubscribe("undeclared@example.com", "news")  # out of the prune's scope

    async def apply_saved() -> None:
        provider = mailjet_provider(emulator)
        try:
            await engine.apply_plan(saved, provider)
        finally:
            await provider.aclose()

    with pytest.raises(StalePlanError, match=r"contact:undeclared@example\.com was changed"):
        run(apply_saved())
    assert (emulator.contact("undeclared@example.com") or {})["IsExcludedFromCampaigns"] is False


def test_an_opt_in_does_not_resubscribe_someone_who_left_the_list_again_after_planning(
    tmp_path: Path,
) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.seed_contact("dee@example.com", lists={"news": True})
    consent = consent_now()
    manifest = opted_back_in_to(tmp_path, "news", "dee@example.com", consent)

    def rejoin_then_leave_again() -> None:
        emulator.seed_unsubscribe("dee@example.com", "news", unsubscribed=False)  # a form
        time.sleep(1.05)
        emulator.seed_unsubscribe("dee@example.com", "news")  # and out again, after the opt-in

    resubscribe_and_leave = run(plan_then_apply_after(emulator, manifest, rejoin_then_leave_again))

    assert not resubscribe_and_leave.ok
    assert "changed since planning" in resubscribe_and_leave.outcomes[0].message
    assert (emulator.contact("dee@example.com") or {})["Lists"] == {"news": True}


def test_a_delete_prune_keeps_the_record_of_a_global_opt_out(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.seed_contact("left@example.com", excluded=True, lists={"news": False})
    emulator.seed_contact("stale@example.com", lists={"news": False})
    manifest = load(
        tmp_path,
        """
        provider: mailjet
        lists: {news: {}}
        prune: {contacts: {action: delete}}
        safety: {max_delete_share: 1.0}
        """,
    )

    again = converged(emulator, manifest)

    assert emulator.contact("stale@example.com") is None
    assert (emulator.contact("left@example.com") or {})["IsExcludedFromCampaigns"] is True
    assert any(
        w.startswith("contact:left@example.com: is in the prune's scope") for w in again.warnings
    )


def test_a_plan_is_refused_by_another_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "audience.yaml").write_text(
            "provider: mailjet\ncontacts: [{email: a@example.com}]\n", encoding="utf-8"
        )
    monkeypatch.chdir(tmp_path / "one")
    made = CliRunner().invoke(app, ["plan", "--sandbox", "--out", "../p.json", "audience.yaml"])
    assert made.exit_code == 0, made.output
    monkeypatch.chdir(tmp_path / "two")

    applied = CliRunner().invoke(app, ["apply", "--sandbox", "--plan", "../p.json"])
    export = CliRunner().invoke(app, ["export", "--sandbox"])

    assert applied.exit_code == 1
    assert "the plan was made against another account" in applied.output
    assert "a@example.com" not in export.output  # nothing was written to this sandbox


# ---- Mailchimp ---------------------------------------------------------------------------

MAILCHIMP_EXAMPLE = Path(__file__).parent.parent / "examples" / "mailchimp"


@pytest.mark.parametrize("audience", ["Acme Newsletter", "a1b2c3d4e5"])
def test_a_mailchimp_plan_saved_and_applied_on_the_same_audience_is_accepted(
    workdir: Path, audience: str
) -> None:
    """The example names its audience (the sandbox's, by name or by id): plan --out, then
    apply --plan against the very same account, nothing moved in between. The saved plan
    records the audience resolved to its id, and apply --plan compared it with the option
    as written (a name) before resolving it: "made against another account"."""
    text = (MAILCHIMP_EXAMPLE / "audience.yaml").read_text(encoding="utf-8")
    text = text.replace("audience: Acme Newsletter", f"audience: {audience}")
    (workdir / "audience.yaml").write_text(text, encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(app, ["plan", "--sandbox", "--out", "p.json", "audience.yaml"])
    assert made.exit_code == 0, made.output
    applied = runner.invoke(app, ["apply", "--sandbox", "--plan", "p.json"])
    assert applied.exit_code == 0, applied.output
    again = runner.invoke(app, ["plan", "--sandbox", "--detailed-exitcode", "audience.yaml"])
    assert again.exit_code == 0, again.output


def chimp_people_act_between_plan_and_apply(
    tmp_path: Path, people: int, act: Callable[[MailchimpEmulator], None]
) -> tuple[MailchimpEmulator, ApplyReport]:
    """`people` subscribed members p0.. with TEAM=old; the manifest sets TEAM=new for all;
    plan, then `act` (people, other tools), then apply with the live state of the plan
    (as apply --auto-approve does: one read)."""
    emulator = create_mailchimp_emulator()
    emulator.seed_audience("Acme Newsletter", CHIMP_AUDIENCE)
    emulator.seed_merge_field(CHIMP_AUDIENCE, "TEAM")
    emails = [f"p{n}@acme-widgets.io" for n in range(people)]
    for email in emails:
        emulator.seed_member(CHIMP_AUDIENCE, email, merge_fields={"TEAM": "old"})
    manifest = load(
        tmp_path,
        "provider: {type: mailchimp, audience: a1b2c3d4e5}\n"
        "properties: {TEAM: {type: str}}\n"
        "contacts:\n" + "".join(f"  - {{email: {e}, properties: {{TEAM: new}}}}\n" for e in emails),
    )

    async def go() -> ApplyReport:
        provider = chimp_provider(emulator)
        try:
            made, live = await engine.make_plan(manifest, provider)
            assert len(made.changes) == people
            act(emulator)
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    return emulator, run(go())


@pytest.mark.parametrize("people", [2, 6])  # one PATCH each, or a batch subscribe
def test_mailchimp_people_who_left_between_plan_and_apply_stay_gone(
    tmp_path: Path, people: int
) -> None:
    """p0 unsubscribes through a campaign link, p1 is archived, p2 hard-bounces
    (cleaned); none of them is brought back or (archived) written, whichever way the
    values are written; the others get the new value."""

    def act(emulator: MailchimpEmulator) -> None:
        emulator.self_unsubscribe(CHIMP_AUDIENCE, "p0@acme-widgets.io")
        emulator.archive(CHIMP_AUDIENCE, "p1@acme-widgets.io")
        if people > 2:
            emulator.bounce(CHIMP_AUDIENCE, "p2@acme-widgets.io")

    emulator, _ = chimp_people_act_between_plan_and_apply(tmp_path, people, act)

    def member(n: int) -> dict[str, Any]:
        found = emulator.member(CHIMP_AUDIENCE, f"p{n}@acme-widgets.io")
        assert found is not None
        return found

    assert member(0)["status"] == "unsubscribed"
    assert member(1)["status"] == "archived"
    assert member(1)["merge_fields"]["TEAM"] == "old"  # an archived member is not written
    if people > 2:
        assert member(2)["status"] == "cleaned"
        assert all(member(n)["merge_fields"]["TEAM"] == "new" for n in range(3, people))
    assert all(
        emulator.opt_in_emails_sent(CHIMP_AUDIENCE, f"p{n}@acme-widgets.io") == 0
        for n in range(people)
    )


@pytest.mark.parametrize("people", [2, 6])
def test_mailchimp_a_member_erased_between_plan_and_apply_is_not_added_back(
    tmp_path: Path, people: int
) -> None:
    def act(emulator: MailchimpEmulator) -> None:
        emulator.forget(CHIMP_AUDIENCE, "p0@acme-widgets.io")

    emulator, report = chimp_people_act_between_plan_and_apply(tmp_path, people, act)

    assert emulator.member(CHIMP_AUDIENCE, "p0@acme-widgets.io") is None
    assert not report.ok  # its update failed, and says so
    last = emulator.member(CHIMP_AUDIENCE, f"p{people - 1}@acme-widgets.io")
    assert last is not None
    assert last["merge_fields"]["TEAM"] == "new"


def test_mailchimp_a_pending_member_is_never_mailed_again(tmp_path: Path) -> None:
    """Pending (waiting for their confirmation): a value written to them, alone or among
    a batch, does not send the confirmation email again."""
    emulator = create_mailchimp_emulator()
    emulator.seed_audience("Acme Newsletter", CHIMP_AUDIENCE)
    emulator.seed_merge_field(CHIMP_AUDIENCE, "TEAM")
    emails = [f"p{n}@acme-widgets.io" for n in range(6)]
    for n, email in enumerate(emails):
        emulator.seed_member(CHIMP_AUDIENCE, email, "pending" if n < 2 else "subscribed")
    manifest = load(
        tmp_path,
        "provider: {type: mailchimp, audience: a1b2c3d4e5}\n"
        "properties: {TEAM: {type: str}}\n"
        "contacts:\n" + "".join(f"  - {{email: {e}, properties: {{TEAM: new}}}}\n" for e in emails),
    )

    async def go() -> tuple[ApplyReport, Plan]:
        provider = chimp_provider(emulator)
        try:
            made, live = await engine.make_plan(manifest, provider)
            report = await engine.apply_plan(made, provider, live, force=True)
            again, _ = await engine.make_plan(manifest, provider)
            return report, again
        finally:
            await provider.aclose()

    report, again = run(go())
    assert report.ok, report.outcomes
    assert again.is_empty
    for n, email in enumerate(emails):
        found = emulator.member(CHIMP_AUDIENCE, email)
        assert found is not None
        assert found["status"] == ("pending" if n < 2 else "subscribed")
        assert emulator.opt_in_emails_sent(CHIMP_AUDIENCE, email) == (1 if n < 2 else 0)
