"""The Mailchimp provider against its emulator, through manifests as a user writes them:
each quirk of the API reference (/work/shared/mailchimp-api.md, section 4) and each
consent rule, with the calls apply made counted against the plan's estimate."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile import engine
from reconcile.diff import Effect
from reconcile.errors import ApiError, ConfigError, ManifestError, PlanError
from reconcile.manifest.loader import load_manifest
from reconcile.model import ReadScope
from reconcile.plan import Plan
from reconcile.providers.base import ApplyReport, OutcomeStatus
from reconcile.providers.mailchimp.client import MailchimpClient
from reconcile.providers.mailchimp.emulator.app import MailchimpEmulator
from reconcile.providers.mailchimp.emulator.settings import (
    SANDBOX_API_KEY,
    MailchimpEmulatorSettings,
)
from reconcile.providers.mailchimp.provider import MailchimpProvider
from reconcile.providers.mailchimp.records import subscriber_hash
from reconcile.sandbox.common import EmulatorTransport, Fault
from tests.support import FAST_RETRY, run

AUDIENCE = "a1b2c3d4e5"
URL = "http://mailchimp.test"
DOMAIN = "acme-widgets.io"
SEEDED_AT = 1767225600.0  # 2026-01-01: seeded members last changed then
OPT_IN = "2026-06-01T00:00:00Z"  # consent given after that, and before today


def address(name: str) -> str:
    return f"{name}@{DOMAIN}"


@pytest.fixture
def emulator() -> MailchimpEmulator:
    made = MailchimpEmulator(MailchimpEmulatorSettings(clock=lambda: SEEDED_AT))
    made.seed_audience("Acme Newsletter", AUDIENCE)
    made.seed_merge_field(AUDIENCE, "PLAN", "Plan")
    made.seed_merge_field(AUDIENCE, "SEATS", "Seats", type="number")
    made.seed_merge_field(AUDIENCE, "CRM_ID", "CRM id")  # never in a manifest
    return made


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path


def provider_for(emulator: MailchimpEmulator, **options: Any) -> MailchimpProvider:
    client = MailchimpClient(
        api_key=SANDBOX_API_KEY,
        base_url=URL,
        transport=EmulatorTransport(app=emulator.app),
        retry=FAST_RETRY,
        max_in_flight=options.pop("max_in_flight", 9),
    )
    return MailchimpProvider(client, audience=options.pop("audience", AUDIENCE), **options)


def manifest_text(body: str, **options: Any) -> str:
    extra = "".join(f", {key}: {value}" for key, value in options.items())
    head = f"provider: {{type: mailchimp, audience: {AUDIENCE}{extra}}}\n"
    return head + textwrap.dedent(body)


class Run:
    """One plan and apply of a manifest, with the calls apply made."""

    def __init__(self, plan: Plan, report: ApplyReport, calls: list[tuple[str, str]]) -> None:
        self.plan = plan
        self.report = report
        self.calls = calls

    def outcome(self, address_text: str) -> tuple[OutcomeStatus, str]:
        found = [o for o in self.report.outcomes if o.address == address_text]
        assert found, f"no outcome for {address_text}: {self.report.outcomes}"
        return found[0].status, found[0].message


def plan_only(emulator: MailchimpEmulator, directory: Path, body: str, **options: Any) -> Plan:
    path = directory / "audience.yaml"
    path.write_text(manifest_text(body), encoding="utf-8")
    manifest = load_manifest([path])

    async def main() -> Plan:
        provider = provider_for(emulator, **options)
        try:
            made, _ = await engine.make_plan(manifest, provider)
            return made
        finally:
            await provider.aclose()

    return run(main())


def plan_and_apply(emulator: MailchimpEmulator, directory: Path, body: str, **options: Any) -> Run:
    path = directory / "audience.yaml"
    path.write_text(manifest_text(body), encoding="utf-8")
    manifest = load_manifest([path])

    async def main() -> Run:
        provider = provider_for(emulator, **options)
        try:
            made, live = await engine.make_plan(manifest, provider)
            before = len(emulator.control.calls())
            report = await engine.apply_plan(made, provider, live, force=True)
            calls = [(r.method, r.path) for r in emulator.control.calls()[before:]]
            return Run(made, report, calls)
        finally:
            await provider.aclose()

    return run(main())


async def _then(meanwhile: Callable[[], Awaitable[None] | None]) -> None:
    done = meanwhile()
    if done is not None:
        await done


def apply_after(
    emulator: MailchimpEmulator,
    directory: Path,
    body: str,
    meanwhile: Callable[[], Awaitable[None] | None],
    **options: Any,
) -> ApplyReport:
    """Plan, let people act (`meanwhile`), then apply that plan with the live state it was
    made from: what `apply` does after its confirmation prompt."""
    path = directory / "audience.yaml"
    path.write_text(manifest_text(body), encoding="utf-8")
    manifest = load_manifest([path])

    async def main() -> ApplyReport:
        provider = provider_for(emulator, **options)
        try:
            made, live = await engine.make_plan(manifest, provider)
            await _then(meanwhile)
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    return run(main())


def pruning(action: str) -> str:
    """A manifest that declares keep@ on `news` and prunes the rest of `news` by `action`."""
    return f"""
    lists: {{news: {{}}}}
    prune: {{contacts: {{action: {action}}}}}
    safety: {{min_records: 1000}}
    contacts:
      - email: {address("keep")}
        lists: [news]
    """


def member(emulator: MailchimpEmulator, email: str) -> dict[str, Any]:
    found = emulator.member(AUDIENCE, email)
    assert found is not None, email
    return found


def tags_of(emulator: MailchimpEmulator, email: str) -> set[str]:
    return {tag["name"] for tag in member(emulator, email)["tags"]}


def converged(emulator: MailchimpEmulator, directory: Path, body: str, **options: Any) -> bool:
    return not plan_only(emulator, directory, body, **options).changes


# ---- creation, estimate, order -------------------------------------------------------------

PEOPLE = f"""
properties: {{PLAN: {{type: str}}, SEATS: {{type: int}}, JOINED: {{type: datetime}}}}
lists: {{news: {{}}, beta: {{members: exact}}}}
contacts:
  - email: {address("ada")}
    properties: {{PLAN: pro, SEATS: 5, JOINED: 2024-03-01T00:00:00Z}}
    lists: [news, beta]
  - email: {address("bob")}
    properties: {{PLAN: free}}
    lists: [news]
  - email: {address("cy")}
    excluded_from_campaigns: true
"""


def test_a_new_audience_is_built_in_the_fewest_calls_and_converges(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    done = plan_and_apply(emulator, directory, PEOPLE)
    assert done.report.ok, done.report.outcomes
    assert done.plan.estimate is not None
    assert len(done.calls) == done.plan.estimate.api_calls
    kinds = [(method, path.removeprefix(f"/3.0/lists/{AUDIENCE}")) for method, path in done.calls]
    # one merge field created, then one batch subscribe, then one call per new tag
    assert kinds[0] == ("POST", "/merge-fields")
    assert kinds[1] == ("POST", "")
    assert sorted(kinds[2:]) == [("POST", "/segments"), ("POST", "/segments")]
    assert member(emulator, address("ada"))["merge_fields"]["JOINED"] == "2024-03-01"
    assert member(emulator, address("cy"))["status"] == "unsubscribed"
    assert tags_of(emulator, address("ada")) == {"news", "beta"}
    assert converged(emulator, directory, PEOPLE)


def test_definitions_come_before_the_members_that_use_them(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    done = plan_and_apply(emulator, directory, PEOPLE)
    first_member_write = next(i for i, (m, p) in enumerate(done.calls) if p.endswith(AUDIENCE))
    field_writes = [i for i, (_, p) in enumerate(done.calls) if "/merge-fields" in p]
    assert field_writes
    assert max(field_writes) < first_member_write


def test_new_members_get_status_if_new(emulator: MailchimpEmulator, directory: Path) -> None:
    body = f"""
    contacts:
      - email: {address("dee")}
    """
    done = plan_and_apply(emulator, directory, body, status_if_new="pending")
    assert done.report.ok
    assert member(emulator, address("dee"))["status"] == "pending"


def test_more_than_500_members_go_in_batches_of_500(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    people = "".join(f"  - email: {address(f'p{n}')}\n    lists: [news]\n" for n in range(1201))
    body = "lists: {news: {}}\ncontacts:\n" + people
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    batches = [c for c in done.calls if c == ("POST", f"/3.0/lists/{AUDIENCE}")]
    tag_calls = [c for c in done.calls if "/segments" in c[1]]
    assert len(batches) == 3  # 1201 members: 500 + 500 + 201
    assert len(tag_calls) == 3  # the tag with 500 of them, then 500 + 201 added
    assert done.plan.estimate is not None
    assert len(done.calls) == done.plan.estimate.api_calls
    assert converged(emulator, directory, body)


# ---- updates keep what the manifest doesn't manage -------------------------------------------


@pytest.mark.parametrize("semantics", ["merge", "replace"])
def test_an_update_keeps_unmanaged_merge_fields_whatever_batch_subscribe_does(
    directory: Path, semantics: str
) -> None:
    settings = MailchimpEmulatorSettings(batch_subscribe_merge_fields=semantics)  # type: ignore[arg-type]
    emulator = MailchimpEmulator(settings)
    emulator.seed_audience("Acme Newsletter", AUDIENCE)
    emulator.seed_merge_field(AUDIENCE, "PLAN")
    emulator.seed_merge_field(AUDIENCE, "CRM_ID")
    people = [address(f"u{n}") for n in range(6)]
    for email in people:
        emulator.seed_member(AUDIENCE, email, merge_fields={"PLAN": "free", "CRM_ID": email[:2]})
    body = "properties: {PLAN: {type: str}}\ncontacts:\n" + "".join(
        f"  - email: {email}\n    properties: {{PLAN: pro}}\n" for email in people
    )
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    assert ("POST", f"/3.0/lists/{AUDIENCE}") in done.calls  # six updates: one batch
    for email in people:
        values = member(emulator, email)["merge_fields"]
        assert (values["PLAN"], values["CRM_ID"]) == ("pro", email[:2])
        assert member(emulator, email)["status"] == "subscribed"


def test_a_lone_update_is_a_read_and_a_patch_of_only_what_changed(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("ann"), merge_fields={"PLAN": "free", "CRM_ID": "7"})
    body = f"""
    properties: {{PLAN: {{type: str}}}}
    contacts:
      - email: {address("ann")}
        properties: {{PLAN: null}}
    """
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    ann = f"/3.0/lists/{AUDIENCE}/members/{subscriber_hash(address('ann'))}"
    assert done.calls == [("GET", ann), ("PATCH", ann)]  # read again just before its write
    assert member(emulator, address("ann"))["merge_fields"].get("PLAN", "") == ""  # "" clears
    assert member(emulator, address("ann"))["merge_fields"]["CRM_ID"] == "7"
    assert converged(emulator, directory, body)


def test_an_address_in_other_case_is_never_renamed(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, "Ann.Lee@Acme-Widgets.io", merge_fields={"PLAN": "free"})
    body = """
    properties: {PLAN: {type: str}}
    contacts:
      - email: ann.lee@acme-widgets.io
        properties: {PLAN: pro}
    """
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    found = member(emulator, "ann.lee@acme-widgets.io")
    assert found["email_address"] == "Ann.Lee@Acme-Widgets.io"
    assert found["merge_fields"]["PLAN"] == "pro"


def test_a_member_added_by_someone_else_meanwhile_is_updated_not_resubscribed(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    body = f"""
    properties: {{PLAN: {{type: str}}}}
    contacts:
      - email: {address("late")}
        properties: {{PLAN: pro}}
    """

    def meanwhile() -> None:
        emulator.seed_member(AUDIENCE, address("late"), "unsubscribed", merge_fields={})

    report = apply_after(emulator, directory, body, meanwhile)
    assert report.ok, report.outcomes
    assert member(emulator, address("late"))["status"] == "unsubscribed"
    assert member(emulator, address("late"))["merge_fields"]["PLAN"] == "pro"


# ---- consent -------------------------------------------------------------------------------


def test_someone_who_unsubscribes_between_plan_and_apply_is_not_brought_back(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    """A batched update rewrites every member's status: the one who left after the plan
    must be written with the status they have now, not the one the plan read."""
    people = [address(f"v{n}") for n in range(8)]
    for email in people:
        emulator.seed_member(AUDIENCE, email, merge_fields={"PLAN": "free"})
    body = "properties: {PLAN: {type: str}}\ncontacts:\n" + "".join(
        f"  - email: {email}\n    properties: {{PLAN: pro}}\n" for email in people
    )

    async def meanwhile() -> None:
        # admin-style unsubscribe: the API would allow re-subscribing this one
        await _unsubscribe_by_api(emulator, people[3])

    report = apply_after(emulator, directory, body, meanwhile)
    assert report.ok, report.outcomes
    assert member(emulator, people[3])["status"] == "unsubscribed"
    assert member(emulator, people[3])["merge_fields"]["PLAN"] == "pro"
    assert all(member(emulator, e)["status"] == "subscribed" for e in people if e != people[3])


async def _unsubscribe_by_api(emulator: MailchimpEmulator, email: str) -> None:
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app=emulator.app),
        base_url=URL,
        auth=httpx.BasicAuth("someone", SANDBOX_API_KEY),
    ) as other:
        answer = await other.patch(
            f"/3.0/lists/{AUDIENCE}/members/{subscriber_hash(email)}",
            json={"status": "unsubscribed"},
        )
        assert answer.status_code == 200


def test_excluded_false_brings_back_nobody_without_a_newer_opt_in(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    for status in ("unsubscribed", "pending", "transactional", "archived"):
        emulator.seed_member(AUDIENCE, address(status), status)
    emulator.seed_member(AUDIENCE, address("self"), "unsubscribed", compliance=True)
    body = "contacts:\n" + "".join(
        f"  - email: {address(who)}\n    excluded_from_campaigns: false\n"
        for who in ("unsubscribed", "pending", "transactional", "archived", "self")
    )
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    assert len(plan.warnings) == 5
    for who in ("unsubscribed", "archived", "self"):
        assert any(address(who) in w and "opted out (excluded)" in w for w in plan.warnings)
    for who in ("pending", "transactional"):
        assert any(address(who) in w and "not opted in yet" in w for w in plan.warnings)


def test_a_consented_return_that_mailchimp_refuses_is_reported_not_retried(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("self"), "unsubscribed", compliance=True)
    emulator.seed_member(AUDIENCE, address("admin"), "unsubscribed")
    body = f"""
    contacts:
      - email: {address("self")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
      - email: {address("admin")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
    """
    done = plan_and_apply(emulator, directory, body)
    status, message = done.outcome(f"contact:{address('self')}")
    assert status is OutcomeStatus.FAILED
    assert "compliance state" in message.lower()
    assert "not retried" in message
    assert done.outcome(f"contact:{address('admin')}")[0] is OutcomeStatus.DONE
    assert member(emulator, address("self"))["status"] == "unsubscribed"
    assert member(emulator, address("admin"))["status"] == "subscribed"
    assert done.plan.estimate is not None
    assert len(done.calls) == done.plan.estimate.api_calls  # the refusal is not sent again


def test_a_consented_return_can_ask_mailchimp_to_confirm_it(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("back"), "unsubscribed")
    body = f"""
    contacts:
      - email: {address("back")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
    """
    done = plan_and_apply(emulator, directory, body, opt_in_status="pending")
    assert done.report.ok
    assert member(emulator, address("back"))["status"] == "pending"
    assert "confirmation" in done.outcome(f"contact:{address('back')}")[1]


def test_a_cleaned_member_is_never_changed(emulator: MailchimpEmulator, directory: Path) -> None:
    emulator.seed_member(AUDIENCE, address("bounced"), "cleaned")
    body = f"""
    contacts:
      - email: {address("bounced")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
    """
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    assert any("cleaned" in w for w in plan.warnings)


def test_an_archived_member_is_not_written_unless_brought_back(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("old"), "archived", merge_fields={"PLAN": "free"})
    body = f"""
    properties: {{PLAN: {{type: str}}}}
    contacts:
      - email: {address("old")}
        properties: {{PLAN: pro}}
    """
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()  # not a creation either: archived members are read
    assert any("archived" in w for w in plan.warnings)


def test_a_pending_member_is_never_mailed_again(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("wait"), "pending", merge_fields={"PLAN": "free"})
    people = [address(f"w{n}") for n in range(6)]
    for email in people:
        emulator.seed_member(AUDIENCE, email, merge_fields={"PLAN": "free"})
    body = "properties: {PLAN: {type: str}}\ncontacts:\n" + "".join(
        f"  - email: {email}\n    properties: {{PLAN: pro}}\n"
        for email in [address("wait"), *people]
    )
    sent = emulator.opt_in_emails_sent(AUDIENCE, address("wait"))
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    assert member(emulator, address("wait"))["status"] == "pending"
    assert member(emulator, address("wait"))["merge_fields"]["PLAN"] == "pro"
    assert emulator.opt_in_emails_sent(AUDIENCE, address("wait")) == sent


# ---- per-member failures -----------------------------------------------------------------


def test_fake_looking_and_throttled_addresses_fail_alone(directory: Path) -> None:
    settings = MailchimpEmulatorSettings(
        fake_domains=("mailinator.com",), throttled_addresses=frozenset({address("busy")})
    )
    emulator = MailchimpEmulator(settings)
    emulator.seed_audience("Acme Newsletter", AUDIENCE)
    body = f"""
    lists: {{news: {{}}}}
    contacts:
      - email: fake@mailinator.com
        lists: [news]
      - email: {address("busy")}
      - email: {address("fine")}
        lists: [news]
    """
    done = plan_and_apply(emulator, directory, body)
    fake = done.outcome("contact:fake@mailinator.com")
    busy = done.outcome(f"contact:{address('busy')}")
    assert fake[0] is OutcomeStatus.FAILED
    assert "fake or invalid" in fake[1]
    assert busy[0] is OutcomeStatus.FAILED
    assert "throttle" in busy[1]
    assert done.outcome("membership:news/fake@mailinator.com")[0] is OutcomeStatus.SKIPPED
    assert done.outcome(f"contact:{address('fine')}")[0] is OutcomeStatus.DONE
    assert tags_of(emulator, address("fine")) == {"news"}


def test_required_merge_fields_are_honoured_or_skipped_by_option(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_merge_field(AUDIENCE, "COMPANY", "Company", required=True)
    body = f"""
    contacts:
      - email: {address("nocomp")}
    """
    refused = plan_and_apply(emulator, directory, body)
    status, message = refused.outcome(f"contact:{address('nocomp')}")
    assert status is OutcomeStatus.FAILED
    assert "COMPANY" in message
    accepted = plan_and_apply(emulator, directory, body, skip_merge_validation=True)
    assert accepted.report.ok


def test_a_required_value_is_never_cleared(emulator: MailchimpEmulator, directory: Path) -> None:
    emulator.seed_merge_field(AUDIENCE, "COMPANY", "Company", required=True)
    emulator.seed_member(AUDIENCE, address("co"), merge_fields={"COMPANY": "Acme"})
    body = f"""
    properties: {{COMPANY: {{type: str}}}}
    contacts:
      - email: {address("co")}
        properties: {{COMPANY: null}}
    """
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    assert any("required" in w for w in plan.warnings)


# ---- tags --------------------------------------------------------------------------------


def test_tags_compare_without_case_and_exact_lists_untag(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    for name in ("in", "out"):
        emulator.seed_member(AUDIENCE, address(name))
    emulator.seed_tag(AUDIENCE, "Beta Testers", [address("in"), address("out")])
    body = f"""
    lists: {{beta testers: {{members: exact}}}}
    contacts:
      - email: {address("in")}
        lists: [beta testers]
    """
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok
    assert [c.address for c in done.plan.changes] == [f"membership:beta testers/{address('out')}"]
    assert tags_of(emulator, address("out")) == set()
    assert tags_of(emulator, address("in")) == {"Beta Testers"}
    assert not any("/tags" in path for _, path in done.calls)  # never the 204-to-anything route
    assert converged(emulator, directory, body)


def test_a_member_with_more_than_50_tags_is_read_whole(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    names = [f"t{n:02}" for n in range(60)]
    emulator.seed_member(AUDIENCE, address("tagged"), tags=names)
    body = "lists: {" + ", ".join(f"{n}: {{}}" for n in names) + "}\ncontacts:\n"
    body += f"  - email: {address('tagged')}\n    lists: [{', '.join(names)}]\n"
    assert converged(emulator, directory, body)


# ---- deletion --------------------------------------------------------------------------


def test_prune_delete_is_permanent_and_the_plan_says_so(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("keep"), tags=["news"])
    emulator.seed_member(AUDIENCE, address("gone"), tags=["news"])
    body = pruning("delete")
    done = plan_and_apply(emulator, directory, body)
    assert any(("permanently" in w) & (address("gone") in w) for w in done.plan.warnings)
    assert done.report.ok
    gone_hash = subscriber_hash(address("gone"))
    assert done.calls == [
        ("POST", f"/3.0/lists/{AUDIENCE}/members/{gone_hash}/actions/delete-permanent")
    ]
    assert emulator.member(AUDIENCE, address("gone")) is None


# ---- the audience, merge fields, errors --------------------------------------------------


def test_an_audience_is_found_by_its_unique_name(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    plan = plan_only(emulator, directory, "contacts: []\n", audience="Acme Newsletter")
    assert plan.account["audience"] == AUDIENCE  # the id it resolved to
    assert plan.target == f"audience 'Acme Newsletter', {AUDIENCE}"
    emulator.seed_audience("Acme Newsletter", "f0f0f0f0f0")
    with pytest.raises(ConfigError, match="2 Mailchimp audiences are named 'Acme Newsletter'"):
        plan_only(emulator, directory, "contacts: []\n", audience="Acme Newsletter")
    with pytest.raises(ConfigError, match="no Mailchimp audience has the id or name 'Nope'"):
        plan_only(emulator, directory, "contacts: []\n", audience="Nope")


def test_a_merge_field_deleted_after_the_plan_is_never_written_blind(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("x"), merge_fields={"PLAN": "free"})
    body = f"""
    properties: {{PLAN: {{type: str}}}}
    contacts:
      - email: {address("x")}
        properties: {{PLAN: pro}}
    """

    def meanwhile() -> None:
        plan_field = next(f for f in emulator.store.merge_fields(AUDIENCE) if f["tag"] == "PLAN")
        emulator.store.delete_merge_field(AUDIENCE, str(plan_field["merge_id"]))

    report = apply_after(emulator, directory, body, meanwhile)
    (outcome,) = report.outcomes
    assert outcome.status is OutcomeStatus.FAILED  # the API answered 200 and dropped it
    assert "PLAN" in outcome.message


def test_problem_json_errors_show_title_detail_and_fields(
    emulator: MailchimpEmulator,
) -> None:
    async def main() -> ApiError:
        provider = provider_for(emulator)
        try:
            with pytest.raises(ApiError) as raised:
                await provider.client.post(
                    f"/lists/{AUDIENCE}/merge-fields", {"name": "x"}, idempotent=False
                )
            return raised.value
        finally:
            await provider.aclose()

    error = run(main())
    text = str(error)
    assert error.status == 400
    assert "Invalid Resource" in text
    assert "type" in text


def test_reads_page_1000_at_a_time_with_only_the_fields_needed(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    for n in range(2500):
        emulator.seed_member(AUDIENCE, address(f"r{n}"))
    seen: list[httpx.Request] = []

    async def main() -> None:
        provider = provider_for(emulator)
        provider.client._http.event_hooks["request"].append(_record(seen))
        try:
            await provider.read(ReadScope())
        finally:
            await provider.aclose()

    run(main())
    members = [r for r in seen if r.url.path.endswith("/members")]
    assert len(members) == 4  # 3 pages of the audience, 1 of the archived
    assert all(r.url.params["count"] == "1000" for r in seen if "count" in r.url.params)
    assert all("fields" in r.url.params for r in seen)
    fields = [r for r in seen if r.url.path.endswith("/merge-fields")]
    assert fields
    assert fields[0].url.params["count"] == "1000"
    assert all(r.headers["authorization"].startswith("Basic ") for r in seen)


def _record(seen: list[httpx.Request]) -> Any:
    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    return hook


def test_a_bare_403_is_backed_off_like_a_429(emulator: MailchimpEmulator, directory: Path) -> None:
    emulator.control.inject(Fault(kind="status", status=403, body="", count=2))
    plan = plan_only(emulator, directory, "contacts: []\n")
    assert plan.changes == ()


def test_prune_archive_archives_the_undeclared_once(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("keep"), tags=["news"])
    emulator.seed_member(AUDIENCE, address("aside"), tags=["news"])
    emulator.seed_member(AUDIENCE, address("left"), "unsubscribed", tags=["news"])
    body = pruning("archive")
    done = plan_and_apply(emulator, directory, body)
    assert [(c.address, c.effect) for c in done.plan.changes] == [
        (f"contact:{address('aside')}", Effect.ARCHIVE)
    ]
    assert done.report.ok
    aside = subscriber_hash(address("aside"))
    assert done.calls == [("DELETE", f"/3.0/lists/{AUDIENCE}/members/{aside}")]
    assert member(emulator, address("aside"))["status"] == "archived"
    assert member(emulator, address("left"))["status"] == "unsubscribed"  # opt-out kept
    assert converged(emulator, directory, body)


def test_a_replaced_merge_field_starts_empty_and_labels_name_new_fields(
    directory: Path,
) -> None:
    now = [SEEDED_AT]
    emulator = MailchimpEmulator(MailchimpEmulatorSettings(clock=lambda: now[0]))
    emulator.seed_audience("Acme Newsletter", AUDIENCE)
    emulator.seed_merge_field(AUDIENCE, "PLAN")
    emulator.seed_merge_field(AUDIENCE, "SEATS", type="number")
    people = [address(f"s{n}") for n in range(6)]
    for n, email in enumerate(people):
        emulator.seed_member(AUDIENCE, email, merge_fields={"SEATS": n, "PLAN": "free"})
    now[0] += 3600  # a later change: the batch's freshness read does not see the six again
    emulator.seed_member(AUDIENCE, address("later"))
    body = "properties: {SEATS: {type: str, replace: true}, PLAN: {type: str}}\ncontacts:\n"
    body += f"  - email: {people[0]}\n    properties: {{SEATS: ten, PLAN: pro}}\n"
    body += "".join(f"  - email: {e}\n    properties: {{PLAN: pro}}\n" for e in people[1:])
    done = plan_and_apply(emulator, directory, body, labels={"SEATS": "Seat count"})
    assert done.report.ok, done.report.outcomes
    fields = {f["tag"]: f for f in emulator.store.merge_fields(AUDIENCE)}
    assert (fields["SEATS"]["type"], fields["SEATS"]["name"]) == ("text", "Seat count")
    assert member(emulator, people[0])["merge_fields"]["SEATS"] == "ten"
    assert all(member(emulator, e)["merge_fields"]["SEATS"] == "" for e in people[1:])
    assert converged(emulator, directory, body)


def test_an_exclusion_still_lands_on_a_member_added_meanwhile(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    body = f"""
    contacts:
      - email: {address("quiet")}
        excluded_from_campaigns: true
    """

    def meanwhile() -> None:
        emulator.seed_member(AUDIENCE, address("quiet"))  # subscribed by someone else

    report = apply_after(emulator, directory, body, meanwhile)
    assert report.ok, report.outcomes
    assert member(emulator, address("quiet"))["status"] == "unsubscribed"


def test_archiving_someone_who_bounced_since_the_plan_is_reported_with_the_405(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("keep"), tags=["news"])
    emulator.seed_member(AUDIENCE, address("aside"), tags=["news"])
    body = pruning("archive")

    def meanwhile() -> None:
        emulator.bounce(AUDIENCE, address("aside"))

    (outcome,) = apply_after(emulator, directory, body, meanwhile).outcomes
    assert outcome.status is OutcomeStatus.FAILED
    assert "405" in outcome.message
    assert "current state" in outcome.message  # the hint: what Mailchimp allows
    assert member(emulator, address("aside"))["status"] == "cleaned"


def test_a_saved_plan_is_refused_once_the_audience_name_means_another_audience(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    """A name is not an identity: a plan made for the audience named X applies only to
    that audience, whatever is named X when it is applied."""
    body = f"contacts:\n  - email: {address('new')}\n"
    made = plan_only(emulator, directory, body, audience="Acme Newsletter")
    saved = Plan.loads(made.dumps(), "plan.json")
    emulator.store.audience(AUDIENCE)["name"] = "Renamed"
    emulator.seed_audience("Acme Newsletter", "d4d4d4d4d4")

    async def main() -> None:
        provider = provider_for(emulator, audience="Acme Newsletter")
        try:
            await engine.apply_plan(saved, provider)
        finally:
            await provider.aclose()

    with pytest.raises(PlanError, match="made against another account"):
        run(main())
    assert emulator.member("d4d4d4d4d4", address("new")) is None
    assert emulator.member(AUDIENCE, address("new")) is None


def test_nothing_is_written_to_an_archived_member_not_even_a_tag(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("old"), "archived", tags=["gone"])
    emulator.seed_tag(AUDIENCE, "beta")
    body = f"""
    lists: {{beta: {{}}, gone: {{members: exact}}}}
    contacts:
      - email: {address("old")}
        lists: [beta]
    """
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    assert sum("archived" in w for w in plan.warnings) == 2  # the tag added and the one removed


def test_prune_archive_leaves_pending_members_mailchimp_cannot_archive(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("keep"), tags=["news"])
    emulator.seed_member(AUDIENCE, address("wait"), "pending", tags=["news"])
    body = pruning("archive")
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    assert any("can't archive" in w for w in plan.warnings)


def test_declaring_a_field_reconcile_cannot_manage_names_its_line(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_merge_field(AUDIENCE, "HOME", type="address")
    body = """
    properties:
      HOME: {type: str}
    contacts: []
    """
    with pytest.raises(ManifestError) as raised:
        plan_only(emulator, directory, body)
    assert "audience.yaml:4: properties.HOME: is a Mailchimp address field" in str(raised.value)


def test_an_address_deleted_for_good_says_to_take_it_out_of_the_manifest(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("gone"))
    emulator.forget(AUDIENCE, address("gone"))
    body = f"contacts:\n  - email: {address('gone')}\n"
    done = plan_and_apply(emulator, directory, body)
    status, message = done.outcome(f"contact:{address('gone')}")
    assert status is OutcomeStatus.FAILED
    assert "remove the contact from the manifest" in message


def test_a_consented_return_of_a_pending_member_never_mails_them_again(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("wait"), "pending", merge_fields={"PLAN": "free"})
    body = f"""
    properties: {{PLAN: {{type: str}}}}
    contacts:
      - email: {address("wait")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
        properties: {{PLAN: pro}}
    """
    sent = emulator.opt_in_emails_sent(AUDIENCE, address("wait"))
    done = plan_and_apply(emulator, directory, body, opt_in_status="pending")
    assert done.report.ok, done.report.outcomes
    assert "none sent again" in done.outcome(f"contact:{address('wait')}")[1]
    assert emulator.opt_in_emails_sent(AUDIENCE, address("wait")) == sent
    assert member(emulator, address("wait"))["merge_fields"]["PLAN"] == "pro"


def test_a_pending_member_wanted_included_without_an_opt_in_is_not_called_opted_out(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("wait"), "pending")
    emulator.seed_member(AUDIENCE, address("gone"), "unsubscribed")
    body = f"""
    contacts:
      - {{email: {address("wait")}, excluded_from_campaigns: false}}
      - {{email: {address("gone")}, excluded_from_campaigns: false}}
    """
    plan = plan_only(emulator, directory, body)
    assert plan.changes == ()
    (waiting,) = [w for w in plan.warnings if address("wait") in w]
    (gone,) = [w for w in plan.warnings if address("gone") in w]
    assert "not opted in yet" in waiting
    assert "opted out" not in waiting
    assert "opted out (excluded)" in gone


def test_a_plan_says_what_a_new_member_will_not_be(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_merge_field(AUDIENCE, "COMPANY", required=True)
    body = f"""
    contacts:
      - email: {address("tx")}
        excluded_from_campaigns: false
    """
    plan = plan_only(emulator, directory, body, status_if_new="transactional")
    (change,) = plan.changes
    assert change.contact_after.fields == {}  # not "false": Mailchimp will hold transactional
    assert any("created transactional" in w for w in plan.warnings)
    assert any("COMPANY: required" in w for w in plan.warnings)


def test_an_archived_member_brought_back_with_consent_gets_their_tags_too(
    emulator: MailchimpEmulator, directory: Path
) -> None:
    emulator.seed_member(AUDIENCE, address("back"), "archived")
    body = f"""
    lists: {{gamma: {{}}}}
    contacts:
      - email: {address("back")}
        excluded_from_campaigns: false
        opted_in_at: {OPT_IN}
        lists: [gamma]
    """
    done = plan_and_apply(emulator, directory, body)
    assert done.report.ok, done.report.outcomes
    assert member(emulator, address("back"))["status"] == "subscribed"
    assert tags_of(emulator, address("back")) == {"gamma"}
    assert converged(emulator, directory, body)
