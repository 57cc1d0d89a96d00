"""The fast YAML path must read every document it accepts exactly as ruamel does (values,
their types, and the line of every key and item), and hand everything else to ruamel."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.errors import ManifestError
from reconcile.manifest import yaml_source
from reconcile.manifest.fast_yaml import parse_fast

ROOT = Path(__file__).parent.parent
YAML_FILES = sorted([*ROOT.glob("examples/**/*.yaml"), *(ROOT / "tests" / "corpus").glob("*.yaml")])


def typed(value: Any) -> Any:
    """Values with their types spelled out: True, 1 and 1.0 must not compare equal."""
    if isinstance(value, dict):
        return {json.dumps(typed(k)): typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", int(value)]
    if isinstance(value, float):
        return ["float", "nan" if math.isnan(value) else float(value)]
    if isinstance(value, str):
        return ["str", str(value)]
    assert value is None, type(value)
    return None


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(key, str | int):
                yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def ruamel_reading(text: str) -> Any:
    return yaml_source._parse(Path("doc.yaml"), text)


def assert_same_as_ruamel(text: str) -> bool:
    """True when the fast path took the document (and agreed with ruamel on it)."""
    raw = text.encode("utf-8")
    fast = parse_fast(raw, text)
    if fast is None:
        return False
    data, lines = fast
    try:
        expected = ruamel_reading(text)
    except Exception as error:
        pytest.fail(f"fast path accepted what ruamel refuses ({error}):\n{text}")
    assert typed(data) == typed(expected), text
    if isinstance(expected, dict):
        located = yaml_source.YamlDocument(Path("doc.yaml"), expected)
        for loc in list(paths(expected))[:400]:
            assert lines.line(loc) + 1 == located.location(loc).line, (loc, text)
    return True


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_repository_yaml_reads_as_ruamel_reads_it(path: Path) -> None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # read_yaml refuses it before either parser runs
    assert_same_as_ruamel(text)


def test_the_examples_take_the_fast_path() -> None:
    examples = sorted(ROOT.glob("examples/**/*.yaml"))
    assert examples
    assert all(assert_same_as_ruamel(p.read_text("utf-8")) for p in examples)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: !custom x\n",
        "base: &b {x: 1}\nmore:\n  <<: *b\n  y: 2\n",
        "<<: {x: 1}\n",
        "=: 1\n",
        "%YAML 1.1\n---\na: yes\n",
        "a: 1\na: 2\n",
        "1: x\n1.0: y\n",
        "a: 1\n---\nb: 2\n",
        "a: \x07\n",
        "a: " + "[" * 70 + "]" * 70 + "\n",
        "a: [1\n",
        "? [k]\n: v\n",
        "{email: %}",
        "}:",
        "[?",
        "{email: 0\t}",
        "{email: x #y}",
        "{1:}",
        "{:!}",
        "{email: \x85}",
        "{email: ['\r']}",
        "- a: 1\n",
        "a: [?x]\n",
    ],
    ids=[
        "anchor-alias",
        "core-tag",
        "custom-tag",
        "merge-key",
        "top-merge-key",
        "value-key",
        "directive",
        "duplicate-key",
        "int-and-float-key",
        "two-documents",
        "control-character",
        "deep-nesting",
        "syntax-error",
        "complex-key",
        "indicator-start",
        "closing-bracket-key",
        "explicit-key-in-flow",
        "tab",
        "comment-in-flow",
        "colon-before-bracket",
        "colon-after-bracket",
        "next-line-character",
        "lone-carriage-return",
        "top-level-sequence",
        "question-mark-in-flow",
    ],
)
def test_what_only_ruamel_reads_exactly_goes_to_ruamel(text: str) -> None:
    assert parse_fast(text.encode("utf-8"), text) is None


@pytest.mark.parametrize(
    "text",
    [
        "email:\n  - []\n",
        "email:\n  -\n    -\n      - yes\n",
        "name:\n  -\n    - yes\n",
        "email:\n  - -\n  - \n",
        "email:\n  - \n  - \n",
        "email: yes\nlists:\n  -\n    |-\n      email: []\n  - []\n",
        "lists:\n  - |\n      a [x]\n\n      b\n  - []\n  - >-\n    q {\n  - {}\n",
        "true:\n  - yes\n0x1F: []\n",
        "a: b\r\nc: [d, e]\r\n",
        "email:\n  - |\n  - []\n",
        "email:\n  - >\n\n  - []\n",
    ],
)
def test_shapes_found_by_fuzzing_are_located_as_ruamel_locates_them(text: str) -> None:
    assert assert_same_as_ruamel(text)


def test_read_yaml_reports_what_it_hands_to_ruamel_and_rapidyaml_stays_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("provider: mailjet\nlists: {}\nlists: {}\n", encoding="utf-8")
    with pytest.raises(ManifestError) as raised:
        yaml_source.read_yaml(path)
    assert raised.value.issues[0].location.line == 3
    assert "duplicate key" in raised.value.issues[0].message
    path.write_text("provider: mailjet\nlists: [news\n", encoding="utf-8")
    with pytest.raises(ManifestError):
        yaml_source.read_yaml(path)
    assert capfd.readouterr().err == ""  # rapidyaml prints its parse errors to fd 2


# 30,000 contacts: over a MiB, so the file is kept compressed until an error needs it
@pytest.mark.parametrize("count", [2000, 30_000])
def test_deep_locations_of_a_big_document_parse_again_on_demand(count: int) -> None:
    contacts = "".join(
        f"  - email: p{n}@example.com\n    properties: {{seats: {n}}}\n" for n in range(count)
    )
    text = f"provider: mailjet\ncontacts:\n{contacts}"
    assert (len(text) > 2**20) == (count > 2000)
    fast = parse_fast(text.encode(), text)
    assert fast is not None
    _, lines = fast
    last = count - 1
    assert lines.line(("provider",)) == 0
    assert lines.line(("contacts", last, "properties", "seats")) == 2 + 2 * last + 1
    assert lines.line(("contacts", last, "no-such-key")) == 2 + 2 * last
    assert lines.line(("contacts", 7, "properties")) == 2 + 2 * 7 + 1
    assert lines.line(("contacts", count + 5)) == 1  # the deepest node that exists: contacts


TRICKY = [
    "yes", "no", "on", "off", "y", "n", "Null", "NULL", "nUll", "~", "null", "", " ",
    "true", "True", "TRUE", "tRue", "false", "FALSE",
    "0", "-0", "+1", "007", "0o17", "0x1F", "0X1F", "0b101", "1_000", "1__0", "12:30",
    "1.5", "1.", ".5", "-.5", "1e3", "1E3", "1.5e-3", "1.5E+3", "+.inf", "-.Inf", ".NaN",
    ".nan", "1_0.5", "2026-01-01", "2026-1-1", "2026-01-01 10:00:00", "2026-01-01T10:00:00Z",
    "a", "a b", "a  b", "a: b", "a:b", "#x", "x #y", "x#y", "é", "💌", "a'b", 'a"b', "-",
    "--", "- x", "?", "? x", ":", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "`x", "|",
    ">", "a\\nb", "tab\there", "line\nbreak", "trailing ", "=", "<<",
]  # fmt: skip


KEYS = ["email", "name", "lists", "x", "1", "true", "~", "a b", "é", "-x", "0x1F", "1.5"]
Tree = dict[str, "Tree"] | list["Tree"] | str
trees: st.SearchStrategy[Tree] = st.recursive(
    st.one_of(st.sampled_from(TRICKY), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=25,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Manifest-shaped YAML text: block and flow maps and lists of tricky scalars, each
    written plain, quoted or as a block scalar (plain ones are often not what they seem)."""

    def scalar(value: str, indent: str) -> str:
        style = draw(st.sampled_from(["plain", "single", "double", "literal"]))
        if style == "single":
            return "'" + value.replace("'", "''") + "'"
        if style == "double":
            return json.dumps(value, ensure_ascii=draw(st.booleans()))
        if style == "literal" and value.strip() == value and value and "\n" not in value:
            return f"|-\n{indent}  {value}"
        return value

    def flow(tree: Tree) -> str:
        if isinstance(tree, str):
            return scalar(tree, "")
        if isinstance(tree, list):
            return "[" + ", ".join(flow(item) for item in tree) + "]"
        return "{" + ", ".join(f"{scalar(k, '')}: {flow(v)}" for k, v in tree.items()) + "}"

    def block(tree: Tree, indent: str) -> list[str]:
        entries = tree.items() if isinstance(tree, dict) else ((None, v) for v in tree)
        lines = []
        for key, value in entries:
            head = f"{indent}- " if key is None else f"{indent}{scalar(key, indent)}: "
            if isinstance(value, str):
                lines.append(head + scalar(value, indent))
            elif value and draw(st.booleans()):
                lines.append(head.rstrip())
                lines.extend(block(value, indent + "  "))
            else:
                lines.append(head + flow(value))
        return lines

    tree = draw(st.dictionaries(st.sampled_from(KEYS), trees, min_size=1, max_size=4))
    if draw(st.integers(0, 4)) == 0:
        return flow(tree)
    return "\n".join(block(tree, ""))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.booleans())
def test_generated_documents_read_as_ruamel_reads_them(text: str, windows: bool) -> None:
    assert_same_as_ruamel(text.replace("\n", "\r\n" if windows else "\n") + "\n")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1.: -[]{},'\"#|>&*!?\n\r\t~\\")), max_size=60))
def test_random_text_never_reads_differently(text: str) -> None:
    assert_same_as_ruamel(text)
