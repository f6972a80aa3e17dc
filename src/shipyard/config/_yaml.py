"""Reading ``shipyard.yml``: YAML with the position of every key, within bounds.

Aliases (``*name``) are not copied by the parser: the document shares the anchored value. Everything
after it (positions, merging, validation) copies them out, so what aliases repeat is counted first,
in one pass over the shared values, and a file whose aliases repeat too much is refused: nine levels
of nine aliases (the "billion laughs") are a few hundred bytes that expand to 387 million values.
Merge keys (``<<: *defaults``) are aliases too, and are counted the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.tokens import ScalarToken

from shipyard.errors import ConfigError, Issue

Path_ = tuple[str | int, ...]
Positions = dict[Path_, tuple[int, int]]

# What aliases may repeat, counted in values and characters (a string of ten characters counts
# 11). Anchors that shipyard.yml uses on purpose (defaults merged into a few environments)
# repeat a few thousand at most; a billion-laughs file passes this by its fifth level.
MAX_REPEATED = 100_000

_QUOTES = ("'", '"')


def dotted(path: Path_) -> str:
    """``("app", "env", "X")`` → ``app.env.X``; ``("health", "checks", 0)`` → ``health.checks[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def read_yaml(path: Path) -> Any:
    """The document of ``path`` (ruamel round-trip containers), or ``ConfigError``.

    Refuses a document whose aliases repeat more than ``MAX_REPEATED`` values and characters.
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Issue(file, None, None, "", "not UTF-8 text")]) from exc
    try:
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise ConfigError([_syntax_issue(file, text, exc)]) from exc
    except YAMLError as exc:
        raise ConfigError([Issue(file, None, None, "", f"invalid YAML: {exc}")]) from exc
    _refuse_alias_bombs(file, document)
    return document


def _syntax_issue(file: str, text: str, exc: MarkedYAMLError) -> Issue:
    """Where the parser gave up; for a quote left open, where the quote opened as well."""
    mark = exc.problem_mark
    problem = exc.problem or str(exc)
    if mark is None:
        return Issue(file, None, None, "", f"invalid YAML: {problem}")
    gave_up = f"{mark.line + 1}:{mark.column + 1}"

    def at(where: StreamMark, message: str) -> Issue:
        return Issue(file, where.line + 1, where.column + 1, "", f"invalid YAML: {message}")

    if exc.context == "while scanning a quoted scalar" and exc.context_mark is not None:
        return at(
            exc.context_mark,
            f"the quote that opens here is never closed (the parser reached {gave_up}: {problem})",
        )
    opened = _quote_open_across_lines(text, mark)
    if opened is not None:
        return at(
            opened,
            f"the quoted value that starts here runs on to line {mark.line + 1}, "
            f"where the parser gave up ({gave_up}: {problem}); is its closing quote missing?",
        )
    return at(mark, problem)


def _quote_open_across_lines(text: str, failure: StreamMark) -> StreamMark | None:
    """The start of a quoted value that runs over several lines up to the line of ``failure``: a
    quote left open runs on to the next quote in the file, and the parser gives up just after."""
    found = None
    try:
        for token in YAML(typ="rt").scan(text):
            start, end = token.start_mark, token.end_mark
            if start.line >= failure.line:
                break
            if (
                isinstance(token, ScalarToken)
                and token.style in _QUOTES
                and end.line == failure.line
            ):
                found = start
    except YAMLError:
        pass  # the same error again, at or after ``failure``: every token before it was seen
    return found


def _is_shared(value: Any) -> bool:
    """Whether ``value`` can appear more than once: a container, or an anchored scalar."""
    if isinstance(value, CommentedMap | CommentedSeq):
        return True
    anchor = getattr(value, "anchor", None)
    return anchor is not None and getattr(anchor, "value", None) is not None


def _merged_maps(node: CommentedMap) -> Iterator[CommentedMap]:
    """The maps a ``<<`` merge key brought into ``node`` (ruamel 0.18 keeps (index, map) pairs)."""
    for merged in getattr(node, "merge", ()):
        yield merged[1] if isinstance(merged, tuple) else merged


def _own(node: CommentedMap, key: Any) -> bool:
    """Whether ``key`` is written in ``node`` itself (not brought in by a merge key)."""
    written = node.lc.data  # None when every key came from a merge
    return written is not None and key in written


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int] | None:
    """1-based (line, column) where ``key`` is written: in ``node``, or in a map merged into it."""
    if _own(node, key):
        line, col = node.lc.key(key)
        return line + 1, col + 1
    for merged in _merged_maps(node):
        found = _key_position(merged, key)
        if found is not None:
            return found
    return None


def _children(node: Any, seen: set[int]) -> Iterator[tuple[str | int, Any, tuple[int, int] | None]]:
    """(key or index, value, position) of a container's children, in document order.

    ``seen``: the shared values met so far. ruamel gives an alias in a sequence the position of
    its anchor; such an item gets none (a message about it points at the sequence instead).
    """
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            yield str(key), value, _key_position(node, key)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            if _is_shared(value) and id(value) in seen:
                yield index, value, None
            else:
                line, col = node.lc.item(index)
                yield index, value, (line + 1, col + 1)


def _refuse_alias_bombs(file: str, document: Any) -> None:
    """``ConfigError`` at the alias that takes what aliases repeat past ``MAX_REPEATED``.

    Linear in the document as written: the expanded size of each shared value is computed once.
    """
    sizes: dict[int, int] = {}
    seen: set[int] = set()
    repeated = 0

    def size(value: Any) -> int:
        """Values and characters in ``value`` with its aliases expanded."""
        if not isinstance(value, CommentedMap | CommentedSeq):
            return 1 + len(value) if isinstance(value, str) else 1
        known = sizes.get(id(value))
        if known is None:
            sizes[id(value)] = 1  # a value that contains itself counts once
            pairs = value.items() if isinstance(value, CommentedMap) else enumerate(value)
            known = 1 + sum(size(child) + _key_size(key) for key, child in pairs)
            sizes[id(value)] = known
        return known

    def walk(node: Any, path: Path_, where: tuple[int, int] | None) -> None:
        nonlocal repeated
        for key, child, position in _children(node, seen):
            merged = isinstance(node, CommentedMap) and not _own(node, key)
            again = _is_shared(child) and id(child) in seen
            if merged or again:
                repeated += size(child) + (_key_size(key) if merged else 0)
                if repeated > MAX_REPEATED:
                    at = position or where  # an alias in a sequence: the sequence's key
                    raise ConfigError([_bomb_issue(file, (*path, key), at, child)])
                continue
            if _is_shared(child):
                seen.add(id(child))
            walk(child, (*path, key), position or where)

    walk(document, (), None)


def _key_size(key: Any) -> int:
    """Characters of a mapping key (an index of a sequence is not written: none)."""
    return len(key) if isinstance(key, str) else 0


def _bomb_issue(file: str, path: Path_, position: tuple[int, int] | None, value: Any) -> Issue:
    anchor = getattr(getattr(value, "anchor", None), "value", None)
    line, col = position if position is not None else (None, None)
    return Issue(
        file,
        line,
        col,
        dotted(path),
        f"aliases repeat more than {MAX_REPEATED:,} values and characters by here"
        f"{f' (alias *{anchor})' if anchor else ''}; nested aliases multiply: write the values out",
    )


def key_positions(document: Any) -> Positions:
    """Every key path of ``document`` (aliases expanded) → its 1-based (line, column). Linear."""
    found: Positions = {}
    seen: set[int] = set()

    def walk(node: Any, prefix: Path_) -> None:
        for key, child, position in _children(node, seen):
            path = (*prefix, key)
            if position is not None:
                found[path] = position
            if _is_shared(child):
                seen.add(id(child))
            walk(child, path)

    walk(document, ())
    return found
