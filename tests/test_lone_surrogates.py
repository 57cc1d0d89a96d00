"""A lone surrogate (JSON's "\\ud800" escape, alone) is not a character: no UTF-8 text,
so no provider and no terminal, can hold it. A manifest's names and values carrying one
are refused with their file, line and field; text from elsewhere that carries one (an
account's answer) is printed escaped instead of ending the run in an internal error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reconcile.cli import printable_anything
from reconcile.errors import ManifestError
from reconcile.manifest.loader import load_manifest

HEAD = "properties:\n  dept: {type: str}\nlists:\n  news: {}\n"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('lists:\n  "bad\\ud800": {}\n', ":2: lists"),
        ('properties:\n  "de\\udc00pt": {type: str}\n', ":2: properties"),
        (HEAD + 'contacts:\n  - {email: a@example.com, name: "A\\ud800"}\n', "contacts[0].name"),
        (
            HEAD + 'contacts:\n  - {email: a@example.com, properties: {dept: "x\\ud800"}}\n',
            "contacts[0].properties.dept",
        ),
    ],
)
def test_a_lone_surrogate_in_a_manifest_is_refused_where_it_is(
    tmp_path: Path, body: str, where: str
) -> None:
    path = tmp_path / "audience.yaml"
    path.write_text("provider: mailjet\n" + body, encoding="utf-8")
    with pytest.raises(ManifestError) as raised:
        load_manifest([path])
    shown = str(raised.value)
    assert "lone surrogate" in shown
    assert where in shown, shown
    shown.encode("utf-8")  # the error itself is printable


def test_a_csv_property_value_with_a_lone_surrogate_is_refused_on_its_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "people.csv").write_text(
        'email,properties\na@example.com,"{""dept"": ""ok""}"\n'
        'b@example.com,"{""dept"": ""\\ud800""}"\n',
        encoding="utf-8",
    )
    path = tmp_path / "audience.yaml"
    path.write_text("provider: mailjet\n" + HEAD + "contacts_from: people.csv\n", "utf-8")
    with pytest.raises(ManifestError) as raised:
        load_manifest([path])
    assert "people.csv:3: properties.dept: the value contains a lone surrogate" in str(raised.value)


def test_output_escapes_what_no_encoding_holds() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    printable_anything(stream)
    stream.write("name: Zed\udc00\n")
    stream.flush()
    assert raw.getvalue() == b"name: Zed\\udc00\n"
