"""The fast path for big manifests: rapidyaml (C++) parses, a walk builds plain Python
values with ruamel's own YAML 1.2 scalar rules, and lines are found only when asked.

ruamel's pure-Python loader takes about 100 s for 100,000 contacts; this path takes a
few. It covers what manifests are made of: maps, sequences, plain, quoted and block
scalars. Anything else (anchors, aliases, tags, merge keys, directives, duplicate keys,
deep nesting, text ruamel's reader refuses, anything rapidyaml cannot parse) returns
None, and the caller reads the file with ruamel, which reports errors with lines.

A `contacts:` list written plainly (one `key: value` a line, each value a plain scalar or
a flat flow map or list of them) is read line by line with regular expressions, without
a tree (`_contacts_by_lines`): at a million contacts a tree node's few calls into the
binding add up to more than the rest of the load. Any other line leaves the list to
rapidyaml; test_fast_contacts compares the three readings on generated lists.

Maintainer note — why the unusual parts, and what to check when rapidyaml changes
(pyproject pins its minor version: the binding's API moves between minors):
- `ryml._ryml.Tree_*` are the SWIG binding's raw functions. The public `Tree` methods
  wrap each call in Python, which costs more than the parse at 1.2 million nodes. On an
  upgrade, check these names still exist and take (tree, node id) as before.
- ctypes: rapidyaml parses in place and hands scalars back as memoryviews into our
  buffer. A scalar's offset (and so its line, asked for only on errors) is its address
  minus the buffer's; `_address` reads a read-only view's address through the CPython
  buffer protocol, because ctypes maps only writable buffers. On an upgrade, check that
  scalars are still views into the parsed buffer (test_fast_yaml's line tests fail if not).
- stderr redirection: rapidyaml prints its parse errors straight to file descriptor 2
  (C++, not Python's sys.stderr); a file it cannot parse goes to ruamel, which reports
  the error with its line, so rapidyaml's own print is silenced at the descriptor level.
  On an upgrade, check whether it still prints and whether it raises `ExceptionBasic`.
- Both parsers must agree on every value the fast path returns: test_fast_yaml compares
  them on generated documents; run it after any upgrade.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import os
import re
import sys
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ryml
import ryml._ryml  # the binding's functions, without the per-call Python wrapper
from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import Reader

MAX_DEPTH = 64  # the same limit as the ruamel path (yaml_source)
_NONE = 2**64 - 1  # rapidyaml's "no node"
_UNSUPPORTED = ryml.KEYREF | ryml.VALREF | ryml.KEYANCH | ryml.VALANCH | ryml.KEYTAG | ryml.VALTAG
_MAP, _SEQ, _STREAM = ryml.MAP, ryml.SEQ, ryml.STREAM
_VAL_PLAIN, _KEY_PLAIN = ryml.VAL_PLAIN, ryml.KEY_PLAIN
_type = ryml._ryml.Tree_type
_key = ryml._ryml.Tree_key
_val = ryml._ryml.Tree_val
_first_child = ryml._ryml.Tree_first_child
_next_sibling = ryml._ryml.Tree_next_sibling
# Where the parsers disagree, each pattern after a quick test for the character it needs:
# ruamel refuses tabs, reads NEL and a lone CR as breaks, and ends a comment inside a
# flow collection at the end of the line, not at the bracket; rapidyaml misreads explicit
# `? key` entries and a colon next to a flow indicator (`{1:}`, `{:x}`). Manifests need
# none of these; ruamel reads them.
# (The colon's two patterns are apart: together, neither starts with a literal and the
# search tries every position of the text.)
_BREAKS = re.compile("[\t\x85\u2028\u2029]")
_DISAGREEMENTS = [
    ("\r", re.compile(r"\r(?!\n)")),
    ("#", re.compile(r"(?:^|\s)#[^\n]*[\]}]", re.MULTILINE)),
    ("?", re.compile(r"(?:^|[\s\[{,])\?(?:\s|$)", re.MULTILINE)),
    (":", re.compile(r":[\]}\[{,]")),
    (":", re.compile(r"[\[{,] *:")),
]
# Printable ASCII and line breaks: a text of only these has no tab, NEL or control character
_PRINTABLE_ASCII = bytes([ord("\n"), ord("\r"), *range(0x20, 0x7F)])
_FLOW_OPEN = re.compile(rb"[\[{]")
_FLOW_CLOSE = re.compile(rb"[\]}]")
_DASH = re.compile(rb"-")
# Cannot start a plain scalar (`?` and `:` can in block context, but ruamel reads `[?x]`
# as a key, rapidyaml as text: rare enough to leave all of them to ruamel)
_INDICATORS = frozenset(",[]{}#&*!|>'\"%@`?:")
_PIECE = 2**20  # bytes: documents above this have their nodes counted in pieces this big
_ITEM_LINE = re.compile(rb"\n {0,8}- ")
_TAG_PREFIX = "tag:yaml.org,2002:"
_SIMPLE_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_SIMPLE_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+\Z")


class _Fallback(Exception):
    """The document holds something only ruamel reads exactly."""


class _Scalars:
    """Plain scalars -> values, exactly as ruamel's round-trip loader resolves them."""

    def __init__(self) -> None:
        yaml = YAML(typ="rt")
        # ruamel's patterns are lazy proxies (an attribute lookup per match): unwrap once.
        self.resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {
            first: [(tag, re.compile(rx.pattern, rx.flags)) for tag, rx in candidates]
            for first, candidates in yaml.resolver.versioned_resolver.items()
        }
        self.constructor = yaml.constructor

    def plain(self, text: str) -> Any:
        first = text[:1]
        if first in _INDICATORS or (first == "-" and text[1:2] in {"", " "}):
            raise _Fallback("indicator")  # rapidyaml reads `{a: %}` and `}:`; YAML refuses
        candidates = self.resolvers.get(first)
        if candidates is None:
            return text
        for tag, pattern in candidates:
            if pattern.match(text):
                return self._construct(tag.removeprefix(_TAG_PREFIX), tag, text)
        return text

    def _construct(self, kind: str, tag: str, text: str) -> Any:
        if kind == "null":
            return None
        if kind == "bool":
            return text.lower() == "true"
        if kind == "timestamp":
            return text  # kept as text, as the ruamel path does (see yaml_source)
        if kind == "int" and _SIMPLE_INT.match(text):
            return int(text)
        if kind == "float" and _SIMPLE_FLOAT.match(text):
            return float(text)
        if kind in {"int", "float"}:  # 0x1F, 1_000, .inf, 1e3: ruamel's own constructor
            return getattr(self.constructor, f"construct_yaml_{kind}")(ScalarNode(tag, text))
        raise _Fallback(kind)  # merge key `<<`, value key `=`, ...


@functools.cache
def _plain_scalars() -> _Scalars:
    return _Scalars()  # once: building ruamel's tables takes a moment


_PACK_FROM = 1 << 20  # bytes


class FastLines:
    """Lines of a fast-parsed document. Top-level keys and their children (provider,
    properties.x, lists.y) are located during the walk; deeper paths, which only error
    messages ask for, parse the file again."""

    def __init__(self, raw: bytes) -> None:
        # Kept for error messages only, which are rare: a big file compressed (a million
        # contacts are 130 MB of text, some 15 MB compressed, and a second of CPU).
        self._raw: bytes | None = raw if len(raw) < _PACK_FROM else None
        self._packed = b"" if self._raw is not None else zlib.compress(raw, 1)
        self.shallow: dict[tuple[str | int, ...], int] = {}
        self._newlines: list[int] | None = None
        self._positions: _Positions | None = None

    @property
    def raw(self) -> bytes:
        """The file as read (unpacked again each time: only to build `_positions` and
        `_newlines`, which are kept)."""
        return self._raw if self._raw is not None else zlib.decompress(self._packed)

    def line(self, loc: Sequence[str | int]) -> int:
        """0-based line of the deepest node of `loc` that exists in the file."""
        known = self.shallow.get(tuple(loc))
        if known is not None:
            return known
        if self._positions is None:  # kept: errors come in batches
            self._positions = _Positions(_parse(self.raw), self.raw)
        positions = self._positions
        offset = 0
        node = _root(positions.tree)
        for part in loc:
            child = _child(positions.tree, node, part)
            if child is None:
                break
            node = child
            offset = positions.start(node)
        return self.line_at(offset)

    def line_at(self, offset: int) -> int:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer(b"\n", self.raw)]
        return bisect.bisect_left(self._newlines, offset)


def parse_fast(raw: bytes, text: str) -> tuple[Any, FastLines] | None:
    """(data, lines), or None when only ruamel reads this document exactly."""
    if not raw or text.startswith("%") or "\n%" in text:
        return None  # empty, or directives, which change the scalar rules
    if any(needed in text and pattern.search(text) for needed, pattern in _DISAGREEMENTS):
        return None
    if not text.isascii() or raw.translate(None, _PRINTABLE_ASCII):
        if _BREAKS.search(text):
            return None
        if Reader.NON_PRINTABLE.search(text):
            return None  # ruamel refuses these characters with their line
    try:
        found = _read_in_pieces(raw)
        data, offsets, parsed_bytes = found or (*_read(raw), raw)
    except (_Fallback, ryml.ExceptionBasic, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None  # empty, or not a manifest: ruamel's reading decides
    lines = FastLines(raw)
    lines.shallow = {path: parsed_bytes.count(b"\n", 0, at) for path, at in offsets.items()}
    return data, lines


def _read(raw: bytes) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The document's values and the offsets of its shallow keys; the tree is freed on
    return, before the values are validated."""
    parsed = _parse(raw)
    walk = _Walk(parsed)
    root = _root(parsed.tree)
    return walk.value(root, _type(parsed.tree, root), 0, ()), walk.offsets


# A big manifest is mostly its `contacts:` list. Its tree (~140 bytes a node, a dozen nodes
# a contact) would take 1.7 GB at a million contacts on top of the values built from it, so
# the list is parsed in pieces of whole items, each tree freed before the next.
_CONTACTS_LINE = re.compile(rb"^contacts:[ ]*(?:#[^\n]*)?\n", re.MULTILINE)
_FIRST_ITEM = re.compile(rb"(?:[ ]*(?:#[^\n]*)?\n)*( *)-[ \n]")
_BLOCK_END = {
    True: re.compile(rb"\n(?=[^ \n#-]|-[^ \n])"),  # items at column 0: a line that is no item
    False: re.compile(rb"\n(?=[^ \n#])"),  # indented items: any line at column 0
}


def _contacts_lines(raw: bytes) -> list[re.Match[bytes]]:
    """The `contacts:` lines that open a block (as `_CONTACTS_LINE.finditer`, without
    trying the pattern at every line of a big file)."""
    starts = [0] if raw.startswith(b"contacts:") else []
    at = raw.find(b"\ncontacts:")
    while at != -1:
        starts.append(at + 1)
        at = raw.find(b"\ncontacts:", at + 1)
    return [found for start in starts if (found := _CONTACTS_LINE.match(raw, start))]


def _read_in_pieces(raw: bytes) -> tuple[Any, dict[tuple[str | int, ...], int], bytes] | None:
    """(values, offsets of shallow keys, the bytes the offsets are in) of a document whose
    top-level `contacts:` is a block sequence: the rest of the document parsed with the
    list's lines left blank (so lines stay where they are), the list line by line when its
    entries are written plainly (`_contacts_by_lines`), else (a big document) in pieces cut
    before its items. None when the document is not written so (the whole is parsed at
    once)."""
    found = _contacts_lines(raw)
    if len(found) != 1:
        return None
    start = found[0].end()
    first = _FIRST_ITEM.match(raw, start)
    if first is None:
        return None
    indent = first.group(1)
    end_found = _BLOCK_END[not indent].search(raw, first.end())
    end = end_found.start() + 1 if end_found else len(raw)
    try:
        items = _contacts_by_lines(raw, start, end, indent)
        if items is None and len(raw) > _PIECE:
            items = _items_in_pieces(raw, start, end, re.compile(b"\n" + indent + b"-[ \n]"))
        if items is None:
            return None
        rest = raw[:start] + b"\n" * raw.count(b"\n", start, end) + raw[end:]
        data, offsets = _read(rest)
    except (_Fallback, ryml.ExceptionBasic):
        return None  # parsed whole: that reading decides
    if not isinstance(data, dict) or data.get("contacts", ...) is not None:
        return None
    data["contacts"] = items
    return data, offsets, rest


# The plain way contacts are written, one `key: value` a line, the value a plain scalar or a
# flow map or list of them on that line: read line by line with regular expressions (a tree
# node costs a few calls into the binding; a line, one regular expression's share). The
# scalars are a strict subset of plain ones (no `#`, no flow indicators, single spaces, no
# `: `, no leading indicator), so every parser cuts them the same; `_Walk`'s rules turn
# them into values. Any other line (block scalars, quotes, nesting, trailing spaces,
# anchors, ...) leaves the whole list to rapidyaml.
_CHAR = r"[^\x00-\x20\x7f-\x9f\u2028\u2029\ufeff:#,\[\]{}]"  # a colon only before one
_WORD = rf"{_CHAR}*+(?::{_CHAR}++)*+"
_SCALAR = (
    rf"(?:[^\x00-\x20\x7f-\x9f\u2028\u2029\ufeff:#,\[\]{{}}\-?&*!|>'\"%@`]|-{_CHAR})"
    rf"{_WORD}(?: {_CHAR}{_WORD})*+"
)
_FLOW_VALUE = (
    rf"\{{(?:{_SCALAR}: {_SCALAR}(?:, {_SCALAR}: {_SCALAR})*)?\}}"
    rf"|\[(?:{_SCALAR}(?:, {_SCALAR})*)?\]"
)
_LINES_CHUNK = 2**19  # bytes of the list decoded and matched at a time
_FIRST_CHUNK = 2**12  # the first chunk, whose entries give the shape of the others


@functools.cache
def _line_pattern(indent: bytes, shape: tuple[str, ...] = ()) -> re.Pattern[str]:
    """A line of the list: (`-` or ` `, key, value) of an entry's `key: value` line, or
    a blank or comment line (the 4th group), or any other line (the 5th). With `shape`,
    the keys of an entry in order, a whole entry of those lines comes first: its values
    are the first len(shape) groups, empty when what matched is a line."""
    lead = re.escape(indent.decode("ascii"))
    value = rf"({_FLOW_VALUE}|{_SCALAR})\n"
    whole = "".join(
        rf"{lead}{'-' if at == 0 else ' '} {re.escape(key)}: {value}"
        for at, key in enumerate(shape)
    )
    entry = rf"{lead}([- ]) ({_SCALAR}): {value}"
    lines = rf"{entry}|([ ]*(?:#[^\n]*)?\n)|([^\n]*\n)"
    return re.compile(rf"{whole}|{lines}" if shape else lines)


def _contacts_by_lines(raw: bytes, start: int, end: int, indent: bytes) -> list[Any] | None:
    """The items of the block list raw[start:end] (its dashes at `indent`), when every line
    is an entry's plain `key: value` line, blank or a comment; else None."""
    reader = _LineReader(indent)
    size = _FIRST_CHUNK
    while start < end:
        cut = raw.find(b"\n", start + size, end)
        size = _LINES_CHUNK
        stop = end if cut == -1 else cut + 1
        chunk = raw[start:stop].decode("utf-8")
        if not chunk.endswith("\n"):
            chunk += "\n"  # the last line of a file that does not end with one
        try:
            if not reader.read(chunk):
                return None
        except _Fallback:
            return None  # (rapidyaml's reading decides: ruamel's, or in pieces)
        start = stop
    return reader.items


class _LineReader:
    """Items of a block list of plain entries, from its text a chunk of whole lines at a
    time. Hot loop: at a million contacts it sees four million lines."""

    def __init__(self, indent: bytes) -> None:
        self.pattern = _line_pattern(indent)
        self.plain = _plain_scalars().plain
        # first characters of the texts that `plain` may not return as they are
        self.special = frozenset(_plain_scalars().resolvers) | _INDICATORS | {"-"}
        # text -> value: every key, and the values that need resolving (bounded: numbers vary)
        self.keys: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.lists: dict[str, tuple[Any, ...]] = {}  # `[a, b]` -> its values
        self.items: list[Any] = []
        self.item: dict[Any, Any] | None = None
        self.indent = indent
        self.shape: tuple[str, ...] = ()  # the keys of the first entry, once it is read

    def read(self, chunk: str) -> bool:
        """False when a line is not an entry's plain `key: value` line (nor blank, nor a
        comment), or an entry has a key twice."""
        keys, special, items, item = self.keys, self.special, self.items, self.item
        shape = self.shape
        width = len(shape)
        for groups in self.pattern.findall(chunk):
            if width and groups[0]:  # a whole entry of the usual shape
                item = {}
                items.append(item)
                for name, text in zip(shape, groups, strict=False):
                    opening = text[0]
                    if opening == "{":
                        mapping = self._mapping(text)
                        if mapping is None:
                            return False
                        item[name] = mapping
                    elif opening == "[":
                        item[name] = self._list(text)
                    else:
                        item[name] = text if opening not in special else self._resolved(text)
                continue
            dash, key_text, value_text, skipped, other = groups[width:] if width else groups
            if other:
                return False
            if skipped:
                continue
            if dash == "-":
                item = {}
                items.append(item)
            elif item is None:
                return False
            key = keys.get(key_text)
            if key is None:  # (a null key, `~:`, is resolved again each time: rare)
                key = self._key(key_text)
            if key in item:
                return False  # rapidyaml's reading gives it to ruamel, which reports it
            opening = value_text[0]
            if opening == "{":
                mapping = self._mapping(value_text)
                if mapping is None:
                    return False
                item[key] = mapping
            elif opening == "[":
                item[key] = self._list(value_text)
            else:
                item[key] = value_text if opening not in special else self._resolved(value_text)
        self.item = item
        if not width and len(items) > 1:
            self._take_shape(items[0])
        return True

    def _take_shape(self, first: dict[Any, Any]) -> None:
        """Match whole entries keyed as `first` at once (one match, not one a line), when
        its keys are text as written (the pattern holds them as written)."""
        if all(type(key) is str and self.keys.get(key) is key for key in first):
            self.shape = tuple(first)
            self.pattern = _line_pattern(self.indent, self.shape)

    def _mapping(self, text: str) -> dict[Any, Any] | None:
        keys, special = self.keys, self.special
        mapping: dict[Any, Any] = {}
        if len(text) > 2:
            for pair in text[1:-1].split(", "):
                key_text, _, value = pair.partition(": ")
                key = keys.get(key_text)
                if key is None:
                    key = self._key(key_text)
                if key in mapping:
                    return None
                mapping[key] = value if value[0] not in special else self._resolved(value)
        return mapping

    def _list(self, text: str) -> list[Any]:
        found = self.lists.get(text)
        if found is None:
            texts = text[1:-1].split(", ") if len(text) > 2 else []
            special = self.special
            found = tuple(t if t[0] not in special else self._resolved(t) for t in texts)
            if len(self.lists) < 4096:
                self.lists[text] = found
        return list(found)

    def _resolved(self, text: str) -> Any:
        value = self.values.get(text, self.values)
        if value is self.values:
            value = self.plain(text)
            if len(self.values) < 4096:
                self.values[text] = value
        return value

    def _key(self, text: str) -> Any:
        self.keys[text] = key = _plain_key(text, self.plain)
        return key


def _plain_key(text: str, plain: Any) -> Any:
    """A plain key's value, interned when text (one object for every entry's `email`)."""
    if not text:
        raise _Fallback("null key")  # `[:]` reads differently; no manifest has one
    key = plain(text)
    if isinstance(key, float):
        raise _Fallback("float key")  # 1.0 and 1 are one key to Python
    return sys.intern(key) if isinstance(key, str) else key


def _items_in_pieces(
    raw: bytes, start: int, end: int, item_line: re.Pattern[bytes]
) -> list[Any] | None:
    items: list[Any] = []
    keys: dict[str, Any] = {}
    while start < end:
        cut = item_line.search(raw, start + _PIECE // 2, end)
        stop = cut.start() + 1 if cut else end
        parsed = _parse(raw[start:stop])
        walk = _Walk(parsed)
        walk.keys = keys
        root = _root(parsed.tree)
        kind = _type(parsed.tree, root)
        if not kind & _SEQ:
            return None
        items.extend(walk.value(root, kind, 1, None))  # depth 1: the list's, in the document
        del parsed, walk
        start = stop
    return items


class _Walk:
    """Builds the document's values; records the offsets of keys two levels deep.

    Hot loop: at 100,000 contacts it visits about 1.2 million nodes, so it calls the
    binding's functions directly (skipping a wrapper per call), reads each node's type
    once, and resolves each distinct key text once."""

    def __init__(self, parsed: _Parsed) -> None:
        self.tree = parsed.tree
        self.base = parsed.base
        self.offsets: dict[tuple[str | int, ...], int] = {}
        self.plain = _plain_scalars().plain
        self.keys: dict[str, Any] = {}

    def value(self, node: int, kind: int, depth: int, path: tuple[str, ...] | None) -> Any:
        if kind & _UNSUPPORTED or depth > MAX_DEPTH:
            raise _Fallback("anchor, alias, tag or deep nesting")
        if kind & _MAP:
            return self._map(node, depth, path)
        if kind & _SEQ:
            return self._seq(node, depth)
        view = _val(self.tree, node)
        text = "" if view is None else str(view, "utf-8")
        return self.plain(text) if kind & _VAL_PLAIN else text

    def _seq(self, node: int, depth: int) -> list[Any]:
        tree = self.tree
        items: list[Any] = []
        child = _first_child(tree, node)
        while child != _NONE:
            items.append(self.value(child, _type(tree, child), depth + 1, None))
            child = _next_sibling(tree, child)
        return items

    def _map(self, node: int, depth: int, path: tuple[str, ...] | None) -> dict[Any, Any]:
        tree = self.tree
        record = path is not None and len(path) < 2
        result: dict[Any, Any] = {}
        child = _first_child(tree, node)
        while child != _NONE:
            kind = _type(tree, child)
            view = _key(tree, child)
            if view is None:
                raise _Fallback("null key")
            key = self._key(str(view, "utf-8"), kind)
            if key in result:
                raise _Fallback("duplicate key")  # ruamel reports it with its line
            child_path = None
            if record and path is not None and isinstance(key, str):
                child_path = (*path, key)
                self.offsets[child_path] = _address(view) - self.base
            result[key] = self.value(child, kind, depth + 1, child_path)
            child = _next_sibling(tree, child)
        return result

    def _key(self, text: str, kind: int) -> Any:
        if not kind & _KEY_PLAIN:
            return text
        key = self.keys.get(text)
        if key is None:
            self.keys[text] = key = _plain_key(text, self.plain)
        return key


def _root(tree: Any) -> int:
    root: int = tree.root_id()
    kind = tree.type(root)
    if kind & _STREAM == _STREAM:  # (STREAM includes the SEQ bit)
        if tree.num_children(root) != 1:
            raise _Fallback("several documents")
        root = tree.first_child(root)
    return root


def _is_null(tree: Any, node: int) -> bool:
    return not tree.is_container(node) and not (tree.has_val(node) and tree.val(node) is not None)


def _child(tree: Any, node: int, part: str | int) -> int | None:
    """The child of a map by key or of a sequence by index (found in C++: at 100,000
    contacts a Python walk along the siblings would take a while per error)."""
    if tree.is_seq(node):
        found = tree.child(node, part) if isinstance(part, int) and part >= 0 else _NONE
        return None if found == _NONE else int(found)
    if isinstance(part, str) and part:
        found = tree.find_child(node, part.encode("utf-8"))
        if found != _NONE and (
            not tree.is_key_plain(found) or _plain_scalars().plain(part) == part
        ):
            return int(found)
    child = tree.first_child(node)
    while child != _NONE:  # keys that are not text as written (`0x1F: x` is 31)
        key: Any = str(tree.key(child) or b"", "utf-8")
        if tree.is_key_plain(child):
            key = _plain_scalars().plain(key)
        if key == part and isinstance(key, bool) == isinstance(part, bool):
            return int(child)
        child = tree.next_sibling(child)
    return None


class _Positions:
    """Where nodes start in the parsed buffer, as ruamel marks them. Keys and scalars
    point into the buffer; a container or a null item has no text of its own, so it
    starts at the first bracket or dash after whatever precedes it."""

    def __init__(self, parsed: _Parsed, raw: bytes) -> None:
        self.parsed = parsed
        self.tree = parsed.tree
        self.base = parsed.base
        self.raw = raw

    def start(self, node: int) -> int:
        tree = self.tree
        if tree.has_key(node) and tree.key(node) is not None:
            return _address(tree.key(node)) - self.base
        view = self._val(node)
        if view is not None:
            offset = _address(view) - self.base
            if tree.is_val_literal(node) or tree.is_val_folded(node):
                # the text starts on the line after the `|` or `>` that opens it
                return max(self.raw.rfind(b"|", 0, offset), self.raw.rfind(b">", 0, offset))
            return offset
        if tree.is_container(node) and tree.is_flow(node):
            found = _FLOW_OPEN.search(self.raw, self._before(node))
        elif tree.is_map(node):
            return self.start(tree.first_child(node))  # its first key
        elif tree.is_seq(node):  # a block sequence: the dash of its first item
            first = tree.first_child(node)
            start = self.start(first)
            return start if _is_null(tree, first) else self.raw.rfind(b"-", 0, start)
        else:  # a null item, `- ` with no text
            found = _DASH.search(self.raw, self._before(node))
        return found.start() if found else self._before(node)

    def end(self, node: int) -> int:
        tree = self.tree
        view = self._val(node)
        if view is not None:
            offset = _address(view) - self.base
            if tree.is_val_literal(node) or tree.is_val_folded(node):
                # rewritten in place, so the value's length says nothing about the text's
                if len(view):
                    return self._block_end(offset)
                return max(self.raw.rfind(b"|", 0, offset), self.raw.rfind(b">", 0, offset)) + 1
            return offset + len(view)
        child = tree.last_child(node)
        if child != _NONE:
            return self.end(child)
        if _is_null(tree, node):  # `key:` or a `- ` item
            key = tree.key(node) if tree.has_key(node) else None
            return self.start(node) + (1 if key is None else len(key))
        start = self.start(node)
        found = _FLOW_CLOSE.search(self.raw, start)
        return found.end() if found else start

    def _block_end(self, offset: int) -> int:
        """The end of a block scalar whose text starts on the line of `offset`: the first
        later line that is indented less and not blank."""
        raw = self.raw
        start = raw.rfind(b"\n", 0, offset) + 1
        indent = None
        while start < len(raw):
            end = raw.find(b"\n", start)
            line = raw[start : len(raw) if end == -1 else end]
            if line.strip():
                line_indent = len(line) - len(line.lstrip(b" "))
                if indent is None:
                    indent = line_indent
                elif line_indent < indent:
                    return start
            start = len(raw) if end == -1 else end + 1
        return len(raw)

    def _before(self, node: int) -> int:
        tree = self.tree
        previous = tree.prev_sibling(node)
        if previous != _NONE:
            return self.end(previous)
        parent = tree.parent(node)
        if parent == _NONE:
            return 0
        if tree.has_key(parent) and tree.key(parent) is not None:
            key = tree.key(parent)
            return _address(key) - self.base + len(key)
        before = self._before(parent)
        # the first child comes after its parent's opening: a flow bracket, or (a block
        # sequence that is an item of another: `- - x`) the dash of that outer item
        grandparent = tree.parent(parent)
        opening = None
        if tree.is_flow(parent):
            opening = _FLOW_OPEN.search(self.raw, before)
        elif tree.is_seq(parent) and grandparent != _NONE and tree.is_seq(grandparent):
            opening = _DASH.search(self.raw, before)
        return opening.end() if opening else before

    def _val(self, node: int) -> memoryview | None:
        return self.tree.val(node) if self.tree.has_val(node) else None


@dataclass(frozen=True)
class _Parsed:
    """A rapidyaml tree over a private copy of the file, and the copy's address: scalars
    point into it, so their offsets (and lines) are address differences."""

    buffer: bytearray  # the tree's scalars live here: it must outlive the tree
    tree: Any
    base: int


def _parse(raw: bytes) -> _Parsed:
    buffer = bytearray(raw)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    tree = ryml.Tree()
    if len(raw) > _PIECE:
        # A tree doubles as it grows, so up to half its nodes (~140 bytes each) can sit
        # unused: at 100,000 contacts, 290 MB for 1.2 million nodes. Reserving what a
        # count of the nodes says (plus a margin) keeps it near 170 MB.
        estimate = _node_estimate(raw)
        if estimate is not None:
            tree.reserve(estimate + estimate // 50 + 64)
    return _Parsed(buffer, _parse_into(buffer, tree), base)


def _node_estimate(raw: bytes) -> int | None:
    """The nodes the document's tree needs, counted by parsing it in ~1 MB pieces cut
    before a line that starts a sequence item (small trees, freed as it goes). Only an
    estimate: None when a piece does not parse on its own."""
    total = 0
    start = 0
    while start < len(raw):
        cut = _ITEM_LINE.search(raw, start + _PIECE)
        end = cut.start() + 1 if cut else len(raw)
        try:
            total += _parse_into(bytearray(raw[start:end]), ryml.Tree()).size()
        except ryml.ExceptionBasic:
            return None
        start = end
    return total


def _parse_into(buffer: bytearray, tree: Any) -> Any:
    with _stderr_silenced():  # rapidyaml prints parse errors; ruamel will report them
        ryml.parse_in_place(buffer, tree)
    return tree


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def _address(view: memoryview) -> int:
    """Address of a read-only memoryview's bytes (ctypes only maps writable ones)."""
    buffer = _PyBuffer()
    if ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(view), ctypes.byref(buffer), 0):
        raise _Fallback("buffer")
    try:
        return int(buffer.buf or 0)
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(buffer))


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
