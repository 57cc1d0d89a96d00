"""Bulk writes: managemanycontacts jobs, chunking, polling and failures mapped back."""

from __future__ import annotations

from pathlib import Path

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.providers.base import ApplyReport, OutcomeStatus
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.sandbox.common import Fault
from tests.support import load, mailjet_provider, plan_with, run

FAST_POLLING = JobPolling(first_wait=0.001, max_wait=0.002, timeout=5)


def many_contacts(count: int) -> str:
    lines = [
        "provider: mailjet",
        "properties: {tier: {type: str}, seats: {type: int}}",
        "lists: {news: {}, product: {}}",
        "contacts:",
    ]
    for n in range(count):
        lines += [
            f"  - email: person{n}@example.com",
            f"    name: Person {n}",
            f"    properties: {{tier: gold, seats: {n}}}",
            "    lists: [news, product]",
        ]
    return "\n".join(lines) + "\n"


async def apply_with_chunks(
    emulator: MailjetEmulator, manifest: Manifest, chunk: int
) -> tuple[int, ApplyReport]:
    provider = mailjet_provider(emulator)
    provider.bulk.chunk_size = chunk
    provider.bulk.polling = FAST_POLLING
    try:
        made, live = await engine.make_plan(manifest, provider)
        estimate = provider.estimate_calls(made.changes, live)
        report = await engine.apply_plan(made, provider, live, force=True)
        return estimate, report
    finally:
        await provider.aclose()


def test_creates_with_properties_and_lists_go_through_chunked_jobs(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=2))
    manifest = load(tmp_path, many_contacts(45))

    estimate, report = run(apply_with_chunks(emulator, manifest, chunk=20))

    assert report.ok
    posts = [c for c in emulator.control.calls("POST") if c.path.endswith("managemanycontacts")]
    assert len(posts) == 3  # 45 contacts in chunks of 20
    polls = [c for c in emulator.control.calls("GET") if "managemanycontacts/" in c.path]
    assert len(polls) == 3 * 3  # two "running" answers, then Completed
    writes = [c for c in emulator.control.calls() if c.method != "GET"]
    assert len(writes) == 2 + 2 + 3  # 2 properties, 2 lists, 3 jobs
    assert estimate == 2 + 2 + 3 * 4  # the plan's estimate: jobs count POST + 3 polls each
    contact = emulator.contact("person44@example.com")
    assert contact is not None
    assert contact["Name"] == "Person 44"
    assert contact["Properties"] == {"tier": "gold", "seats": 44}
    assert contact["Lists"] == {"news": False, "product": False}
    again = run(plan_with(emulator, manifest))
    assert again.is_empty


def test_unsubscribed_members_stay_unsubscribed_in_a_bulk_job(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=0))
    emulator.seed_list("news")
    emulator.seed_list("product")
    for n in range(30):
        emulator.seed_contact(f"person{n}@example.com", lists={"news": n == 3})
    manifest = load(tmp_path, many_contacts(30))

    _, report = run(apply_with_chunks(emulator, manifest, chunk=1000))

    assert report.ok
    assert any(c.path.endswith("managemanycontacts") for c in emulator.control.calls("POST"))
    left = emulator.contact("person3@example.com")
    assert left is not None
    assert left["Lists"]["news"] is True  # still unsubscribed: addnoforce
    assert left["Lists"]["product"] is False


def test_per_contact_failures_are_mapped_to_their_contacts(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=1))
    emulator.seed_property("tier")
    emulator.seed_property("seats", "int")
    emulator.seed_list("news")
    emulator.seed_list("product")
    text = many_contacts(12).replace("properties: {tier: gold, seats: 7}", "properties: {}")
    manifest = load(tmp_path, text)
    provider = mailjet_provider(emulator)
    provider.bulk.polling = FAST_POLLING

    async def plan_delete_apply() -> ApplyReport:
        try:
            made, live = await engine.make_plan(manifest, provider)
            emulator.control.inject(Fault(status=500, method="POST", path_contains="manage"))
            seats_id = next(r["ID"] for r in (await provider.client.get("/contactmetadata/seats")))
            await provider.client.delete(f"/contactmetadata/{seats_id}")  # gone after planning
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    report = run(plan_delete_apply())

    outcomes = {o.address: o for o in report.outcomes}
    failed = {a for a, o in outcomes.items() if o.status is OutcomeStatus.FAILED}
    expected = {f"contact:person{n}@example.com" for n in range(12) if n != 7}
    expected |= {
        f"membership:{lst}/person{n}@example.com"
        for n in range(12)
        if n != 7
        for lst in ("news", "product")
    }
    assert failed == expected
    assert "seats" in outcomes["contact:person0@example.com"].message
    assert outcomes["contact:person7@example.com"].status is OutcomeStatus.DONE
    jobs = [c for c in emulator.control.calls("POST") if c.path.endswith("managemanycontacts")]
    assert [c.status for c in jobs] == [500, 201]  # the upsert job was retried once
