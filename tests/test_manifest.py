"""Manifest loading: merging, and every bad input named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.diff import contact_ref
from reconcile.errors import ManifestError
from reconcile.manifest.loader import load_manifest
from reconcile.model import EXCLUDED, NAME, MembersPolicy, SubscriptionStatus
from tests.support import write_manifest

HEADER = """\
provider: mailjet
properties:
  seats: {type: int}
  since: {type: datetime}
lists:
  news: {}
"""


def error_of(tmp_path: Path, body: str) -> str:
    path = write_manifest(tmp_path, HEADER + body)
    with pytest.raises(ManifestError) as caught:
        load_manifest([path])
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "contacts:\n  - email: a@example.com\n    nmae: A\n",
            "audience.yaml:9: contacts[0].nmae: unknown field",
        ),
        (
            "contacts:\n  - email: not-an-email\n",
            "audience.yaml:8: contacts[0].email: 'not-an-email' is not a valid email address",
        ),
        (
            "contacts:\n  - email: a@example.com\n  - email: A@Example.com\n",
            "audience.yaml:9: contacts[1].email: already defined at",
        ),
        (
            "contacts:\n  - email: a@example.com\n    lists: [nope]\n",
            "audience.yaml:9: contacts[0].lists: list 'nope' is not declared under lists:",
        ),
        (
            "contacts:\n  - email: a@example.com\n    properties: {colour: red}\n",
            "audience.yaml:9: contacts[0].properties.colour: property 'colour' is not declared",
        ),
        (
            "contacts:\n  - email: a@example.com\n    properties:\n      seats: '3'\n",
            "audience.yaml:10: contacts[0].properties.seats: expected int, got a string",
        ),
        (
            "contacts:\n  - email: a@example.com\n    properties: {since: someday}\n",
            "audience.yaml:9: contacts[0].properties.since: expected an ISO 8601 datetime",
        ),
        (
            "contacts:\n  - email: a@example.com\n    name: null\n",
            "audience.yaml:9: contacts[0].name: cannot be null",
        ),
        (
            "contacts:\n  - email: a@example.com\n    lists: {news: maybe}\n",
            "audience.yaml:9: contacts[0].lists.news:",
        ),
        ("contacts:\n  - name: Nobody\n", "audience.yaml:8: contacts[0].email: Field required"),
        ("lists:\n  other: {}\n", "audience.yaml:7: YAML syntax: while constructing a mapping"),
    ],
    ids=[
        "unknown-field",
        "bad-email",
        "case-duplicate",
        "undeclared-list",
        "undeclared-property",
        "string-for-int",
        "bad-datetime",
        "null-name",
        "bad-status",
        "missing-email",
        "duplicate-key",
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in error_of(tmp_path, body)


def test_duplicate_key_error_points_at_the_second_occurrence(tmp_path: Path) -> None:
    message = error_of(tmp_path, "lists:\n  other: {}\n")
    assert "found duplicate key" in message
    assert "audience.yaml:7" in message


def test_files_of_a_directory_are_merged(tmp_path: Path) -> None:
    write_manifest(tmp_path, HEADER, "a.yaml")
    write_manifest(
        tmp_path,
        "contacts:\n  - email: Bo@Example.com\n    name: Bo\n    lists: {news: unsubscribed}\n",
        "b.yml",
    )
    (tmp_path / "notes.txt").write_text("ignored")

    manifest = load_manifest([tmp_path])

    assert manifest.provider.type == "mailjet"
    assert manifest.desired.lists["news"].members is MembersPolicy.ADDITIVE
    contact = manifest.desired.contacts["bo@example.com"]
    assert contact.email == "Bo@Example.com"
    assert dict(contact.fields) == {NAME: "Bo"}
    assert EXCLUDED not in contact.fields
    membership = manifest.desired.memberships[("news", "bo@example.com")]
    assert membership.status is SubscriptionStatus.UNSUBSCRIBED
    assert str(manifest.source_of(contact_ref("bo@example.com"))).endswith("b.yml:2")


def test_a_key_defined_in_two_files_names_both(tmp_path: Path) -> None:
    write_manifest(tmp_path, HEADER, "a.yaml")
    write_manifest(tmp_path, "lists:\n  news: {members: exact}\n", "b.yaml")

    with pytest.raises(ManifestError) as caught:
        load_manifest([tmp_path])

    message = str(caught.value)
    assert "b.yaml:2: lists.news: already defined at" in message
    assert "a.yaml:6" in message


def test_the_same_contact_in_two_files_names_both(tmp_path: Path) -> None:
    write_manifest(tmp_path, HEADER + "contacts:\n  - email: x@example.com\n", "a.yaml")
    write_manifest(tmp_path, "contacts:\n  - email: X@example.com\n", "b.yaml")

    with pytest.raises(ManifestError) as caught:
        load_manifest([tmp_path])

    assert "b.yaml:2: contacts[0].email: already defined at" in str(caught.value)
    assert "a.yaml:8" in str(caught.value)


def test_missing_provider_is_an_error(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "lists: {news: {}}\n")
    with pytest.raises(ManifestError, match=r"audience.yaml:1: provider: no file declares"):
        load_manifest([path])


def test_values_are_normalised(tmp_path: Path) -> None:
    path = write_manifest(
        tmp_path,
        HEADER
        + "contacts:\n  - email: a@example.com\n"
        + "    properties: {seats: 3, since: 2026-01-02T03:04:05+01:00}\n",
    )
    contact = load_manifest([path]).desired.contacts["a@example.com"]
    assert dict(contact.properties) == {"seats": 3, "since": "2026-01-02T02:04:05Z"}


def test_several_errors_are_reported_together(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "contacts:\n  - email: bad\n  - email: b@example.com\n    lists: [gone]\n",
    )
    assert "contacts[0].email" in message
    assert "contacts[1].lists" in message


def test_contacts_from_csv_are_merged_and_typed(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(
        "email,name,excluded_from_campaigns,lists,properties\n"
        'a@example.com,Ann,,news,"{""seats"": 3}"\n'
        "b@example.com,,true,news:unsubscribed,\n",
        encoding="utf-8",
    )
    path = write_manifest(tmp_path, HEADER + "contacts_from: people.csv\n")

    state = load_manifest([path]).desired

    assert dict(state.contacts["a@example.com"].fields) == {NAME: "Ann"}
    assert dict(state.contacts["a@example.com"].properties) == {"seats": 3}
    assert dict(state.contacts["b@example.com"].fields) == {EXCLUDED: True}
    unsubscribed = state.memberships[("news", "b@example.com")]
    assert unsubscribed.status is SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("email,colour\nx@example.com,red\n", "people.csv:1: unknown column(s) ['colour']"),
        ("email\nx@example.com\nnope\n", "people.csv:3: email: 'nope' is not a valid email"),
        (
            'email,properties\nx@example.com,"{""seats"": ""3""}"\n',
            "people.csv:2: properties.seats: expected int, got a string",
        ),
        ("email,lists\nx@example.com,gone\n", "people.csv:2: lists: list 'gone' is not declared"),
        (
            "email,excluded_from_campaigns\nx@example.com,maybe\n",
            "people.csv:2: excluded_from_campaigns: expected true or false",
        ),
        (
            'email,properties\n"x@example.com","not json"\n',
            "people.csv:2: properties: not a JSON object",
        ),
        (
            'email,name\n"a@example.com","multi\nline"\nA@example.com,\n',
            "people.csv:4: email: already defined at",
        ),
    ],
    ids=["unknown-column", "bad-email", "typed", "undeclared-list", "bad-bool", "json", "dup"],
)
def test_bad_csv_rows_name_file_line_and_column(tmp_path: Path, rows: str, expected: str) -> None:
    (tmp_path / "people.csv").write_text(rows, encoding="utf-8")
    assert expected in error_of(tmp_path, "contacts_from: people.csv\n")


def test_non_utf8_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(b"email\nok@example.com\n\xff\xfe@example.com\n")
    assert "people.csv:3: not valid UTF-8" in error_of(tmp_path, "contacts_from: people.csv\n")


def test_a_float_property_refuses_an_integer_it_would_round(tmp_path: Path) -> None:
    path = tmp_path / "audience.yaml"
    path.write_text(
        "provider: mailjet\nproperties: {score: {type: float}}\n"
        "contacts:\n  - {email: a@example.com, properties: {score: 9007199254740993}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match="a float can't hold exactly"):
        load_manifest([path])
