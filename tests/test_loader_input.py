"""Issue #14 items 10 and 11: every error of a manifest in one pass with "did you mean",
and CSV files read as spreadsheets write them (header case and spaces, `,` `;` or tab,
local times only with the source's `timezone:`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile.cli import app
from reconcile.errors import ManifestError
from reconcile.manifest.loader import load_manifest
from reconcile.manifest.suggest import closest
from tests.test_export_roundtrip import account

runner = CliRunner()
ISSUE = re.compile(r"^[^:\s]+\.(yaml|csv):\d+: ")


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def issues_of(output: str) -> list[str]:
    """Every printed issue line; each must be `file:line: ...`."""
    lines = [line.removeprefix("Error: ") for line in output.splitlines() if line.strip()]
    assert all(ISSUE.match(line) for line in lines), output
    return lines


def load_error(*paths: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(list(paths))
    return [str(issue) for issue in caught.value.issues]


# ---- did you mean ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "candidates", "expected"),
    [
        ("propertes", ["provider", "properties", "lists"], "properties"),
        ("nmae", ["email", "name", "lists"], "name"),
        ("exluded_from_campaigns", ["name", "excluded_from_campaigns"], "excluded_from_campaigns"),
        ("newsleter", ["newsletter", "beta"], "newsletter"),
        ("news", ["News", "beta"], "News"),  # case alone
        ("NEWSLETER", ["newsletter"], "newsletter"),
        ("zebra", ["newsletter", "beta"], None),
        ("news", ["news"], None),  # the name itself is no suggestion
    ],
)
def test_closest(name: str, candidates: list[str], expected: str | None) -> None:
    assert closest(name, candidates) == expected


# ---- every error in one pass ----------------------------------------------------------

SCHEMA_AND_REFERENCES = """\
provider: {type: mailjet, requests_per_minte: 300}
propertes:
  seats: {type: int}
properties:
  department: {type: str}
  plan: {type: strng}
lists:
  newsletter: {}
  beta: {members: exakt}
contacts:
  - email: a@example.com
    nmae: Alice
    lists: [newsleter, beta]
    properties: {departement: Sales, seats: 3, plan: x}
  - email: b@example.com
    exluded_from_campaigns: true
    lists: {News: subscribed}
  - just a string
  - email: not-an-email
prune:
  contacts: {action: unsubscribe, scope: {marker: {property: departmnt, value: x}}}
"""
EXPECTED = [
    "a.yaml:1: provider.requests_per_minte: unknown field (did you mean 'requests_per_minute'?)",
    "a.yaml:2: propertes: unknown field (did you mean 'properties'?)",
    "a.yaml:6: properties.plan.type: Input should be 'str', 'int', 'float', 'bool' or "
    "'datetime', got 'strng' (did you mean 'str'?)",
    "a.yaml:9: lists.beta.members: Input should be 'additive' or 'exact', got 'exakt' "
    "(did you mean 'exact'?)",
    "a.yaml:12: contacts[0].nmae: unknown field (did you mean 'name'?)",
    "a.yaml:13: contacts[0].lists: list 'newsleter' is not declared under lists: "
    "(did you mean 'newsletter'?)",
    "a.yaml:14: contacts[0].properties.departement: property 'departement' is not declared "
    "under properties: (did you mean 'department'?)",
    "a.yaml:16: contacts[1].exluded_from_campaigns: unknown field "
    "(did you mean 'excluded_from_campaigns'?)",
    "a.yaml:17: contacts[1].lists: list 'News' is not declared under lists:",
    "a.yaml:18: contacts[2]: expected a mapping, got a string",
    "a.yaml:19: contacts[3].email: 'not-an-email' is not a valid email address",
    "a.yaml:21: prune.contacts.scope.marker: property 'departmnt' is not declared under "
    "properties: (did you mean 'department'?)",
]


def test_schema_and_reference_errors_are_reported_together(tmp_path: Path) -> None:
    """Not reported: `beta` and `plan` used by contacts[0] (their own definitions are the
    errors), nor `seats` (declared, misspelled, under `propertes:`)."""
    path = tmp_path / "a.yaml"
    path.write_text(SCHEMA_AND_REFERENCES, encoding="utf-8")
    found = load_error(path)
    assert [issue.removeprefix(f"{tmp_path}/") for issue in found] == EXPECTED


@pytest.mark.parametrize("command", [["validate"], ["plan", "--sandbox"]])
def test_validate_and_plan_print_them_all(command: list[str], workdir: Path) -> None:
    (workdir / "a.yaml").write_text(SCHEMA_AND_REFERENCES, encoding="utf-8")
    code, output = run(*command, "a.yaml")
    assert code == 1
    assert output.startswith("Error: ")
    assert "Traceback" not in output
    assert issues_of(output) == EXPECTED


def test_errors_of_several_files_and_csv_rows_come_together(workdir: Path) -> None:
    (workdir / "a.yaml").write_text(
        "provider: mailjet\nlists:\n  news: {members: exakt}\n  beta: {}\n"
        "contacts_from: people.csv\n",
        encoding="utf-8",
    )
    (workdir / "b.yaml").write_text(
        "properties:\n  seats: {type: int}\ncontacts:\n  - email: x@example.com\n"
        "    lists: [news, betta]\n    properties: {seats: '3'}\n  - email: y@example.com\n"
        "    emial: y@example.com\n",
        encoding="utf-8",
    )
    (workdir / "people.csv").write_text(
        "email;lists\nc@example.com;news\nd@example.com;Beta\nnope;beta\n", encoding="utf-8"
    )
    code, output = run("validate", "a.yaml", "b.yaml")
    assert code == 1, output
    assert issues_of(output) == [
        "a.yaml:3: lists.news.members: Input should be 'additive' or 'exact', got 'exakt' "
        "(did you mean 'exact'?)",
        "b.yaml:5: contacts[0].lists: list 'betta' is not declared under lists: "
        "(did you mean 'beta'?)",
        "b.yaml:6: contacts[0].properties.seats: expected int, got a string (declared int)",
        "b.yaml:8: contacts[1].emial: unknown field (did you mean 'email'?)",
        "people.csv:3: lists: list 'Beta' is not declared under lists: (did you mean 'beta'?)",
        "people.csv:4: email: 'nope' is not a valid email address",
    ]


def test_a_missing_provider_is_reported_with_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("lists: {news: {}}\ncontacts: [{email: a@example.com, lists: [nws]}]\n")
    found = [issue.removeprefix(f"{tmp_path}/") for issue in load_error(path)]
    assert len(found) == 2, found
    assert found[0].startswith("a.yaml:1: provider: no file declares the provider (one of: ")
    assert found[1] == (
        "a.yaml:2: contacts[0].lists: list 'nws' is not declared under lists: "
        "(did you mean 'news'?)"
    )


def test_a_provider_error_is_not_also_a_missing_provider(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("provider: sendgrd\nlists: {news: {}}\n")
    found = load_error(path)
    assert len(found) == 1, found
    assert "unknown provider 'sendgrd'" in found[0]


def test_an_unreadable_file_stops_before_references(tmp_path: Path) -> None:
    """Its declarations are unknown: the other files' uses of them are not reported."""
    (tmp_path / "a.yaml").write_text("provider: mailjet\nlists: {news: {}\n")
    (tmp_path / "b.yaml").write_text("contacts: [{email: a@example.com, lists: [news]}]\n")
    (tmp_path / "c.yaml").write_text("contacts: [{email: b@example.com\n")
    found = load_error(tmp_path)
    assert [issue.split(": ", 1)[0].rsplit("/", 1)[-1] for issue in found] == [
        "a.yaml:2",
        "c.yaml:1",
    ]


def test_an_unknown_provider_option_suggests_the_option(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("provider: {type: mailjawn, writes_per_minut: 10}\n")
    found = load_error(path)
    assert any(
        "provider.writes_per_minut: unknown field (did you mean 'writes_per_minute'?)" in issue
        for issue in found
    ), found


# ---- CSV as spreadsheets export it ----------------------------------------------------

MANIFEST = """\
provider: mailjet
properties:
  seats: {type: int}
  since: {type: datetime}
lists:
  news: {}
"""


def write(tmp_path: Path, csv_text: str, source: str = "people.csv") -> Path:
    (tmp_path / "people.csv").write_text(csv_text, encoding="utf-8", newline="")
    path = tmp_path / "audience.yaml"
    path.write_text(MANIFEST + f"contacts_from: {source}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "csv_text",
    [
        'email,name,lists,properties\na@example.com,Ann,news,"{""seats"": 3}"\n',
        'Email,NAME , Lists ,Properties\na@example.com,Ann,news,"{""seats"": 3}"\n',
        'email;name;lists;properties\na@example.com;Ann;news;"{""seats"": 3}"\n',
        ' EMAIL ;Name;lists;properties\r\na@example.com;Ann;news;{"seats": 3}\r\n',
        'email\tname\tlists\tproperties\na@example.com\tAnn\tnews\t{"seats": 3}\n',
        '\ufeff"Email";"Name";"Lists";"Properties"\na@example.com;Ann;news;"{""seats"": 3}"\n',
    ],
    ids=["comma", "header-case-and-spaces", "semicolon", "semicolon-crlf", "tab", "bom-quoted"],
)
def test_spreadsheet_csv_files_read_alike(tmp_path: Path, csv_text: str) -> None:
    state = load_manifest([write(tmp_path, csv_text)]).desired
    contact = state.contacts["a@example.com"]
    assert dict(contact.fields) == {"name": "Ann"}
    assert dict(contact.properties) == {"seats": 3}
    assert ("news", "a@example.com") in state.memberships


def test_a_one_column_csv_needs_no_delimiter(tmp_path: Path) -> None:
    state = load_manifest([write(tmp_path, "Email\na@example.com\nb@example.com\n")]).desired
    assert sorted(state.contacts) == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (
            "Name;Email,Lists\nA;a@example.com,news\n",
            "people.csv:1: cannot tell whether columns are separated by commas or semicolons",
        ),
        ("email,Email\na@example.com,b\n", "people.csv:1: column(s) ['email'] appear more"),
        ("mail;name\na@example.com;A\n", "['mail'] (did you mean 'email'?)"),
        ("email,propertes\na@example.com,{}\n", "['propertes'] (did you mean 'properties'?)"),
    ],
    ids=["ambiguous", "same-column-twice", "mail", "propertes"],
)
def test_csv_header_problems(tmp_path: Path, csv_text: str, expected: str) -> None:
    found = load_error(write(tmp_path, csv_text))
    assert any(expected in issue for issue in found), found


NAIVE = 'email,properties\na@example.com,"{""since"": ""2026-07-01T09:30:00""}"\n'


def test_a_time_without_zone_in_a_csv_is_refused_naming_row_and_property(
    tmp_path: Path,
) -> None:
    found = load_error(write(tmp_path, NAIVE))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/people.csv:2: properties.since: ")
    assert "'2026-07-01T09:30:00' has no time zone" in found[0]
    assert "timezone: Europe/Paris" in found[0]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("2026-07-01T09:30:00", "2026-07-01T07:30:00Z"),  # summer: +02:00
        ("2026-01-15 09:30:00", "2026-01-15T08:30:00Z"),  # winter: +01:00, a space
        ("2026-07-01T09:30:00Z", "2026-07-01T09:30:00Z"),  # an offset wins over the zone
        ("2026-07-01T09:30:00-04:00", "2026-07-01T13:30:00Z"),
        ("2026-07-01", "2026-07-01T00:00:00Z"),  # a bare date is a date
    ],
)
def test_a_csv_source_timezone_places_local_times(
    tmp_path: Path, written: str, stored: str
) -> None:
    csv_text = f'email,properties\na@example.com,"{{""since"": ""{written}""}}"\n'
    source = "{path: people.csv, timezone: Europe/Paris}"
    state = load_manifest([write(tmp_path, csv_text, source)]).desired
    assert state.contacts["a@example.com"].properties["since"] == stored


def test_a_timezone_in_a_list_of_sources(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text(NAIVE.replace("a@", "b@"), encoding="utf-8")
    source = "[{path: people.csv, timezone: America/New_York}, other.csv]"
    found = load_error(write(tmp_path, NAIVE, source))
    assert len(found) == 1
    assert "other.csv:2: properties.since: '2026-07-01T09:30:00' has no time zone" in found[0]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-03-29T02:30:00", "2026-03-29 02:30:00 does not exist in Europe/Paris"),
        ("2026-10-25T02:30:00", "2026-10-25 02:30:00 happens twice in Europe/Paris"),
    ],
)
def test_a_local_time_the_zone_skips_or_repeats_is_refused(
    tmp_path: Path, written: str, expected: str
) -> None:
    csv_text = f'email,properties\na@example.com,"{{""since"": ""{written}""}}"\n'
    found = load_error(write(tmp_path, csv_text, "{path: people.csv, timezone: Europe/Paris}"))
    assert len(found) == 1
    assert "people.csv:2: properties.since: " + expected in found[0]


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Pariss", "unknown time zone 'Europe/Pariss': an IANA name such as "),
        ("europe/paris", "(did you mean 'Europe/Paris'?)"),
        ("CEST", "unknown time zone 'CEST'"),
        ("../etc/passwd", "unknown time zone '../etc/passwd'"),
    ],
)
def test_an_unknown_timezone_is_refused_without_more_noise(
    tmp_path: Path, zone: str, expected: str
) -> None:
    found = load_error(write(tmp_path, NAIVE, f"{{path: people.csv, timezone: '{zone}'}}"))
    assert len(found) == 1, found  # the CSV is not read half-configured
    assert "audience.yaml:7: contacts_from.timezone: " in found[0]
    assert expected in found[0]


def test_yaml_times_without_offset_are_still_utc(tmp_path: Path) -> None:
    """The documented YAML rule (README: Consent) is unchanged: only CSV cells refuse."""
    path = tmp_path / "audience.yaml"
    path.write_text(
        MANIFEST
        + "contacts:\n  - {email: a@example.com, properties: {since: 2026-07-01T09:30:00}}\n"
    )
    contact = load_manifest([path]).desired.contacts["a@example.com"]
    assert contact.properties["since"] == "2026-07-01T09:30:00Z"


# ---- through the command line, and back through export --------------------------------

SPREADSHEET = (
    "\ufeff Email ;Name;Lists;Properties\r\n"
    'ann@example.com;Ann;news;"{""seats"": 1, ""since"": ""2026-07-01 09:30:00""}"\r\n'
    "bob@example.com;Bob;news:unsubscribed;\r\n"
)
SPREADSHEET_MANIFEST = MANIFEST + "contacts_from: {path: people.csv, timezone: Europe/Paris}\n"


def test_a_spreadsheet_csv_applies_exports_in_place_and_plans_empty(workdir: Path) -> None:
    (workdir / "audience.yaml").write_text(SPREADSHEET_MANIFEST, encoding="utf-8")
    (workdir / "people.csv").write_text(SPREADSHEET, encoding="utf-8", newline="")
    code, output = run("validate", "audience.yaml")
    assert code == 0, output
    code, output = run("apply", "--sandbox", "--auto-approve", "audience.yaml")
    assert code == 0, output
    assert "2026-07-01T07:30:00Z" in output

    code, output = run("export", "--sandbox", "-o", "audience.yaml")
    assert code == 0, output
    # the local time still means the live moment: the file is left as written
    assert (workdir / "people.csv").read_bytes().decode("utf-8") == SPREADSHEET

    with account() as live:
        live.rename("bob@example.com", "Bob Lee")
        live.add_contact("new@example.com", "New")
    code, output = run("export", "--sandbox", "-o", "audience.yaml")
    assert code == 0, output
    people = (workdir / "people.csv").read_bytes().decode("utf-8")
    assert people.splitlines() == [
        "\ufeff Email ;Name;Lists;Properties",
        'ann@example.com;Ann;news;"{""seats"": 1, ""since"": ""2026-07-01 09:30:00""}"',
        "bob@example.com;Bob Lee;news:unsubscribed;",
    ]
    code, output = run("plan", "--sandbox", "--detailed-exitcode", "audience.yaml")
    assert code == 0, output


def test_export_writes_utc_into_a_csv_without_timezone(workdir: Path) -> None:
    (workdir / "audience.yaml").write_text(SPREADSHEET_MANIFEST, encoding="utf-8")
    (workdir / "people.csv").write_text(SPREADSHEET, encoding="utf-8", newline="")
    code, output = run("apply", "--sandbox", "--auto-approve", "audience.yaml")
    assert code == 0, output
    (workdir / "audience.yaml").write_text(MANIFEST + "contacts_from: people.csv\n")
    code, output = run("validate", "audience.yaml")
    assert code == 1
    assert "people.csv:2: properties.since: '2026-07-01 09:30:00' has no time zone" in output

    code, output = run("export", "--sandbox", "-o", "audience.yaml")
    assert code == 0, output
    assert '""since"": ""2026-07-01T07:30:00Z""' in (workdir / "people.csv").read_text()
    code, output = run("plan", "--sandbox", "--detailed-exitcode", "audience.yaml")
    assert code == 0, output


def test_plan_refuses_a_local_time_before_reading_the_account(workdir: Path) -> None:
    (workdir / "audience.yaml").write_text(MANIFEST + "contacts_from: people.csv\n")
    (workdir / "people.csv").write_text(NAIVE, encoding="utf-8")
    code, output = run("plan", "--sandbox", "audience.yaml")
    assert code == 1
    assert issues_of(output) == [
        "people.csv:2: properties.since: '2026-07-01T09:30:00' has no time zone: write its "
        "offset (e.g. 2026-07-01T09:30:00Z or +01:00), or give the CSV its zone: "
        "contacts_from: {path: people.csv, timezone: Europe/Paris}"
    ]
    assert not (workdir / ".reconcile").exists()
