"""Bad input (issue #6 item 4): a corpus of malformed manifests and CSV files, each with the
exact error expected.

Every case in `tests/corpus/` is one manifest `<case>.yaml` (CSV cases add `<case>.csv`,
which the manifest names in `contacts_from`). For each, `reconcile validate` and
`reconcile plan` must exit 1 with an error naming the file, the line and the field, print
no traceback, leak no parser internals, and send no request to the provider (`plan` runs
against a served Mailjet emulator whose request log must stay empty). Inputs too big to
commit (10 MiB strings, a 201 MiB file, deep nesting, a billion-laughs alias bomb) are
generated into a temporary directory. Unusual but valid inputs (`ok_*`) must be accepted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from reconcile.cli import app
from reconcile.manifest.loader import load_manifest
from reconcile.providers.mailjet.emulator.app import MailjetEmulator, create_mailjet_emulator
from tests.support import served

CORPUS = Path(__file__).parent / "corpus"
MAX_OUTPUT = 20_000  # an error report is for people: it never echoes a 10 MiB value
# Parser and validator internals that must never reach the user.
INTERNALS = (
    "<unicode string>",
    "str-enum[",
    "Spec",  # MembershipSpec, PruneSpec, ...: the schema's class names
    "function-after",
    "[key]",
    "instance of",
    # the YAML reader's and Python's type names (issue #11 item 12)
    "ScalarInt",
    "HexInt",
    "HexCapsInt",
    "OctalInt",
    "BinaryInt",
    "ScalarFloat",
    "Commented",
    "TaggedScalar",
    "a dict",
    "a bytes",
    "got int",
    "got float",
    "got bool",
    "AttributeError",
    "TypeError",
    "KeyError",
    "ValueError",
)
HUGE = r"(?i)out of range|too (large|big)|64-bit|at most"
NOT_FINITE = r"(?i)finite|infinit|\binf\b|\bnan\b"
CONTROL = r"(?i)control character"
SURROGATE = r"contains a lone surrogate \('\\ud800'\)"
NESTING = r"(?i)nest|deep|depth"
LEADING_ZEROS = r"expected a string, got a number — quote it to keep leading zeros"
AS_WRITTEN = r"expected a string, got a number — quote it to keep it as written"

runner = CliRunner()


@dataclass(frozen=True)
class Bad:
    """One malformed input and the issue it must produce: `where:line: field: message`."""

    case: str
    line: int
    field: str  # "" when the problem is the file itself (syntax, encoding, CSV header)
    message: str  # a regular expression searched in the issue's text after the field
    csv: bool = False  # the issue is in <case>.csv rather than in the manifest

    @property
    def where(self) -> str:
        return f"{self.case}.csv" if self.csv else f"{self.case}.yaml"


C0 = "contacts[0]"
BAD: list[Bad] = [
    # --- YAML syntax -----------------------------------------------------------------
    Bad("syntax_unclosed_flow", 3, "", r"YAML syntax: .*flow mapping"),
    Bad("syntax_tab_indent", 3, "", r"YAML syntax: .*'\\t'"),
    Bad("syntax_duplicate_key", 5, "", r'YAML syntax: .*duplicate key "news"'),
    Bad("syntax_duplicate_property_value", 12, "", r'duplicate key "note"'),
    Bad("syntax_two_documents", 2, "", r"YAML syntax: .*single document"),
    # the quote opens on line 12; the end of the stream (line 14) is past the file's end
    Bad("syntax_unclosed_quote", 12, "", r"YAML syntax: .*quoted scalar"),
    Bad("syntax_bad_indent", 12, "", r"YAML syntax"),
    Bad("top_level_list", 1, "", r"must hold a mapping"),
    Bad("top_level_scalar", 1, "", r"must hold a mapping"),
    Bad("nul_byte", 3, "", r"(?i)character"),
    Bad("raw_control_char", 12, "", r"(?i)character"),
    # --- encodings -------------------------------------------------------------------
    Bad("non_utf8_latin1", 12, "", r"not valid UTF-8"),
    Bad("utf16", 1, "", r"not valid UTF-8"),
    # --- wrong types -----------------------------------------------------------------
    Bad("contacts_not_a_list", 2, "contacts", r"expected a list, got a mapping"),
    Bad("email_not_a_string", 3, f"{C0}.email", r"expected a string, got a number"),
    Bad("binary_tag_email", 3, f"{C0}.email", r"expected a string, got binary data"),
    Bad("name_not_a_string", 12, f"{C0}.name", r"expected a string, got a number$"),
    Bad("name_null", 12, f"{C0}.name", r"cannot be null"),
    Bad("excluded_not_bool", 12, f"{C0}.excluded_from_campaigns", r"true or false, got a string"),
    Bad("lists_not_a_list", 12, f"{C0}.lists", r"expected a list, got a string"),
    Bad(
        "resubscribe_migrated",
        12,
        f"{C0}.lists",
        r"news: resubscribe: true is replaced by opted_in_at: <when",
    ),
    Bad(
        "opt_in_not_a_time",
        12,
        f"{C0}.opted_in_at",
        r"expected an ISO 8601 datetime, got 'yesterday'",
    ),
    Bad(
        "opt_in_in_the_future",
        12,
        f"{C0}.lists.news.opted_in_at",
        r"2999-01-01T00:00:00Z is in the future",
    ),
    Bad("membership_bad_status", 12, f"{C0}.lists.news", r"'subscribed' or 'unsubscribed'"),
    Bad("membership_unknown_field", 12, f"{C0}.lists.news.consent", r"unknown field"),
    Bad("property_value_list", 12, f"{C0}.properties.note", r"expected (a )?str"),
    Bad("str_property_given_int", 12, f"{C0}.properties.note", r"got a number \(declared"),
    Bad("int_property_given_string", 12, f"{C0}.properties.seats", r"expected int, got a string"),
    Bad("int_property_given_fraction", 12, f"{C0}.properties.seats", r"expected int, got 1\.5"),
    Bad("bool_property_given_int", 12, f"{C0}.properties.vip", r"expected bool, got a number"),
    Bad("datetime_not_iso", 12, f"{C0}.properties.since", r"ISO 8601 datetime"),
    Bad("timestamp_month_13", 12, f"{C0}.properties.since", r"(?i)month|date"),
    Bad("timestamp_feb_30", 12, f"{C0}.properties.since", r"(?i)day|date"),
    Bad("timestamp_overflows_utc", 12, f"{C0}.properties.since", r"(?i)range|date"),
    Bad("contacts_from_not_a_string", 2, "contacts_from", r"expected a string, got a number"),
    Bad("merge_key_bad_field", 3, f"{C0}.nmae", r"unknown field"),
    Bad("omap_tag", 2, "lists.news.members", r"'additive' or 'exact', got 'all'"),
    Bad("set_tag", 2, "lists", r"expected a mapping, got a set"),
    # --- parser types never named (issue #11 item 12): what was written, and how to fix it
    Bad("str_property_given_leading_zeros", 12, f"{C0}.properties.note", LEADING_ZEROS),
    Bad("str_property_given_hex", 12, f"{C0}.properties.note", AS_WRITTEN),
    Bad("str_property_given_octal", 12, f"{C0}.properties.note", AS_WRITTEN),
    Bad("name_given_leading_zeros", 12, f"{C0}.name", LEADING_ZEROS),
    Bad("property_value_tagged", 12, f"{C0}.properties.note", r"got a tagged value"),
    Bad("datetime_given_bool", 12, f"{C0}.properties.since", r"datetime, got a boolean"),
    Bad("membership_status_hex", 12, f"{C0}.lists.news", r"'unsubscribed', got a number$"),
    Bad("prune_not_a_mapping", 2, "prune", r"expected a mapping, got a string"),
    Bad("list_spec_not_a_mapping", 3, "lists.news", r"expected a mapping, got a number"),
    Bad("merge_of_a_set", 1, "", r"YAML construct that cannot be read \(a tag or merge key"),
    # --- huge and non-finite values --------------------------------------------------
    Bad("huge_int", 12, f"{C0}.properties.seats", HUGE),
    Bad("float_inf", 12, f"{C0}.properties.score", NOT_FINITE),
    Bad("float_nan", 12, f"{C0}.properties.score", NOT_FINITE),
    Bad("float_overflow_literal", 12, f"{C0}.properties.score", NOT_FINITE),
    Bad("chunk_size_huge", 1, "provider.bulk_chunk_size", r"less than or equal to 10000"),
    Bad("rate_limit_zero", 1, "provider.requests_per_minute", r"greater than or equal to 1"),
    # --- control characters (a name is printed in plans, on terminals) ---------------
    Bad("escaped_control_char_name", 12, f"{C0}.name", CONTROL),
    # --- unknown and undeclared names ------------------------------------------------
    Bad("unknown_contact_field", 12, f"{C0}.nmae", r"unknown field \(did you mean 'name'\?\)"),
    Bad("unknown_top_level_field", 2, "contact", r"unknown field"),
    Bad("undeclared_list", 12, f"{C0}.lists", r"list 'newsletter' is not declared"),
    # rich must not turn ':x:' into an emoji: the message names the list as written
    Bad("undeclared_list_markup", 12, f"{C0}.lists", r"list ':x:' is not declared"),
    Bad("undeclared_property", 12, f"{C0}.properties.colour", r"'colour' is not declared"),
    # --- did you mean (issue #14 item 10) --------------------------------------------
    Bad("misspelled_list_name", 6, f"{C0}.lists", r"'newsleter' .*\(did you mean 'newsletter'\?\)"),
    Bad("list_name_differs_in_case", 6, f"{C0}.lists", r"'news' .*\(did you mean 'News'\?\)"),
    Bad(
        "misspelled_property_name",
        6,
        f"{C0}.properties.departement",
        r"not declared under properties: \(did you mean 'department'\?\)",
    ),
    Bad("misspelled_top_level_key", 2, "propertes", r"unknown field \(did you mean 'properties'"),
    Bad(
        "misspelled_provider_option",
        1,
        "provider.requests_per_minte",
        r"unknown field \(did you mean 'requests_per_minute'\?\)",
    ),
    Bad(
        "misspelled_contact_field",
        4,
        f"{C0}.exluded_from_campaigns",
        r"unknown field \(did you mean 'excluded_from_campaigns'\?\)",
    ),
    Bad("missing_email", 11, f"{C0}.email", r"Field required"),
    Bad("unknown_property_type", 3, "properties.seats.type", r"got 'integer'"),
    Bad("unknown_namespace", 3, "properties.seats.namespace", r"got 'global'"),
    Bad("unknown_members_policy", 9, "lists.news.members", r"got 'all'"),
    Bad("unknown_provider", 1, "provider", r"unknown provider 'sendgrid'; installed providers: "),
    Bad("provider_type_not_a_name", 1, "provider", r"needs type: the provider's name \("),
    Bad("provider_without_type", 1, "provider", r"needs type: the provider's name"),
    Bad("version_2", 1, "version", r"got 2"),
    Bad("no_provider", 1, "provider", r"no file declares the provider"),
    Bad(
        "contacts_from_missing_file",
        2,
        "contacts_from",
        r"nowhere\.csv does not exist",
    ),
    Bad("duplicate_email_uppercase", 4, "contacts[1].email", r"already defined at .*:3"),
    # ruamel records an alias at its anchor's position, so the duplicate is reported on
    # the anchor's line (3), with the field (contacts[1]) naming the aliased entry.
    Bad("alias_duplicate_contact", 3, "contacts[1].email", r"already defined at .*:3"),
    # --- provider capabilities (named like every other field) ------------------------
    Bad("mailjawn_unsubscribed_membership", 12, f"{C0}.lists.news", r"mailjawn cannot"),
    Bad("mailjawn_exact_list", 3, "lists.beta.members", r"mailjawn cannot"),
    Bad("mailjawn_replace", 3, "properties.seats", r"MailJawn keeps no property definitions"),
    Bad("mailjawn_unicode_email", 3, f"{C0}.email", r"defines no addresses beyond ASCII"),
    Bad("mailjawn_tag_not_a_slug", 3, "lists.Not A Slug", r"not a valid MailJawn tag slug"),
    # a prune policy's error is on that policy's own line, not on `prune:`
    Bad("mailjawn_prune_contacts_unsubscribe", 6, "prune.contacts.action", r"mailjawn cannot"),
    Bad("mailjawn_prune_lists_delete", 7, "prune.lists", r"'delete a list', which mailjawn"),
    Bad("mailjawn_prune_members_unsubscribe", 7, "prune.members", r"mailjawn cannot"),
    # --- Mailchimp: what its API refuses or loses, refused offline -------------------
    Bad("mailchimp_merge_tag_lowercase", 3, "properties.plan", r"not a Mailchimp merge tag.*PLAN"),
    Bad("mailchimp_merge_tag_too_long", 3, "properties.SUBSCRIPTN1", r"longer than 10 characters"),
    Bad("mailchimp_bool_property", 3, "properties.VIP", r"is bool, which Mailchimp merge fields"),
    Bad("mailchimp_contact_name", 4, f"{C0}.name", r"Mailchimp has no name field"),
    Bad("mailchimp_example_com_address", 3, f"{C0}.email", r"refuses addresses at reserved"),
    Bad("mailchimp_unsubscribed_membership", 6, f"{C0}.lists.news", r"mailchimp cannot do"),
    Bad(
        "mailchimp_lists_differ_in_case", 4, "lists.news", r"differs from list 'News' only in case"
    ),
    Bad(
        "mailchimp_datetime_time_of_day",
        6,
        f"{C0}.properties.TRIAL_ENDS",
        r"has a time of day, but a Mailchimp date field holds a date only",
    ),
    Bad("mailchimp_empty_string_value", 6, f"{C0}.properties.PLAN", r"empty value as no value"),
    Bad("mailchimp_without_audience", 1, "provider", r"audience: Field required"),
    # --- invalid emails --------------------------------------------------------------
    Bad("email_no_at", 3, f"{C0}.email", r"'alice\.example\.com' is not a valid email"),
    Bad("email_two_at", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_space_inside", 3, f"{C0}.email", r"'alice smith@example\.com' is not a valid"),
    Bad("email_leading_space", 3, f"{C0}.email", r"leading or trailing spaces"),
    Bad("email_trailing_dot", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_leading_dot_local", 3, f"{C0}.email", r"misplaced dot"),
    Bad("email_double_dot_local", 3, f"{C0}.email", r"misplaced dot"),
    Bad("email_no_dot_in_domain", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_unicode_domain", 3, f"{C0}.email", r"cannot be in a domain name \('♥'\)"),
    Bad("email_quoted_local_part", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_underscore_domain", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_hyphen_label_edge", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_local_part_65", 3, f"{C0}.email", r"local part longer than 64"),
    Bad("email_label_64", 3, f"{C0}.email", r"not a valid email"),
    Bad("email_longer_than_254", 3, f"{C0}.email", r"longer than 254 characters"),
    Bad("email_empty", 3, f"{C0}.email", r"'' is not a valid email"),
    # --- CSV -------------------------------------------------------------------------
    Bad("csv_unknown_column", 1, "", r"unknown column\(s\) \['colour'\]", csv=True),
    Bad("csv_no_email_column", 1, "", r"no email column", csv=True),
    Bad("csv_empty_file", 1, "", r"no email column", csv=True),
    Bad(
        "csv_ambiguous_delimiter",
        1,
        "",
        r"cannot tell whether columns are separated by commas or semicolons",
        csv=True,
    ),
    Bad("csv_misspelled_column", 1, "", r"\['Lsts'\] \(did you mean 'lists'\?\)", csv=True),
    Bad(
        "csv_naive_datetime",
        3,
        "properties.since",
        r"'2026-01-02 03:04:05' has no time zone: .*timezone: Europe/Paris",
        csv=True,
    ),
    Bad("csv_time_in_dst_gap", 2, "properties.since", r"does not exist in Europe/Paris", csv=True),
    Bad(
        "csv_unknown_timezone",
        4,
        "contacts_from.timezone",
        r"unknown time zone 'Europe/Pariss'.*\(did you mean 'Europe/Paris'\?\)",
    ),
    Bad("csv_duplicate_column", 1, "", r"(?i)duplicate|more than once|twice", csv=True),
    Bad("csv_bad_email", 3, "email", r"'bob\(at\)example\.com' is not a valid email", csv=True),
    Bad("csv_blank_email", 2, "email", r"'' is not a valid email", csv=True),
    Bad("csv_email_leading_space", 2, "email", r"leading or trailing spaces", csv=True),
    Bad("csv_duplicate_email_multiline", 4, "email", r"already defined at .*csv:2", csv=True),
    Bad("csv_bad_bool", 2, "excluded_from_campaigns", r"expected true or false", csv=True),
    Bad("csv_numeric_bool", 2, "excluded_from_campaigns", r"got '1'", csv=True),
    Bad("csv_properties_not_json", 2, "properties", r"not a JSON object", csv=True),
    Bad("csv_properties_array", 2, "properties", r"not a JSON object", csv=True),
    Bad("csv_string_for_int", 2, "properties.seats", r"expected int, got a string", csv=True),
    Bad("csv_nested_property", 2, "properties.seats", r"expected int", csv=True),
    Bad("csv_undeclared_property", 2, "properties.colour", r"not declared", csv=True),
    Bad("csv_nan", 2, "properties.score", NOT_FINITE, csv=True),
    Bad("csv_infinity", 2, "properties.score", NOT_FINITE, csv=True),
    Bad("csv_huge_int", 2, "properties.seats", HUGE, csv=True),
    Bad("csv_undeclared_list", 2, "lists", r"list 'newsletter' is not declared", csv=True),
    Bad("csv_bad_status", 2, "lists.news", r"'subscribed' or 'unsubscribed'", csv=True),
    Bad("csv_too_many_cells", 2, "", r"more cells than columns", csv=True),
    Bad("csv_unterminated_quote", 2, "", r"(?i)quote", csv=True),
    Bad("csv_nul_byte", 2, "", r"(?i)\bnul\b|control character", csv=True),
    Bad("csv_control_char_name", 2, "name", CONTROL, csv=True),
    Bad("csv_lone_surrogate_value", 2, "properties.dept", SURROGATE, csv=True),
    Bad("lone_surrogate_list_name", 2, "lists", SURROGATE),
    Bad("csv_non_utf8", 3, "", r"not valid UTF-8", csv=True),
]

# Unusual but valid: (contacts, memberships) the validation must report.
OK: dict[str, tuple[int, int]] = {
    "ok_unusual_emails": (10, 0),
    "ok_anchors_aliases": (4, 4),
    "ok_omap": (0, 0),
    "ok_csv_unusual": (3, 2),
    "ok_csv_spreadsheet": (2, 1),  # ` Email `, `;`, CRLF, a BOM, a timezone for local times
    "ok_reused_anchor": (1, 2),  # YAML lets an anchor be defined again: no warning either
}
UNUSUAL_EMAILS = [
    "o'brien@example.com",
    "user+tag@sub.example.co",
    "UPPER.CASE@EXAMPLE.COM",
    "alice@xn--bcher-kva.de",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    "l" * 64 + "@example.com",
    "a@b.co",
    "first.last@my-host.example",
    "x@1.2.3.4",
    "a@" + "d" * 63 + ".com",
]


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; an exception that escaped it is shown as its traceback."""
    result = runner.invoke(app, list(args))
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "".join(traceback.format_exception(result.exception))
    return result.exit_code, output


def issue_texts(output: str, where: str, line: int, field: str) -> list[str]:
    """The text after `where:line: field:` of every issue printed at that place."""
    prefix = f"{where}:{line}: {field}: " if field else f"{where}:{line}: "
    lines = (text.removeprefix("Error: ") for text in output.splitlines())
    return [text[len(prefix) :] for text in lines if text.startswith(prefix)]


def assert_reported(
    code: int, output: str, where: str, line: int, field: str, message: str
) -> None:
    assert "Traceback" not in output, output[-4000:]
    assert code == 1, f"exit {code}, expected 1:\n{output[:4000]}"
    assert len(output) < MAX_OUTPUT, f"{len(output)} characters of output:\n{output[:2000]}"
    leaked = [text for text in INTERNALS if text in output]
    assert not leaked, f"internals {leaked} in:\n{output}"
    assert output.startswith("Error: "), output
    found = issue_texts(output, where, line, field)
    named = f"{where}:{line}: {field}:" if field else f"{where}:{line}:"
    assert found, f"no issue at {named!r} in:\n{output}"
    assert any(re.search(message, text) for text in found), (
        f"no issue at {named!r} matches {message!r} in:\n{output}"
    )


def in_workdir(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Copy one case (its manifest and CSV) into tmp_path and work there."""
    for name in (f"{case}.yaml", f"{case}.csv"):
        if (CORPUS / name).exists():
            shutil.copyfile(CORPUS / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return f"{case}.yaml"


def test_the_corpus_is_complete_and_small() -> None:
    names = {path.stem for path in CORPUS.iterdir() if path.suffix == ".yaml"}
    expected = {bad.case for bad in BAD} | set(OK)
    assert names == expected, f"not in the tables: {names - expected}; no file: {expected - names}"
    assert len(BAD) >= 45
    csv_files = {path.stem for path in CORPUS.iterdir() if path.suffix == ".csv"}
    csv_cases = {bad.case for bad in BAD if bad.csv} | {"csv_unknown_timezone"}
    assert csv_files == csv_cases | {"ok_csv_unusual", "ok_csv_spreadsheet"}
    assert all(path.stat().st_size < 4096 for path in CORPUS.iterdir())


@pytest.mark.parametrize("bad", BAD, ids=[bad.case for bad in BAD])
def test_validate_names_file_line_and_field(
    bad: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = in_workdir(bad.case, tmp_path, monkeypatch)
    code, output = invoke("validate", manifest)
    assert_reported(code, output, bad.where, bad.line, bad.field, bad.message)


# --- plan sends nothing --------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    url: str
    emulator: MailjetEmulator

    def calls(self) -> list[dict[str, object]]:
        answer = httpx.get(f"{self.url}/_emulator/calls", timeout=10)
        answer.raise_for_status()
        calls: list[dict[str, object]] = answer.json()
        return calls


@pytest.fixture(scope="module")
def served_api() -> Iterator[Api]:
    emulator = create_mailjet_emulator()
    with served(emulator.app) as url:
        yield Api(url, emulator)


@pytest.fixture
def api(served_api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Both providers' URLs point at one emulator, which logs any request, known or not."""
    settings = served_api.emulator.settings
    for name, value in {
        "MAILJET_API_URL": served_api.url,
        "MAILJET_API_KEY": settings.api_key,
        "MAILJET_SECRET_KEY": settings.secret_key,
        "MAILJAWN_API_URL": served_api.url,
        "MAILJAWN_API_KEY": "mj_corpus_test_key",
        "MAILJAWN_PROJECT_ID": "00000000-0000-4000-8000-000000000000",
        "MAILCHIMP_API_URL": served_api.url,
        "MAILCHIMP_API_KEY": "0123456789abcdef0123456789abcdef-us1",
        "RECONCILE_RETRY_ATTEMPTS": "1",
        "RECONCILE_CONNECT_TIMEOUT": "2",
        "RECONCILE_READ_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(name, value)
    return served_api


@pytest.mark.parametrize("bad", BAD, ids=[bad.case for bad in BAD])
def test_plan_refuses_without_sending_a_request(
    bad: Bad, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = in_workdir(bad.case, tmp_path, monkeypatch)
    before = len(api.calls())
    code, output = invoke("plan", manifest)
    assert_reported(code, output, bad.where, bad.line, bad.field, bad.message)
    assert api.calls()[before:] == []


def test_the_request_log_sees_a_valid_plan(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control case: the same route does log requests, so an empty log means none."""
    manifest = in_workdir("ok_csv_unusual", tmp_path, monkeypatch)
    before = len(api.calls())
    code, output = invoke("plan", manifest)
    assert code == 0, output
    assert api.calls()[before:], "a valid plan read nothing from the emulator"


def test_plan_in_a_real_process_sends_nothing(api: Api, tmp_path: Path) -> None:
    for name in ("csv_bad_email.yaml", "csv_bad_email.csv"):
        shutil.copyfile(CORPUS / name, tmp_path / name)
    before = len(api.calls())
    done = subprocess.run(
        [sys.executable, "-m", "reconcile", "plan", "csv_bad_email.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )
    output = done.stdout + done.stderr
    assert_reported(
        done.returncode, output, "csv_bad_email.csv", 3, "email", r"is not a valid email"
    )
    assert api.calls()[before:] == []


# --- accepted: unusual but valid -----------------------------------------------------


@pytest.mark.parametrize("case", sorted(OK))
def test_unusual_but_valid_input_is_accepted(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = in_workdir(case, tmp_path, monkeypatch)
    code, output = invoke("validate", manifest)
    assert "Traceback" not in output, output
    assert code == 0, output
    assert "Warning" not in output, output
    contacts, memberships = OK[case]
    assert f" {contacts} contacts, {memberships} memberships (mailjet)." in output


def test_unusual_emails_are_kept_as_written() -> None:
    manifest = load_manifest([CORPUS / "ok_unusual_emails.yaml"])
    assert sorted(c.email for c in manifest.desired.contacts.values()) == sorted(UNUSUAL_EMAILS)
    csv_manifest = load_manifest([CORPUS / "ok_csv_unusual.yaml"])
    contacts = csv_manifest.desired.contacts
    assert contacts["o'brien@example.com"].fields["name"] == "O'Brien, Pat"
    assert contacts["upper@example.com"].email == "UPPER@EXAMPLE.COM"


# --- generated: too big to commit ----------------------------------------------------

TEN_MIB = 10 * 2**20
CSV_MANIFEST = "provider: mailjet\ncontacts_from: people.csv\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def ten_mib_name_yaml(directory: Path) -> None:
    body = "provider: mailjet\ncontacts:\n  - email: a@example.com\n    name: "
    _write(directory / "big.yaml", body + "x" * TEN_MIB + "\n")


def ten_mib_email_yaml(directory: Path) -> None:
    body = "provider: mailjet\ncontacts:\n  - email: "
    _write(directory / "big.yaml", body + "x" * TEN_MIB + "@example.com\n")


def ten_mib_name_csv(directory: Path) -> None:
    _write(directory / "big.yaml", CSV_MANIFEST)
    _write(directory / "people.csv", "email,name\na@example.com," + "x" * TEN_MIB + "\n")


def ten_mib_email_csv(directory: Path) -> None:
    _write(directory / "big.yaml", CSV_MANIFEST)
    _write(directory / "people.csv", "email,name\n" + "x" * TEN_MIB + "@example.com,A\n")


def cell_just_over_the_limit_csv(directory: Path) -> None:
    _write(directory / "big.yaml", CSV_MANIFEST)
    _write(directory / "people.csv", "email,name\na@example.com," + "x" * 1_000_001 + "\n")


def file_over_200_mib(directory: Path) -> None:
    with (directory / "big.yaml").open("wb") as sparse:
        sparse.truncate(201 * 2**20)


def deep_flow_sequence(directory: Path) -> None:
    _write(directory / "big.yaml", "provider: mailjet\nlists: " + "[" * 1000 + "]" * 1000 + "\n")


def deep_flow_mapping(directory: Path) -> None:
    _write(directory / "big.yaml", "provider: mailjet\nlists: " + "{a: " * 1000 + "}" * 1000 + "\n")


@dataclass(frozen=True)
class Generated:
    make: Callable[[Path], None]
    where: str
    line: int
    field: str
    message: str


GENERATED = [
    Generated(ten_mib_name_yaml, "big.yaml", 4, f"{C0}.name", r"(?i)longer than|too long"),
    Generated(ten_mib_email_yaml, "big.yaml", 3, f"{C0}.email", r"longer than 254 characters"),
    Generated(ten_mib_name_csv, "people.csv", 2, "name", r"(?i)longer than|too long"),
    Generated(ten_mib_email_csv, "people.csv", 2, "email", r"longer than 254 characters"),
    Generated(cell_just_over_the_limit_csv, "people.csv", 2, "name", r"longer than 1000000"),
    Generated(file_over_200_mib, "big.yaml", 1, "", r"larger than 200 MiB"),
    Generated(deep_flow_sequence, "big.yaml", 2, "", NESTING),
    Generated(deep_flow_mapping, "big.yaml", 2, "", NESTING),
]


@pytest.mark.parametrize("case", GENERATED, ids=[case.make.__name__ for case in GENERATED])
def test_generated_big_input(
    case: Generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.make(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, output = invoke("validate", "big.yaml")
    assert_reported(code, output, case.where, case.line, case.field, case.message)


# A billion laughs: 9 levels of 10 aliases each, 10**8 'lol's if anything expands them.
# It runs in a child process with 1 GiB of address space and a time limit, so that a
# loader which expands it fails this test instead of taking the machine down.
BOMB_LEVELS = 9
LIMITED_CLI = (
    "import resource, runpy, sys\n"
    "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (20, 20))\n"
    "sys.argv = ['reconcile', *sys.argv[1:]]\n"
    "runpy.run_module('reconcile', run_name='__main__')\n"
)


def billion_laughs() -> str:
    items = ["      - &a0 [lol]"]
    for level in range(1, BOMB_LEVELS):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        items.append(f"      - &a{level} [{aliases}]")
    return "provider: mailjet\nlists:\n  news:\n    members:\n" + "\n".join(items) + "\n"


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    _write(tmp_path / "bomb.yaml", billion_laughs())
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", LIMITED_CLI, "validate", "bomb.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("validate did not answer within 10 s: the aliases are being expanded")
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode == 1, output[:3000]
    assert len(output) < MAX_OUTPUT, f"{len(output)} characters of output"
    assert re.search(r"bomb\.yaml:\d+: ", output), output
    assert time.monotonic() - started < 10
