"""Bad answers from the provider: malformed JSON, missing fields, unexpected types, HTML
pages (as errors and as 200s from a proxy). The emulator answers a read with a damaged
copy of its real answer (or a page that is no answer at all).

During the read, every one ends `reconcile apply` with exit 1 and one line naming the
request and what was wrong, no traceback, and not a single write (a misread state is
never the basis of one). During apply, a damaged answer to a write or a job poll is
reported against that request, and a re-run converges; a create whose success could not
be read is looked up instead of failed.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconcile.sandbox.common import Fault
from tests.reliability.accounts import (
    ACCOUNTS,
    Account,
    Attempt,
    MailchimpAccount,
    MailJawnAccount,
    MailjetAccount,
    apply_once,
    cli,
    settle,
)
from tests.support import run, served

Damage = Callable[[Account], object]  # the body the emulator answers instead


def _mailjet_listing(path: str, email: str, change: Callable[[dict[str, Any]], None]) -> Damage:
    """The real answer of GET `path`, with `change` applied to the record of `email`."""

    def damage(account: Account) -> object:
        assert isinstance(account, MailjetAccount)
        params: dict[str, Any] = {"Limit": 1000}
        if path.endswith("/listrecipient"):
            news = account.real_answer("/v3/REST/contactslist", {"Name": "news"})
            params["ContactsList"] = news["Data"][0]["ID"]
        answer = account.real_answer(path, params)
        contact = account.emulator.contact(email)
        assert contact is not None
        key = "ID" if path.endswith("/contact") else "ContactID"
        record = next(r for r in answer["Data"] if r[key] == contact["ID"])
        change(record)
        return answer

    return damage


def _mailjawn_listing(email: str, change: Callable[[dict[str, Any]], None]) -> Damage:
    def damage(account: Account) -> object:
        assert isinstance(account, MailJawnAccount)
        answer = account.real_answer(account.subscribers_path, {"limit": 100})
        record = next(r for r in answer["subscribers"] if r["email"] == email)
        change(record)
        return answer

    return damage


def _mailchimp_members(email: str, change: Callable[[dict[str, Any]], None]) -> Damage:
    def damage(account: Account) -> object:
        assert isinstance(account, MailchimpAccount)
        answer = account.real_answer(f"{account.base}/members", {"count": 1000})
        record = next(r for r in answer["members"] if r["email_address"] == email)
        change(record)
        return answer

    return damage


def _mailchimp_collection(
    name: str, key: str, change: Callable[[list[dict[str, Any]]], None]
) -> Damage:
    """The real answer of GET <audience>/`name`, its `key` items changed by `change`."""

    def damage(account: Account) -> object:
        assert isinstance(account, MailchimpAccount)
        answer = account.real_answer(f"{account.base}/{name}", {"count": 1000})
        change(answer[key])
        return answer

    return damage


def _first(change: Callable[[dict[str, Any]], None]) -> Callable[[list[dict[str, Any]]], None]:
    return lambda items: change(items[0])


def _set(**values: object) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        record.update(copy.deepcopy(values))

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        del record[name]

    return change


def _fixed(body: object) -> Damage:
    return lambda _: body


@dataclass(frozen=True)
class BadRead:
    name: str
    provider: str
    path: str  # the request answered badly; "{subscribers}" is MailJawn's collection
    damage: Damage
    says: str  # what the error must say about it (a regular expression)
    status: int = 200
    count: int = 1  # more than one for answers worth retrying (5xx pages)


HTML_PAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>"
PORTAL = "<html><body>Please sign in to use this network</body></html>"
JET = "/v3/REST"
BAD_READS = [
    BadRead("not-json", "mailjet", f"{JET}/contact", _fixed('{"Count": 1, "Data": [{'), "not JSON"),
    BadRead("html-200", "mailjet", f"{JET}/contactmetadata", _fixed(PORTAL), "not JSON"),
    BadRead(
        "html-5xx-page",
        "mailjet",
        f"{JET}/contactslist",
        _fixed(HTML_PAGE),
        r"answered 503: non-JSON error body \(text/html",
        status=503,
        count=20,
    ),
    BadRead("no-data", "mailjet", f"{JET}/contactslist", _fixed({"Count": 0}), "no Data list"),
    BadRead(
        "data-not-a-list",
        "mailjet",
        f"{JET}/contactslist",
        _fixed({"Count": 1, "Data": {"ID": 1, "Name": "news"}, "Total": 1}),
        "no Data list",
    ),
    BadRead(
        "record-not-an-object",
        "mailjet",
        f"{JET}/contact",
        _fixed({"Count": 1, "Data": ["old2@example.com"], "Total": 1}),
        "expected an object in the answer, got str",
    ),
    BadRead(
        "contact-without-id",
        "mailjet",
        f"{JET}/contact",
        _mailjet_listing(f"{JET}/contact", "old2@example.com", _drop("ID")),
        "ID=None, expected int",
    ),
    BadRead(
        "contact-without-name",
        "mailjet",
        f"{JET}/contact",
        _mailjet_listing(f"{JET}/contact", "mover@example.com", _drop("Name")),
        "mover@example.com has no Name",
    ),
    BadRead(
        "contact-name-not-a-string",
        "mailjet",
        f"{JET}/contact",
        _mailjet_listing(f"{JET}/contact", "mover@example.com", _set(Name=5)),
        "mover@example.com has Name=5, expected a string",
    ),
    BadRead(
        "excluded-as-string",
        "mailjet",
        f"{JET}/contact",
        _mailjet_listing(f"{JET}/contact", "old0@example.com", _set(IsExcludedFromCampaigns="0")),
        "old0@example.com has IsExcludedFromCampaigns='0'",
    ),
    BadRead(
        "contact-data-not-a-list",
        "mailjet",
        f"{JET}/contactdata",
        _mailjet_listing(f"{JET}/contactdata", "old3@example.com", _set(Data="seats=3")),
        "Data='seats=3', expected list",
    ),
    BadRead(
        "unsubscribed-as-string",
        "mailjet",
        f"{JET}/listrecipient",
        _mailjet_listing(f"{JET}/listrecipient", "gone@example.com", _set(IsUnsubscribed="true")),
        "IsUnsubscribed='true', expected bool",
    ),
    BadRead(
        "recipient-without-contact",
        "mailjet",
        f"{JET}/listrecipient",
        _mailjet_listing(f"{JET}/listrecipient", "gone@example.com", _drop("ContactID")),
        "ContactID=None, expected int",
    ),
    BadRead(
        "unknown-datatype",
        "mailjet",
        f"{JET}/contactmetadata",
        _fixed({"Count": 1, "Data": [{"ID": 1, "Name": "tier", "Datatype": "bigint"}]}),
        "Datatype 'bigint'",
    ),
    BadRead(
        "list-id-as-string",
        "mailjet",
        f"{JET}/contactslist",
        _fixed({"Count": 1, "Data": [{"ID": "7", "Name": "news", "IsDeleted": False}]}),
        "ID='7', expected int",
    ),
    BadRead("not-json", "mailjawn", "{subscribers}", _fixed('{"subscribers": ['), "not JSON"),
    BadRead("html-200", "mailjawn", "{subscribers}", _fixed(PORTAL), "not JSON"),
    BadRead(
        "html-5xx-page",
        "mailjawn",
        "{subscribers}",
        _fixed(HTML_PAGE),
        r"answered 502: non-JSON error body \(text/html",
        status=502,
        count=20,
    ),
    BadRead(
        "no-total",
        "mailjawn",
        "{subscribers}",
        _fixed({"subscribers": []}),
        "no 'subscribers' list and integer 'total'",
    ),
    BadRead(
        "subscribers-not-a-list",
        "mailjawn",
        "{subscribers}",
        _fixed({"subscribers": {}, "total": 0}),
        "no 'subscribers' list",
    ),
    BadRead(
        "subscriber-without-status",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old2@example.com", _drop("status")),
        "status=None, expected a string",
    ),
    BadRead(
        "unknown-status",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old2@example.com", _set(status="paused")),
        "old2@example.com has status 'paused'",
    ),
    BadRead(
        "subscriber-without-id",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old2@example.com", _drop("id")),
        "id=None, expected a string",
    ),
    BadRead(
        "name-not-a-string",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("mover@example.com", _set(name=5)),
        "mover@example.com has name=5",
    ),
    BadRead(
        "tags-as-string",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old3@example.com", _set(tags="news")),
        "old3@example.com has tags='news'",
    ),
    BadRead(
        "tag-without-slug",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old3@example.com", _set(tags=[{"name": "news"}])),
        "tag without a slug",
    ),
    BadRead(
        "custom-fields-as-list",
        "mailjawn",
        "{subscribers}",
        _mailjawn_listing("old4@example.com", _set(custom_fields=[["seats", 4]])),
        "custom_fields=\\[\\['seats', 4\\]\\], expected an object",
    ),
]


CHIMP = f"/3.0/lists/{MailchimpAccount.audience}"
MC_OLD3 = "old3@acme-widgets.io"
BAD_READS += [
    BadRead("not-json", "mailchimp", f"{CHIMP}/members", _fixed('{"members": [{'), "not JSON"),
    BadRead("html-200", "mailchimp", f"{CHIMP}/merge-fields", _fixed(PORTAL), "not JSON"),
    BadRead(
        "html-5xx-page",
        "mailchimp",
        f"{CHIMP}/segments",
        _fixed(HTML_PAGE),
        r"answered 503: non-JSON error body \(text/html",
        status=503,
        count=20,
    ),
    BadRead(
        "no-total",
        "mailchimp",
        f"{CHIMP}/members",
        _fixed({"members": []}),
        "no 'members' list and integer 'total_items'",
    ),
    BadRead(
        "members-not-a-list",
        "mailchimp",
        f"{CHIMP}/members",
        _fixed({"members": {}, "total_items": 0}),
        "no 'members' list",
    ),
    BadRead(
        "audience-without-name",
        "mailchimp",
        CHIMP,
        _fixed({"id": MailchimpAccount.audience}),
        "expected an audience with an id and a name",
    ),
    BadRead(
        "member-without-email",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _drop("email_address")),
        "has no email_address",
    ),
    BadRead(
        "unknown-status",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(status="paused")),
        f"member {MC_OLD3} has status 'paused'",
    ),
    BadRead(
        "merge-fields-as-list",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(merge_fields=[["SEATS", 3]])),
        "expected an object",
    ),
    BadRead(
        "number-field-not-a-number",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(merge_fields={"SEATS": "lots"})),
        f"member {MC_OLD3} has SEATS='lots', expected a number",
    ),
    BadRead(
        "tags-as-string",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(tags="news")),
        f"member {MC_OLD3} has tags='news', expected a list",
    ),
    BadRead(
        "tag-without-name",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(tags=[{"id": 1}])),
        "a tag without a name",
    ),
    BadRead(
        "tags-count-as-string",
        "mailchimp",
        f"{CHIMP}/members",
        _mailchimp_members(MC_OLD3, _set(tags_count="2")),
        "tags_count='2', expected an integer",
    ),
    BadRead(
        "merge-field-without-id",
        "mailchimp",
        f"{CHIMP}/merge-fields",
        _mailchimp_collection("merge-fields", "merge_fields", _first(_drop("merge_id"))),
        "has no integer merge_id, tag and type",
    ),
    BadRead(
        "segment-id-as-string",
        "mailchimp",
        f"{CHIMP}/segments",
        _mailchimp_collection("segments", "segments", _first(_set(id="4788001"))),
        "has no integer id",
    ),
]


def _path(account: Account, path: str) -> str:
    if isinstance(account, MailJawnAccount):
        return path.format(subscribers=account.subscribers_path)
    return path


@pytest.mark.parametrize("bad", BAD_READS, ids=[f"{b.provider}-{b.name}" for b in BAD_READS])
def test_bad_answer_to_a_read_stops_with_one_line_and_writes_nothing(
    tmp_path: Path, bad: BadRead
) -> None:
    account = ACCOUNTS[bad.provider]()
    manifest = str(account.write_manifest(tmp_path))
    path = _path(account, bad.path)
    body = bad.damage(account)
    before = account.snapshot()[0]
    fault = Fault(status=bad.status, body=body, method="GET", path=path, count=bad.count)
    account.control.inject(fault)

    with served(account.app) as url:
        code, output = cli("apply", "--auto-approve", manifest, env=account.env(url))
    if isinstance(account, MailchimpAccount):
        # A failed Mailchimp read leaves its sibling requests running, their sockets found
        # by a later garbage collection: collect them here. The defect itself is
        # test_mailchimp_quirks.py::test_a_failed_read_leaves_no_request_running.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    assert fault.count < bad.count, "the damaged answer was never given"
    assert code == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert errors[0].startswith(f"Error: GET {path}"), output
    assert re.search(bad.says, errors[0]), output
    assert account.writes() == []
    account.assert_untouched(before)


# ---- damaged answers during apply ---------------------------------------------------------


@dataclass(frozen=True)
class BadWriteAnswer:
    name: str
    provider: str
    fault: Callable[[Account], Fault]
    completes: bool  # the first run carries everything out despite the damaged answer
    says: str = ""  # what the report says about it, when it does not complete
    before: Callable[[Account], None] = lambda _: None


def _jobs(account: Account) -> str:
    return f"{JET}/contact/managemanycontacts"


def _fail_new2_in_a_job(account: Account) -> None:
    assert isinstance(account, MailjetAccount)
    account.emulator.fail_in_jobs(["new2@example.com"])


BAD_WRITE_ANSWERS = [
    BadWriteAnswer(
        "job-status-without-status",
        "mailjet",
        lambda a: Fault(
            status=200,
            body={"Count": 1, "Data": [{"JobID": 1, "Count": 7}], "Total": 1},
            method="GET",
            path_contains="/managemanycontacts/",
            count=2,
        ),
        completes=False,
        says=r"GET /v3/REST/contact/managemanycontacts/\d+: bulk job \d+: answer has no Status",
    ),
    BadWriteAnswer(
        "job-answer-without-job-id",
        "mailjet",
        lambda a: Fault(
            kind="garble",
            status=201,
            body={"Count": 1, "Data": [{}], "Total": 1},
            method="POST",
            path=_jobs(a),
            count=2,
        ),
        completes=False,
        says="POST /v3/REST/contact/managemanycontacts: bulk job answer has no JobID",
    ),
    BadWriteAnswer(
        "job-error-file-is-a-page",
        "mailjet",
        lambda a: Fault(status=200, body=PORTAL, method="GET", path_contains="/files/"),
        completes=False,
        says=r"bulk job \d+ reported errors",
        before=_fail_new2_in_a_job,
    ),
    BadWriteAnswer(
        "definition-created-answer-unreadable",
        "mailjet",
        lambda a: Fault(
            kind="garble", status=201, body=PORTAL, method="POST", path=f"{JET}/contactmetadata"
        ),
        completes=True,
    ),
    BadWriteAnswer(
        "contact-created-answer-unreadable",
        "mailjet",
        lambda a: Fault(kind="garble", status=201, body="{", method="POST", path=f"{JET}/contact"),
        completes=True,
    ),
    BadWriteAnswer(
        "contact-created-answer-without-id",
        "mailjet",
        lambda a: Fault(
            kind="garble",
            status=201,
            body={"Count": 1, "Data": [{"Email": "solo@example.com"}], "Total": 1},
            method="POST",
            path=f"{JET}/contact",
        ),
        completes=True,
    ),
    BadWriteAnswer(
        "contact-create-answered-empty-nothing-landed",
        "mailjet",
        lambda a: Fault(
            status=201,
            body={"Count": 0, "Data": [], "Total": 0},
            method="POST",
            path=f"{JET}/contact",
        ),
        completes=False,
        says=r"POST /v3/REST/contact: answered None instead of the created record",
    ),
    BadWriteAnswer(
        "import-answer-unreadable",
        "mailjawn",
        lambda a: Fault(
            kind="garble", status=200, body=PORTAL, method="POST", path=_path(a, "{subscribers}")
        ),
        completes=True,
    ),
    BadWriteAnswer(
        "import-answer-wrong-types",
        "mailjawn",
        lambda a: Fault(
            kind="garble",
            status=200,
            body={"imported": "all", "skipped": None, "failed": 0, "errors": {}},
            method="POST",
            path=_path(a, "{subscribers}"),
        ),
        completes=True,
    ),
    BadWriteAnswer(
        "patch-answer-unreadable",
        "mailjawn",
        lambda a: Fault(kind="garble", status=200, body=PORTAL, method="PATCH"),
        completes=False,
        says=r"PATCH /api/v1/projects/\S+/subscribers/\S+/ answered 200: .*not JSON",
    ),
    BadWriteAnswer(
        "identify-answer-unreadable",
        "mailjawn",
        lambda a: Fault(
            kind="garble", status=200, body="{", method="POST", path_contains="/identify/"
        ),
        completes=False,
        says=r"POST /api/v1/projects/\S+/subscribers/identify/ answered 200: .*not JSON",
    ),
]


def _new2_throttled(account: Account) -> None:
    assert isinstance(account, MailchimpAccount)
    account.emulator.settings.throttled_addresses = frozenset({account.email("new2")})


def _chimp_batch(**fault: Any) -> Callable[[Account], Fault]:
    """A fault on the first batch subscribe (the new members)."""
    return lambda a: Fault(**{"method": "POST", "path": CHIMP, **fault})


BAD_WRITE_ANSWERS += [
    BadWriteAnswer(
        "batch-subscribe-answer-unreadable",
        "mailchimp",
        _chimp_batch(kind="garble", status=200, body=PORTAL),
        completes=False,
        says=rf"POST {CHIMP} answered 200: .*not JSON",
    ),
    BadWriteAnswer(
        "batch-subscribe-answer-not-an-object",
        "mailchimp",
        _chimp_batch(kind="garble", status=200, body=[]),
        completes=False,
        says=r"batch subscribe answered \[\]; run plan again",
    ),
    BadWriteAnswer(
        "batch-subscribe-answer-mentions-nobody",
        "mailchimp",
        _chimp_batch(
            kind="garble",
            status=200,
            body={"new_members": [], "updated_members": [], "errors": [], "error_count": 0},
        ),
        completes=False,
        says=rf"POST {CHIMP}: the batch answer does not mention this member",
    ),
    BadWriteAnswer(
        "segment-batch-answer-unreadable",
        "mailchimp",
        lambda a: Fault(
            kind="garble", status=200, body="{", method="POST", path_contains="/segments/"
        ),
        completes=False,
        says=rf"POST {CHIMP}/segments/\d+ answered 200: .*not JSON",
    ),
    BadWriteAnswer(
        "merge-field-created-answer-unreadable",
        "mailchimp",
        lambda a: Fault(
            kind="garble", status=200, body=PORTAL, method="POST", path=f"{CHIMP}/merge-fields"
        ),
        completes=True,  # as Mailjet's: a create whose success could not be read is looked up
    ),
    BadWriteAnswer(
        "tag-created-answer-unreadable",
        "mailchimp",
        lambda a: Fault(
            kind="garble", status=200, body=PORTAL, method="POST", path=f"{CHIMP}/segments"
        ),
        completes=True,
    ),
    BadWriteAnswer(
        "batch-subscribe-per-member-error",
        "mailchimp",
        _chimp_batch(kind="latency", seconds=0.0),
        completes=False,
        says=r"new2@acme-widgets\.io has signed up to a lot of lists very recently",
        before=_new2_throttled,
    ),
]


async def _bounded(account: Account, directory: Path) -> Attempt:
    """One plan-and-apply that must end within seconds (a misread job must not be polled
    for an hour)."""
    manifest = account.manifest(directory)
    return await asyncio.wait_for(apply_once(account, manifest, account.provider()), 20)


@pytest.mark.parametrize(
    "bad", BAD_WRITE_ANSWERS, ids=[f"{b.provider}-{b.name}" for b in BAD_WRITE_ANSWERS]
)
def test_bad_answer_to_a_write_is_reported_and_a_rerun_converges(
    tmp_path: Path, bad: BadWriteAnswer
) -> None:
    account = ACCOUNTS[bad.provider]()
    bad.before(account)
    fault = bad.fault(account)
    count = fault.count
    account.control.inject(fault)

    first = run(_bounded(account, tmp_path))

    assert fault.count < count, "the damaged answer was never given"
    assert first.completed is bad.completes, first.problems()
    if not bad.completes:
        assert any(re.search(bad.says, problem) for problem in first.problems()), first.problems()
    settle(account, account.manifest(tmp_path), first, max_reruns=1)
    account.assert_converged()
