"""Reading YAML files with ruamel, keeping the line of every key and item for errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reconcile.errors import ManifestError, ManifestIssue, SourceLocation

MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    data: Any  # CommentedMap at the top when the file is a mapping

    def location(self, loc: Sequence[str | int]) -> SourceLocation:
        """The line of the deepest node of `loc` that exists in the file."""
        node = self.data
        line = 0
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0]
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0]
                node = node[part]
            else:
                break
        return SourceLocation(str(self.path), line + 1)


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
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(p) for p in (error.context, error.problem) if p)
        raise _single(path, line, "", f"YAML syntax: {problem}") from None
    except YAMLError as error:
        raise _single(path, 1, "", f"YAML syntax: {error}") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise _single(path, 1, "", "the file must hold a mapping (provider, properties, ...)")
    return YamlDocument(path, data)


def _single(path: Path, line: int, field: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field, message)])
