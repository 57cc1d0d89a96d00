"""Fuzzing the manifest loader (issue #6 item 4): whatever the YAML or CSV, `load_manifest`
returns a Manifest or raises a ReconcileError whose issues point into the files read
(a file of the manifest, a line within it); never any other exception.

Documents are drawn as random trees over the manifest's own vocabulary and YAML's
awkward scalars (bad dates, `.nan`, huge ints, tags, anchors and aliases), rendered in
block and flow style; valid manifests are mutated character by character; CSV files get
random headers and cells (quotes, separators, newlines, control characters). Warnings
are errors in this suite, so a parser warning leaking to the user fails here too.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.errors import ManifestError, ReconcileError
from reconcile.manifest.loader import load_manifest

FUZZ = settings(
    max_examples=200,
    deadline=None,
    # workdir is shared by the examples on purpose: each writes every file it reads
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = [
    "provider", "version", "properties", "lists", "contacts", "contacts_from", "email",
    "name", "excluded_from_campaigns", "type", "namespace", "replace", "members", "status",
    "opted_in_at", "requests_per_minute", "bulk_chunk_size", "project_id",
    "reads_per_minute", "writes_per_minute", "import_chunk_size", "seats", "score",
    "since", "note", "vip", "news", "beta", "<<", "1", "null", "true", "'[0]'", "x y",
]  # fmt: skip
SCALARS = [
    "mailjet", "mailjawn", "a@example.com", "A@EXAMPLE.COM", "b@example.com",
    "not-an-email", "\"o'brien@example.com\"", "news", "beta", "str", "int", "float",
    "bool", "datetime", "static", "historic", "additive", "exact", "subscribed",
    "unsubscribed", "true", "false", "null", "0", "-1", "3", "1.5", "people.csv", "[]", "{}",
]  # fmt: skip
# YAML's awkward corners: implicit dates and numbers, tags, escapes, markup.
TRAPS = [
    "yes", "no", "~", "1e400", ".inf", "-.inf", ".nan", "99999999999999999999999999",
    "0x1F", "0o17", "1_000", "2026-01-02", "2026-13-01", "2026-02-30T00:00:00Z",
    "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "2026-01-02T03:04:05+01:00",
    "''", '""', '"\\e[2J\\a"', '"\\x00"', "!!binary aGk=", "!!str 3", "!!int '3'",
    "!!omap [a: 1]", "!!omap [news: {}]", "!!set {a, b}", "!!null ''", "!custom x",
    "'[bold]x[/]'", "':x:'",
]  # fmt: skip

# A tree: ("scalar", token) | ("alias", n) | ("seq", [tree]) | ("map", [(key, tree)]),
# optionally anchored: ("anchor", n, tree).
Tree = tuple[Any, ...]
traps = st.sampled_from(TRAPS).map(lambda token: ("scalar", token))
words = st.sampled_from(SCALARS).map(lambda token: ("scalar", token))
scalars = st.one_of(
    traps,
    words,
    traps,
    words,
    st.text(max_size=12).map(lambda text: ("scalar", _quoted(text))),
    st.integers(0, 3).map(lambda n: ("alias", n)),
)
trees: st.SearchStrategy[Tree] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: ("seq", items)),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4).map(
            lambda pairs: ("map", list(pairs.items()))
        ),
        st.tuples(st.integers(0, 3), children).map(lambda a: ("anchor", a[0], a[1])),
    ),
    max_leaves=25,
)


def _quoted(text: str) -> str:
    escaped = "".join(
        ch if ch.isprintable() and ch not in '"\\' else f"\\u{ord(ch):04x}" for ch in text
    )
    return f'"{escaped}"'


class Renderer:
    """YAML text of trees. Anchors are numbered in order (a0, a1, ...), never reused: a
    reused anchor is its own corpus case (ok_reused_anchor) and would hide other bugs."""

    def __init__(self) -> None:
        self.anchors = 0

    def flow(self, tree: Tree) -> str:
        kind = tree[0]
        if kind == "scalar":
            return str(tree[1])
        if kind == "alias":  # to an anchor already opened, perhaps an enclosing one
            return f"*a{tree[1] % self.anchors}" if self.anchors else "null"
        if kind == "anchor" and tree[2][0] in ("anchor", "alias"):
            return self.flow(tree[2])  # one anchor per node, none on an alias
        if kind == "anchor":
            self.anchors += 1
            return f"&a{self.anchors - 1} {self.flow(tree[2])}"
        if kind == "seq":
            return "[" + ", ".join(self.flow(item) for item in tree[1]) + "]"
        return "{" + ", ".join(f"{key}: {self.flow(value)}" for key, value in tree[1]) + "}"

    def block(self, tree: Tree, indent: int) -> str:
        """Block style for mappings and sequences down to `indent` 6, flow style below."""
        pad = " " * indent
        if tree[0] == "map" and tree[1] and indent <= 6:
            return "".join(self.entry(pad, key, value, indent) for key, value in tree[1])
        if tree[0] == "seq" and tree[1] and indent <= 6:
            return "".join(f"{pad}-\n{self.block(item, indent + 2)}" for item in tree[1])
        return f"{pad}{self.flow(tree)}\n"

    def entry(self, pad: str, key: str, value: Tree, indent: int) -> str:
        if value[0] in ("map", "seq") and value[1]:
            return f"{pad}{key}:\n{self.block(value, indent + 2)}"
        return f"{pad}{key}: {self.flow(value)}\n"


TOP_KEYS = ["provider", "properties", "lists", "contacts", "contacts_from", "version"]
top_level = st.dictionaries(
    st.sampled_from(TOP_KEYS) | st.sampled_from(KEYS), trees, max_size=5
).map(lambda entries: list(entries.items()))

VALID = """\
provider: mailjet
properties:
  seats: {type: int}
  since: {type: datetime, namespace: historic}
lists:
  news: {}
  beta: {members: exact}
contacts:
  - email: a@example.com
    name: Ann
    properties: {seats: 3, since: 2026-01-02T03:04:05Z}
    lists: [news]
  - email: b@example.com
    excluded_from_campaigns: true
    lists: {news: subscribed, beta: {status: unsubscribed, opted_in_at: 2026-01-02T03:04:05Z}}
"""
MANIFEST_FOR_CSV = """\
provider: mailjet
properties:
  seats: {type: int}
  score: {type: float}
  vip: {type: bool}
  since: {type: datetime}
  note: {type: str}
lists:
  news: {}
  beta: {}
contacts_from: people.csv
"""
BIG = "<140 000 characters>"  # stands for a long cell in examples, expanded when written
COLUMNS = ["email", "name", "excluded_from_campaigns", "lists", "properties"]
CELLS = [
    "a@example.com", "A@Example.com", "o'brien@example.com", "user+tag@sub.example.co",
    "not-an-email", " a@example.com", "", "true", "false", "TRUE", "maybe", "news",
    "news;beta", "news:unsubscribed", "news:maybe", ";", "gone", '{"seats": 3}',
    '{"seats": "3"}', '{"score": NaN}', '{"score": 1e999}', '{"seats": 99999999999999999999}',
    '{"since": "2026-13-01"}', '{"since": "2026-01-02T03:04:05Z"}', '{"vip": 1}',
    '{"note": null}', '{"seats": {"n": 1}}', "[1]", "{", "\x1b[2J", "a\x00b", '"', "a,b",
    "line\nbreak", "\r", BIG,
]  # fmt: skip


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A directory of this test's own (examples overwrite its files): a CSV another test
    left behind must not be read by a document that names people.csv."""
    return tmp_path_factory.mktemp(request.node.name)


def assert_loads_or_reports(paths: list[Path], readable: dict[Path, bytes]) -> None:
    """Success, or a ReconcileError whose issues point at a line of a file that was read."""
    failure: ReconcileError | None = None
    try:
        load_manifest(paths)
    except ReconcileError as error:
        failure = error
    if not isinstance(failure, ManifestError):
        return
    assert failure.issues, "a ManifestError without issues"
    for issue in failure.issues:
        where = Path(issue.location.file)
        assert where in readable, f"{issue} names a file that was not read"
        content = readable[where]  # a lone CR ends a line too, for csv and editors
        last = max(content.count(b"\n"), len(content.splitlines())) + 1
        assert 1 <= issue.location.line <= last, f"{issue}: the file has {last} lines"


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@FUZZ
@given(top=top_level, as_block=st.booleans())
def test_random_documents_load_or_fail_cleanly(
    workdir: Path, top: list[tuple[str, Tree]], as_block: bool
) -> None:
    render = Renderer()
    text = "".join(
        render.entry("", key, value, 0) if as_block else f"{key}: {render.flow(value)}\n"
        for key, value in top
    )
    path = workdir / "doc.yaml"
    write(path, text.encode())
    assert_loads_or_reports([path], {path: text.encode()})


# Where VALID holds a scalar: after "key: ", "[" or ", " up to the next delimiter.
VALUE = re.compile(r"(?:(?<=: )|(?<=\[)|(?<=, ))[^\s{}\[\],]+")


@FUZZ
@given(data=st.data())
def test_mutated_manifests_load_or_fail_cleanly(workdir: Path, data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):  # another value in a valid place
            spots = list(VALUE.finditer(text))
            spot = spots[data.draw(st.integers(0, len(spots) - 1))] if spots else None
            value = data.draw(st.sampled_from(TRAPS) | st.sampled_from(SCALARS))
            if spot is not None:
                text = text[: spot.start()] + value + text[spot.end() :]
            continue
        at = data.draw(st.integers(0, len(text)))  # or characters anywhere
        cut = data.draw(st.integers(0, 3))
        insert = data.draw(
            st.sampled_from(["\n", "  ", "\t", ":", "- ", "[", "{", "&a ", "*a", "'", '"', "#"])
            | st.text(max_size=4)
        )
        text = text[:at] + insert + text[at + cut :]
    raw = text.encode()
    path = workdir / "mutated.yaml"
    write(path, raw)
    assert_loads_or_reports([path], {path: raw})


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_after_a_valid_start_fail_cleanly(workdir: Path, raw: bytes) -> None:
    content = b"provider: mailjet\n" + raw
    path = workdir / "bytes.yaml"
    write(path, content)
    assert_loads_or_reports([path], {path: content})


cell = st.sampled_from(CELLS) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from([",", '"', "\n", "\r", ";", ":", "\x00", "\x1b"]),
    max_size=10,
)


@FUZZ
@given(
    header=st.lists(st.sampled_from([*COLUMNS, "colour", "Email", ""]), min_size=1, max_size=6),
    rows=st.lists(st.lists(cell, max_size=6), max_size=6),
    quoted=st.booleans(),
)
def test_random_csv_rows_load_or_fail_cleanly(
    workdir: Path, header: list[str], rows: list[list[str]], quoted: bool
) -> None:
    if quoted:  # well-formed CSV carrying odd values
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        text = buffer.getvalue()
    else:  # cells joined as they are: stray quotes, separators and line breaks
        text = "\n".join(",".join(line) for line in [header, *rows]) + "\n"
    manifest, people = workdir / "csv.yaml", workdir / "people.csv"
    write(manifest, MANIFEST_FOR_CSV.encode())
    raw = text.replace(BIG, "x" * 140_000).encode()
    write(people, raw)
    assert_loads_or_reports([manifest], {manifest: MANIFEST_FOR_CSV.encode(), people: raw})


@FUZZ
@given(lines=st.lists(st.lists(st.sampled_from(CELLS), min_size=5, max_size=5), max_size=8))
def test_csv_rows_with_every_column_load_or_fail_cleanly(
    workdir: Path, lines: list[list[str]]
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(lines)
    text = buffer.getvalue().replace(BIG, "x" * 140_000).encode()
    manifest, people = workdir / "full.yaml", workdir / "people.csv"
    write(manifest, MANIFEST_FOR_CSV.encode())
    write(people, text)
    assert_loads_or_reports([manifest], {manifest: MANIFEST_FOR_CSV.encode(), people: text})
