"""State.memberships is a compact table (model.Memberships) that must behave exactly as the
dict of Membership objects it replaces: checked against a plain dict after every step of
random adds, replacements and deletions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.model import Membership, Memberships, State, SubscriptionStatus

LISTS = st.sampled_from(["news", "News", "ünï", "a b", ""])
EMAILS = st.sampled_from(["a@x.com", "b@x.com", "c@x.com", "é@x.com"])
MOMENTS = st.none() | st.sampled_from(["2026-01-01T00:00:00Z", "2026-06-01T12:00:00Z"])
MEMBERSHIPS = st.builds(
    Membership, LISTS, EMAILS, st.sampled_from(list(SubscriptionStatus)), MOMENTS, MOMENTS
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), MEMBERSHIPS),
        st.tuples(st.just("set"), MEMBERSHIPS),
        st.tuples(st.just("delete"), st.tuples(LISTS, EMAILS)),
    ),
    max_size=40,
)


def check_same(table: Memberships, model: dict[tuple[str, str], Membership]) -> None:
    assert len(table) == len(model)
    assert dict(table.items()) == model
    assert table == model
    assert sorted(table) == sorted(model)
    assert sorted(table.values(), key=lambda m: m.key) == sorted(
        model.values(), key=lambda m: m.key
    )
    for list_name in ["news", "News", "ünï", "a b", "", "none"]:
        assert set(table.emails(list_name)) == {e for (n, e) in model if n == list_name}
        for email in ["a@x.com", "b@x.com", "c@x.com", "é@x.com", "A@x.com"]:
            key = (list_name, email)
            assert (key in table) == (key in model)
            assert table.get(key) == model.get(key)
            found = model.get(key)
            assert table.status(list_name, email) == (found.status if found else None)
    assert set(table.list_names()) == {n for (n, _) in model}


@given(STEPS)
def test_the_table_behaves_as_a_dict_of_memberships(steps: list[tuple[str, object]]) -> None:
    table = Memberships()
    model: dict[tuple[str, str], Membership] = {}
    for action, argument in steps:
        if action == "add":
            assert isinstance(argument, Membership)
            table.add(argument)
            model[argument.key] = argument
        elif action == "set":
            assert isinstance(argument, Membership)
            table[argument.key] = argument
            model[argument.key] = argument
        else:
            assert isinstance(argument, tuple)
            if argument in model:
                del table[argument]
                del model[argument]
            else:
                with pytest.raises(KeyError):
                    del table[argument]
        check_same(table, model)
    copied = table.copy()
    assert copied == model
    copied.put("other", "z@x.com")
    assert table == model  # a copy is its own


@given(st.lists(MEMBERSHIPS, max_size=20))
def test_a_state_made_with_a_dict_holds_a_table(memberships: list[Membership]) -> None:
    model = {m.key: m for m in memberships}
    state = State(memberships=model)
    assert isinstance(state.memberships, Memberships)
    assert state.memberships == model


def test_a_membership_stored_under_another_key_is_refused() -> None:
    table = Memberships()
    with pytest.raises(ValueError, match="stored under"):
        table[("news", "b@x.com")] = Membership("news", "a@x.com")
    assert len(table) == 0


@given(st.lists(MEMBERSHIPS, max_size=20), st.lists(MEMBERSHIPS, max_size=20))
def test_differing_gives_each_membership_whose_status_the_other_does_not_hold(
    ours: list[Membership], theirs: list[Membership]
) -> None:
    """The diff's walk: against a look-up per membership, with or without times (a
    membership with times is held apart from one without)."""
    mine, other = Memberships(), Memberships()
    for membership in ours:
        mine.add(membership)
    for membership in theirs:
        other.add(membership)
    expected = [
        (key[0], key[1], membership.status, other.status(*key))
        for key, membership in mine.items()
        if other.status(*key) != membership.status
    ]
    assert list(mine.differing(other)) == expected
