"""How a Mailjet read joins its collections (#15 item 6): each contact is made once,
from its /contact row and its /contactdata row, whatever order they came in; data of an
ID the contact listing does not hold (it lags behind) is left out; a contact with no
data has no properties. The rows are let go as they are used."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconcile.errors import ApiError
from reconcile.model import EXCLUDED, NAME, PropertyDef, PropertyType, State, SubscriptionStatus
from reconcile.providers.mailjet import records
from reconcile.providers.mailjet.provider import MailjetIds, _add_contacts, _add_members

OPTED_OUT = "2026-11-30T10:00:00Z"


def test_each_contact_is_made_once_with_its_own_data() -> None:
    contacts: list[records.ContactRow] = [
        (2, "b@example.com", "B", True, OPTED_OUT),
        (1, "A@Example.com", "Old", False, None),
        (4, "d@example.com", "", False, None),
    ]
    data: list[records.DataRow] = [
        (1, ("dept", "seats"), ("Eng", 3)),
        (3, ("dept",), ("Ghost",)),  # no such contact listed
        (2, ("dept",), ("Sales",)),
    ]
    state, ids = State(), MailjetIds()

    by_id = _add_contacts(state, ids, contacts, data)

    assert by_id == {2: "b@example.com", 1: "a@example.com", 4: "d@example.com"}
    assert ids.contacts == {"b@example.com": 2, "a@example.com": 1, "d@example.com": 4}
    a, b, d = (state.contacts[k] for k in ("a@example.com", "b@example.com", "d@example.com"))
    assert a.email == "A@Example.com"
    assert dict(a.fields) == {NAME: "Old", EXCLUDED: False}
    assert dict(a.properties) == {"dept": "Eng", "seats": 3}
    assert dict(b.properties) == {"dept": "Sales"}
    assert b.get_field(EXCLUDED) is True
    assert b.opted_out_at == OPTED_OUT
    assert dict(d.properties) == {}
    assert "Ghost" not in {v for c in state.contacts.values() for v in c.properties.values()}
    assert contacts == []
    assert data == []


def test_a_contact_listed_twice_keeps_the_last_listing_and_its_data() -> None:
    """Records shift between pages while an account changes: the same ID can be listed
    twice; the last listing wins, with the data of that ID."""
    contacts: list[records.ContactRow] = [
        (7, "e@example.com", "Before", False, None),
        (7, "e@example.com", "After", True, OPTED_OUT),
    ]
    data: list[records.DataRow] = [(7, ("dept",), ("Ops",))]
    state = State()

    _add_contacts(state, MailjetIds(), contacts, data)

    (only,) = state.contacts.values()
    assert only.get_field(NAME) == "After"
    assert only.get_field(EXCLUDED) is True
    assert dict(only.properties) == {"dept": "Ops"}


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "1", "2.5", "true", "2026-01-01T00:00:00Z", "2026-01-01"]),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=1),
)


@given(
    st.lists(st.tuples(st.sampled_from(["s", "i", "f", "b", "d", "unknown"]), VALUES), max_size=6)
)
def test_a_data_record_reads_as_each_value_canonical(items: list[tuple[str, object]]) -> None:
    """The fast way through each item (a value of exactly its declared type) gives what
    the general one does: every value canonical for its declared type, a name given twice
    once (a contact's values are kept by position: a name twice would shift them)."""
    definitions = {
        "s": PropertyDef("s", PropertyType.STR),
        "i": PropertyDef("i", PropertyType.INT),
        "f": PropertyDef("f", PropertyType.FLOAT),
        "b": PropertyDef("b", PropertyType.BOOL),
        "d": PropertyDef("d", PropertyType.DATETIME),
    }
    record = {"ContactID": 7, "Data": [{"Name": n, "Value": v} for n, v in items]}

    contact_id, names, values = records.contact_values(record, definitions)

    assert contact_id == 7
    # each name once, with its last value (as a mapping of them would hold it)
    general = {n: records._canonical(v, definitions.get(n)) for n, v in items}
    assert names == tuple(general)
    assert values == tuple(general.values())
    assert [type(v) for v in values] == [type(v) for v in general.values()]


def test_members_join_their_contacts_and_one_who_left_is_never_read_as_subscribed() -> None:
    """A list's members by ContactID: subscribed ones bare, those who left with when. One
    listed twice (pages shifted by a change during the read) both ways reads as having
    left, whatever the order; an ID the contact listing lacks (it lags) is left out."""
    state = State()
    emails = {1: "a@example.com", 2: "b@example.com", 3: "c@example.com"}
    members: list[int | tuple[int, str | None]] = [
        1,
        (2, OPTED_OUT),
        2,
        9,  # not listed as a contact
        (3, None),
        3,
        1,
    ]

    _add_members(state, "news", members, emails)

    assert state.memberships.status("news", "a@example.com") is SubscriptionStatus.SUBSCRIBED
    assert state.memberships["news", "b@example.com"].status is SubscriptionStatus.UNSUBSCRIBED
    assert state.memberships["news", "b@example.com"].opted_out_at == OPTED_OUT
    assert state.memberships.status("news", "c@example.com") is SubscriptionStatus.UNSUBSCRIBED
    assert len(state.memberships) == 3
    _add_members(state, "empty", [9], emails)
    assert "empty" not in state.memberships.list_names()
    assert len(state.memberships) == 3


FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 2), st.sampled_from(["", "a@example.com", "Ann"])
)


@given(
    st.dictionaries(
        st.sampled_from(["ID", "Email", "Name", "IsExcludedFromCampaigns", "UnsubscribedAt"]),
        FIELD_VALUES,
    )
)
def test_a_contact_record_reads_as_the_checked_way_reads_it(record: dict[str, Any]) -> None:
    """The common record's fast way gives the row the checked way gives, and a record
    that way refuses is refused (a misread Name or exclusion would be written back)."""

    def checked() -> Any:
        return (records.field(record, "ID", int, "/contact"), *records._checked_contact(record))

    try:
        expected: Any = checked()
    except ApiError:
        expected = ApiError
    try:
        got: Any = records.contact_row(record)
    except ApiError:
        got = ApiError
    assert got == expected
