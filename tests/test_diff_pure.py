"""diff_states on literal states: what is compared, what never is, and consent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.diff import (
    Action,
    Change,
    Effect,
    Flag,
    ResourceType,
    consent_blocker,
    diff_states,
)
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
    Namespace,
    PropertyDef,
    PropertyType,
    PropertyValues,
    SubscriptionStatus,
    fingerprint,
)
from tests.pure import (
    delete_list,
    delete_property,
    erase,
    remove,
    rename,
    rows,
    state,
    unsubscribe,
)

SUBSCRIBED, UNSUBSCRIBED = SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.UNSUBSCRIBED
EARLY, LATE = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"


# ---- definitions ----------------------------------------------------------------------


def test_equal_states_need_nothing() -> None:
    items = (
        PropertyDef("seats", PropertyType.INT),
        ContactList("news"),
        Contact("a@x.io", {NAME: "Ann"}, {"seats": 2}),
        Membership("news", "a@x.io"),
    )
    result = diff_states(state(*items), state(*items))
    assert (result.changes, result.warnings, result.errors) == ([], [], [])


def test_missing_definitions_and_lists_are_created() -> None:
    desired = state(
        PropertyDef("born", PropertyType.DATETIME, Namespace.HISTORIC), ContactList("news")
    )
    assert rows(diff_states(desired, state()).changes) == [
        (
            "create",
            "property:born",
            None,
            PropertyValues(PropertyType.DATETIME, Namespace.HISTORIC),
        ),
        ("create", "list:news", None, ListValues("news")),
    ]


def test_a_retype_without_replace_is_an_error_not_a_change() -> None:
    desired = state(PropertyDef("seats", PropertyType.INT))
    live = state(PropertyDef("seats", PropertyType.STR))
    result = diff_states(desired, live)
    assert result.changes == []
    assert [str(finding) for finding in result.errors] == [
        "property:seats: is str/static live and int/static in the manifest; a definition "
        "can't change in place. Set replace: true to delete and recreate it (every "
        "contact's value of it is lost)."
    ]


def test_a_namespace_change_is_a_retype_too() -> None:
    desired = state(PropertyDef("seats", PropertyType.INT, Namespace.HISTORIC))
    live = state(PropertyDef("seats", PropertyType.INT))
    assert [f.address for f in diff_states(desired, live).errors] == ["property:seats"]


def test_a_retype_with_replace_is_one_flagged_update_against_the_live_record() -> None:
    desired = state(PropertyDef("seats", PropertyType.INT, replace=True))
    live = state(PropertyDef("seats", PropertyType.STR))
    [change] = diff_states(desired, live).changes
    assert rows([change]) == [
        (
            "update",
            "property:seats",
            PropertyValues(PropertyType.STR),
            PropertyValues(PropertyType.INT),
        )
    ]
    assert change.flags == frozenset({Flag.REPLACE})
    assert change.fingerprint == fingerprint({"type": "str", "namespace": "static"})


def test_replace_on_an_unchanged_definition_does_nothing() -> None:
    items = (PropertyDef("seats", PropertyType.INT, replace=True),)
    live = state(PropertyDef("seats", PropertyType.INT))
    assert diff_states(state(*items), live).changes == []


def test_a_list_is_never_updated_for_its_members_policy() -> None:
    desired = state(ContactList("news", MembersPolicy.EXACT))
    assert diff_states(desired, state(ContactList("news"))).changes == []


# ---- contacts: creation, ownership, null ----------------------------------------------


def test_a_creation_carries_the_address_as_written_and_no_null_values() -> None:
    desired = state(Contact("Ann@X.io", {NAME: "Ann"}, {"seats": 2, "dept": None}))
    assert rows(diff_states(desired, state()).changes) == [
        (
            "create",
            "contact:ann@x.io",
            None,
            ContactValues({NAME: "Ann"}, {"seats": 2}, "Ann@X.io"),
        ),
    ]


def test_a_creation_without_values_has_no_properties_part() -> None:
    [change] = diff_states(state(Contact("a@x.io", {}, {"dept": None})), state()).changes
    assert change.after == ContactValues(email="a@x.io")
    assert change.contact_after.properties is None


def test_only_what_the_manifest_mentions_is_compared() -> None:
    desired = state(Contact("a@x.io", {NAME: "Ann"}, {"seats": 2}))
    live = state(Contact("a@x.io", {NAME: "Old", EXCLUDED: True}, {"seats": 2, "dept": "Sales"}))
    [change] = diff_states(desired, live).changes
    assert rows([change]) == [
        ("update", "contact:a@x.io", ContactValues({NAME: "Old"}), ContactValues({NAME: "Ann"}))
    ]
    assert change.fingerprint == fingerprint(live.contacts["a@x.io"].record())


def test_unmentioned_fields_and_properties_never_make_a_change() -> None:
    desired = state(Contact("a@x.io"))
    live = state(Contact("a@x.io", {NAME: "Old", EXCLUDED: True}, {"dept": "Sales"}))
    assert diff_states(desired, live).changes == []


def test_null_clears_a_managed_value() -> None:
    desired = state(Contact("a@x.io", {}, {"dept": None, "seats": 3}))
    live = state(Contact("a@x.io", {}, {"dept": "Sales", "seats": 3}))
    assert rows(diff_states(desired, live).changes) == [
        (
            "update",
            "contact:a@x.io",
            ContactValues(properties={"dept": "Sales"}),
            ContactValues(properties={"dept": None}),
        )
    ]


def test_null_where_nothing_is_set_is_no_change() -> None:
    desired = state(Contact("a@x.io", {}, {"dept": None}))
    assert diff_states(desired, state(Contact("a@x.io"))).changes == []


def test_a_field_missing_live_reads_as_none_before() -> None:
    desired = state(Contact("a@x.io", {NAME: "Ann"}))
    assert rows(diff_states(desired, state(Contact("a@x.io"))).changes) == [
        ("update", "contact:a@x.io", ContactValues({NAME: None}), ContactValues({NAME: "Ann"}))
    ]


def test_a_replaced_property_writes_its_declared_values_again() -> None:
    desired = state(
        PropertyDef("seats", PropertyType.INT, replace=True), Contact("a@x.io", {}, {"seats": 2})
    )
    live = state(PropertyDef("seats", PropertyType.STR), Contact("a@x.io", {}, {"seats": 2}))
    assert rows(diff_states(desired, live).changes)[1:] == [
        (
            "update",
            "contact:a@x.io",
            ContactValues(properties={"seats": None}),
            ContactValues(properties={"seats": 2}),
        )
    ]


# ---- consent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opted_out_at", "opted_in_at", "blocked"),
    [
        (EARLY, LATE, None),
        (LATE, EARLY, f"they opted out at {LATE}, not before the opt-in of {EARLY}"),
        (EARLY, EARLY, f"they opted out at {EARLY}, not before the opt-in of {EARLY}"),
        (EARLY, None, "no opt-in (opted_in_at) is recorded for this in the manifest"),
        (
            None,
            LATE,
            f"the provider gives no time for the opt-out, so the opt-in of {LATE} "
            "can't be shown to be newer",
        ),
    ],
)
def test_consent_blocker(opted_out_at: str | None, opted_in_at: str | None, blocked: str) -> None:
    assert consent_blocker(opted_out_at, opted_in_at) == blocked


def excluded_live(opted_out_at: str | None) -> Contact:
    return Contact("a@x.io", {NAME: "Ann", EXCLUDED: True}, opted_out_at=opted_out_at)


def test_an_opt_in_after_the_opt_out_re_includes_with_a_flag() -> None:
    desired = state(Contact("a@x.io", {EXCLUDED: False}, opted_in_at=LATE))
    [change] = diff_states(desired, state(excluded_live(EARLY))).changes
    assert rows([change]) == [
        (
            "update",
            "contact:a@x.io",
            ContactValues({EXCLUDED: True}),
            ContactValues({EXCLUDED: False}),
        )
    ]
    assert (change.flags, change.effect) == (frozenset({Flag.RESUBSCRIBE}), Effect.INCLUDE)


@pytest.mark.parametrize(
    ("opted_out_at", "opted_in_at", "why"),
    [
        (LATE, EARLY, "they opted out at"),
        (EARLY, EARLY, "they opted out at"),
        (EARLY, None, "no opt-in"),
        (None, LATE, "the provider gives no time"),
    ],
)
def test_without_consent_the_exclusion_is_kept_and_the_rest_still_changes(
    opted_out_at: str | None, opted_in_at: str | None, why: str
) -> None:
    desired = state(Contact("a@x.io", {NAME: "Bo", EXCLUDED: False}, opted_in_at=opted_in_at))
    result = diff_states(desired, state(excluded_live(opted_out_at)))
    assert rows(result.changes) == [
        ("update", "contact:a@x.io", ContactValues({NAME: "Ann"}), ContactValues({NAME: "Bo"}))
    ]
    assert result.changes[0].flags == frozenset()
    [warning] = result.warnings
    assert warning.address == "contact:a@x.io"
    assert warning.message.startswith(
        f"opted out (excluded); the manifest would bring them back, but {why}"
    )


def test_without_consent_and_nothing_else_to_change_there_is_no_change() -> None:
    desired = state(Contact("a@x.io", {EXCLUDED: False}))
    result = diff_states(desired, state(excluded_live(EARLY)))
    assert (result.changes, [w.address for w in result.warnings]) == ([], ["contact:a@x.io"])


def test_excluding_needs_no_consent() -> None:
    desired = state(Contact("a@x.io", {EXCLUDED: True}))
    [change] = diff_states(desired, state(Contact("a@x.io", {EXCLUDED: False}))).changes
    assert (change.after, change.effect, change.flags) == (
        ContactValues({EXCLUDED: True}),
        Effect.EXCLUDE,
        frozenset(),
    )


def test_a_new_membership_asks_only_for_its_status() -> None:
    desired = state(Membership("news", "a@x.io", opted_in_at=LATE))
    assert rows(diff_states(desired, state()).changes) == [
        ("create", "membership:news/a@x.io", None, MembershipValues(SUBSCRIBED))
    ]


def test_an_opt_in_after_the_unsubscribe_re_subscribes() -> None:
    desired = state(Membership("news", "a@x.io", opted_in_at=LATE))
    live = state(Membership("news", "a@x.io", UNSUBSCRIBED, opted_out_at=EARLY))
    [change] = diff_states(desired, live).changes
    assert rows([change]) == [
        (
            "update",
            "membership:news/a@x.io",
            MembershipValues(UNSUBSCRIBED, EARLY),
            MembershipValues(SUBSCRIBED),
        )
    ]
    assert (change.flags, change.effect) == (frozenset({Flag.RESUBSCRIBE}), Effect.RESUBSCRIBE)
    assert change.fingerprint == fingerprint({"status": "unsubscribed", "opted_out_at": EARLY})


@pytest.mark.parametrize(
    ("opted_out_at", "opted_in_at"), [(LATE, EARLY), (EARLY, EARLY), (EARLY, None), (None, LATE)]
)
def test_an_unsubscribe_without_a_later_opt_in_is_kept(
    opted_out_at: str | None, opted_in_at: str | None
) -> None:
    desired = state(Membership("news", "a@x.io", opted_in_at=opted_in_at))
    live = state(Membership("news", "a@x.io", UNSUBSCRIBED, opted_out_at=opted_out_at))
    result = diff_states(desired, live)
    assert result.changes == []
    assert [w.address for w in result.warnings] == ["membership:news/a@x.io"]
    assert "opted out (unsubscribed from this list)" in result.warnings[0].message


def test_a_declared_unsubscribe_needs_no_consent() -> None:
    desired = state(Membership("news", "a@x.io", UNSUBSCRIBED))
    [change] = diff_states(desired, state(Membership("news", "a@x.io"))).changes
    assert (change.before, change.after, change.effect) == (
        MembershipValues(SUBSCRIBED),
        MembershipValues(UNSUBSCRIBED),
        Effect.UNSUBSCRIBE,
    )


# ---- what diff never does -------------------------------------------------------------


def test_diff_never_touches_what_is_not_declared() -> None:
    desired = state(ContactList("exact", MembersPolicy.EXACT), ContactList("additive"))
    live = state(
        PropertyDef("legacy", PropertyType.STR),
        ContactList("exact"),
        ContactList("additive"),
        ContactList("old"),
        Contact("gone@x.io"),
        Membership("exact", "gone@x.io"),
        Membership("additive", "gone@x.io"),
    )
    assert diff_states(desired, live).changes == []


# ---- the change value ------------------------------------------------------------------


def test_a_change_refuses_values_of_another_resource_type() -> None:
    with pytest.raises(TypeError, match=r"contact:a@x\.io: a update has before ContactValues"):
        Change(
            ResourceType.CONTACT,
            Action.UPDATE,
            ("a@x.io",),
            MembershipValues(SUBSCRIBED),
            ContactValues(),
        )


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        (Action.CREATE, ListValues("news"), ListValues("news")),
        (Action.UPDATE, None, ListValues("news")),
        (Action.DELETE, ListValues("news"), ListValues("news")),
        (Action.DELETE, None, None),
    ],
)
def test_a_change_has_before_unless_created_and_after_unless_deleted(
    action: Action, before: ListValues | None, after: ListValues | None
) -> None:
    with pytest.raises(TypeError):
        Change(ResourceType.LIST, action, ("news",), before, after)


def test_typed_accessors_refuse_another_type_or_a_missing_side() -> None:
    removal = Change(
        ResourceType.MEMBERSHIP,
        Action.DELETE,
        ("news", "a@x.io"),
        MembershipValues(SUBSCRIBED),
        None,
    )
    with pytest.raises(
        TypeError, match=r"delete of membership:news/a@x\.io has no MembershipValues"
    ):
        _ = removal.membership_after
    with pytest.raises(TypeError, match="has no ContactValues"):
        _ = removal.contact_before


@pytest.mark.parametrize(
    ("change", "effect"),
    [
        (erase("a@x.io"), Effect.ERASE),
        (remove("news", "a@x.io"), Effect.REMOVE_FROM_LIST),
        (delete_list("news"), Effect.DELETE_LIST),
        (delete_property("seats"), Effect.DELETE_PROPERTY),
        (unsubscribe("news", "a@x.io"), Effect.UNSUBSCRIBE),
        (rename("a@x.io"), None),
        (
            Change(
                ResourceType.CONTACT, Action.CREATE, ("a",), None, ContactValues({EXCLUDED: True})
            ),
            None,
        ),
    ],
)
def test_effects(change: Change, effect: Effect | None) -> None:
    assert change.effect is effect


# ---- values and their JSON ------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "data"),
    [
        (ContactValues(), {}),
        (ContactValues({NAME: None}), {"name": None}),
        (ContactValues(properties={}), {"properties": {}}),
        (ContactValues(properties={"dept": None}), {"properties": {"dept": None}}),
        (
            ContactValues(
                {NAME: "A", EXCLUDED: False}, {"n": 1}, "A@x.io", EARLY, {"status": "active"}
            ),
            {
                "email": "A@x.io",
                "name": "A",
                "excluded_from_campaigns": False,
                "status": "active",
                "properties": {"n": 1},
                "opted_out_at": EARLY,
            },
        ),
    ],
)
def test_contact_values_keep_absent_apart_from_null(values: ContactValues, data: object) -> None:
    assert values.to_json() == data
    assert ContactValues.from_json(values.to_json()) == values


@pytest.mark.parametrize(
    "data",
    [
        {"name": 3},
        {"properties": [1]},
        {"properties": {"a": {"b": 1}}},
        {"email": None, "status": []},
    ],
)
def test_contact_values_refuse_what_no_plan_writes(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ContactValues.from_json(data)


def test_records_are_the_values_json() -> None:
    contact = Contact(
        "A@x.io", {EXCLUDED: True, "status": "bounced", NAME: "A"}, {"n": 1}, opted_out_at=EARLY
    )
    membership = Membership("news", "a@x.io", UNSUBSCRIBED, opted_out_at=EARLY)
    assert contact.record() == contact.values().to_json()
    assert membership.record() == membership.values().to_json()
    assert contact.values().other_fields == {"status": "bounced"}


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.sampled_from(["", "A", "B"]))
PROPERTY_VALUES = st.one_of(st.none(), st.integers(0, 2), st.floats(0, 1), st.sampled_from("ab"))


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    fields = draw(st.dictionaries(st.sampled_from([NAME, EXCLUDED, "other"]), FIELD_VALUES))
    properties = draw(st.dictionaries(st.sampled_from(["p", "q", "r", "s"]), PROPERTY_VALUES))
    return Contact("a@example.com", fields, properties)


@given(contacts(), contacts())
def test_a_contact_holds_what_another_wants_exactly_when_each_value_matches(
    have: Contact, want: Contact
) -> None:
    """The one-comparison check (positions shared by a pair of shapes) against a look-up
    per value, where a value the contact lacks counts as None."""
    each = all(have.fields.get(k) == v for k, v in want.fields.items()) and all(
        have.properties.get(k) == v for k, v in want.properties.items()
    )
    assert have.holds(want) is each
    assert have.holds(want) is have.holds(want)  # the shapes' getters, made once, agree
