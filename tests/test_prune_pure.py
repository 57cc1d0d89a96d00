"""apply_policy on literal states: each prune action, its scope and marker, protect:."""

from __future__ import annotations

import pytest

from reconcile.diff import Change, DiffResult, Effect, Flag, diff_states
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactList,
    ContactValues,
    ListValues,
    Membership,
    MembershipValues,
    MembersPolicy,
    PropertyDef,
    PropertyType,
    PropertyValues,
    State,
    SubscriptionStatus,
    fingerprint,
)
from reconcile.policy import (
    ContactPrune,
    ContactScope,
    DefinitionPrune,
    MemberPrune,
    Policy,
)
from reconcile.prune import apply_policy, protected_by, protection_conflicts, prune_basis
from tests.pure import Row, delete_list, delete_property, erase, remove, rows, state

SUBSCRIBED, UNSUBSCRIBED = SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.UNSUBSCRIBED
PRUNED = frozenset({Flag.PRUNE})


def planned(desired: State, live: State, policy: Policy) -> DiffResult:
    return apply_policy(desired, live, policy, diff_states(desired, live))


def changed(desired: State, live: State, policy: Policy) -> list[Row]:
    return rows(planned(desired, live, policy).changes)


def account() -> State:
    """kept (declared), gone (undeclared, on news), left (unsubscribed from news), far (only
    on an undeclared list), each with a source property."""
    return state(
        PropertyDef("source", PropertyType.STR),
        PropertyDef("legacy", PropertyType.STR),
        ContactList("news"),
        ContactList("old"),
        Contact("kept@x.io", {EXCLUDED: False}, {"source": "crm"}),
        Contact("gone@x.io", {NAME: "Gone", EXCLUDED: False}, {"source": "crm"}),
        Contact("form@x.io", {EXCLUDED: False}, {"source": "form"}),
        Contact("left@x.io", {EXCLUDED: False}, {"source": "crm"}),
        Contact("far@x.io", {EXCLUDED: False}, {"source": "crm"}),
        Membership("news", "kept@x.io"),
        Membership("news", "gone@x.io"),
        Membership("news", "form@x.io"),
        Membership("news", "left@x.io", UNSUBSCRIBED),
        Membership("old", "far@x.io"),
    )


def manifest(members: MembersPolicy = MembersPolicy.ADDITIVE) -> State:
    return state(
        PropertyDef("source", PropertyType.STR),
        ContactList("news", members),
        Contact("kept@x.io"),
        Membership("news", "kept@x.io"),
    )


# ---- nothing unless asked ----------------------------------------------------------------


def test_without_a_policy_nothing_undeclared_is_touched() -> None:
    result = planned(manifest(), account(), Policy())
    assert (result.changes, result.warnings, result.errors) == ([], [], [])


def test_the_comparison_given_is_left_as_it_was() -> None:
    compared = diff_states(manifest(), account())
    apply_policy(manifest(), account(), Policy(contacts=ContactPrune.DELETE), compared)
    assert compared == DiffResult()


# ---- exact lists --------------------------------------------------------------------------


def test_an_exact_list_removes_undeclared_subscribed_members_and_keeps_unsubscribes() -> None:
    live = account()
    result = changed(manifest(MembersPolicy.EXACT), live, Policy())
    assert result == [
        ("delete", "membership:news/gone@x.io", MembershipValues(SUBSCRIBED), None),
        ("delete", "membership:news/form@x.io", MembershipValues(SUBSCRIBED), None),
    ]
    [first, _] = planned(manifest(MembersPolicy.EXACT), live, Policy()).changes
    assert first.fingerprint == fingerprint({"status": "subscribed"})


def test_an_exact_list_can_unsubscribe_instead() -> None:
    policy = Policy(exact_members=MemberPrune.UNSUBSCRIBE)
    assert changed(manifest(MembersPolicy.EXACT), account(), policy) == [
        (
            "update",
            "membership:news/gone@x.io",
            MembershipValues(SUBSCRIBED),
            MembershipValues(UNSUBSCRIBED),
        ),
        (
            "update",
            "membership:news/form@x.io",
            MembershipValues(SUBSCRIBED),
            MembershipValues(UNSUBSCRIBED),
        ),
    ]


def test_protect_keeps_members_of_an_exact_list() -> None:
    desired = manifest(MembersPolicy.EXACT)
    by_contact = Policy(protected_contacts=frozenset({"gone@x.io"}))
    assert [row[1] for row in changed(desired, account(), by_contact)] == [
        "membership:news/form@x.io"
    ]
    assert changed(desired, account(), Policy(protected_lists=frozenset({"news"}))) == []


# ---- lists and properties -----------------------------------------------------------------


def test_undeclared_lists_and_properties_are_deleted_when_asked_except_protected() -> None:
    live = account()
    live.lists["vip"] = ContactList("vip")
    policy = Policy(
        lists=DefinitionPrune.DELETE,
        properties=DefinitionPrune.DELETE,
        protected_lists=frozenset({"vip"}),
    )
    assert changed(manifest(), live, policy) == [
        ("delete", "list:old", ListValues("old"), None),
        ("delete", "property:legacy", PropertyValues(PropertyType.STR), None),
    ]


# ---- contacts: each action ------------------------------------------------------------------


def test_erasing_undeclared_contacts_in_scope_drops_their_membership_changes() -> None:
    live = account()
    result = planned(
        manifest(MembersPolicy.EXACT), live, Policy(contacts=ContactPrune.DELETE)
    ).changes
    assert rows(result) == [
        ("delete", "contact:form@x.io", live.contacts["form@x.io"].values(), None),
        ("delete", "contact:gone@x.io", live.contacts["gone@x.io"].values(), None),
    ]
    assert [change.flags for change in result] == [PRUNED, PRUNED]
    basis = prune_basis(live.contacts["gone@x.io"], [live.memberships[("news", "gone@x.io")]])
    assert basis == {
        "email": "gone@x.io",
        "name": "Gone",
        "excluded_from_campaigns": False,
        "properties": {"source": "crm"},
        "lists": [("news", "subscribed")],
    }
    assert result[1].fingerprint == fingerprint(basis)


def test_an_excluded_contact_is_not_erased_and_the_plan_says_so() -> None:
    live = account()
    live.add_contact(Contact("gone@x.io", {EXCLUDED: True}))
    result = planned(manifest(), live, Policy(contacts=ContactPrune.DELETE))
    assert [row[1] for row in rows(result.changes)] == ["contact:form@x.io"]
    assert [str(w) for w in result.warnings] == [
        "contact:gone@x.io: is in the prune's scope but opted out of all campaigns: not "
        "erased, because erasing them would erase the record of their opt-out (a later "
        "import could mail them)"
    ]


def test_excluding_undeclared_contacts_leaves_the_already_excluded() -> None:
    live = account()
    live.add_contact(Contact("form@x.io", {EXCLUDED: True}))
    result = planned(manifest(), live, Policy(contacts=ContactPrune.EXCLUDE)).changes
    assert rows(result) == [
        (
            "update",
            "contact:gone@x.io",
            ContactValues({EXCLUDED: False}),
            ContactValues({EXCLUDED: True}),
        )
    ]
    assert result[0].flags == PRUNED


def test_archiving_undeclared_contacts_is_an_exclusion_flagged_archive() -> None:
    live = account()
    live.add_contact(Contact("form@x.io", {EXCLUDED: True}))
    result = planned(manifest(), live, Policy(contacts=ContactPrune.ARCHIVE)).changes
    assert rows(result) == [
        (
            "update",
            "contact:gone@x.io",
            ContactValues({EXCLUDED: False}),
            ContactValues({EXCLUDED: True}),
        )
    ]
    assert result[0].flags == PRUNED | {Flag.ARCHIVE}
    assert result[0].effect is Effect.ARCHIVE


def test_unsubscribing_undeclared_contacts_from_every_declared_list_not_protected() -> None:
    live = account()
    desired = manifest()
    desired.lists["old"] = ContactList("old")
    desired.lists["vip"] = ContactList("vip")
    live.lists["vip"] = ContactList("vip")
    live.add_membership(Membership("old", "gone@x.io"))
    live.add_membership(Membership("vip", "gone@x.io"))
    policy = Policy(contacts=ContactPrune.UNSUBSCRIBE, protected_lists=frozenset({"vip"}))
    assert [row[1] for row in changed(desired, live, policy)] == [
        "membership:old/far@x.io",
        "membership:news/form@x.io",
        "membership:news/gone@x.io",
        "membership:old/gone@x.io",
    ]


def test_a_member_both_an_exact_list_and_a_contact_prune_unsubscribe_is_planned_once() -> None:
    policy = Policy(contacts=ContactPrune.UNSUBSCRIBE, exact_members=MemberPrune.UNSUBSCRIBE)
    addresses = [row[1] for row in changed(manifest(MembersPolicy.EXACT), account(), policy)]
    assert addresses == ["membership:news/gone@x.io", "membership:news/form@x.io"]


# ---- contacts: scope and marker -------------------------------------------------------------


def test_the_scope_is_subscribed_members_of_declared_lists_by_default() -> None:
    erased = changed(manifest(), account(), Policy(contacts=ContactPrune.DELETE))
    # not kept (declared), left (unsubscribed), far (only on an undeclared list)
    assert [row[1] for row in erased] == ["contact:form@x.io", "contact:gone@x.io"]


def test_scope_lists_choose_whose_members_may_be_pruned() -> None:
    policy = Policy(contacts=ContactPrune.DELETE, contact_scope=ContactScope(frozenset({"old"})))
    assert [row[1] for row in changed(manifest(), account(), policy)] == ["contact:far@x.io"]


def test_a_marker_narrows_the_scope_to_contacts_holding_that_value() -> None:
    scope = ContactScope(marker=("source", "form"))
    policy = Policy(contacts=ContactPrune.DELETE, contact_scope=scope)
    assert [row[1] for row in changed(manifest(), account(), policy)] == ["contact:form@x.io"]


def test_protected_contacts_are_out_of_every_prune_scope() -> None:
    policy = Policy(contacts=ContactPrune.DELETE, protected_contacts=frozenset({"gone@x.io"}))
    assert [row[1] for row in changed(manifest(), account(), policy)] == ["contact:form@x.io"]


def test_ignore_prunes_nobody_whatever_the_scope() -> None:
    scope = ContactScope(frozenset({"news", "old"}), ("source", "crm"))
    assert changed(manifest(), account(), Policy(contact_scope=scope)) == []


# ---- protect: wins over what the manifest asks ----------------------------------------------


def test_a_destructive_change_the_manifest_asks_for_on_something_protected_is_an_error() -> None:
    desired = state(
        ContactList("vip"),
        Contact("a@x.io", {NAME: "New", EXCLUDED: True}),
        Contact("b@x.io", {NAME: "New"}),
        Membership("vip", "c@x.io", UNSUBSCRIBED),
    )
    live = state(
        ContactList("vip"),
        Contact("a@x.io", {NAME: "Old", EXCLUDED: False}),
        Contact("b@x.io", {NAME: "Old"}),
        Contact("c@x.io"),
        Membership("vip", "c@x.io"),
    )
    policy = Policy(
        protected_contacts=frozenset({"a@x.io", "b@x.io"}), protected_lists=frozenset({"vip"})
    )
    result = planned(desired, live, policy)
    assert [str(error) for error in result.errors] == [
        "contact:a@x.io: is protected (protect: in the manifest), so no plan may exclude from "
        "campaigns; change the manifest or remove the protection",
        "membership:vip/c@x.io: is protected (protect: in the manifest), so no plan may "
        "unsubscribe; change the manifest or remove the protection",
    ]


def test_protection_conflicts_are_found_in_the_manifest_alone() -> None:
    desired = state(
        Contact("a@x.io", {EXCLUDED: True}),
        Contact("b@x.io", {EXCLUDED: False}),
        Membership("vip", "b@x.io", UNSUBSCRIBED),
        Membership("news", "c@x.io", UNSUBSCRIBED),
        Membership("news", "d@x.io"),
    )
    policy = Policy(
        protected_contacts=frozenset({"a@x.io", "b@x.io", "d@x.io"}),
        protected_lists=frozenset({"vip"}),
    )
    assert [f.address for f in protection_conflicts(desired, policy)] == [
        "contact:a@x.io",
        "membership:vip/b@x.io",
    ]


@pytest.mark.parametrize(
    ("change", "protected"),
    [
        (erase("a@x.io"), True),
        (erase("z@x.io"), False),
        (remove("news", "a@x.io"), True),
        (remove("vip", "z@x.io"), True),
        (remove("news", "z@x.io"), False),
        (delete_list("vip"), True),
        (delete_property("vip"), False),
    ],
)
def test_protected_by(change: Change, protected: bool) -> None:
    policy = Policy(protected_contacts=frozenset({"a@x.io"}), protected_lists=frozenset({"vip"}))
    assert protected_by(change, policy) is protected


def test_a_protection_naming_nothing_is_a_warning() -> None:
    policy = Policy(
        protected_contacts=frozenset({"kept@x.io", "gone@x.io", "typo@x.io"}),
        protected_lists=frozenset({"news", "old", "nwes"}),
    )
    assert [str(w) for w in planned(manifest(), account(), policy).warnings] == [
        "contact:typo@x.io: is under protect:contacts but is neither in the manifest nor in "
        "the account (a typo protects nobody)",
        "list:nwes: is under protect:lists but is neither in the manifest nor in the account "
        "(a typo protects nothing)",
    ]


def test_a_scope_list_that_names_no_list_is_warned_about() -> None:
    policy = Policy(
        contacts=ContactPrune.EXCLUDE, contact_scope=ContactScope(lists=frozenset({"NEWS"}))
    )
    warnings = planned(manifest(), account(), policy).warnings
    assert [w.address for w in warnings] == ["list:NEWS"]
    assert "prune scope list" in warnings[0].message
