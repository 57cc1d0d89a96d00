"""The faster JSON reader gives what the standard library gives: the same values for any
JSON text (answers and CSV cells), the standard library's value where the fast parser
refuses (a lone surrogate escape, UTF-16), and a ValueError where both refuse."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile import fastjson

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@given(documents, st.booleans(), st.booleans())
def test_any_json_text_reads_as_the_standard_library_reads_it(
    value: Any, ascii_only: bool, as_bytes: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    given_text: str | bytes = text.encode() if as_bytes else text
    assert same(fastjson.loads(given_text), json.loads(given_text))


@pytest.mark.parametrize(
    "text",
    ['{"a": "\\ud800"}', '{"a": NaN, "b": -Infinity}', '{"a": 1, "a": 2}', "[1e400]"],
)
def test_what_the_fast_parser_refuses_or_reads_its_own_way_reads_as_before(text: str) -> None:
    assert same(fastjson.loads(text), json.loads(text))
    utf16 = text.encode("utf-16")
    assert same(fastjson.loads(utf16), json.loads(utf16))


@pytest.mark.parametrize("text", ["", "[1,]", "{", "nul", b"\xff", "{'a': 1}"])
def test_what_neither_reads_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        fastjson.loads(text)
