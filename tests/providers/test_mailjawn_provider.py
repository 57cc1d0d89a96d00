"""MailJawn provider against the emulator: read, review, apply, convergence."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from reconcile.diff import Action, Change, Finding, ResourceType, diff_states
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactList,
    ContactValues,
    Membership,
    MembershipValues,
    PropertyDef,
    PropertyType,
    PropertyValue,
    ReadScope,
    State,
    SubscriptionStatus,
)
from reconcile.plan import Plan
from reconcile.providers.base import ApplyReport, Capability, OutcomeStatus
from reconcile.providers.mailjawn.emulator.app import MailJawnEmulator
from reconcile.providers.mailjawn.provider import NO_TAG_REMOVAL, MailJawnProvider
from tests.providers.test_mailjawn_client import (
    IDENTIFY,
    SUBSCRIBERS,
    Recorder,
    make_client,
    make_emulator,
)

PROPERTIES = {
    "plan": PropertyDef("plan", PropertyType.STR),
    "seats": PropertyDef("seats", PropertyType.INT),
}


def desired_state(
    contacts: Iterable[Contact],
    memberships: Mapping[str, Iterable[str]] | None = None,
    lists: Iterable[str] = (),
) -> State:
    """Desired state with memberships given as {list: [emails]}."""
    state = State(properties=dict(PROPERTIES))
    for contact in contacts:
        state.add_contact(contact)
    for list_name, emails in (memberships or {}).items():
        state.lists[list_name] = ContactList(list_name)
        for email in emails:
            state.add_membership(Membership(list_name, email))
    for list_name in lists:
        state.lists.setdefault(list_name, ContactList(list_name))
    return state


def contact(
    email: str,
    name: str | None = None,
    excluded: bool | None = None,
    **properties: PropertyValue,
) -> Contact:
    fields: dict[str, Any] = {}
    if name is not None:
        fields[NAME] = name
    if excluded is not None:
        fields[EXCLUDED] = excluded
    return Contact(email, fields, properties)


def scope_of(desired: State) -> ReadScope:
    return ReadScope(frozenset(desired.lists))


def plan(desired: State, live: State, provider: MailJawnProvider) -> tuple[Plan, list[Finding]]:
    """Diff as the engine will: manifest definitions and list names copied into live."""
    live.properties.update(desired.properties)
    for name in desired.lists:
        live.lists.setdefault(name, ContactList(name))
    result = diff_states(desired, live)
    assert not result.errors
    changes, warnings = provider.review(result.changes, live)
    return Plan.build(provider.name, changes, scope_of(desired)), result.warnings + warnings


def provider_for(
    emulator: MailJawnEmulator,
    recorder: Recorder | None = None,
    chunk: int = 1000,
    **client_options: Any,
) -> MailJawnProvider:
    client = make_client(emulator, transport=recorder, **client_options)
    return MailJawnProvider(client, import_chunk_size=chunk)


async def plan_and_apply(
    provider: MailJawnProvider, desired: State
) -> tuple[Plan, ApplyReport, Plan]:
    """plan -> apply -> plan again."""
    live = await provider.read(scope_of(desired))
    first, _ = plan(desired, live, provider)
    report = await provider.apply(first.changes, live)
    second, _ = plan(desired, await provider.read(scope_of(desired)), provider)
    return first, report, second


def run_with(provider: MailJawnProvider, main: Any) -> Any:
    async def wrapped() -> Any:
        try:
            return await main
        finally:
            await provider.aclose()

    return asyncio.run(wrapped())


def outcomes(report: ApplyReport) -> dict[str, tuple[OutcomeStatus, str]]:
    return {o.address: (o.status, o.message) for o in report.outcomes}


def tags_of(emulator: MailJawnEmulator, email: str) -> set[str]:
    found = emulator.subscriber(email) or {}
    return {tag["slug"] for tag in found.get("tags", [])}


def seed_big_project(emulator: MailJawnEmulator) -> None:
    """130 subscribers: tags, custom fields no manifest mentions, unsubscribed and bounced."""
    for n in range(130):
        status = "unsubscribed" if n % 10 == 3 else "bounced" if n % 10 == 7 else "active"
        tags = ["newsletter"] if n % 2 == 0 else ["vip", "beta"] if n % 5 == 1 else []
        emulator.seed_subscriber(
            f"user{n:03d}@example.com",
            name=f"User {n}",
            status=status,
            custom_fields={"plan": "free", "seats": n, "crm_id": f"c{n}", "score": n / 2},
            tags=tags,
        )


# ---- capabilities and offline checks ------------------------------------------------------


def test_only_hard_delete_is_declared() -> None:
    assert MailJawnProvider.capabilities == frozenset({Capability.HARD_DELETE})


def test_check_desired_refuses_list_names_that_are_not_tag_slugs() -> None:
    desired = desired_state([], lists=["newsletter", "beta_2", "Product News", "a--b", "!!"])

    findings = {f.address: f.message for f in MailJawnProvider.check_desired(desired)}

    assert set(findings) == {"list:Product News", "list:a--b", "list:!!"}
    assert "'product-news'" in findings["list:Product News"]
    assert "'a-b'" in findings["list:a--b"]
    assert "letters and digits" in findings["list:!!"]


# ---- read -------------------------------------------------------------------------------


def test_read_of_a_seeded_project_maps_every_subscriber() -> None:
    emulator = make_emulator()
    seed_big_project(emulator)
    provider = provider_for(emulator)

    live = run_with(provider, provider.read(ReadScope(frozenset({"newsletter", "new-list"}))))

    assert len(live.contacts) == 130
    assert len(emulator.control.calls("GET")) == 2
    assert set(live.lists) == {"newsletter", "vip", "beta", "new-list"}
    assert set(live.memberships) == {
        ("newsletter", f"user{n:03d}@example.com") for n in range(0, 130, 2)
    }
    unsubscribed, bounced, active = (live.contacts[f"user{n:03d}@example.com"] for n in (3, 7, 4))
    assert unsubscribed.fields[EXCLUDED] is True
    assert (bounced.fields[EXCLUDED], bounced.fields["status"]) == (True, "bounced")
    assert active.fields == {NAME: "User 4", EXCLUDED: False, "status": "active"}
    assert active.properties == {"plan": "free", "seats": 4, "crm_id": "c4", "score": 2.0}


def test_read_of_every_list_gives_every_tag_membership() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("a@example.com", tags=["vip", "beta"])
    provider = provider_for(emulator)

    live = run_with(provider, provider.read(ReadScope(every_list=True)))

    assert set(live.memberships) == {("vip", "a@example.com"), ("beta", "a@example.com")}
    assert all(m.status is SubscriptionStatus.SUBSCRIBED for m in live.memberships.values())


# ---- creating by bulk import ----------------------------------------------------------------


def test_new_contacts_are_imported_in_chunks_with_tags_and_custom_fields() -> None:
    emulator = make_emulator()
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder, chunk=2)
    new = [contact(f"new{n}@example.com", f"New {n}", plan="pro", seats=n) for n in range(4)]
    new.append(contact("quiet@example.com", "Quiet", excluded=True, plan="basic"))
    emails = [c.email for c in new]
    desired = desired_state(new, {"newsletter": emails, "vip": emails[:1]})

    first, report, second = run_with(provider, plan_and_apply(provider, desired))

    assert report.ok, report.outcomes
    assert len(report.outcomes) == len(first.changes)
    imports = recorder.bodies("POST", SUBSCRIBERS)
    assert [len(body["subscribers"]) for body in imports] == [2, 2, 1]
    item = next(i for body in imports for i in body["subscribers"] if i["email"] == emails[0])
    assert item == {
        "email": "new0@example.com",
        "name": "New 0",
        "custom_fields": {"plan": "pro", "seats": 0},
        "tags": ["newsletter", "vip"],
        "trigger_automations": False,
    }
    assert recorder.bodies("POST", IDENTIFY) == []
    assert recorder.bodies("PATCH", "/") == [{"status": "unsubscribed"}]  # import can't set it
    assert tags_of(emulator, "new0@example.com") == {"newsletter", "vip"}
    assert (emulator.subscriber("new3@example.com") or {})["custom_fields"] == {
        "plan": "pro",
        "seats": 3,
    }
    assert (emulator.subscriber("quiet@example.com") or {})["status"] == "unsubscribed"
    assert second.is_empty, second.changes


def test_failed_import_items_fail_their_contact_and_skip_its_memberships() -> None:
    emulator = make_emulator()
    provider = provider_for(emulator, chunk=10)
    desired = desired_state(
        [contact("good@example.com", "Good"), contact("not-an-email", "Bad")],
        {"newsletter": ["good@example.com", "not-an-email"]},
    )

    _, report, _ = run_with(provider, plan_and_apply(provider, desired))

    result = outcomes(report)
    assert result["contact:good@example.com"][0] is OutcomeStatus.DONE
    assert result["membership:newsletter/good@example.com"][0] is OutcomeStatus.DONE
    status, message = result["contact:not-an-email"]
    assert status is OutcomeStatus.FAILED
    assert "'not-an-email' is not a valid email address" in message
    assert result["membership:newsletter/not-an-email"] == (
        OutcomeStatus.SKIPPED,
        "skipped: contact:not-an-email failed",
    )
    assert tags_of(emulator, "good@example.com") == {"newsletter"}


def test_an_email_skipped_by_import_is_found_and_updated() -> None:
    emulator = make_emulator()
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder)
    desired = desired_state(
        [contact("Late@Example.com", "Wanted", plan="pro")], {"newsletter": ["late@example.com"]}
    )

    async def scenario() -> tuple[ApplyReport, Plan]:
        live = await provider.read(scope_of(desired))
        changes, _ = plan(desired, live, provider)
        # Someone creates the subscriber between plan and apply: the import skips it.
        emulator.seed_subscriber(
            "late@example.com", name="Other", custom_fields={"plan": "free", "crm": "x"}
        )
        report = await provider.apply(changes.changes, live)
        again, _ = plan(desired, await provider.read(scope_of(desired)), provider)
        return report, again

    report, again = run_with(provider, scenario())

    assert report.ok, report.outcomes
    searches = [r.url.params.get("search") for r in recorder.requests if r.method == "GET"]
    assert "Late@Example.com" in searches
    assert recorder.bodies("PATCH", "/") == [{"name": "Wanted", "custom_fields": {"plan": "pro"}}]
    # The tags' identify sends back the name just written (whether an upsert keeps what it
    # leaves out is not documented), never the one found before.
    assert recorder.bodies("POST", IDENTIFY) == [
        {
            "email": "late@example.com",
            "name": "Wanted",
            "tags": ["newsletter"],
            "trigger_automations": False,
        }
    ]
    found = emulator.subscriber("late@example.com") or {}
    assert found["custom_fields"] == {"plan": "pro", "crm": "x"}
    assert again.is_empty, again.changes


class LosingTransport(Recorder):
    """Lets the first bulk import land only its first half, then loses the answer."""

    def __init__(self, emulator: MailJawnEmulator) -> None:
        super().__init__(emulator)
        self.lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.lost or request.method != "POST" or not request.url.path.endswith(SUBSCRIBERS):
            return await super().handle_async_request(request)
        self.lost = True
        items = json.loads(request.content)["subscribers"]
        half = httpx.Request(
            "POST",
            request.url,
            headers={"Authorization": request.headers["Authorization"]},
            json={"subscribers": items[: len(items) // 2]},
        )
        await super().handle_async_request(half)
        raise httpx.ReadTimeout("answer lost", request=request)


def test_an_import_whose_answer_was_lost_imports_only_the_missing() -> None:
    emulator = make_emulator()
    transport = LosingTransport(emulator)
    provider = provider_for(emulator, transport)
    new = [contact(f"n{n}@example.com", f"N {n}") for n in range(6)]
    desired = desired_state(new, {"newsletter": [c.email for c in new]})

    _, report, second = run_with(provider, plan_and_apply(provider, desired))

    assert report.ok, report.outcomes
    sent = [[i["email"] for i in body["subscribers"]] for body in transport.bodies("POST", "s/")]
    assert sent[-1] == ["n3@example.com", "n4@example.com", "n5@example.com"]
    assert all(tags_of(emulator, c.email) == {"newsletter"} for c in new)
    assert second.is_empty, second.changes


# ---- updates --------------------------------------------------------------------------------


def test_an_update_and_new_tags_of_an_active_subscriber_are_one_identify() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber(
        "a@example.com",
        name="Old",
        custom_fields={"plan": "free", "seats": 2, "crm_id": "c1"},
        tags=["vip"],
    )
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder)
    desired = desired_state(
        [contact("a@example.com", "New", excluded=False, plan="pro", seats=2)],
        {"newsletter": ["a@example.com"]},
    )

    _, report, second = run_with(provider, plan_and_apply(provider, desired))

    assert report.ok, report.outcomes
    assert recorder.bodies("PATCH", "/") == []
    assert recorder.bodies("POST", IDENTIFY) == [
        {
            "email": "a@example.com",
            "name": "New",
            "custom_fields": {"plan": "pro"},
            "tags": ["newsletter", "vip"],
            "trigger_automations": False,
        }
    ]
    assert recorder.bodies("POST", SUBSCRIBERS) == []
    found = emulator.subscriber("a@example.com") or {}
    assert found["custom_fields"] == {"plan": "pro", "seats": 2, "crm_id": "c1"}
    assert tags_of(emulator, "a@example.com") == {"vip", "newsletter"}
    assert second.is_empty, second.changes


def test_null_removes_a_managed_custom_field_and_excluded_sets_status() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("a@example.com", custom_fields={"plan": "free", "crm_id": "c1"})
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder)
    desired = desired_state([contact("a@example.com", excluded=True, plan=None)])

    _, report, second = run_with(provider, plan_and_apply(provider, desired))

    assert report.ok, report.outcomes
    assert recorder.bodies("PATCH", "/") == [
        {"status": "unsubscribed", "custom_fields": {"plan": None}}
    ]
    found = emulator.subscriber("a@example.com") or {}
    assert (found["status"], found["custom_fields"]) == ("unsubscribed", {"crm_id": "c1"})
    assert second.is_empty, second.changes


def test_bounced_and_complained_are_never_changed_and_warned_about() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("bounced@example.com", name="B", status="bounced")
    emulator.seed_subscriber("complained@example.com", name="C", status="complained")
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder)
    desired = desired_state(
        [
            contact("bounced@example.com", "B2", excluded=False),
            contact("complained@example.com", "C", excluded=False),
        ]
    )

    async def scenario() -> tuple[Plan, list[Finding], ApplyReport]:
        live = await provider.read(scope_of(desired))
        planned, warnings = plan(desired, live, provider)
        return planned, warnings, await provider.apply(planned.changes, live)

    planned, warnings, report = run_with(provider, scenario())

    assert {w.address for w in warnings} == {
        "contact:bounced@example.com",
        "contact:complained@example.com",
    }
    assert all("no opt-in (opted_in_at)" in w.message for w in warnings)
    assert [(c.address, c.after) for c in planned.changes] == [
        ("contact:bounced@example.com", ContactValues({NAME: "B2"}))
    ]
    assert report.ok
    assert recorder.bodies("PATCH", "/") == [{"name": "B2"}]
    assert (emulator.subscriber("bounced@example.com") or {})["status"] == "bounced"
    assert (emulator.subscriber("complained@example.com") or {})["status"] == "complained"


def test_apply_without_review_still_never_changes_a_bounced_status() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("bounced@example.com", status="bounced")
    recorder = Recorder(emulator)
    provider = provider_for(emulator, recorder)
    # As if a plan asked to re-include them (a diff never does without an opt-in).
    include = Change(
        ResourceType.CONTACT,
        Action.UPDATE,
        ("bounced@example.com",),
        ContactValues({EXCLUDED: True}),
        ContactValues({EXCLUDED: False}),
    )

    async def scenario() -> ApplyReport:
        live = await provider.read(ReadScope())
        kept, warned = provider.review([include], live)
        assert kept == []
        assert "never changes a bounced or complained status" in warned[0].message
        return await provider.apply([include], live)

    report = run_with(provider, scenario())

    assert outcomes(report)["contact:bounced@example.com"] == (
        OutcomeStatus.DONE,
        "status left bounced: it is never changed",
    )
    assert recorder.bodies("PATCH", "/") == []
    assert (emulator.subscriber("bounced@example.com") or {})["status"] == "bounced"


def test_a_subscriber_deleted_since_the_read_fails_with_a_hint() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("gone@example.com", name="Old")
    provider = provider_for(emulator)
    desired = desired_state([contact("gone@example.com", "New")])

    async def scenario() -> ApplyReport:
        live = await provider.read(scope_of(desired))
        changes, _ = plan(desired, live, provider)
        subscriber_id = (emulator.subscriber("gone@example.com") or {})["id"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emulator.app), base_url="http://x"
        ) as http:
            await http.delete(
                f"/api/v1/projects/{emulator.settings.project_id}/subscribers/{subscriber_id}/",
                headers={"Authorization": f"Bearer {next(iter(emulator.settings.api_keys))}"},
            )
        return await provider.apply(changes.changes, live)

    report = run_with(provider, scenario())

    status, message = outcomes(report)["contact:gone@example.com"]
    assert status is OutcomeStatus.FAILED
    assert "Subscriber not found" in message
    assert "run plan again" in message


# ---- what MailJawn can't do, and deletion -----------------------------------------------------


def test_tag_removals_are_refused_and_contacts_are_hard_deleted() -> None:
    emulator = make_emulator()
    emulator.seed_subscriber("a@example.com", tags=["beta"])
    emulator.seed_subscriber("b@example.com")
    provider = provider_for(emulator)
    membership = ResourceType.MEMBERSHIP
    subscribed = MembershipValues(SubscriptionStatus.SUBSCRIBED)
    unsubscribed = MembershipValues(SubscriptionStatus.UNSUBSCRIBED)
    removal = Change(membership, Action.DELETE, ("beta", "a@example.com"), subscribed, None)
    unsubscribe = Change(
        membership, Action.UPDATE, ("beta", "b@example.com"), subscribed, unsubscribed
    )
    erased = ContactValues(email="b@example.com")
    erase = Change(ResourceType.CONTACT, Action.DELETE, ("b@example.com",), erased, None)

    async def scenario() -> ApplyReport:
        live = await provider.read(ReadScope(every_list=True))
        return await provider.apply(
            Plan.build("mailjawn", [removal, unsubscribe, erase], ReadScope()).changes, live
        )

    report = run_with(provider, scenario())

    result = outcomes(report)
    assert result["membership:beta/a@example.com"] == (OutcomeStatus.FAILED, NO_TAG_REMOVAL)
    assert result["membership:beta/b@example.com"] == (OutcomeStatus.FAILED, NO_TAG_REMOVAL)
    assert result["contact:b@example.com"][0] is OutcomeStatus.DONE
    assert emulator.subscriber("b@example.com") is None
    assert tags_of(emulator, "a@example.com") == {"beta"}


# ---- the whole loop -----------------------------------------------------------------------


def test_plan_apply_plan_converges_and_changes_nothing_unmanaged() -> None:
    emulator = make_emulator()
    seed_big_project(emulator)
    untouched = {
        f"user{n:03d}@example.com": copy.deepcopy(emulator.subscriber(f"user{n:03d}@example.com"))
        for n in range(20, 130)
    }
    provider = provider_for(emulator, chunk=3)
    managed = [
        contact("user000@example.com", "Renamed", plan="pro"),
        contact("user003@example.com", excluded=False),  # unsubscribed, no opt-in: stays
        contact("user007@example.com", "Bounced Renamed", excluded=False),  # stays bounced
        contact("user011@example.com", seats=99, plan=None),
    ]
    new = [contact(f"fresh{n}@example.com", f"Fresh {n}", seats=n) for n in range(7)]
    everyone = [c.email for c in managed + new]
    desired = desired_state(
        managed + new,
        {"newsletter": everyone, "launch-2025": [c.email for c in new[:2]] + everyone[:2]},
    )

    first, report, second = run_with(provider, plan_and_apply(provider, desired))

    assert not first.is_empty
    assert report.ok, [o for o in report.outcomes if o.status is not OutcomeStatus.DONE]
    assert second.is_empty, second.changes
    assert all(emulator.subscriber(email) == before for email, before in untouched.items())
    kept = emulator.subscriber("user000@example.com") or {}
    assert kept["custom_fields"] == {"plan": "pro", "seats": 0, "crm_id": "c0", "score": 0.0}
    assert (emulator.subscriber("user007@example.com") or {})["status"] == "bounced"
    assert (emulator.subscriber("user003@example.com") or {})["status"] == "unsubscribed"
    assert tags_of(emulator, "user011@example.com") == {"newsletter", "vip", "beta"}


def test_an_apply_over_the_write_limit_is_paced_without_a_burst_of_429s() -> None:
    emulator = make_emulator(write_limit=4, read_limit=100, time_scale=60)  # 4 writes a second
    for n in range(14):
        emulator.seed_subscriber(f"u{n}@example.com", name="Old")
    # The emulator's minute lasts a second: 4 writes a second is 240 a minute.
    provider = provider_for(
        emulator, reads_per_minute=6000, writes_per_minute=240, window_seconds=1.0
    )
    desired = desired_state([contact(f"u{n}@example.com", "New") for n in range(14)])

    started = time.monotonic()
    first, report, second = run_with(provider, plan_and_apply(provider, desired))
    elapsed = time.monotonic() - started

    assert len(first.changes) == 14
    assert report.ok, report.outcomes
    writes = emulator.control.calls("PATCH")
    assert [r.status for r in writes].count(429) <= 1
    assert [r.status for r in writes].count(200) == 14
    assert all((emulator.subscriber(f"u{n}@example.com") or {})["name"] == "New" for n in range(14))
    assert second.is_empty
    assert elapsed < 10
