"""Reading Go source text: comments stripped with string literals kept whole, package-level
string variables, the module path of ``go.mod``. Pure functions on text (no Go toolchain)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MODULE = re.compile(r"^\s*module\s+(\"[^\"]+\"|\S+)", re.MULTILINE)
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_]\w*)", re.MULTILINE)
_IDENT = r"[A-Za-z_]\w*"
_SINGLE_VAR = re.compile(
    rf"^var[ \t]+({_IDENT}(?:[ \t]*,[ \t]*{_IDENT})*)[ \t]*(.*)$", re.MULTILINE
)
_VAR_BLOCK = re.compile(r"^var[ \t]*\((.*?)^\)", re.MULTILINE | re.DOTALL)
_BLOCK_LINE = re.compile(rf"^[ \t]*({_IDENT}(?:[ \t]*,[ \t]*{_IDENT})*)[ \t]*(.*)$")
_STRING_LITERAL = re.compile(r'^(?:"(?:[^"\\\n]|\\.)*"|`[^`]*`)$')


def module_path(go_mod: str) -> str | None:
    """The module path ``go.mod`` declares, or None."""
    found = _MODULE.search(strip_comments(go_mod))
    return found[1].strip('"') if found else None


def package_name(source: str) -> str | None:
    """The package a Go file declares."""
    found = _PACKAGE.search(strip_comments(source))
    return found[1] if found else None


def strip_comments(source: str) -> str:
    """Go source without its comments; string, raw string and rune literals kept as written
    (so ``"http://x"`` and ``"/health"`` survive). A block comment becomes one space."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c in "\"'`":
            end = _literal_end(source, i)
            out.append(source[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _literal_end(source: str, start: int) -> int:
    quote = source[start]
    i = start + 1
    while i < len(source):
        c = source[i]
        if c == "\\" and quote != "`":
            i += 2
            continue
        if c == quote or (c == "\n" and quote != "`"):
            return i + 1
        i += 1
    return len(source)


@dataclass(frozen=True)
class StringVar:
    """A package-level variable that ``-ldflags -X`` can set: of type string, or initialised
    with a string constant."""

    name: str
    line: int


def string_vars(source: str) -> list[StringVar]:
    """The package-level string variables of one Go file (``var Version = "dev"``,
    ``var Version string``, and each name of a ``var ( … )`` block)."""
    code = strip_comments(source)
    found: list[StringVar] = []
    for match in _SINGLE_VAR.finditer(code):
        if match[2].lstrip().startswith("("):
            continue
        names = _settable(match[1], match[2])
        line = code.count("\n", 0, match.start()) + 1
        found += [StringVar(name, line) for name in names]
    for block in _VAR_BLOCK.finditer(code):
        first = code.count("\n", 0, block.start(1)) + 1
        for offset, text in enumerate(block[1].split("\n")):
            if not text.strip():
                continue
            declared = _BLOCK_LINE.match(text)
            if declared is not None:
                names = _settable(declared[1], declared[2])
                found += [StringVar(n, first + offset) for n in names]
    return found


def _settable(names_text: str, rest: str) -> list[str]:
    """The names of ``names_text`` that are strings, given what follows them (``string``,
    ``= "dev"``, ``string = "dev"``, ``= f()``)."""
    names = [n.strip() for n in names_text.split(",")]
    rest = rest.strip().rstrip(";").strip()
    type_part, _, value_part = rest.partition("=")
    type_part = type_part.strip()
    if type_part and type_part != "string":
        return []  # another type: -X cannot set it
    if not value_part.strip():
        return names if type_part == "string" else []
    values = [v.strip() for v in _split_values(value_part.strip())]
    if len(values) != len(names) or not all(_STRING_LITERAL.match(v) for v in values):
        return []  # a computed value: the linker's -X leaves it alone
    return names


def _split_values(text: str) -> list[str]:
    """Comma-separated expressions, commas inside string literals kept."""
    parts: list[str] = []
    start, i = 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _literal_end(text, i)
            continue
        if c == ",":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts
