"""MailJawn updates of existing subscribers (issue #15 item 4) against the emulator over
real HTTP: the probe import, updating imports, skipping imports, an import that harms
unmanaged fields, live values sent back, consent untouched, estimate == calls."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.model import Contact, State
from reconcile.plan import Plan
from reconcile.providers.base import ApplyReport, OutcomeStatus
from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.emulator.app import MailJawnEmulator
from reconcile.providers.mailjawn.emulator.validation import PatchInput, validate_identify
from reconcile.providers.mailjawn.plugin import MailJawnOptions
from reconcile.providers.mailjawn.provider import PROBE_SIZE, MailJawnProvider
from reconcile.sandbox.common import Fault, RequestRecord
from tests.providers.test_mailjawn_client import FAST_RETRY, KEY, make_emulator
from tests.providers.test_mailjawn_provider import contact, desired_state
from tests.support import run, served

EXTRA = {"timezone": "Europe/Paris", "locale": "fr_FR", "device_type": "iPhone"}


@pytest.fixture
def emulator() -> MailJawnEmulator:
    return make_emulator()


@pytest.fixture
def url(emulator: MailJawnEmulator) -> Iterator[str]:
    with served(emulator.app) as address:
        yield address


def provider_at(url: str, emulator: MailJawnEmulator, chunk: int = 1000) -> MailJawnProvider:
    client = MailJawnClient(
        api_key=KEY,
        project_id=emulator.settings.project_id,
        base_url=url,
        reads_per_minute=60_000,
        writes_per_minute=60_000,
        retry=FAST_RETRY,
    )
    return MailJawnProvider(client, import_chunk_size=chunk)


def seed_members(emulator: MailJawnEmulator, count: int, status: str = "active") -> list[str]:
    """Subscribers with what no manifest here manages: a custom field, a tag, device data."""
    emails = [f"{status}{n:02d}@example.com" for n in range(count)]
    for n, email in enumerate(emails):
        emulator.seed_subscriber(
            email,
            name=f"Old {n}",
            status=status,
            custom_fields={"plan": "free", "crm_id": f"c{n}"},
            tags=["signup-form"],
            **EXTRA,
        )
    return emails


def renamed(emails: list[str], tag: str | None = "newsletter") -> State:
    """Each gets a new name and plan (and `tag`)."""
    contacts = [contact(email, f"New {n}", plan="pro") for n, email in enumerate(emails)]
    return desired_state(contacts, {tag: emails} if tag else None)


def manifest_of(desired: State, tmp_path: Path) -> Manifest:
    return Manifest(MailJawnOptions(type="mailjawn"), desired, [tmp_path / "m.yaml"])


async def plan_apply_plan(
    provider: MailJawnProvider, manifest: Manifest, emulator: MailJawnEmulator
) -> tuple[Plan, ApplyReport, list[str], Plan]:
    """The plan, the report, the requests apply sent (each as the emulator logged it), and
    the plan after it."""
    try:
        made, live = await engine.make_plan(manifest, provider)
        before = len(await settled_log(emulator))
        count = provider.stats().requests
        report = await engine.apply_plan(made, provider, live, force=True)
        count = provider.stats().requests - count
        sent = [f"{c.method} {c.path}" for c in (await settled_log(emulator))[before:]]
        assert len(sent) == count  # what the client sent is what the emulator saw
        again, _ = await engine.make_plan(manifest, provider)
        return made, report, sent, again
    finally:
        await provider.aclose()


async def settled_log(emulator: MailJawnEmulator) -> list[RequestRecord]:
    """The emulator's log once its last entry is in: over real HTTP it logs a request just
    after the answer went out."""
    await asyncio.sleep(0.05)
    return emulator.control.calls()


def unmanaged(record: dict[str, Any] | None) -> dict[str, Any]:
    assert record is not None
    kept = {k: record[k] for k in ("status", "source", "first_seen", "subscribed_at", *EXTRA)}
    return kept | {"crm_id": record["custom_fields"].get("crm_id")}


def snapshot(emulator: MailJawnEmulator, emails: list[str]) -> dict[str, dict[str, Any]]:
    return {email: unmanaged(emulator.subscriber(email)) for email in emails}


def imports(sent: list[str]) -> int:
    return sum(1 for call in sent if call.startswith("POST") and call.endswith("/subscribers/"))


# ---- the three things an import may turn out to do ------------------------------------------


def test_an_updating_import_carries_every_update_after_the_probe(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    emulator.set_upsert(import_updates_existing=True)
    emails = seed_members(emulator, 25)
    before = snapshot(emulator, emails)
    provider = provider_at(url, emulator, chunk=10)

    made, report, sent, again = run(
        plan_apply_plan(provider, manifest_of(renamed(emails), tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert made.estimate is not None
    assert len(sent) == made.estimate.api_calls == 1 + 2 * PROBE_SIZE + 3  # 22 left, by 10
    assert imports(sent) == 4
    assert not any(call.startswith("PATCH") or call.endswith("/identify/") for call in sent)
    assert "updates existing subscribers" in made.estimate.assumes
    assert "or clears what it leaves out, apply makes 32 calls" in made.estimate.assumes
    assert any("updates existing subscribers and keeps" in n for n in report.notes)
    assert snapshot(emulator, emails) == before  # status, device data, crm_id: all kept
    found = emulator.subscriber(emails[7]) or {}
    assert (found["name"], found["custom_fields"]["plan"]) == ("New 7", "pro")
    assert {t["slug"] for t in found["tags"]} == {"signup-form", "newsletter"}


def test_a_skipping_import_leaves_the_updates_to_single_writes_and_says_so(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    emails = seed_members(emulator, 12)  # the emulator's default: an import skips them
    before = snapshot(emulator, emails)
    provider = provider_at(url, emulator)

    made, report, sent, again = run(
        plan_apply_plan(provider, manifest_of(renamed(emails), tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert any("did not update existing subscribers" in note for note in report.notes)
    assert made.estimate is not None
    assert f"apply makes {len(sent)} calls" in made.estimate.assumes
    assert imports(sent) == 1  # the probe, then one identify each (update and tag folded)
    assert sum(1 for call in sent if call.endswith("/identify/")) == 12
    assert snapshot(emulator, emails) == before


def test_an_import_that_drops_unmanaged_custom_fields_stops_imports_and_names_the_damage(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    emulator.set_upsert(import_updates_existing=True, import_replaces_custom_fields=True)
    emails = seed_members(emulator, 12)
    provider = provider_at(url, emulator)

    _, report, sent, again = run(
        plan_apply_plan(provider, manifest_of(renamed(emails), tmp_path), emulator)
    )

    hurt = {
        o.address.split(":")[1]
        for o in report.outcomes
        if o.address.startswith("contact:") and "changed what it was not asked to" in o.message
    }
    assert report.ok, report.outcomes  # the damage was undone, the values landed
    assert len(hurt) == PROBE_SIZE
    message = next(o.message for o in report.outcomes if o.address == f"contact:{min(hurt)}")
    assert "custom_fields.crm_id: 'c" in message
    assert "-> absent" in message
    assert "restored by PATCH" in message
    assert any("changed fields it was not asked to change" in note for note in report.notes)
    assert imports(sent) == 1  # no import after the probe
    assert again.is_empty, again.changes
    for email in emails:  # the probe's restored, the others by identify: nothing lost
        found = emulator.subscriber(email) or {}
        assert found["custom_fields"]["crm_id"].startswith("c")
        assert found["custom_fields"]["plan"] == "pro"
        assert found["name"].startswith("New")


def test_later_import_items_never_send_back_a_value_read_at_plan_time(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    """Someone edits unmanaged fields between plan and apply: the probe shows that an
    import keeps what it leaves out, so the later items leave those fields out and the
    edits stay."""
    emulator.set_upsert(import_updates_existing=True)
    emails = seed_members(emulator, 25)
    plan_only = desired_state([Contact(e, {}, {"plan": "pro"}) for e in emails], None)
    provider = provider_at(url, emulator, chunk=10)
    manifest = manifest_of(plan_only, tmp_path)
    edited = {"name": "Edited", "timezone": "Asia/Tokyo", "locale": "ja_JP"}

    async def scenario() -> tuple[Plan, ApplyReport, Plan]:
        try:
            made, live = await engine.make_plan(manifest, provider)
            for email in emails:  # the probe reads its three fresh; the others it can't
                emulator.store.identify(validate_identify({"email": email, **edited}, "test"))
            report = await engine.apply_plan(made, provider, live, force=True)
            again, _ = await engine.make_plan(manifest, provider)
            return made, report, again
        finally:
            await provider.aclose()

    _, report, again = run(scenario())

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    for email in emails:
        found = emulator.subscriber(email) or {}
        assert {k: found[k] for k in edited} == edited, email
        assert found["custom_fields"]["plan"] == "pro"
        assert found["device_type"] == "iPhone"


@pytest.mark.parametrize("chunk", [10, 1000])
def test_an_import_that_clears_what_it_omits_restores_the_probe_and_stops_imports(
    emulator: MailJawnEmulator, url: str, tmp_path: Path, chunk: int
) -> None:
    emulator.set_upsert(import_updates_existing=True, clears_omitted=True)
    emails = seed_members(emulator, 25)
    before = {email: copy.deepcopy(emulator.subscriber(email)) for email in emails}
    plan_only = desired_state([Contact(e, {}, {"plan": "pro"}) for e in emails], None)
    provider = provider_at(url, emulator, chunk)

    made, report, sent, again = run(
        plan_apply_plan(provider, manifest_of(plan_only, tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert imports(sent) == 1  # the probe only
    assert any("clears the fields an item leaves out" in n for n in report.notes), report.notes
    for email in emails:
        now, was = emulator.subscriber(email) or {}, before[email] or {}
        assert {k: now[k] for k in ("name", *EXTRA)} == {k: was[k] for k in ("name", *EXTRA)}
    assert made.estimate is not None
    assert f"apply makes {len(sent)} calls" in made.estimate.assumes


@pytest.mark.parametrize("updates", [True, False])
def test_a_probe_subscriber_who_unsubscribed_meanwhile_gets_an_outcome_and_no_upsert(
    emulator: MailJawnEmulator, url: str, tmp_path: Path, updates: bool
) -> None:
    emulator.set_upsert(import_updates_existing=updates)
    emails = seed_members(emulator, 12)
    leaver = emails[0]  # every one is as revealing: the probe takes the first three
    provider = provider_at(url, emulator)
    manifest = manifest_of(renamed(emails), tmp_path)
    upserted: list[str] = []
    original = provider.client.post

    async def post(path: str, body: Any, *, idempotent: bool) -> Any:
        upserted.extend(i["email"] for i in body.get("subscribers", [body]))
        return await original(path, body, idempotent=idempotent)

    provider.client.post = post  # type: ignore[method-assign]

    async def scenario() -> tuple[Plan, ApplyReport, Plan]:
        try:
            made, live = await engine.make_plan(manifest, provider)
            found = emulator.subscriber(leaver) or {}
            emulator.store.patch(found["id"], PatchInput(status="unsubscribed"))
            report = await engine.apply_plan(made, provider, live, force=True)
            again, _ = await engine.make_plan(manifest, provider)
            return made, report, again
        finally:
            await provider.aclose()

    made, report, again = run(scenario())

    assert sorted(o.address for o in report.outcomes) == sorted(c.address for c in made.changes)
    outcomes = {o.address: o for o in report.outcomes}
    assert outcomes[f"contact:{leaver}"].status is OutcomeStatus.DONE  # by PATCH
    tag = outcomes[f"membership:newsletter/{leaver}"]
    assert tag.status is OutcomeStatus.FAILED
    assert "is unsubscribed" in tag.message
    assert all(o.status is OutcomeStatus.DONE for o in report.outcomes if o is not tag)
    assert leaver not in upserted
    found = emulator.subscriber(leaver) or {}
    assert (found["status"], found["name"]) == ("unsubscribed", "New 0")
    assert again.is_empty, again.changes  # the tag is now left out, with a warning
    assert any(leaver in warning for warning in again.warnings)


# ---- what is sent back, and consent ---------------------------------------------------------


@pytest.mark.parametrize("updates", [True, False])
def test_an_upsert_that_clears_what_it_omits_loses_nothing(
    emulator: MailJawnEmulator, url: str, tmp_path: Path, updates: bool
) -> None:
    """Name unmanaged, device data never managed: both go back with their live values."""
    emulator.set_upsert(import_updates_existing=updates, clears_omitted=True)
    emails = seed_members(emulator, 12)
    before = {email: copy.deepcopy(emulator.subscriber(email)) for email in emails}
    desired = desired_state(
        [Contact(email, {}, {"plan": "pro"}) for email in emails], {"newsletter": emails}
    )
    provider = provider_at(url, emulator)

    _, report, _, again = run(plan_apply_plan(provider, manifest_of(desired, tmp_path), emulator))

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    for email in emails:
        now, was = emulator.subscriber(email) or {}, before[email] or {}
        assert {k: now[k] for k in ("name", *EXTRA)} == {k: was[k] for k in ("name", *EXTRA)}


def test_unsubscribed_and_bounced_subscribers_never_ride_in_an_import(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    emulator.set_upsert(import_updates_existing=True)
    active = seed_members(emulator, 12)
    gone = seed_members(emulator, 3, "unsubscribed") + seed_members(emulator, 3, "bounced")
    before = snapshot(emulator, gone)
    provider = provider_at(url, emulator)
    recorded: list[dict[str, Any]] = []
    original = provider.client.post

    async def post(path: str, body: Any, *, idempotent: bool) -> Any:
        recorded.append(body)
        return await original(path, body, idempotent=idempotent)

    provider.client.post = post  # type: ignore[method-assign]

    _, report, _, again = run(
        plan_apply_plan(provider, manifest_of(renamed(active + gone), tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    in_imports = {i["email"] for body in recorded for i in body.get("subscribers", [])}
    assert in_imports == set(active)
    assert snapshot(emulator, gone) == before  # still unsubscribed / bounced
    assert all((emulator.subscriber(e) or {})["name"].startswith("New") for e in gone)


@pytest.mark.parametrize("updates", [True, False])
def test_no_upsert_ever_goes_to_a_subscriber_who_is_not_active_and_the_plan_says_so(
    emulator: MailJawnEmulator, url: str, tmp_path: Path, updates: bool
) -> None:
    """A tag is only added by an upsert: for an unsubscribed, bounced or complained
    subscriber the plan leaves it out with a warning naming them, apply sends them no
    identify and no import item, and the next plan shows no change for them either."""
    emulator.set_upsert(import_updates_existing=updates)
    active = seed_members(emulator, 12)
    gone = [
        *seed_members(emulator, 2, "unsubscribed"),
        *seed_members(emulator, 2, "bounced"),
        *seed_members(emulator, 2, "complained"),
    ]
    before = {email: copy.deepcopy(emulator.subscriber(email)) for email in gone}
    provider = provider_at(url, emulator)
    upserted: list[str] = []
    original = provider.client.post

    async def post(path: str, body: Any, *, idempotent: bool) -> Any:
        upserted.extend(i["email"] for i in body.get("subscribers", [body]))
        return await original(path, body, idempotent=idempotent)

    provider.client.post = post  # type: ignore[method-assign]
    tags_only = desired_state(
        [Contact(email, {}, {}) for email in active + gone], {"newsletter": active + gone}
    )

    made, report, _, again = run(
        plan_apply_plan(provider, manifest_of(tags_only, tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    planned = {change.email for change in made.changes}
    assert planned == set(active)
    for email in gone:
        warned = [w for w in made.warnings if email in w and "the tag is not added" in w]
        assert len(warned) == 1, made.warnings
    assert not set(upserted) & set(gone)
    assert {email: emulator.subscriber(email) for email in gone} == before
    assert again.is_empty, again.changes
    assert len(again.warnings) == len(made.warnings)


def test_a_tag_for_someone_this_apply_unsubscribes_goes_while_they_are_still_active(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    email = seed_members(emulator, 1)[0]
    leaving = desired_state([contact(email, "Old 0", excluded=True)], {"newsletter": [email]})
    provider = provider_at(url, emulator)

    _, report, sent, again = run(
        plan_apply_plan(provider, manifest_of(leaving, tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert [call.split()[0] for call in sent] == ["POST", "PATCH"]  # identify, then status
    found = emulator.subscriber(email) or {}
    assert found["status"] == "unsubscribed"
    assert {t["slug"] for t in found["tags"]} == {"signup-form", "newsletter"}


def test_a_failed_item_of_an_update_import_fails_its_contact_and_tags(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    emulator.set_upsert(import_updates_existing=True)
    emails = seed_members(emulator, 12)
    provider = provider_at(url, emulator)
    manifest = manifest_of(renamed(emails), tmp_path)

    async def scenario() -> ApplyReport:
        try:
            made, live = await engine.make_plan(manifest, provider)
            # Every email fails in one import: the probe's are checked the same way.
            emulator.fail_in_imports([emails[-1]], message="refused by the test")
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    report = run(scenario())

    bad = {o.address: o for o in report.outcomes if o.status is not OutcomeStatus.DONE}
    assert set(bad) == {f"contact:{emails[-1]}", f"membership:newsletter/{emails[-1]}"}
    assert all("refused by the test" in o.message for o in bad.values())
    assert (emulator.subscriber(emails[-1]) or {})["name"] == "Old 11"


def test_the_upsert_switches_are_settable_over_http(emulator: MailJawnEmulator, url: str) -> None:
    async def switch() -> Any:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.post(
                "/_emulator/settings", json={"upsert": {"import_updates_existing": True}}
            )
            return answer.json()

    answer = asyncio.run(switch())

    assert answer["upsert"]["import_updates_existing"] is True
    assert emulator.settings.upsert.import_updates_existing is True


# ---- the property: both behaviours, enough subscribers for the bulk path --------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    updates=st.booleans(),
    clears=st.booleans(),
    statuses=st.lists(
        st.sampled_from(["active"] * 4 + ["unsubscribed", "bounced"]), min_size=20, max_size=20
    ),
    renames=st.lists(st.booleans(), min_size=20, max_size=20),
    chunk=st.sampled_from([3, 1000]),
)
def test_estimate_is_exact_when_imports_update_and_nothing_unmanaged_moves_either_way(
    tmp_path: Path,
    updates: bool,
    clears: bool,
    statuses: list[str],
    renames: list[bool],
    chunk: int,
) -> None:
    emulator = make_emulator()
    emulator.set_upsert(import_updates_existing=updates, clears_omitted=clears)
    emails = []
    for n, status in enumerate(statuses):
        emails += [email := f"p{n:02d}@example.com"]
        emulator.seed_subscriber(
            email, f"Old {n}", status, custom_fields={"crm_id": f"c{n}"}, tags=["x"], **EXTRA
        )
    before = snapshot(emulator, emails)
    contacts = [
        contact(e, f"New {n}", plan="pro") if renames[n] else Contact(e, {}, {"plan": "pro"})
        for n, e in enumerate(emails)
    ]
    desired = desired_state(contacts, {"newsletter": emails[::2]})
    with served(emulator.app) as url:
        made, report, sent, again = run(
            plan_apply_plan(
                provider_at(url, emulator, chunk), manifest_of(desired, tmp_path), emulator
            )
        )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert snapshot(emulator, emails) == before
    assert made.estimate is not None
    if (updates and not clears) or not made.estimate.assumes:
        assert len(sent) == made.estimate.api_calls, sent
    else:
        assert f"apply makes {len(sent)} calls" in made.estimate.assumes


def test_a_stop_during_the_probe_judges_nothing_and_sends_nothing_more(
    emulator: MailJawnEmulator, url: str, tmp_path: Path
) -> None:
    """Ctrl-C while the probe import is on its way: no verdict on how imports behave (the
    read-back that would judge it is not sent), no request after it."""
    emulator.set_upsert(import_updates_existing=True)
    emails = seed_members(emulator, 12)
    provider = provider_at(url, emulator)
    manifest = manifest_of(renamed(emails), tmp_path)

    async def stopped_during_probe() -> tuple[ApplyReport, list[str]]:
        try:
            made, live = await engine.make_plan(manifest, provider)
            before = len(await settled_log(emulator))
            emulator.control.inject(Fault(kind="latency", seconds=1.0, method="POST"))
            applying = asyncio.create_task(engine.apply_plan(made, provider, live, force=True))
            reads = [c for c in emulator.control.calls()[before:] if c.method == "GET"]
            while len(reads) < PROBE_SIZE:  # the reads before the probe import, then it
                await asyncio.sleep(0.01)
                reads = [c for c in emulator.control.calls()[before:] if c.method == "GET"]
            await asyncio.sleep(0.3)  # the import is on its way (answered after 1 s)
            provider.cancel.request()
            report = await applying
            sent = [f"{c.method} {c.path}" for c in (await settled_log(emulator))[before:]]
            return report, sent
        finally:
            await provider.aclose()

    report, sent = run(stopped_during_probe())

    assert not report.ok
    assert not any("did not update" in note or "skipped" in note for note in report.notes)
    probe = next(n for n, call in enumerate(sent) if call.startswith("POST"))
    assert sent[probe + 1 :] == [], sent  # nothing after the interrupted probe import


@pytest.mark.parametrize("updates", [True, False])
def test_a_name_emptied_by_the_manifest_is_written_whichever_way_updates_go(
    emulator: MailJawnEmulator, url: str, tmp_path: Path, updates: bool
) -> None:
    """`name: ""` through an import or an identify: written, not reported done and lost."""
    emulator.set_upsert(import_updates_existing=updates)
    emails = seed_members(emulator, 12)
    contacts = [contact(email, "", plan="pro") for email in emails]
    provider = provider_at(url, emulator)

    _, report, _, again = run(
        plan_apply_plan(provider, manifest_of(desired_state(contacts, None), tmp_path), emulator)
    )

    assert report.ok, report.outcomes
    assert again.is_empty, again.changes
    assert {(emulator.subscriber(email) or {}).get("name") for email in emails} == {""}
