"""A read that guards a write (the record as it is now, before a full-replacement PUT;
the opt-out still as planned, before a re-subscribe) goes out just before its write,
not minutes before it: steps run gathered, so without a bound every read would go out
first and the writes after them, and an opt-out made in between would be overwritten."""

from __future__ import annotations

from pathlib import Path

from reconcile import engine
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.runner import GUARDED_PAIRS
from tests.support import consent_now, load, mailjet_provider, run

PEOPLE = 30
# A pair's read, its write, and what the other open pairs send meanwhile.
MOST_BETWEEN = 2 * GUARDED_PAIRS


def apply_calls(emulator: MailjetEmulator, manifest_text: str, tmp_path: Path) -> list[str]:
    """The requests apply sent (after the plan's read)."""
    provider = mailjet_provider(emulator)

    async def plan_then_apply() -> int:
        try:
            made, live = await engine.make_plan(load(tmp_path, manifest_text), provider)
            assert made.changes
            before = len(emulator.control.calls())
            report = await engine.apply_plan(made, provider, live, force=True)
            assert report.ok, report.outcomes
            return before
        finally:
            await provider.aclose()

    before = run(plan_then_apply())
    return [f"{call.method} {call.path}" for call in emulator.control.calls()[before:]]


def test_each_contact_put_follows_its_own_read(tmp_path: Path) -> None:
    # Renames ride in a bulk job; one that ignores them makes each a read and a PUT.
    emulator = create_mailjet_emulator(
        MailjetEmulatorSettings(bulk_updates_name_and_exclusion=False)
    )
    ids = [emulator.seed_contact(f"p{n}@example.com", name="Old") for n in range(PEOPLE)]
    contacts = "".join(f"  - {{email: p{n}@example.com, name: New}}\n" for n in range(PEOPLE))
    calls = apply_calls(emulator, f"provider: mailjet\ncontacts:\n{contacts}", tmp_path)
    for contact_id in ids:
        put = calls.index(f"PUT /v3/REST/contact/{contact_id}")
        read = max(i for i in range(put) if calls[i] == f"GET /v3/REST/contact/{contact_id}")
        assert put - read <= MOST_BETWEEN, calls[read : put + 1]


def test_each_resubscribe_follows_its_own_check(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    for n in range(PEOPLE):
        emulator.seed_contact(f"p{n}@example.com", lists={"news": True})
    consent = consent_now()
    membership = f'{{news: {{status: subscribed, opted_in_at: "{consent}"}}}}'
    contacts = "".join(
        f"  - {{email: p{n}@example.com, lists: {membership}}}\n" for n in range(PEOPLE)
    )
    text = f"provider: mailjet\nlists: {{news: {{}}}}\ncontacts:\n{contacts}"
    calls = apply_calls(emulator, text, tmp_path)
    checks = [i for i, call in enumerate(calls) if call == "GET /v3/REST/listrecipient"]
    writes = [i for i, call in enumerate(calls) if call.endswith("/managecontactslists")]
    assert len(writes) == PEOPLE
    for write in writes:  # never more checks ahead of the writes than pairs may be open
        assert sum(1 for check in checks if check < write) - writes.index(write) <= GUARDED_PAIRS
