"""The estimate is the calls made (issue #11 item 11): for random manifests, prune policies
and live accounts, on every emulator, the requests apply sends are exactly the plan's
`estimate.api_calls`.

Counted: every request of a fault-free apply (writes, bulk job polls, and the look-ups
the normal path makes, such as MailJawn's search for a new subscriber whose status an
import cannot set). Look-ups that only follow a duplicate or a fault are not in the
estimate; nothing here produces one (no faults are injected, nobody else writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reconcile import engine
from reconcile.manifest.loader import Manifest, load_manifest
from reconcile.model import (
    EXCLUDED,
    Contact,
    ContactList,
    Membership,
    PropertyDef,
    PropertyType,
    State,
)
from reconcile.plan import Plan
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune, Policy, Thresholds
from reconcile.providers.base import ApplyReport, Provider
from reconcile.providers.mailchimp.emulator.app import MailchimpEmulator
from reconcile.providers.mailjawn.plugin import MailJawnOptions
from reconcile.providers.mailjawn.provider import MailJawnProvider
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.emulator.app import MailjetEmulator
from reconcile.providers.mailjet.plugin import MailjetOptions
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.sandbox.common import EmulatorControl
from tests.providers.test_mailjawn_client import make_client
from tests.support import create_emulator, mailjet_provider, run
from tests.test_convergence_property import (
    LiveContact,
    desired_states,
    live_accounts,
    seed,
)
from tests.test_convergence_property_mailchimp import (
    NEW_CONSENT,
    LiveAudience,
    LiveMember,
    consent_refused,
    desired_audiences,
    live_audiences,
)
from tests.test_convergence_property_mailchimp import manifest_of as chimp_manifest
from tests.test_convergence_property_mailchimp import plan_apply_plan as chimp_plan_apply_plan
from tests.test_convergence_property_mailchimp import seed as seed_mailchimp
from tests.test_convergence_property_mailjawn import additive_and_subscribed, live_projects
from tests.test_convergence_property_mailjawn import seed as seed_mailjawn

EXAMPLES = Path(__file__).parent.parent / "examples"
FAST_POLLING = JobPolling(first_wait=0.001, max_wait=0.002)
NO_THRESHOLDS = Thresholds(max_delete_share=1.0, max_update_share=1.0, min_records=0)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def policies(draw: st.DrawFn, *, definitions: bool) -> Policy:
    """Prune policies; with `definitions`, lists and properties may be deleted (Mailjet)."""
    deletes = st.sampled_from(list(DefinitionPrune)) if definitions else st.just(None)
    lists, properties = draw(deletes), draw(deletes)
    return Policy(
        contacts=draw(st.sampled_from(list(ContactPrune))),
        exact_members=draw(st.sampled_from(list(MemberPrune))),
        lists=lists or DefinitionPrune.IGNORE,
        properties=properties or DefinitionPrune.IGNORE,
        thresholds=NO_THRESHOLDS,
    )


async def plan_and_count(
    provider: Provider, control: EmulatorControl, manifest: Manifest
) -> tuple[Plan, ApplyReport, list[str]]:
    """The plan, the apply report, and every request the apply sent."""
    try:
        made, live = await engine.make_plan(manifest, provider)
        before = len(control.calls())
        report = await engine.apply_plan(made, provider, live, force=True)
        sent = [f"{call.method} {call.path}" for call in control.calls()[before:]]
        return made, report, sent
    finally:
        await provider.aclose()


def assert_estimate_is_exact(made: Plan, report: ApplyReport, sent: list[str]) -> None:
    assert report.ok, report.outcomes
    assert made.estimate is not None
    changes = [f"{c.action.value} {c.address} {c.after}" for c in made.changes]
    shown = "\n".join([*sent, "changes:", *changes])
    assert len(sent) == made.estimate.api_calls, f"estimate {made.estimate.api_calls}:\n{shown}"


# --- Mailjet ------------------------------------------------------------------------


def sandbox_mailjet() -> MailjetEmulator:
    """The emulator `--sandbox` runs: as the real API (no v3 DELETE on contact), with jobs
    that end on the third poll."""
    emulator: MailjetEmulator = create_emulator("mailjet", None)[0]
    return emulator


def seed_mailjet(live: tuple[list[str], list[str], dict[str, LiveContact]]) -> MailjetEmulator:
    return seed(live, sandbox_mailjet())


def fast_mailjet(emulator: MailjetEmulator, chunk_size: int = 1000) -> MailjetProvider:
    client = mailjet_provider(emulator).client
    return MailjetProvider(client, bulk_chunk_size=chunk_size, polling=FAST_POLLING)


@SETTINGS
@given(
    live=live_accounts(),
    desired=desired_states(),
    policy=policies(definitions=True),
    chunk_size=st.sampled_from([1, 2, 1000]),
)
def test_mailjet_apply_sends_exactly_the_estimate(
    tmp_path: Path,
    live: tuple[list[str], list[str], dict[str, LiveContact]],
    desired: State,
    policy: Policy,
    chunk_size: int,
) -> None:
    emulator = seed_mailjet(live)
    manifest = Manifest(
        MailjetOptions(type="mailjet"), desired, [tmp_path / "m.yaml"], policy=policy
    )
    provider = fast_mailjet(emulator, chunk_size)
    assert_estimate_is_exact(*run(plan_and_count(provider, emulator.control, manifest)))


# --- MailJawn -----------------------------------------------------------------------


@SETTINGS
@given(
    project=live_projects(),
    generated=desired_states(),
    contacts=st.sampled_from(list(ContactPrune)),
    chunk_size=st.sampled_from([1, 2, 1000]),
)
def test_mailjawn_apply_sends_exactly_the_estimate(
    tmp_path: Path,
    project: dict[str, dict[str, Any]],
    generated: State,
    contacts: ContactPrune,
    chunk_size: int,
) -> None:
    emulator = seed_mailjawn(project)
    # MailJawn can neither unsubscribe from one tag nor remove one, nor delete a tag:
    # validate refuses those manifests and policies, so they are never planned.
    if contacts is ContactPrune.UNSUBSCRIBE:
        contacts = ContactPrune.IGNORE
    manifest = Manifest(
        MailJawnOptions(type="mailjawn"),
        additive_and_subscribed(generated),
        [tmp_path / "m.yaml"],
        policy=Policy(contacts=contacts, thresholds=NO_THRESHOLDS),
    )
    provider = MailJawnProvider(make_client(emulator), import_chunk_size=chunk_size)
    assert_estimate_is_exact(*run(plan_and_count(provider, emulator.control, manifest)))


def test_the_examples_estimates_are_the_calls_made() -> None:
    """The README's quickstart and MailJawn example, as a person first applies them
    (before: 20 estimated, 22 made on Mailjet; 2 and 3 on MailJawn)."""
    mailjet = sandbox_mailjet()
    quickstart = load_manifest([EXAMPLES / "quickstart"])
    made, report, sent = run(plan_and_count(fast_mailjet(mailjet), mailjet.control, quickstart))
    assert_estimate_is_exact(made, report, sent)
    mailjawn = seed_mailjawn({})
    example = load_manifest([EXAMPLES / "mailjawn"])
    provider = MailJawnProvider(make_client(mailjawn))
    assert_estimate_is_exact(*run(plan_and_count(provider, mailjawn.control, example)))


# --- Mailchimp ----------------------------------------------------------------------


def chimp_estimate(
    audience: LiveAudience, manifest: Manifest, batch_size: int = 500
) -> tuple[Plan, ApplyReport, list[str]]:
    emulator = seed_mailchimp(audience)
    made, report, sent, _ = run(chimp_plan_apply_plan(emulator, manifest, batch_size))
    return made, report, sent


@settings(SETTINGS, max_examples=40)
@given(
    audience=live_audiences(),
    desired=desired_audiences(),
    batch_size=st.sampled_from([1, 2, 500]),
)
def test_mailchimp_apply_sends_exactly_the_estimate(
    tmp_path: Path, audience: LiveAudience, desired: State, batch_size: int
) -> None:
    """Batches of new members, of updates (with their freshness reads) and of tags, at
    any batch size."""
    assume(not consent_refused(audience, desired))
    manifest = chimp_manifest(tmp_path, desired, Policy(thresholds=NO_THRESHOLDS))
    assert_estimate_is_exact(*chimp_estimate(audience, manifest, batch_size))


def test_mailchimp_a_new_tag_with_more_members_than_a_batch_is_estimated_as_sent(
    tmp_path: Path,
) -> None:
    """batch_size 1: the tag is created with its first member, the second is added by one
    more segment batch. The estimate counted the first 500 into the creation whatever
    the batch size (provider.py `_tag_calls` uses BATCH, apply uses self.batch_size)."""
    desired = State()
    desired.lists["alpha"] = ContactList("alpha")
    for email in ("p0@acme-widgets.io", "p1@acme-widgets.io"):
        desired.add_contact(Contact(email, {}, {}))
        desired.add_membership(Membership("alpha", email))
    manifest = chimp_manifest(tmp_path, desired, Policy(thresholds=NO_THRESHOLDS))
    assert_estimate_is_exact(*chimp_estimate(LiveAudience([], []), manifest, batch_size=1))


def test_mailchimp_a_consented_return_of_a_cleaned_member_is_estimated_as_sent(
    tmp_path: Path,
) -> None:
    """A cleaned member declared excluded_from_campaigns: false with a (new) opt-in and a
    value: review drops the status (cleaned is never changed) and the value is PATCHed
    (1 call). The change keeps its resubscribe flag, so the estimate counts the re-read
    of a consented return too (2)."""
    audience = LiveAudience(["TEAM"], [])
    audience.members["p2@acme-widgets.io"] = LiveMember("cleaned", False, {}, [])
    desired = State()
    desired.properties["TEAM"] = PropertyDef("TEAM", PropertyType.STR)
    desired.add_contact(
        Contact("p2@acme-widgets.io", {EXCLUDED: False}, {"TEAM": "ops"}, NEW_CONSENT)
    )
    manifest = chimp_manifest(tmp_path, desired, Policy(thresholds=NO_THRESHOLDS))
    made, report, sent = chimp_estimate(audience, manifest)
    assert [c.address for c in made.changes] == ["contact:p2@acme-widgets.io"]
    assert_estimate_is_exact(made, report, sent)


def test_the_mailchimp_example_estimate_is_the_calls_made() -> None:
    example = load_manifest([EXAMPLES / "mailchimp"])
    emulator: MailchimpEmulator = create_emulator("mailchimp", None)[0]
    made, report, sent, again = run(chimp_plan_apply_plan(emulator, example))
    assert_estimate_is_exact(made, report, sent)
    assert again.is_empty
