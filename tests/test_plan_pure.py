"""The Plan value on literal changes: order, summary, thresholds, JSON, fingerprint, freshness."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconcile.diff import Action, Change, Flag, ResourceType
from reconcile.errors import PlanError, ReconcileError, StalePlanError, UnsafePlanError
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
    PropertyValues,
    ReadScope,
    State,
    SubscriptionStatus,
    fingerprint,
)
from reconcile.plan import Estimate, Plan, change_to_json, moved_since_planning, raise_if_stale
from reconcile.policy import Thresholds
from reconcile.prune import prune_basis
from tests.pure import (
    create_contact,
    create_list,
    create_property,
    delete_list,
    delete_property,
    erase,
    join,
    remove,
    rename,
    state,
    unsubscribe,
)

SUBSCRIBED, UNSUBSCRIBED = SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.UNSUBSCRIBED
FORMAT_1 = Path(__file__).parent / "data" / "plan-format-1.json"
ACCOUNT = {"kind": "sandbox", "sandbox_id": "abc"}


def addresses(plan: Plan) -> list[str]:
    return [change.address for change in plan.changes]


# ---- order and summary --------------------------------------------------------------------


def test_definitions_come_before_data_and_removals_in_reverse() -> None:
    changes = [
        remove("news", "b@x.io"),
        delete_property("old"),
        join("news", "a@x.io"),
        erase("z@x.io"),
        delete_list("gone"),
        rename("b@x.io"),
        create_contact("a@x.io"),
        create_list("news"),
        create_property("seats"),
        unsubscribe("beta", "c@x.io"),
    ]
    assert addresses(Plan.build("p", changes, ReadScope())) == [
        "property:seats",
        "list:news",
        "contact:a@x.io",
        "contact:b@x.io",
        "membership:beta/c@x.io",
        "membership:news/a@x.io",
        "membership:news/b@x.io",
        "contact:z@x.io",
        "list:gone",
        "property:old",
    ]


def test_within_a_phase_changes_are_ordered_by_key_not_by_address() -> None:
    # As text, "a/b/x@y" sorts before "a/x@y"; as keys, ("a", ...) comes first.
    changes = [join("a/b", "x@y.io"), join("a", "x@y.io")]
    assert addresses(Plan.build("p", changes, ReadScope())) == [
        "membership:a/x@y.io",
        "membership:a/b/x@y.io",
    ]


def test_the_summary_counts_every_action() -> None:
    plan = Plan.build("p", [create_list("a"), create_list("b"), erase("z@x.io")], ReadScope())
    assert plan.summary() == {"create": 2, "update": 0, "delete": 1}
    assert Plan.build("p", [], ReadScope()).summary() == {"create": 0, "update": 0, "delete": 0}
    assert Plan.build("p", [], ReadScope()).is_empty


# ---- thresholds ---------------------------------------------------------------------------


def crowd(contacts: int) -> State:
    return state(*(Contact(f"p{n}@x.io") for n in range(contacts)))


def test_destructive_changes_over_their_share_are_unsafe() -> None:
    changes = [erase(f"p{n}@x.io") for n in range(3)] + [rename("p9@x.io")]
    plan = Plan.build("p", changes, ReadScope(), live=crowd(20))
    assert plan.unsafe_reasons() == [
        "3 deletes, removals and unsubscribes of 20 live contact records "
        "(15%, more than the 10% allowed)"
    ]
    with pytest.raises(UnsafePlanError, match="exceeds the safety thresholds"):
        plan.raise_if_unsafe(force=False)
    plan.raise_if_unsafe(force=True)


def test_updates_over_their_share_are_unsafe() -> None:
    changes = [rename(f"p{n}@x.io") for n in range(7)]
    plan = Plan.build("p", changes, ReadScope(), live=crowd(20))
    assert plan.unsafe_reasons() == [
        "7 updates of 20 live contact records (35%, more than the 30% allowed)"
    ]


def test_exactly_the_share_allowed_is_safe() -> None:
    changes = [erase(f"p{n}@x.io") for n in range(2)]
    assert Plan.build("p", changes, ReadScope(), live=crowd(20)).unsafe_reasons() == []


def test_below_min_records_no_limit_applies() -> None:
    changes = [erase(f"p{n}@x.io") for n in range(19)]
    assert Plan.build("p", changes, ReadScope(), live=crowd(19)).unsafe_reasons() == []


def test_thresholds_are_the_plans_own() -> None:
    changes = [erase("p0@x.io"), erase("p1@x.io")]
    limits = Thresholds(max_delete_share=0.05, min_records=5)
    plan = Plan.build("p", changes, ReadScope(), live=crowd(20), thresholds=limits)
    assert plan.unsafe_reasons() == [
        "2 deletes, removals and unsubscribes of 20 live contact records "
        "(10%, more than the 5% allowed)"
    ]


def test_strict_refuses_a_plan_with_warnings() -> None:
    plan = Plan.build("p", [], ReadScope(), ["list:nwes: a typo"])
    plan.raise_if_warned(strict=False)
    with pytest.raises(UnsafePlanError, match="1 warning"):
        plan.raise_if_warned(strict=True)


# ---- JSON -------------------------------------------------------------------------------


def test_each_change_writes_the_documented_shape() -> None:
    update = Change(
        ResourceType.MEMBERSHIP,
        Action.UPDATE,
        ("news", "a@x.io"),
        MembershipValues(UNSUBSCRIBED, "2024-01-01T00:00:00Z"),
        MembershipValues(SUBSCRIBED),
        "0123456789abcdef",
        frozenset({Flag.RESUBSCRIBE, Flag.PRUNE}),
    )
    assert change_to_json(update) == {
        "address": "membership:news/a@x.io",
        "type": "membership",
        "key": ["news", "a@x.io"],
        "action": "update",
        "before": {"status": "unsubscribed", "opted_out_at": "2024-01-01T00:00:00Z"},
        "after": {"status": "subscribed"},
        "fingerprint": "0123456789abcdef",
        "flags": ["prune", "resubscribe"],
        "effect": "re-subscribe",
    }
    assert change_to_json(erase("z@x.io")) == {
        "address": "contact:z@x.io",
        "type": "contact",
        "key": ["z@x.io"],
        "action": "delete",
        "before": {"email": "z@x.io"},
        "after": None,
        "effect": "erase (irreversible)",
        "irreversible": True,
    }


def full_plan() -> Plan:
    contact_update = Change(
        ResourceType.CONTACT,
        Action.UPDATE,
        ("a@x.io",),
        ContactValues({NAME: "A", EXCLUDED: True}, {"seats": 1, "dept": None}),
        ContactValues({NAME: "B", EXCLUDED: False}, {"seats": None, "dept": "x"}),
        "0123456789abcdef",
        frozenset({Flag.RESUBSCRIBE}),
    )
    changes = [
        create_property("seats"),
        create_list("news"),
        contact_update,
        join("news", "a@x.io"),
        remove("news", "b@x.io"),
        erase("c@x.io"),
    ]
    return Plan.build(
        "sample",
        changes,
        ReadScope(frozenset({"news"}), contact_data=False),
        ["contact:d@x.io: kept out"],
        provider_options={"requests_per_minute": 200, "chunk": 10},
        estimate=Estimate(17, 200),
        thresholds=Thresholds(0.5, 0.6, 3),
        live=crowd(4),
        account=ACCOUNT,
    )


def test_a_saved_plan_reads_back_as_the_same_plan() -> None:
    plan = full_plan()
    loaded = Plan.loads(plan.dumps(), "plan.json")
    assert loaded == plan
    assert loaded.dumps() == plan.dumps()


def test_a_plan_file_from_before_typed_values_still_loads_and_writes_the_same() -> None:
    text = FORMAT_1.read_text(encoding="utf-8")
    loaded = Plan.loads(text, "plan.json")
    assert loaded.dumps() == text
    by_address = {change.address: change for change in loaded.changes}
    assert by_address["contact:bo@example.com"].after == ContactValues(
        {NAME: "Bob", EXCLUDED: False}, {"seats": None, "born": "1990-01-01T00:00:00Z"}
    )
    assert by_address["contact:di@example.com"].before == ContactValues(
        {NAME: "Di", EXCLUDED: False},
        {},
        "di@example.com",
        "2024-01-01T00:00:00Z",
        {"status": "active"},
    )
    assert loaded.estimate == Estimate(17, 200)
    assert loaded.thresholds == Thresholds(0.5, 0.6, 3)


@pytest.mark.parametrize(
    ("before", "message"),
    [
        ({"status": "maybe"}, "'maybe' is not a valid SubscriptionStatus"),
        ({"name": "news"}, "status: expected a string, got null"),
    ],
)
def test_a_change_with_values_of_the_wrong_shape_is_refused(
    before: dict[str, Any], message: str
) -> None:
    data = full_plan().to_json()
    data["changes"][4]["before"] = before
    data["fingerprint"] = fingerprint({k: v for k, v in data.items() if k != "fingerprint"})
    with pytest.raises(ReconcileError) as refused:
        Plan.loads(json.dumps(data), "plan.json")
    assert str(refused.value) == f"plan change 'membership:news/b@x.io': {message}"


def test_a_change_with_a_bad_key_is_refused() -> None:
    data = full_plan().to_json()
    data["changes"][0]["key"] = ["seats", "extra"]
    data["fingerprint"] = fingerprint({k: v for k, v in data.items() if k != "fingerprint"})
    with pytest.raises(ReconcileError, match="has a bad key"):
        Plan.loads(json.dumps(data), "plan.json")


# ---- the fingerprint covers the whole file --------------------------------------------------


def leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every value in a JSON document (an empty list or object counts as one)."""
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    found = False
    for name, child in children:
        found = True
        yield from leaves(child, (*path, name))
    if not found:
        yield path


def edited(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return "x"
    return ["x"] if isinstance(value, list) else {"x": 1}


def refused(data: Any) -> bool:
    try:
        Plan.loads(json.dumps(data), "plan.json")
    except ReconcileError as error:
        return "plan file was edited after it was made" in str(error)
    return False


def at(data: Any, path: tuple[str | int, ...]) -> Any:
    for name in path:
        data = data[name]
    return data


def test_every_value_of_the_file_is_covered() -> None:
    data = full_plan().to_json()
    paths = list(leaves(data))
    assert len(paths) > 60
    accepted = []
    for path in paths:
        changed = copy.deepcopy(data)
        at(changed, path[:-1])[path[-1]] = edited(at(data, path))
        if not refused(changed):
            accepted.append(path)
    assert accepted == []


@pytest.mark.parametrize(
    "section", ["safety", "provider_options", "account", "scope", "warnings", "estimate"]
)
def test_an_edited_section_is_refused(section: str) -> None:
    data = full_plan().to_json()
    for path in leaves(data[section]):
        changed = copy.deepcopy(data)
        at(changed[section], path[:-1])[path[-1]] = edited(at(data[section], path))
        assert refused(changed), (section, path)


def test_an_added_or_removed_entry_is_refused() -> None:
    data = full_plan().to_json()
    assert not refused(data)
    for section in ("safety", "provider_options", "account", "scope"):
        added = copy.deepcopy(data)
        added[section]["extra"] = 1
        removed = copy.deepcopy(data)
        removed[section].popitem()
        assert refused(added), section
        assert refused(removed), section
    emptied = copy.deepcopy(data)
    del emptied["estimate"]
    assert refused(emptied)


def test_a_key_given_twice_is_refused_though_it_would_read_the_same() -> None:
    text = full_plan().dumps()
    doubled = text.replace('  "safety": {', '  "safety": {"max_delete_share": 1.0},\n  "safety": {')
    assert doubled != text
    with pytest.raises(ReconcileError) as raised:
        Plan.loads(doubled, "plan.json")
    assert str(raised.value) == (
        "plan.json: plan file was edited after it was made ('safety' given twice)"
    )


def test_a_file_without_a_fingerprint_is_refused() -> None:
    data = full_plan().to_json()
    del data["fingerprint"]
    assert refused(data)


# ---- the account and live state a saved plan was made against -------------------------------


def test_a_saved_plan_applies_only_to_its_account() -> None:
    plan = full_plan()
    plan.raise_if_other_account(dict(ACCOUNT))
    with pytest.raises(PlanError, match="made against another account"):
        plan.raise_if_other_account({"kind": "sandbox", "sandbox_id": "def"})
    with pytest.raises(PlanError, match="records no account"):
        Plan.build("p", [], ReadScope()).raise_if_other_account(ACCOUNT)


def test_a_fresh_plan_is_not_stale() -> None:
    live = state(Contact("a@x.io", {NAME: "Old"}), ContactList("news"))
    changes = [
        rename("a@x.io", fingerprint(live.contacts["a@x.io"].record())),
        join("news", "a@x.io"),
    ]
    assert moved_since_planning(changes, live) == []
    raise_if_stale(Plan.build("p", changes, ReadScope()), live)


def test_what_moved_since_planning_is_named() -> None:
    planned_against = Contact("a@x.io", {NAME: "Old"})
    live = state(
        Contact("a@x.io", {NAME: "Renamed"}),
        Contact("b@x.io"),
        Membership("news", "b@x.io"),
    )
    changes = [
        rename("a@x.io", fingerprint(planned_against.record())),
        create_contact("b@x.io"),
        erase("c@x.io"),
        remove("news", "d@x.io"),
        create_property("seats"),
    ]
    assert moved_since_planning(changes, live) == [
        "contact:a@x.io was changed since planning",
        "contact:b@x.io was created by someone else since planning",
        "contact:c@x.io no longer exists",
        "membership:news/d@x.io no longer exists",
    ]
    with pytest.raises(StalePlanError, match="live state moved since this plan was made"):
        raise_if_stale(Plan.build("p", changes, ReadScope()), live)


def test_a_pruned_contact_is_stale_when_its_lists_moved() -> None:
    contact = Contact("a@x.io", {EXCLUDED: False})
    member = Membership("news", "a@x.io")
    basis = fingerprint(prune_basis(contact, [member]))
    pruned = Change(
        ResourceType.CONTACT,
        Action.DELETE,
        ("a@x.io",),
        contact.values(),
        None,
        basis,
        frozenset({Flag.PRUNE}),
    )
    assert moved_since_planning([pruned], state(contact, member)) == []
    left = Membership("news", "a@x.io", UNSUBSCRIBED)
    assert moved_since_planning([pruned], state(contact, left)) == [
        "contact:a@x.io was changed since planning"
    ]


def test_a_definition_is_stale_when_it_was_retyped() -> None:
    definition = PropertyDef("seats", PropertyType.STR)
    retype = Change(
        ResourceType.PROPERTY,
        Action.UPDATE,
        ("seats",),
        definition.values(),
        PropertyValues(PropertyType.INT),
        fingerprint(definition.record()),
        frozenset({Flag.REPLACE}),
    )
    assert moved_since_planning([retype], state(definition)) == []
    retyped = state(PropertyDef("seats", PropertyType.BOOL))
    assert moved_since_planning([retype], retyped) == ["property:seats was changed since planning"]


def test_the_estimate_reads_in_minutes_or_hours() -> None:
    assert Estimate(90, 30).describe() == (
        "Apply will make about 90 API calls (~3 min at 30 calls/minute)."
    )
    assert (
        Estimate(3, 60).describe() == "Apply will make about 3 API calls (~3 s at 60 calls/minute)."
    )
    assert Estimate(36_000, 120).describe() == (
        "Apply will make about 36000 API calls (~5.0 h at 120 calls/minute)."
    )
