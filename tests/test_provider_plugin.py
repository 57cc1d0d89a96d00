"""The sample third-party provider (examples/provider-plugin, `postbox`), installed as a
user would (`pip install ./examples/provider-plugin`): registered through its entry
point, driven through the command line, held to the convergence property, and kept to
reconcile's public plug-in surface."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reconcile_provider_postbox.emulator import SANDBOX_KEY, PostboxEmulator
from reconcile_provider_postbox.plugin import PLUGIN, PostboxOptions
from reconcile_provider_postbox.provider import PostboxProvider
from typer.testing import CliRunner

from reconcile import engine
from reconcile.cli import app
from reconcile.diff import Action, Change, Effect, ResourceType
from reconcile.errors import ReconcileError
from reconcile.manifest.loader import Manifest
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactValues,
    Membership,
    MembershipValues,
    ReadScope,
    State,
    SubscriptionStatus,
    email_key,
)
from reconcile.providers import registry
from reconcile.providers.base import ApplyReport, Cancellation, OutcomeStatus
from reconcile.providers.registry import Connection
from reconcile.sandbox.common import EmulatorTransport, Fault
from reconcile.sandbox.runtime import SandboxEndpoint
from tests.support import FAST_RETRY, consent_now, load, run, served
from tests.test_convergence_property import (
    NEW_CONSENT,
    PROPERTY_TYPES,
    VALUES,
    desired_states,
)

ROOT = Path(__file__).parents[1]
PLUGIN_DIR = ROOT / "examples" / "provider-plugin"
PACKAGE_DIR = PLUGIN_DIR / "reconcile_provider_postbox"
runner = CliRunner()


def reconcile(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def example(workdir: Path) -> Path:
    """The plug-in's example manifest, copied into a fresh working directory."""
    shutil.copytree(PLUGIN_DIR / "example", workdir / "example")
    return workdir / "example"


def sandbox_state(workdir: Path) -> Path:
    return workdir / ".reconcile" / "sandbox" / "postbox.json"


def provider_for(emulator: PostboxEmulator, **options: Any) -> PostboxProvider:
    """The provider as the plug-in opens it, against `emulator` in-process."""
    endpoint = SandboxEndpoint(
        "postbox", "http://postbox.test", {"api_key": SANDBOX_KEY}, EmulatorTransport(emulator.app)
    )
    connection = Connection(endpoint, httpx.Timeout(5.0), FAST_RETRY, Cancellation())
    return PLUGIN.open(PostboxOptions(type="postbox", **options), connection)


def writes(emulator: PostboxEmulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emulator.control.calls() if r.method != "GET"]


def contact_of(emulator: PostboxEmulator, email: str) -> dict[str, Any]:
    found = emulator.contact(email)
    assert found is not None, email
    return found


def member_of(emulator: PostboxEmulator, list_name: str, email: str) -> dict[str, Any]:
    found = emulator.member(list_name, email)
    assert found is not None, (list_name, email)
    return found


# ---- registration and the public surface -----------------------------------------------


def test_the_plugin_is_installed_through_its_entry_point() -> None:
    found = registry.plugin("postbox")
    assert found is PLUGIN
    assert found.provider_class is PostboxProvider
    assert found.variables() == ["POSTBOX_API_KEY", "POSTBOX_API_URL"]

    code, output = reconcile("providers")

    assert code == 0
    assert "postbox\n" in output
    assert "environment: POSTBOX_API_KEY, POSTBOX_API_URL" in output
    shown = output.split("postbox\n", 1)[1].splitlines()[0]
    assert "property definitions" in shown
    assert "unsubscribe from one list" in shown


# What a plug-in may import from reconcile: the registry and what it hands out.
PUBLIC_SURFACE = {
    "reconcile.providers.registry",
    "reconcile.providers.base",
    "reconcile.providers.environment",
    "reconcile.model",
    "reconcile.diff",
    "reconcile.errors",
    "reconcile.sandbox.common",
    "reconcile.sandbox.runtime",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_plugin_uses_only_the_public_plugin_surface() -> None:
    sources = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(sources) >= 6
    beyond = {
        f"{path.name}: {module}"
        for path in sources
        for module in imports_of(path)
        if (module == "reconcile" or module.startswith("reconcile."))
        and not any(module == m or module.startswith(f"{m}.") for m in PUBLIC_SURFACE)
    }
    assert beyond == set()


def test_the_emulator_imports_neither_the_client_nor_the_provider() -> None:
    mine = {
        module
        for module in imports_of(PACKAGE_DIR / "emulator.py")
        if module.startswith(("reconcile_provider_postbox", "reconcile."))
    }
    assert {module.split(".")[0] for module in mine} == {"reconcile"}
    assert {module.rsplit(".", 1)[0] for module in mine} <= {
        "reconcile.sandbox",
        "reconcile.sandbox.common",
    }


def test_the_readme_and_ci_install_the_plugin_with_one_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Run the tests.*?```sh\n(.*?)\n```", readme, re.DOTALL)
    assert block is not None
    command = block.group(1)
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert command == ci_run
    assert "pip install -q -e '.[test]' -e ./examples/provider-plugin" in command


# ---- the command line ------------------------------------------------------------------


def test_validate_plan_apply_then_no_changes(example: Path, workdir: Path) -> None:
    code, output = reconcile("validate", "example")
    assert code == 0, output
    assert "3 properties, 2 lists, 4 contacts, 5 memberships (postbox)" in output

    code, output = reconcile("plan", "--sandbox", "example", "--detailed-exitcode")
    assert code == 2, output
    assert "Plan: 14 to create, 0 to update, 0 to delete." in output
    assert "Apply will make about 14 API calls" in output

    code, output = reconcile("apply", "--sandbox", "example", "--auto-approve")
    assert code == 0, output
    assert "Apply complete: 14 done, 0 failed, 0 skipped." in output

    code, output = reconcile("plan", "--sandbox", "example", "--detailed-exitcode")
    assert code == 0, output
    assert "No changes." in output
    state = json.loads(sandbox_state(workdir).read_text())
    assert len(state["contacts"]) == 4  # the sandbox account, kept between runs


def test_export_of_the_sandbox_plans_no_changes(example: Path, workdir: Path) -> None:
    assert reconcile("apply", "--sandbox", "example", "--auto-approve")[0] == 0

    code, output = reconcile("export", "--sandbox", "--provider", "postbox", "-o", "out.yaml")
    assert code == 0, output
    exported = (workdir / "out.yaml").read_text()
    assert "provider: postbox" in exported
    assert "edsger@example.com" in exported

    code, output = reconcile("plan", "--sandbox", "out.yaml", "--detailed-exitcode")
    assert code == 0, output
    assert "No changes." in output


def test_a_saved_plan_applies_once_then_is_stale(example: Path) -> None:
    assert reconcile("apply", "--sandbox", "example", "--auto-approve")[0] == 0
    manifest = example / "audience.yaml"
    manifest.write_text(manifest.read_text().replace("Alan Turing", "Alan M. Turing"))
    code, output = reconcile("plan", "--sandbox", "example", "--out", "plan.json")
    assert code == 0, output
    saved = json.loads(Path("plan.json").read_text())
    assert saved["provider"] == "postbox"
    assert saved["provider_options"] == {"requests_per_minute": 300, "page_size": 100}
    assert saved["summary"] == {"create": 0, "update": 1, "delete": 0}

    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 0, output
    assert "Apply complete: 1 done" in output

    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 1
    assert "contact:alan@example.com was changed since planning" in output
    assert reconcile("plan", "--sandbox", "example", "--detailed-exitcode")[0] == 0


def test_someone_who_unsubscribed_stays_out_until_they_opt_in_again(
    example: Path, workdir: Path
) -> None:
    assert reconcile("apply", "--sandbox", "example", "--auto-approve")[0] == 0
    path = sandbox_state(workdir)
    account = PostboxEmulator(json.loads(path.read_text()))
    account.unsubscribe("newsletter", "ada@example.com")  # she clicks "unsubscribe"
    path.write_text(json.dumps(account.dump_state()))

    code, output = reconcile("plan", "--sandbox", "example", "--detailed-exitcode")
    assert code == 0, output  # kept out, with a warning naming her
    assert "membership:newsletter/ada@example.com: opted out" in output

    manifest = example / "audience.yaml"
    text = manifest.read_text()
    consent = consent_now()
    opted_in = f'{{newsletter: {{status: subscribed, opted_in_at: "{consent}"}}, beta: subscribed}}'
    manifest.write_text(text.replace("lists: [newsletter, beta]", f"lists: {opted_in}", 1))
    code, output = reconcile("apply", "--sandbox", "example", "--auto-approve")
    assert code == 0, output
    assert "(re-subscribe)" in output
    member = PostboxEmulator(json.loads(path.read_text())).member("newsletter", "ada@example.com")
    assert member is not None
    assert member["status"] == "subscribed"


def test_the_real_service_path_reads_its_settings(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTBOX_API_KEY", raising=False)
    code, output = reconcile("plan", "example")
    assert code == 1
    assert "Postbox credentials missing: set POSTBOX_API_KEY" in output

    monkeypatch.setenv("POSTBOX_API_KEY", "pb_live_secret")
    monkeypatch.setenv("POSTBOX_API_URL", "ftp://nowhere")
    code, output = reconcile("plan", "example")
    assert code == 1
    assert "POSTBOX_API_URL: must be an http:// or https:// URL with a host" in output

    emulator = PostboxEmulator()
    with served(emulator.app) as url:
        monkeypatch.setenv("POSTBOX_API_URL", url)
        code, output = reconcile("plan", "example")
        assert code == 1
        assert "answered 401" in output
        assert "check POSTBOX_API_KEY" in output
        monkeypatch.setenv("POSTBOX_API_KEY", SANDBOX_KEY)
        code, output = reconcile("apply", "example", "--auto-approve")
        assert code == 0, output
        code, output = reconcile("plan", "example", "--detailed-exitcode")
    assert code == 0, output
    assert "pb_live_secret" not in output
    assert emulator.contact("ada@example.com") is not None


def test_a_broken_sandbox_state_is_one_line(example: Path, workdir: Path) -> None:
    sandbox_state(workdir).parent.mkdir(parents=True)
    sandbox_state(workdir).write_text('{"contacts": []}')
    code, output = reconcile("plan", "--sandbox", "example")
    assert code == 1
    assert "is not a postbox sandbox account" in output
    assert "Traceback" not in output


def test_names_postbox_cannot_hold_are_refused_offline(tmp_path: Path, workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(
        "provider: postbox\n"
        "properties:\n"
        "  Team Name: {type: str}\n"
        "  visits: {type: int, namespace: historic}\n"
    )
    code, output = reconcile("validate", "bad.yaml")
    assert code == 1
    assert "properties.Team Name: is not a Postbox property name" in output
    assert "properties.visits: has namespace: historic" in output


# ---- consent and the read -> apply contract, in-process ---------------------------------


def opted_back_in(tmp_path: Path, consent: str | None) -> Manifest:
    """Ann declared included in campaigns, Bob subscribed to news, each with `consent`
    recorded (or none)."""
    opt_in = f'opted_in_at: "{consent}"' if consent else ""
    news = f"{{status: subscribed, {opt_in}}}" if consent else "subscribed"
    return load(
        tmp_path,
        f"""
        provider: postbox
        lists: {{news: {{}}}}
        contacts:
          - email: ann@example.com
            excluded_from_campaigns: false
            {opt_in}
          - email: bob@example.com
            lists: {{news: {news}}}
        """,
    )


async def plan_then(
    emulator: PostboxEmulator, manifest: Manifest, meanwhile: Any = None
) -> tuple[Any, Any]:
    """Plan, let `meanwhile` act on the account, then apply that plan in the same process."""
    provider = provider_for(emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        if meanwhile is not None:
            meanwhile()
        return made, await engine.apply_plan(made, provider, live, force=True)
    finally:
        await provider.aclose()


def test_opting_out_again_after_the_plan_keeps_them_out(tmp_path: Path) -> None:
    emulator = PostboxEmulator()
    emulator.seed_contact("ann@example.com", excluded=True)
    emulator.seed_contact("bob@example.com", lists={"news": "unsubscribed"})
    manifest = opted_back_in(tmp_path, consent_now())

    def back_and_out_again() -> None:  # after planning, before the writes
        emulator.exclude("ann@example.com", False)
        emulator.exclude("ann@example.com")
        emulator.subscribe("news", "bob@example.com")
        emulator.unsubscribe("news", "bob@example.com")

    made, report = run(plan_then(emulator, manifest, back_and_out_again))

    assert [(c.address, c.effect) for c in made.changes] == [
        ("contact:ann@example.com", Effect.INCLUDE),
        ("membership:news/bob@example.com", Effect.RESUBSCRIBE),
    ]
    assert report.count(OutcomeStatus.FAILED) == 2
    assert all("changed since planning" in o.message for o in report.outcomes)
    assert contact_of(emulator, "ann@example.com")["excluded_from_campaigns"] is True
    assert member_of(emulator, "news", "bob@example.com")["status"] == "unsubscribed"
    assert writes(emulator) == ["PATCH /v1/contacts/ct_1", "PATCH /v1/lists/list_3/members/ct_2"]


def test_a_membership_that_appeared_since_planning_is_never_overwritten(tmp_path: Path) -> None:
    emulator = PostboxEmulator()
    emulator.seed_contact("ann@example.com")
    emulator.seed_contact("bob@example.com")
    emulator.seed_list("news")
    manifest = opted_back_in(tmp_path, None)

    def joined_and_left() -> None:
        emulator.subscribe("news", "bob@example.com")
        emulator.unsubscribe("news", "bob@example.com")

    made, report = run(plan_then(emulator, manifest, joined_and_left))

    assert [c.address for c in made.changes] == ["membership:news/bob@example.com"]
    assert report.count(OutcomeStatus.FAILED) == 1
    assert "created by someone else since planning" in report.outcomes[0].message
    assert member_of(emulator, "news", "bob@example.com")["status"] == "unsubscribed"


def test_a_resubscribe_the_plan_did_not_decide_is_never_written() -> None:
    emulator = PostboxEmulator()
    emulator.seed_contact("ann@example.com", excluded=True)
    emulator.seed_contact("bob@example.com", lists={"news": "unsubscribed"})
    forged = [
        Change(
            ResourceType.CONTACT,
            Action.UPDATE,
            ("ann@example.com",),
            ContactValues({EXCLUDED: True}),
            ContactValues({EXCLUDED: False}),
        ),
        Change(
            ResourceType.MEMBERSHIP,
            Action.UPDATE,
            ("news", "bob@example.com"),
            MembershipValues(SubscriptionStatus.UNSUBSCRIBED),
            MembershipValues(SubscriptionStatus.SUBSCRIBED),
        ),
    ]

    report = run(read_then_apply(emulator, forged, ReadScope(frozenset({"news"}))))

    assert report.count(OutcomeStatus.FAILED) == 2
    assert all("carries no consent" in o.message for o in report.outcomes)
    assert writes(emulator) == []


async def read_then_apply(
    emulator: PostboxEmulator, changes: list[Change], scope: ReadScope
) -> ApplyReport:
    """One provider reads; another, fresh one applies against that live state only."""
    reader = provider_for(emulator)
    try:
        live = await reader.read(scope)
    finally:
        await reader.aclose()
    return await apply_with_fresh_provider(emulator, changes, live)


async def apply_with_fresh_provider(
    emulator: PostboxEmulator, changes: list[Change], live: State
) -> ApplyReport:
    provider = provider_for(emulator)
    try:
        return await provider.apply(changes, live)
    finally:
        await provider.aclose()


def test_apply_finds_every_id_in_the_live_state() -> None:
    emulator = PostboxEmulator()
    emulator.seed_contact("ann@example.com")
    rename = Change(
        ResourceType.CONTACT,
        Action.UPDATE,
        ("ann@example.com",),
        ContactValues({NAME: ""}),
        ContactValues({NAME: "Ann"}),
    )

    report = run(read_then_apply(emulator, [rename], ReadScope()))

    assert report.ok, report.outcomes
    assert contact_of(emulator, "ann@example.com")["name"] == "Ann"
    with pytest.raises(ReconcileError, match="was not read by the postbox provider"):
        run(apply_with_fresh_provider(emulator, [rename], State()))


def test_ctrl_c_lets_the_write_in_flight_finish_and_starts_nothing_more(
    tmp_path: Path,
) -> None:
    emulator = PostboxEmulator()
    manifest = load(
        tmp_path,
        "provider: postbox\ncontacts:\n"
        + "".join(f"  - email: p{n}@example.com\n" for n in range(10)),
    )

    provider = provider_for(emulator)

    async def interrupted() -> Any:
        try:
            made, live = await engine.make_plan(manifest, provider)
            emulator.control.latency_seconds = 0.05
            task = asyncio.ensure_future(engine.apply_plan(made, provider, live))
            await asyncio.sleep(0.12)
            provider.cancel.request()  # what the command line does on Ctrl-C during apply
            return await task
        finally:
            await provider.aclose()

    report = run(interrupted())

    assert report.interrupted
    done = report.count(OutcomeStatus.DONE)
    assert provider.cancel.wrote  # the command line may not say "nothing was changed"
    assert 1 <= done < 10
    assert len(writes(emulator)) == done  # the one in flight landed and is reported
    assert len(emulator.account.contacts) == done


def test_retries_only_what_may_be_sent_twice(tmp_path: Path) -> None:
    emulator = PostboxEmulator()
    manifest = load(tmp_path, "provider: postbox\nlists: {news: {}, promo: {}}\n")
    emulator.control.inject(Fault(status=503, method="GET", count=2))
    emulator.control.inject(Fault(status=429, method="POST", path="/v1/lists", count=1))

    _, report = run(plan_then(emulator, manifest))
    assert report.ok, report.outcomes
    assert sorted(emulator.account.lists[k].name for k in emulator.account.lists) == [
        "news",
        "promo",
    ]

    emulator = PostboxEmulator()
    emulator.control.inject(Fault(status=500, method="POST", path="/v1/lists", count=1))
    _, report = run(plan_then(emulator, manifest))
    assert report.count(OutcomeStatus.FAILED) == 1  # a 500 on a creation is not repeated
    assert "may have been carried out all the same" in report.outcomes[0].message


def test_prunes_and_a_replaced_definition_converge_in_one_apply(tmp_path: Path) -> None:
    emulator = PostboxEmulator()
    emulator.seed_property("seats", "str")
    emulator.seed_property("legacy", "str")
    emulator.seed_list("old")
    emulator.seed_contact(
        "ann@example.com", properties={"seats": "3"}, lists={"news": "subscribed"}
    )
    emulator.seed_contact("gone@example.com", lists={"news": "subscribed"})
    emulator.seed_contact("left@example.com", lists={"news": "unsubscribed"})
    manifest = load(
        tmp_path,
        """
        provider: postbox
        properties: {seats: {type: int, replace: true}}
        lists: {news: {members: exact}}
        contacts:
          - email: ann@example.com
            properties: {seats: 3}
            lists: [news]
        prune: {contacts: {action: delete}, lists: delete, properties: delete}
        safety: {min_records: 100}
        """,
    )

    made, report = run(plan_then(emulator, manifest))

    assert report.ok, report.outcomes
    assert {c.address: c.effect for c in made.changes if c.effect} == {
        "contact:gone@example.com": Effect.ERASE,
        "list:old": Effect.DELETE_LIST,
        "property:legacy": Effect.DELETE_PROPERTY,
    }
    assert contact_of(emulator, "ann@example.com")["properties"] == {"seats": 3}
    assert emulator.contact("gone@example.com") is None
    assert member_of(emulator, "news", "left@example.com")["status"] == "unsubscribed"
    again, _ = run(plan_then(emulator, manifest))
    assert again.is_empty, [c.address for c in again.changes]


def test_an_answer_that_cannot_be_read_is_never_acted_on(tmp_path: Path) -> None:
    emulator = PostboxEmulator()
    emulator.seed_contact("ann@example.com")
    manifest = load(
        tmp_path,
        """
        provider: postbox
        lists: {news: {}}
        contacts: [{email: ann@example.com, name: Ann, lists: [news]}]
        """,
    )
    emulator.control.inject(Fault(kind="garble", status=200, body="<html>", path="/v1/contacts"))
    with pytest.raises(ReconcileError, match=r"GET /v1/contacts: the answer is not JSON; nothing"):
        run(plan_then(emulator, manifest))
    assert writes(emulator) == []

    emulator.control.inject(
        Fault(kind="garble", status=201, body={"id": 7}, method="POST", path="/v1/lists")
    )
    _, report = run(plan_then(emulator, manifest))
    outcomes = {o.address: o for o in report.outcomes}
    assert "the write was made, but its answer can't be used" in outcomes["list:news"].message
    assert outcomes["membership:news/ann@example.com"].status is OutcomeStatus.SKIPPED
    assert outcomes["contact:ann@example.com"].status is OutcomeStatus.DONE
    _, report = run(plan_then(emulator, manifest))  # the next run finishes it
    assert report.ok, report.outcomes
    assert member_of(emulator, "news", "ann@example.com")["status"] == "subscribed"


# ---- the convergence property ----------------------------------------------------------

LISTS = ["alpha", "beta", "gamma"]
EMAILS = [f"p{n}@example.com" for n in range(6)]


@st.composite
def live_accounts(draw: st.DrawFn) -> dict[str, Any]:
    """An account in the emulator's own JSON form: definitions, lists, contacts (with
    values of defined properties, a name, an exclusion with or without its time) and
    memberships, some unsubscribed."""
    account: dict[str, Any] = {
        "next_id": 1,
        "properties": [],
        "lists": [],
        "contacts": [],
        "members": [],
    }
    ids = iter(range(1, 1000))
    defined = draw(st.lists(st.sampled_from(sorted(PROPERTY_TYPES)), unique=True))
    for name in defined:
        kind = PROPERTY_TYPES[name].value
        account["properties"].append({"id": f"prop_{next(ids)}", "name": name, "type": kind})
    lists = {
        name: f"list_{next(ids)}" for name in draw(st.lists(st.sampled_from(LISTS), unique=True))
    }
    account["lists"] = [{"id": i, "name": n} for n, i in lists.items()]
    for email in (email for email in EMAILS if draw(st.booleans())):
        contact_id = f"ct_{next(ids)}"
        excluded = draw(st.booleans())
        opted_out = draw(st.sampled_from(["2026-06-01T00:00:00Z", None])) if excluded else None
        values = {p: draw(VALUES[p]) for p in defined if draw(st.booleans())}
        account["contacts"].append(
            {
                "id": contact_id,
                "email": email.upper() if draw(st.booleans()) else email,
                "name": draw(st.sampled_from(["", "Old Name", "Ann"])),
                "excluded_from_campaigns": excluded,
                "excluded_at": opted_out,
                "properties": values,
                "version": draw(st.integers(1, 3)),
            }
        )
        for list_id in lists.values():
            if draw(st.booleans()):
                status = draw(st.sampled_from(["subscribed", "unsubscribed"]))
                when = "2026-06-01T00:00:00Z" if status == "unsubscribed" else None
                account["members"].append(
                    {
                        "list_id": list_id,
                        "contact_id": contact_id,
                        "status": status,
                        "unsubscribed_at": draw(st.sampled_from([when, None])) if when else None,
                        "version": 1,
                    }
                )
    account["next_id"] = next(ids)
    return account


def contacts_by_email(emulator: PostboxEmulator) -> dict[str, dict[str, Any]]:
    return {email_key(c["email"]): c for c in emulator.dump_state()["contacts"]}


def members_by_key(emulator: PostboxEmulator) -> dict[tuple[str, str], dict[str, Any]]:
    state = emulator.dump_state()
    lists = {found["id"]: found["name"] for found in state["lists"]}
    emails = {c["id"]: email_key(c["email"]) for c in state["contacts"]}
    return {(lists[m["list_id"]], emails[m["contact_id"]]): m for m in state["members"]}


def may_come_back(want: Contact | Membership | None, opted_out_at: str | None) -> bool:
    """Only with an opt-in the manifest records after a known opt-out."""
    return want is not None and opted_out_at is not None and want.opted_in_at == NEW_CONSENT


async def plan_apply_plan(emulator: PostboxEmulator, manifest: Manifest) -> tuple[Any, Any]:
    provider = provider_for(emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        before = len(emulator.control.calls())
        report = await engine.apply_plan(made, provider, live, force=True)
        calls = len(emulator.control.calls()) - before
        assert made.estimate is not None
        assert calls == made.estimate.api_calls  # the estimate is every call apply made
        again, _ = await engine.make_plan(manifest, provider)
        return report, again
    finally:
        await provider.aclose()


@settings(
    max_examples=200,  # about 10 ms each: in-process, one request per change
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(account=live_accounts(), desired=desired_states())
def test_apply_once_converges_and_brings_nobody_back_without_an_opt_in(
    tmp_path: Path, account: dict[str, Any], desired: State
) -> None:
    emulator = PostboxEmulator(account)
    contacts_before, members_before = contacts_by_email(emulator), members_by_key(emulator)
    manifest = Manifest(PostboxOptions(type="postbox"), desired, [tmp_path / "m.yaml"])

    report, again = run(plan_apply_plan(emulator, manifest))

    assert report.ok, report.outcomes
    assert again.is_empty, [(c.address, c.before, c.after) for c in again.changes]
    contacts_after, members_after = contacts_by_email(emulator), members_by_key(emulator)
    for email, was in contacts_before.items():
        now = contacts_after[email]  # nobody is erased without a prune policy
        want = desired.contacts.get(email)
        if was["excluded_from_campaigns"] and not now["excluded_from_campaigns"]:
            assert may_come_back(want, was["excluded_at"]), email
        if want is None or NAME not in want.fields:
            assert now["name"] == was["name"], email
        unmanaged = set(was["properties"]) - set(want.properties if want else ())
        assert {k: now["properties"].get(k) for k in unmanaged} == {
            k: was["properties"][k] for k in unmanaged
        }, email
    for key, member in members_before.items():
        if member["status"] != "unsubscribed":
            continue
        assert key in members_after, key  # the record of their unsubscribe is kept
        if members_after[key]["status"] == "subscribed":
            assert may_come_back(desired.memberships.get(key), member["unsubscribed_at"]), key
