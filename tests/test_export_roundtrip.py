"""Export round-trips in every form: a file (new or updated), a directory split into
contacts files (re-exported over an earlier export), a manifest whose contacts live in a
CSV. Whatever the account holds, the export validates and plans to no changes; what the
loader refuses is left out with a warning naming it. The account is built through the
Mailjet emulator's HTTP API and read by the real CLI (--sandbox)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from reconcile.cli import app
from reconcile.manifest.export import MARKER, SCHEMA_MODELINE
from reconcile.manifest.loader import load_manifest
from reconcile.sandbox.common import EmulatorTransport, load_json_state, save_json_state
from reconcile.sandbox.runtime import state_file
from tests.support import create_emulator

EXAMPLES = Path(__file__).parent.parent / "examples"
REST = "/v3/REST"
runner = CliRunner()


def reconcile(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_plans_empty(*paths: str) -> None:
    validated = reconcile("validate", *paths)
    assert validated.exit_code == 0, validated.output
    planned = reconcile("plan", "--sandbox", "--detailed-exitcode", *paths)
    assert planned.exit_code == 0, planned.output


class Account:
    """The sandbox's Mailjet account (.reconcile/sandbox/ under the current directory),
    changed through the emulator's HTTP API: what it refuses is simply not there."""

    def __init__(self) -> None:
        self.emulator, credentials = create_emulator("mailjet", load_json_state(self.path()))
        self.auth = (credentials["api_key"], credentials["secret_key"])
        listed = self.request("GET", f"{REST}/contactslist?Limit=1000")
        self.lists = {item["Name"]: item["ID"] for item in listed or ()}

    @staticmethod
    def path() -> Path:
        return state_file("mailjet")

    def save(self) -> None:
        save_json_state(self.path(), self.emulator.dump_state())

    def request(self, method: str, path: str, body: Any = None) -> list[dict[str, Any]] | None:
        """The answer's Data; None when the emulator refused."""

        async def send() -> httpx.Response:
            transport = EmulatorTransport(app=self.emulator.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://mailjet.test", auth=self.auth
            ) as client:
                return await client.request(method, path, json=body)

        answer = asyncio.run(send())
        if answer.status_code >= 300:
            return None
        data: list[dict[str, Any]] = answer.json().get("Data", []) if answer.content else []
        return data

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
        """The first record of the answer; None when the emulator refused or sent none."""
        answer = self.request(method, path, body)
        return answer[0] if answer else None

    def define(self, name: str, datatype: str = "str") -> bool:
        body = {"Name": name, "Datatype": datatype}
        return self.call("POST", f"{REST}/contactmetadata", body) is not None

    def add_list(self, name: str) -> None:
        made = self.call("POST", f"{REST}/contactslist", {"Name": name})
        if made is not None:
            self.lists[name] = made["ID"]

    def add_contact(
        self,
        email: str,
        name: str = "",
        *,
        excluded: bool = False,
        values: dict[str, Any] | None = None,
        lists: dict[str, bool] | None = None,
    ) -> int | None:
        body = {"Email": email, "Name": name, "IsExcludedFromCampaigns": excluded}
        made = self.call("POST", f"{REST}/contact", body)
        if made is None:
            return None
        contact_id: int = made["ID"]
        for prop, value in (values or {}).items():
            data = {"Data": [{"Name": prop, "Value": value}]}
            self.call("PUT", f"{REST}/contactdata/{contact_id}", data)
        for list_name, unsubscribed in (lists or {}).items():
            body = {"ContactID": contact_id, "ListID": self.lists[list_name]}
            self.call("POST", f"{REST}/listrecipient", {**body, "IsUnsubscribed": unsubscribed})
        return contact_id

    def id_of(self, email: str) -> int:
        found = self.call("GET", f"{REST}/contact/{email}")
        assert found is not None, email
        return int(found["ID"])

    def rename(self, email: str, name: str) -> None:
        renamed = self.call("PUT", f"{REST}/contact/{self.id_of(email)}", {"Name": name})
        assert renamed is not None, email

    def erase(self, email: str) -> None:
        assert self.request("DELETE", f"/v4/contacts/{self.id_of(email)}") is not None


@contextmanager
def account() -> Iterator[Account]:
    live = Account()
    yield live
    live.save()


def emails_in(path: Path) -> list[str]:
    """Every contact the manifest at `path` declares, as the loader reads it."""
    return sorted(c.email for c in load_manifest([path]).desired.contacts.values())


def seed_people(count: int) -> None:
    with account() as live:
        live.define("seats", "int")
        live.add_list("news")
        for number in range(count):
            email = f"p{number:02d}@example.com"
            live.add_contact(email, f"P {number}", values={"seats": number}, lists={"news": False})


# ---- (a) re-exporting into a directory ---------------------------------------------------


def test_re_export_into_a_directory_leaves_exactly_the_live_account(workdir: Path) -> None:
    seed_people(7)
    first = reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "2")
    assert first.exit_code == 0, first.output
    split = workdir / "split"
    assert sorted(p.name for p in split.iterdir())[-1] == "contacts-0004.yaml"
    assert all(MARKER in (split / f"contacts-000{n}.yaml").read_text() for n in (1, 2, 3, 4))

    with account() as live:  # fewer contacts: every later one moves to an earlier file
        for gone in ("p00@example.com", "p03@example.com", "p04@example.com"):
            live.erase(gone)
    again = reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "2")
    assert again.exit_code == 0, again.output
    names = sorted(p.name for p in split.iterdir())
    assert names == ["audience.yaml", "contacts-0001.yaml", "contacts-0002.yaml"]
    assert emails_in(split) == ["p01@example.com", "p02@example.com"] + [
        f"p0{n}@example.com" for n in (5, 6)
    ]
    assert_plans_empty("split")

    with account() as live:  # more contacts: more files
        for number in range(10, 15):
            live.add_contact(f"p{number}@example.com", lists={"news": True})
    assert (
        reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "2").exit_code == 0
    )
    assert len(list(split.glob("contacts-*.yaml"))) == 5
    assert len(emails_in(split)) == 9
    assert_plans_empty("split")


def test_re_export_into_a_directory_keeps_audience_comments_and_entry_edits(
    workdir: Path,
) -> None:
    seed_people(4)
    assert (
        reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "3").exit_code == 0
    )
    audience = workdir / "split" / "audience.yaml"
    audience.write_text(
        audience.read_text().replace("  news: {}", "  news: {}  # the monthly letter")
    )
    first = workdir / "split" / "contacts-0001.yaml"
    first.write_text(
        first.read_text().replace(
            "  - email: p01@example.com",
            "  - email: P01@example.com\n    opted_in_at: 2026-01-02T03:04:05Z",
        )
    )
    opt_in = "news: {status: subscribed, opted_in_at: 2026-01-02T03:04:05Z}"
    first.write_text(
        first.read_text().replace(
            "seats: 2\n    lists:\n      - news", f"seats: 2\n    lists: {{{opt_in}}}"
        )
    )
    with account() as live:
        live.rename("p02@example.com", "Renamed")
        live.erase("p00@example.com")

    again = reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "3")

    assert again.exit_code == 0, again.output
    assert "news: {}  # the monthly letter" in audience.read_text()
    text = first.read_text()
    assert "- email: P01@example.com\n    opted_in_at: '2026-01-02T03:04:05Z'\n" in text
    assert "name: Renamed" in text
    assert "opted_in_at: '2026-01-02T03:04:05Z'" in text.split("p02@example.com")[1]
    assert "p00@" not in text
    assert_plans_empty("split")


@pytest.mark.parametrize("stranger", ["notes.yaml", "contacts-0002.yaml", "extra.yml"])
def test_re_export_refuses_files_it_did_not_write(workdir: Path, stranger: str) -> None:
    seed_people(3)
    assert (
        reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "2").exit_code == 0
    )
    split = workdir / "split"
    (split / stranger).write_text("contacts:\n  - email: mine@example.com\n")
    with account() as live:
        live.erase("p01@example.com")
    before = {p.name: p.read_bytes() for p in split.iterdir()}

    refused = reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "2")

    assert refused.exit_code == 1
    assert f"{Path('split', stranger)} was not written by reconcile export" in refused.stderr
    assert {p.name: p.read_bytes() for p in split.iterdir()} == before  # nothing written


# ---- (b) contacts from a CSV stay in the CSV ---------------------------------------------

CSV_MANIFEST = """\
# the team's audience
provider: mailjet
properties:
  seats: {type: int}
lists:
  news: {}
contacts_from: people.csv
contacts:
  - email: yaml@example.com  # kept here
    name: In YAML
"""
PEOPLE = (
    "email,name,lists,properties\n"
    'ann@example.com,Ann,news,"{""seats"": 1}"\n'
    "bob@example.com,Bob,news:unsubscribed,\n"
    "cy@example.com,,,\n"
)


def test_export_over_a_manifest_with_csv_contacts_updates_the_csv(workdir: Path) -> None:
    (workdir / "audience.yaml").write_text(CSV_MANIFEST)
    (workdir / "people.csv").write_text(PEOPLE)
    applied = reconcile("apply", "--sandbox", "--auto-approve", "audience.yaml")
    assert applied.exit_code == 0, applied.output

    unchanged = reconcile("export", "--sandbox", "-o", "audience.yaml")
    assert unchanged.exit_code == 0, unchanged.output
    assert (workdir / "people.csv").read_text() == PEOPLE
    assert (workdir / "audience.yaml").read_text() == f"# {SCHEMA_MODELINE}\n{CSV_MANIFEST}"

    with account() as live:
        live.rename("ann@example.com", "Ann Lee")
        live.erase("cy@example.com")
        live.add_contact("new@example.com", "New")
    changed = reconcile("export", "--sandbox", "-o", "audience.yaml")

    assert changed.exit_code == 0, changed.output
    people = (workdir / "people.csv").read_text()
    assert people.splitlines() == [
        "email,name,lists,properties",
        'ann@example.com,Ann Lee,news,"{""seats"": 1}"',
        "bob@example.com,Bob,news:unsubscribed,",
    ]
    manifest = (workdir / "audience.yaml").read_text()
    assert "- email: yaml@example.com  # kept here" in manifest
    assert "new@example.com" in manifest
    assert "ann@" not in manifest
    assert_plans_empty("audience.yaml")


@pytest.mark.parametrize(
    ("declared", "kept"),
    [
        ("{type: mailjet, requests_per_minute: 150}", "requests_per_minute: 150"),
        ("{type: mailjawn, writes_per_minute: 10}", "provider: mailjet"),
    ],
)
def test_export_over_a_manifest_keeps_provider_options_only_for_its_provider(
    workdir: Path, declared: str, kept: str
) -> None:
    seed_people(2)
    (workdir / "audience.yaml").write_text(f"provider: {declared}\nlists: {{}}\n")
    exported = reconcile("export", "--sandbox", "--provider", "mailjet", "-o", "audience.yaml")
    assert exported.exit_code == 0, exported.output
    manifest = (workdir / "audience.yaml").read_text()
    assert kept in manifest
    assert "mailjawn" not in manifest  # a file pointed at another account's provider
    assert_plans_empty("audience.yaml")


# ---- (c) never write what the loader refuses ---------------------------------------------


def test_internationalised_addresses_export_and_plan_to_no_changes(workdir: Path) -> None:
    with account() as live:
        live.add_list("news")
        for email in ("user@bücher.example", "ÀLICE@example.com", "用户@例子.广告"):
            assert live.add_contact(email, "Ünï", lists={"news": False}) is not None

    exported = reconcile("export", "--sandbox", "-o", "live.yaml")

    assert exported.exit_code == 0, exported.output
    assert "Warning" not in exported.stderr
    assert emails_in(workdir / "live.yaml") == sorted(
        ["user@bücher.example", "ÀLICE@example.com", "用户@例子.广告"]
    )
    assert_plans_empty("live.yaml")


def test_what_the_loader_refuses_is_left_out_with_a_warning(workdir: Path) -> None:
    with account() as live:
        live.define("note")
        live.define("big", "int")
        assert live.add_contact('"quoted"@example.com') is not None
        assert live.add_contact("a..b@example.com") is not None
        values = {"note": "bell\x07", "big": 2**70}
        assert live.add_contact("ok@example.com", "tab\x01name", values=values) is not None
        assert live.add_contact("fine@example.com", "Fine", values={"note": "x" * 10_001})

    exported = reconcile("export", "--sandbox", "-o", "live.yaml")

    assert exported.exit_code == 0, exported.output
    warned = exported.stderr
    assert "contact '\"quoted\"@example.com' not exported" in warned
    assert "contact 'a..b@example.com' not exported" in warned
    assert "contact ok@example.com: name not exported: it contains a control character" in warned
    assert "contact ok@example.com: property 'note' not exported" in warned
    assert "contact ok@example.com: property 'big' not exported" in warned
    assert "contact fine@example.com: property 'note' not exported" in warned
    assert emails_in(workdir / "live.yaml") == ["fine@example.com", "ok@example.com"]
    assert_plans_empty("live.yaml")


# ---- where the output goes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "exists", "said"),
    [
        ("out", True, "out is a directory"),
        ("new/", True, "new/ names a directory"),
        ("new/", False, "new/ names a directory"),
    ],
)
def test_export_to_a_directory_needs_a_file_name(
    workdir: Path, output: str, exists: bool, said: str
) -> None:
    """`-o DIR`, or `-o new/` whether or not it exists, without --contacts-per-file:
    refused, and nothing written (not a file named `new`)."""
    directory = workdir / output.rstrip("/")
    if exists:
        directory.mkdir()
    refused = reconcile("export", "--sandbox", "-o", output)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: {said}: give a file (-o {Path(output.rstrip('/'), 'audience.yaml')}), or "
        "--contacts-per-file N to split the export into it"
    ]
    assert directory.is_dir() == exists
    assert not directory.is_file()
    if exists:
        assert list(directory.iterdir()) == []


def test_export_into_a_missing_directory_creates_it(workdir: Path) -> None:
    seed_people(1)
    made = reconcile("export", "--sandbox", "-o", "missing/deeper/a.yaml")
    assert made.exit_code == 0, made.output
    assert_plans_empty("missing/deeper/a.yaml")


def test_split_export_onto_a_file_is_refused(workdir: Path) -> None:
    (workdir / "a.yaml").write_text("provider: mailjet\n")
    refused = reconcile("export", "--sandbox", "-o", "a.yaml", "--contacts-per-file", "2")
    assert refused.exit_code == 1
    assert "a.yaml is a file: --contacts-per-file writes into a directory" in refused.stderr
    assert (workdir / "a.yaml").read_text() == "provider: mailjet\n"


def test_unwritable_output_is_one_line(workdir: Path) -> None:
    (workdir / "blocker").write_text("")
    refused = reconcile("export", "--sandbox", "-o", "blocker/a.yaml")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: cannot write ")
    assert len(refused.stderr.strip().splitlines()) == 1


# ---- the property: any account the emulator accepts round-trips ---------------------------

# Text the emulator stores and answers with (JSON): anything but lone surrogates.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
LOCAL = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp"], exclude_characters="@"),
    min_size=1,
    max_size=8,
)
LABEL = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp"], exclude_characters="@."),
    min_size=1,
    max_size=6,
)
PLAIN_EMAIL = st.from_regex(r"[a-z0-9]{1,6}@[a-z]{1,5}\.(com|example)", fullmatch=True)
EMAIL = st.one_of(PLAIN_EMAIL, st.builds("{}@{}.{}".format, LOCAL, LABEL, LABEL))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": TEXT,
    "int": st.integers(-(2**70), 2**70),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "datetime": st.datetimes().map(lambda moment: moment.isoformat()),
}


@st.composite
def accounts(draw: st.DrawFn) -> dict[str, Any]:
    properties = draw(st.dictionaries(TEXT, st.sampled_from(sorted(VALUES)), max_size=3))
    lists = draw(st.lists(TEXT, max_size=3, unique=True))
    contact = st.fixed_dictionaries(
        {
            "email": EMAIL,
            "name": TEXT,
            "excluded": st.booleans(),
            "values": st.fixed_dictionaries(
                {}, optional={p: VALUES[kind] for p, kind in properties.items()}
            ),
            "lists": st.dictionaries(st.sampled_from(lists), st.booleans())
            if lists
            else st.just({}),
        }
    )
    return {
        "properties": properties,
        "lists": lists,
        "contacts": draw(st.lists(contact, max_size=6)),
        "erase": draw(st.integers(0, 6)),
    }


NOTHING: dict[str, Any] = {"properties": {}, "lists": [], "contacts": [], "erase": 0}
CONTACT: dict[str, Any] = {
    "email": "0@a.com",
    "name": "",
    "excluded": False,
    "values": {},
    "lists": {},
}


def build(plan: dict[str, Any]) -> list[int]:
    """The account `plan` describes, as far as the emulator accepts it; the contacts made."""
    made: list[int] = []
    with account() as live:
        for prop, kind in plan["properties"].items():
            live.define(prop, kind)
        for list_name in plan["lists"]:
            live.add_list(list_name)
        for contact in plan["contacts"]:
            lists = {k: v for k, v in contact["lists"].items() if k in live.lists}
            contact_id = live.add_contact(
                contact["email"],
                contact["name"],
                excluded=contact["excluded"],
                values=contact["values"],
                lists=lists,
            )
            if contact_id is not None:
                made.append(contact_id)
    return made


@contextmanager
def scratch_directory() -> Iterator[Path]:
    previous = Path.cwd()
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=accounts(), later=accounts())
@example(  # ruamel writes NEL as a line break in plain text: it came back as a space
    plan={"properties": {}, "lists": ["0\x85"], "contacts": [], "erase": 0}, later=NOTHING
)
@example(  # ruamel re-rendered a float it had read with one digit less
    plan={
        "properties": {"0": "float"},
        "lists": [],
        "contacts": [CONTACT | {"values": {"0": 1.998780143315844e43}}],
        "erase": 0,
    },
    later=NOTHING,
)
def test_any_account_the_emulator_holds_exports_validates_and_plans_empty(
    plan: dict[str, Any], later: dict[str, Any]
) -> None:
    with scratch_directory() as here:
        made = build(plan)
        for args in (["-o", "one.yaml"], ["-o", "split", "--contacts-per-file", "2"]):
            exported = reconcile("export", "--sandbox", *args)
            assert exported.exit_code == 0, exported.output
            assert_plans_empty(args[1])

        # The account moves on (some contacts erased, others made) and the previous
        # exports were edited by hand; exporting over them again still round-trips.
        with account() as live:
            for contact_id in made[: plan["erase"]]:
                live.call("DELETE", f"/v4/contacts/{contact_id}")
        build(later)
        for edited in (here / "one.yaml", here / "split" / "audience.yaml"):
            edited.write_text(edited.read_text() + "# a note kept across exports\n")
        for args in (["-o", "one.yaml"], ["-o", "split", "--contacts-per-file", "2"]):
            exported = reconcile("export", "--sandbox", *args)
            assert exported.exit_code == 0, exported.output
            assert_plans_empty(args[1])
        assert "# a note kept across exports" in (here / "split" / "audience.yaml").read_text()


@pytest.mark.parametrize("per_file", [None, 1])
def test_a_contact_export_leaves_out_is_protected_from_the_manifest_s_prunes(
    workdir: Path, per_file: int | None
) -> None:
    with account() as live:
        live.add_list("news")
        assert live.add_contact("a..b@example.com", lists={"news": False}) is not None
        assert live.add_contact("ok@example.com", lists={"news": False}) is not None
    (workdir / "live.yaml").write_text(
        "provider: mailjet\nlists: {news: {}}\nprune: {contacts: {action: delete}}\n"
        "safety: {max_delete_share: 1.0}\n",
        encoding="utf-8",
    )
    target = (
        ["-o", "live.yaml"] if per_file is None else ["-o", "split", "--contacts-per-file", "1"]
    )

    exported = reconcile("export", "--sandbox", *target)

    assert exported.exit_code == 0, exported.output
    assert "it is put under protect:" in exported.stderr
    main = "live.yaml" if per_file is None else "split"
    if per_file is not None:  # the directory's own audience.yaml has no prune: give it one
        with (workdir / "split" / "audience.yaml").open("a", encoding="utf-8") as file:
            file.write("prune: {contacts: {action: delete}}\nsafety: {max_delete_share: 1.0}\n")
    assert_plans_empty(main)


# ---- Mailchimp ---------------------------------------------------------------------------

CHIMP_AUDIENCE = "a1b2c3d4e5"  # the sandbox's audience, "Acme Newsletter"
CHIMP_EXPORT = ("export", "--sandbox", "--provider", "mailchimp", "--option")
CHIMP_STATUSES = {
    "sub@acme-widgets.io": ("subscribed", False),
    "admin-unsub@acme-widgets.io": ("unsubscribed", False),
    "link-unsub@acme-widgets.io": ("unsubscribed", True),
    "bounced@acme-widgets.io": ("cleaned", False),
    "waiting@acme-widgets.io": ("pending", False),
    "receipts@acme-widgets.io": ("transactional", False),
    "archived@acme-widgets.io": ("archived", False),
}


def seed_chimp_audience() -> None:
    """The sandbox's audience with a member of every status, fields of every type reconcile
    reads (and an address, which it does not manage), and tags spelled in several cases."""
    emulator, _ = create_emulator("mailchimp", None)
    emulator.seed_merge_field(CHIMP_AUDIENCE, "TEAM")
    emulator.seed_merge_field(CHIMP_AUDIENCE, "SEATS", type="number")
    emulator.seed_merge_field(CHIMP_AUDIENCE, "SCORE", type="number")
    emulator.seed_merge_field(
        CHIMP_AUDIENCE, "RENEWAL", type="date", options={"date_format": "MM/DD/YYYY"}
    )
    emulator.seed_merge_field(
        CHIMP_AUDIENCE, "BDAY", type="birthday", options={"date_format": "MM/DD"}
    )
    for n, (email, (status, by_link)) in enumerate(CHIMP_STATUSES.items()):
        values: dict[str, Any] = {
            "FNAME": f"Name {n}",
            "TEAM": ["ops", "Zoë Ünïcode ✓", "a #b: c", "7"][n % 4],
            "SEATS": n * 3,
            "SCORE": [0.5, -1.25, 3.0, 12.75][n % 4],
            "RENEWAL": "2026-01-0" + str(n + 1),
            "PHONE": "+1 555 0100",
            "BDAY": "12/24",
            "ADDRESS": {"addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701"},
        }
        tags = [["News", "VIP Customers"], ["news"], ["vip customers", "beta"], []][n % 4]
        emulator.seed_member(
            CHIMP_AUDIENCE, email, status, merge_fields=values, tags=tags, compliance=by_link
        )
    emulator.seed_tag(CHIMP_AUDIENCE, "empty tag")
    path = state_file("mailchimp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json_state(path, emulator.dump_state())


@pytest.mark.parametrize("audience", ["Acme Newsletter", CHIMP_AUDIENCE])
def test_a_mailchimp_audience_with_every_status_exports_and_plans_empty(
    workdir: Path, audience: str
) -> None:
    seed_chimp_audience()
    before = load_json_state(state_file("mailchimp"))

    exported = reconcile(*CHIMP_EXPORT, f"audience={audience}", "-o", "live.yaml")

    assert exported.exit_code == 0, exported.output
    assert sorted(e.lower() for e in emails_in(workdir / "live.yaml")) == sorted(CHIMP_STATUSES)
    text = (workdir / "live.yaml").read_text(encoding="utf-8")
    assert "ADDRESS" not in text  # an address field is not reconcile's to manage
    assert_plans_empty("live.yaml")
    assert load_json_state(state_file("mailchimp")) == before  # export and plan only read


def test_a_mailchimp_export_over_a_manifest_keeps_its_spelling_of_tags(workdir: Path) -> None:
    """Tags compare without case: a manifest's list `news` is the live tag `News`. An
    export over the manifest updates it in place: the list keeps the manifest's spelling,
    its settings (members: exact) and its comment, and the result plans empty. (It wrote
    `News: {}` instead, losing members: exact: the next apply would prune nobody.)"""
    seed_chimp_audience()
    on_news = ["sub", "admin-unsub", "waiting", "receipts"]
    (workdir / "mine.yaml").write_text(
        "provider: {type: mailchimp, audience: Acme Newsletter}\n"
        "lists:\n"
        "  news: {members: exact}  # exact: only these\n"
        "contacts:\n"
        + "".join(f"  - {{email: {who}@acme-widgets.io, lists: [news]}}\n" for who in on_news),
        encoding="utf-8",
    )
    assert_plans_empty("mine.yaml")

    # no --option: the audience is the one the manifest it updates names
    exported = reconcile("export", "--sandbox", "--provider", "mailchimp", "-o", "mine.yaml")

    assert exported.exit_code == 0, exported.output
    text = (workdir / "mine.yaml").read_text(encoding="utf-8")
    assert "news: {members: exact}  # exact: only these" in text, text
    assert "News:" not in text
    assert_plans_empty("mine.yaml")


def _seed_chimp(*members: tuple[str, str]) -> Any:
    """The sandbox's audience with these (email, status) members; the emulator, to act on."""
    emulator, _ = create_emulator("mailchimp", None)
    for email, status in members:
        emulator.seed_member(CHIMP_AUDIENCE, email, status)
    return emulator


def _save_chimp(emulator: Any) -> None:
    path = state_file("mailchimp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json_state(path, emulator.dump_state())


def test_a_mailchimp_export_leaves_confirming_members_undecided(workdir: Path) -> None:
    """A pending member (double opt-in not confirmed) is no opt-out: exported as excluded,
    the manifest would unsubscribe them the day they confirm."""
    emulator = _seed_chimp(
        ("wait@acme-widgets.io", "pending"), ("tx@acme-widgets.io", "transactional")
    )
    _save_chimp(emulator)
    exported = reconcile(*CHIMP_EXPORT, f"audience={CHIMP_AUDIENCE}", "-o", "snap.yaml")
    assert exported.exit_code == 0, exported.output
    assert "excluded_from_campaigns" not in (workdir / "snap.yaml").read_text(encoding="utf-8")
    state = load_json_state(state_file("mailchimp"))
    assert state is not None
    emulator, _ = create_emulator("mailchimp", state)
    emulator.store.write_member(
        CHIMP_AUDIENCE, "PATCH", "wait@acme-widgets.io", {"status": "subscribed"}, False
    )
    _save_chimp(emulator)
    assert_plans_empty("snap.yaml")  # confirmed: nothing to undo


def test_a_mailchimp_export_leaves_out_an_address_validate_refuses(workdir: Path) -> None:
    _save_chimp(
        _seed_chimp(("ünï@acme-widgets.io", "subscribed"), ("ok@acme-widgets.io", "subscribed"))
    )
    exported = reconcile(*CHIMP_EXPORT, f"audience={CHIMP_AUDIENCE}", "-o", "snap.yaml")
    assert exported.exit_code == 0, exported.output
    assert "not exported" in exported.output
    text = (workdir / "snap.yaml").read_text(encoding="utf-8")
    assert "protect:" in text
    assert_plans_empty("snap.yaml")


def test_a_mailchimp_number_a_float_would_round_is_left_out_of_an_export(workdir: Path) -> None:
    emulator = _seed_chimp()
    emulator.seed_merge_field(CHIMP_AUDIENCE, "NUM", type="number")
    emulator.seed_member(CHIMP_AUDIENCE, "big@acme-widgets.io", merge_fields={"NUM": 2**53 + 1})
    emulator.seed_member(CHIMP_AUDIENCE, "half@acme-widgets.io", merge_fields={"NUM": 0.5})
    _save_chimp(emulator)
    exported = reconcile(*CHIMP_EXPORT, f"audience={CHIMP_AUDIENCE}", "-o", "snap.yaml")
    assert exported.exit_code == 0, exported.output
    assert "not exported: is an integer a float can't hold exactly" in exported.output
    assert "9007199254740992" not in (workdir / "snap.yaml").read_text(encoding="utf-8")
    assert_plans_empty("snap.yaml")
