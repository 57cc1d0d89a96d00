"""renamed_from: a list or property renamed in place (issue #14 item 5): pure diff, prune
and plan tests with literal states, then the command line against each provider's sandbox."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile import engine
from reconcile.cli import app
from reconcile.diff import Action, Change, Flag, ResourceType, diff_states
from reconcile.errors import ManifestError
from reconcile.model import (
    Contact,
    ContactList,
    ListValues,
    Membership,
    MembersPolicy,
    PropertyDef,
    PropertyType,
    PropertyValues,
    ReadScope,
    State,
)
from reconcile.plan import (
    ChangeFile,
    Plan,
    change_from_json,
    change_to_json,
    moved_since_planning,
)
from reconcile.policy import DefinitionPrune, Policy
from reconcile.prune import apply_policy
from tests.pure import SUBSCRIBED, UNSUBSCRIBED, state

runner = CliRunner()


def _desired() -> State:
    return state(
        PropertyDef("team", PropertyType.STR, renamed_from=("dept",)),
        ContactList("new", MembersPolicy.EXACT, renamed_from=("old",)),
        Contact("a@x.com", properties={"team": "Eng"}),
        Membership("new", "a@x.com"),
    )


def _live() -> State:
    return state(
        PropertyDef("dept", PropertyType.STR),
        ContactList("old"),
        Contact("a@x.com", properties={"dept": "Eng"}),
        Contact("b@x.com"),
        Membership("old", "a@x.com"),
        Membership("old", "b@x.com", UNSUBSCRIBED, opted_out_at="2026-01-01T00:00:00Z"),
    )


def _renamed_live() -> State:
    return state(
        PropertyDef("team", PropertyType.STR),
        ContactList("new"),
        Contact("a@x.com", properties={"team": "Eng"}),
        Contact("b@x.com"),
        Membership("new", "a@x.com"),
        Membership("new", "b@x.com", UNSUBSCRIBED, opted_out_at="2026-01-01T00:00:00Z"),
    )


def test_a_rename_is_one_change_per_resource_and_nothing_else() -> None:
    result = diff_states(_desired(), _live())
    assert not result.errors
    assert not result.warnings
    assert [(c.type, c.action, c.key, c.before, c.after, c.flags) for c in result.changes] == [
        (
            ResourceType.PROPERTY,
            Action.UPDATE,
            ("team",),
            PropertyValues(PropertyType.STR, name="dept"),
            PropertyValues(PropertyType.STR, name="team"),
            frozenset({Flag.RENAME}),
        ),
        (
            ResourceType.LIST,
            Action.UPDATE,
            ("new",),
            ListValues("old"),
            ListValues("new"),
            frozenset({Flag.RENAME}),
        ),
    ]
    assert [c.renamed_from for c in result.changes] == ["dept", "old"]


def test_the_members_of_an_exact_list_are_compared_under_the_new_name() -> None:
    """b@x.com unsubscribed from the old list: kept, never removed or re-added; nobody is
    added again, and prune: lists: delete leaves the old name alone."""
    desired, live = _desired(), _live()
    policy = Policy(lists=DefinitionPrune.DELETE, properties=DefinitionPrune.DELETE)
    result = apply_policy(desired, live, policy, diff_states(desired, live))
    assert not result.errors
    assert [c.address for c in result.changes] == ["property:team", "list:new"]


def test_a_status_change_under_the_new_name_is_planned_against_the_old_membership() -> None:
    desired = _desired()
    desired.add_membership(Membership("new", "b@x.com", SUBSCRIBED))  # no opt-in: kept out
    desired.add_contact(Contact("c@x.com"))
    desired.add_membership(Membership("new", "c@x.com", UNSUBSCRIBED))
    result = diff_states(desired, _live())
    memberships = [c for c in result.changes if c.type is ResourceType.MEMBERSHIP]
    assert [(c.action, c.key) for c in memberships] == [(Action.CREATE, ("new", "c@x.com"))]
    assert "membership:new/b@x.com: opted out" in str(result.warnings[0])


def test_once_renamed_the_plan_is_empty_and_renamed_from_may_stay() -> None:
    result = diff_states(_desired(), _renamed_live())
    assert (result.changes, result.warnings, result.errors) == ([], [], [])


def test_old_and_new_both_live_renames_nothing_and_says_so() -> None:
    """Once renamed, someone may make a list of the old name again: the manifest's
    renamed_from must not stop every plan from then on, nor merge the two."""
    live = _renamed_live()
    live.lists["old"] = ContactList("old")
    result = diff_states(_desired(), live)
    assert (result.changes, result.errors) == ([], [])
    (warning,) = result.warnings
    assert "both 'old' and 'new' exist in the account, so nothing is renamed" in str(warning)


def test_a_renamed_from_naming_nothing_creates_the_list_with_a_warning() -> None:
    desired = state(ContactList("new", renamed_from=("olde",)))
    result = diff_states(desired, State())
    assert [(c.action, c.address) for c in result.changes] == [(Action.CREATE, "list:new")]
    assert "renamed_from: 'olde' is not in the account" in str(result.warnings[0])


def test_two_old_names_live_is_an_error() -> None:
    desired = state(ContactList("new", renamed_from=("a", "b")))
    result = diff_states(desired, state(ContactList("a"), ContactList("b")))
    assert "'a', 'b' all exist in the account" in str(result.errors[0])


def test_a_rename_with_a_type_change_is_an_error() -> None:
    desired = state(PropertyDef("team", PropertyType.INT, renamed_from=("dept",)))
    result = diff_states(desired, state(PropertyDef("dept", PropertyType.STR)))
    assert result.changes == []
    assert "rename it first" in str(result.errors[0])


def test_a_property_rename_keeps_every_value() -> None:
    desired = _desired()
    desired.contacts["a@x.com"] = Contact("a@x.com", properties={"team": "Ops"})
    result = diff_states(desired, _live())
    contact = [c for c in result.changes if c.type is ResourceType.CONTACT]
    assert len(contact) == 1
    assert contact[0].contact_before.properties == {"team": "Eng"}
    assert contact[0].contact_after.properties == {"team": "Ops"}


def test_the_plan_file_carries_a_rename_and_a_forged_one_is_refused() -> None:
    result = diff_states(_desired(), _live())
    plan = Plan.build("mailjet", result.changes, ReadScope())
    again = Plan.loads(plan.dumps(), "plan.json")
    assert again.changes == plan.changes
    data = change_to_json(plan.changes[1])
    assert data["flags"] == ["rename"]
    assert (data["before"], data["after"]) == ({"name": "old"}, {"name": "new"})
    assert "effect" not in data
    data["after"] = {"name": "other"}
    with pytest.raises(Exception, match="a rename is an update"):
        change_from_json(ChangeFile.model_validate(data))
    with pytest.raises(TypeError):
        Change(ResourceType.LIST, Action.UPDATE, ("new",), ListValues("new"), ListValues("new"),
               flags=frozenset({Flag.RENAME}))  # fmt: skip


def test_a_saved_rename_is_stale_when_the_old_one_vanished_or_the_new_one_appeared() -> None:
    changes = diff_states(_desired(), _live()).changes
    assert moved_since_planning(changes, _live()) == []
    gone = _live()
    del gone.lists["old"]
    assert moved_since_planning(changes, gone) == [
        "list:new: old, to be renamed to it, no longer exists"
    ]
    both = _live()
    both.properties["team"] = PropertyDef("team", PropertyType.STR)
    assert moved_since_planning(changes, both) == [
        "property:team was created by someone else since planning (to be renamed from dept)"
    ]


def test_memberships_planned_under_the_new_name_are_fresh_against_the_old_list() -> None:
    desired = _desired()
    desired.add_membership(Membership("new", "b@x.com", SUBSCRIBED, "2026-06-01T00:00:00Z"))
    changes = diff_states(desired, _live()).changes
    assert [c.address for c in changes if c.type is ResourceType.MEMBERSHIP] == [
        "membership:new/b@x.com"
    ]
    assert moved_since_planning(changes, _live()) == []
    moved = _live()
    moved.add_membership(Membership("old", "b@x.com", UNSUBSCRIBED, opted_out_at="2026-07-01"))
    stale = ["membership:new/b@x.com was changed since planning"]
    assert moved_since_planning(changes, moved) == stale


# ---- validate ---------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audience.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["mailjawn", "postbox", "mailchimp"])
def test_a_provider_that_cannot_rename_a_list_refuses_it_in_validate(
    tmp_path: Path, name: str
) -> None:
    provider = "{type: mailchimp, audience: a1b2c3d4e5}" if name == "mailchimp" else name
    path = _write(tmp_path, f"provider: {provider}\nlists:\n  new:\n    renamed_from: [old]\n")
    with pytest.raises(ManifestError) as raised:
        engine.validate([path])
    assert f"{path}:4: lists.new.renamed_from: {name} can't rename a list in place" in str(
        raised.value
    )


@pytest.mark.parametrize("name", ["mailjawn", "postbox"])
def test_a_provider_that_cannot_rename_a_property_refuses_it(tmp_path: Path, name: str) -> None:
    text = f"provider: {name}\nproperties:\n  team: {{type: str, renamed_from: [dept]}}\n"
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as raised:
        engine.validate([path])
    message = str(raised.value)
    assert f"{path}:3: properties.team.renamed_from: {name} can't rename a property" in message


@pytest.mark.parametrize(
    ("provider", "offers"),
    [
        ("mailjet", "not reliably supported"),
        ("mailjawn", "no route that changes a subscriber's email"),
        ("{type: mailchimp, audience: a1b2c3d4e5}", "a wrongly computed member hash"),
        ("postbox", "it has no way to change a contact's address"),
    ],
)
def test_an_address_change_is_refused_naming_what_the_provider_offers(
    tmp_path: Path, provider: str, offers: str
) -> None:
    text = (
        f"provider: {provider}\ncontacts:\n  - email: new@acme-widgets.io\n"
        "    renamed_from: [old@acme-widgets.io]\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as raised:
        engine.validate([path])
    message = str(raised.value)
    assert f"{path}:4: contacts[0].renamed_from: reconcile never changes" in message
    assert offers in message


def test_an_old_name_that_is_still_declared_or_claimed_twice_is_refused(tmp_path: Path) -> None:
    text = (
        "provider: mailjet\nlists:\n  old: {}\n  new: {renamed_from: [old]}\n"
        "  a: {renamed_from: [x]}\n  b: {renamed_from: [x]}\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as raised:
        engine.validate([path])
    message = str(raised.value)
    assert f"{path}:4: lists.new.renamed_from: 'old' is declared under lists: too" in message
    assert f"{path}:6: lists.b.renamed_from: 'x' is also renamed to 'a'" in message


# ---- the command line against each provider's sandbox ----------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILE_RETRY_WAIT", "0.01")
    return tmp_path


def reconcile(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


MAILJET_BEFORE = """\
provider: mailjet
properties: {dept: {type: str}}
lists: {old: {}, other: {}}
contacts:
  - {email: a@example.com, properties: {dept: Eng}, lists: [old, other]}
  - {email: b@example.com, properties: {dept: Ops}, lists: {old: unsubscribed}}
  - {email: c@example.com, lists: [old]}
"""
MAILJET_AFTER = """\
provider: mailjet
properties:
  team: {type: str, renamed_from: [dept]}
lists:
  new: {members: exact, renamed_from: [old]}
  other: {}
prune: {lists: delete}
contacts:
  - {email: a@example.com, properties: {team: Eng}, lists: [new, other]}
  - {email: b@example.com, properties: {team: Ops}, lists: {new: unsubscribed}}
  - {email: c@example.com, lists: [new]}
"""


def _converges_after_one_rename_plan(
    workdir: Path, before: str, after: str, renamed: list[str]
) -> str:
    shutil.rmtree(workdir / ".reconcile", ignore_errors=True)
    (workdir / "before.yaml").write_text(before, encoding="utf-8")
    (workdir / "after.yaml").write_text(after, encoding="utf-8")
    assert reconcile("apply", "--sandbox", "--auto-approve", "before.yaml")[0] == 0
    code, output = reconcile("plan", "--sandbox", "--format", "json", "after.yaml")
    assert code == 0, output
    plan = json.loads(output[output.index("{") :])
    assert [(c["address"], c["action"], c.get("flags")) for c in plan["changes"]] == [
        (address, "update", ["rename"]) for address in renamed
    ]
    code, output = reconcile("plan", "--sandbox", "after.yaml", "--out", "plan.json")
    assert code == 0, output
    for address in renamed:
        assert f"~ {address} (renamed from " in output
    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 0, output
    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "after.yaml")
    assert code == 0, output
    assert "No changes" in output
    provider = _provider_of(after)
    options = ["--option", "audience=a1b2c3d4e5"] if provider == "mailchimp" else []
    code, exported = reconcile("export", "--sandbox", "--provider", provider, *options)
    assert code == 0, exported
    return exported


def _provider_of(text: str) -> str:
    first = text.splitlines()[0]
    return "mailchimp" if "mailchimp" in first else first.split(": ")[1]


def test_mailjet_renames_a_list_and_a_property_keeping_every_member_and_unsubscribe(
    workdir: Path,
) -> None:
    exported = _converges_after_one_rename_plan(
        workdir, MAILJET_BEFORE, MAILJET_AFTER, ["property:team", "list:new"]
    )
    assert "old" not in exported
    assert "dept" not in exported
    assert "new: unsubscribed" in exported  # b's unsubscribe is kept under the new name
    assert exported.count("team: Eng") == 1
    assert exported.count("team: Ops") == 1


def test_mailjet_refuses_a_saved_rename_when_the_new_name_appeared(workdir: Path) -> None:
    (workdir / "before.yaml").write_text(MAILJET_BEFORE, encoding="utf-8")
    (workdir / "after.yaml").write_text(MAILJET_AFTER, encoding="utf-8")
    assert reconcile("apply", "--sandbox", "--auto-approve", "before.yaml")[0] == 0
    assert reconcile("plan", "--sandbox", "after.yaml", "--out", "plan.json")[0] == 0
    both = MAILJET_BEFORE.replace("other: {}", "other: {}, new: {}")
    (workdir / "both.yaml").write_text(both, encoding="utf-8")
    assert reconcile("apply", "--sandbox", "--auto-approve", "both.yaml")[0] == 0
    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 1
    assert "list:new was created by someone else since planning (to be renamed from old)" in (
        output
    )
    code, output = reconcile("plan", "--sandbox", "after.yaml")
    assert code == 0, output
    assert "both 'old' and 'new' exist in the account, so nothing is renamed" in output


MAILCHIMP_BEFORE = """\
provider: {type: mailchimp, audience: a1b2c3d4e5}
properties: {SCORE: {type: int}}
lists: {vip: {}}
contacts:
  - {email: a@acme-widgets.io, properties: {SCORE: 3}, lists: [vip]}
  - {email: b@acme-widgets.io, excluded_from_campaigns: true, properties: {SCORE: 5}}
"""
MAILCHIMP_AFTER = (
    MAILCHIMP_BEFORE.replace("{SCORE: {type: int}}", "{POINTS: {type: int, renamed_from: [SCORE]}}")
    .replace("SCORE: 3", "POINTS: 3")
    .replace("SCORE: 5", "POINTS: 5")
)


def test_mailchimp_renames_a_merge_field_keeping_every_value(workdir: Path) -> None:
    exported = _converges_after_one_rename_plan(
        workdir, MAILCHIMP_BEFORE, MAILCHIMP_AFTER, ["property:POINTS"]
    )
    assert "SCORE" not in exported
    assert "POINTS: 3" in exported
    assert "POINTS: 5" in exported
    assert exported.count("excluded_from_campaigns: true") == 1  # b's opt-out is kept


def test_mailjawn_refuses_a_rename_in_validate_through_the_command_line(workdir: Path) -> None:
    text = "provider: mailjawn\nlists:\n  new: {renamed_from: [old]}\n"
    (workdir / "a.yaml").write_text(text, encoding="utf-8")
    code, output = reconcile("validate", "a.yaml")
    assert code == 1
    assert "a.yaml:3: lists.new.renamed_from: mailjawn can't rename a list in place" in output
