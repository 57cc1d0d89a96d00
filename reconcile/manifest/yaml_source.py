"""Reading YAML files, keeping where every key and item is for errors: the fast path
(fast_yaml) for what manifests are made of, ruamel for everything else."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from reconcile.errors import ManifestError, ManifestIssue, SourceLocation
from reconcile.manifest.fast_yaml import FastLines, parse_fast

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_DEPTH = 64
ALIAS_GROWTH_LIMIT = 10  # expanded values per distinct value before it counts as a bomb
ALIAS_FLOOR = 100_000  # below this many expanded values, no limit
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
NOT_A_MAPPING = "the file must hold a mapping (provider, properties, ...)"


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    data: Any  # a dict at the top (ruamel's CommentedMap when ruamel read it)
    fast_lines: FastLines | None = None  # set when the fast path read it

    def location(self, loc: Sequence[str | int]) -> SourceLocation:
        """The line of the deepest node of `loc` that exists in the file."""
        if self.fast_lines is not None:
            return SourceLocation(str(self.path), self.fast_lines.line(loc) + 1)
        node = self.data
        line = 0
        for part in loc:
            found = _line_of(node, part)
            if found is None:
                break
            line, node = found
        return SourceLocation(str(self.path), line + 1)

    def for_locating(self) -> YamlDocument:
        """As much of this document as locating needs: the fast path's lines do without
        the values, which at 100,000 contacts are worth dropping once validated."""
        return self if self.fast_lines is None else YamlDocument(self.path, None, self.fast_lines)


def _line_of(node: Any, part: str | int) -> tuple[int, Any] | None:
    """(line, child) for `part` of `node`; None when the file holds no position for it
    (a key merged in with `<<`, an !!omap entry)."""
    try:
        if isinstance(node, CommentedMap) and part in node:
            position = node.lc.key(part)
            child = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            position = node.lc.item(part)
            child = node[part]
        else:
            return None
    except (KeyError, TypeError, IndexError):
        return None
    if not isinstance(position, tuple | list) or not position:
        return None
    return int(position[0]), child


def read_yaml(path: Path) -> YamlDocument:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _single(path, 1, "", f"cannot read: {error.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _single(path, 1, "", f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise _single(path, line, "", "not valid UTF-8") from None
    fast = parse_fast(raw, text)
    if fast is not None:
        data, lines = fast
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _single(path, 1, "", NOT_A_MAPPING)
        return YamlDocument(path, data, lines)
    _check_flow_depth(path, text)
    data = _parse(path, text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise _single(path, 1, "", NOT_A_MAPPING)
    _check_expansion(path, data)
    return YamlDocument(path, data)


class _TextTimestamps(RoundTripConstructor):
    """Timestamps stay text: the loader validates them with the field's name and line
    (ruamel's own constructor raises on 2026-13-01 with neither). A subclass, because
    add_constructor on ruamel's class would change every YAML instance in the process."""


_TextTimestamps.add_constructor(TIMESTAMP_TAG, SafeConstructor.construct_yaml_str)


def _parse(path: Path, text: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.Constructor = _TextTimestamps
    lines = max(1, len(text.splitlines()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. ReusedAnchorWarning: valid YAML 1.2
            return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if error.context_mark is not None and (mark is None or mark.line + 1 > lines):
            mark = error.context_mark  # the problem is "end of file": point where it began
        line = min(mark.line + 1, lines) if mark is not None else 1
        problem = " ".join(str(p) for p in (error.context, error.problem) if p)
        raise _single(path, line, "", f"YAML syntax: {problem}") from None
    except ReaderError as error:
        line = text[: error.position].count("\n") + 1
        what = f"character {error.character!r}" if error.character else "character"
        raise _single(path, line, "", f"YAML cannot hold the control {what}") from None
    except YAMLError as error:
        raise _single(path, 1, "", f"YAML syntax: {str(error)[:200]}") from None
    except RecursionError:
        raise _single(path, 1, "", f"nested deeper than {MAX_DEPTH} levels") from None
    except (AttributeError, TypeError, ValueError, KeyError):
        # ruamel failing inside its constructor on exotic input (a merge of an !!set, ...):
        # its exception names its own classes, which mean nothing to the manifest's author
        message = "YAML construct that cannot be read (a tag or merge key on something other "
        raise _single(path, 1, "", message + "than a mapping, a list or a plain value?)") from None


def _check_flow_depth(path: Path, text: str) -> None:
    """Refuse `[[[[...` / `{{{{...` nesting before the parser recurses into it."""
    depth = 0
    line = 1
    quote = ""
    for char in text:
        if char == "\n":
            line += 1
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _single(path, line, "", f"nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth = max(0, depth - 1)


def _check_expansion(path: Path, data: Any) -> None:
    """Anchors and aliases are fine; an alias bomb (a few lines expanding to billions of
    values) is not: compare the values the document expands to (each shared node once per
    use) with the distinct values it holds."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        children: Iterable[Any] = ()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        total = 1 + sum(size(child) for child in children)
        sizes[id(node)] = total
        return total

    for key, value in data.items():
        expanded = size(value)
        if expanded > ALIAS_FLOOR and expanded > ALIAS_GROWTH_LIMIT * len(sizes):
            where = YamlDocument(path, data).location((key,))
            raise ManifestError(
                [
                    ManifestIssue(
                        where,
                        str(key),
                        f"expands to {expanded:,} values through aliases from {len(sizes):,} "
                        "written ones (an alias bomb?)",
                    )
                ]
            )


def _single(path: Path, line: int, field: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field, message)])
