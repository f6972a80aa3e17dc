"""A linter for migrations that must be safe while two app versions share the schema (blue-green).

Pure functions over SQL text: no database. Comments, string literals and ``$$`` bodies are masked
out first (replaced by spaces, newlines kept) so offsets in the masked text are offsets in the file
and nothing inside a function body or a string is ever flagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Finding",
    "lint_file",
    "lint_files",
    "lint_sql",
    "mask_sql",
    "runs_in_one_transaction",
    "split_statements",
    "statement_at_line",
]


@dataclass(frozen=True)
class Finding:
    """One unsafe statement: where, what, and the safe way to get the same result."""

    file: str
    line: int
    rule: str
    message: str
    safe: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}\n    safe: {self.safe}"


@dataclass(frozen=True)
class Statement:
    start: int  # offset of the first character in the file
    text: str  # masked text of the statement (same offsets as the file)


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _blank(text: str) -> str:
    return "".join(ch if ch == "\n" else " " for ch in text)


def mask_sql(sql: str) -> str:  # noqa: C901, PLR0912, PLR0915 — one small lexer
    """Replace comments, string literal contents and dollar-quoted bodies by spaces.

    The result has the same length and newlines as ``sql``. Quoted identifiers are kept.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(_blank(sql[i:end]))
            i = end
        elif ch == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(_blank(sql[i:j]))
            i = j
        elif ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE"
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            out.append("'" + _blank(sql[i + 1 : j]) + ("'" if j < n else ""))
            i = j + 1
        elif ch == '"':
            j = sql.find('"', i + 1)
            j = n - 1 if j == -1 else j
            out.append(sql[i : j + 1])
            i = j + 1
        elif ch == "$" and (match := _DOLLAR_TAG.match(sql, i)) and not _in_word(sql, i):
            tag = match.group(0)
            end = sql.find(tag, match.end())
            end = n if end == -1 else end
            out.append(tag + _blank(sql[match.end() : end]) + (tag if end < n else ""))
            i = end + len(tag)
        else:
            out.append(ch)
            i += 1
    return "".join(out)[:n]


def _in_word(sql: str, i: int) -> bool:
    """``$`` inside an identifier (``a$b``) or a positional parameter is not a dollar quote."""
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")


def split_statements(masked: str) -> Iterator[Statement]:
    """Statements of masked SQL, split on ``;`` (which can no longer hide in strings or bodies)."""
    start = 0
    for index, ch in enumerate(masked + ";"):
        if ch == ";":
            chunk = masked[start:index]
            stripped = chunk.lstrip()
            if stripped.strip():
                yield Statement(start + len(chunk) - len(stripped), stripped)
            start = index + 1


# -- rules ----------------------------------------------------------------------------------------
_I = re.IGNORECASE | re.DOTALL
_IDENT = r'(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"(?P<table>{_IDENT}(?:\s*\.\s*{_IDENT})?)"
_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP(?:ORARY)?\s+|UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}",
    _I,
)
_ALTER_TABLE = re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_NAME}\s*", _I)
_DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\b", _I)
_CREATE_INDEX = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?.*?\bON\s+(?:ONLY\s+)?{_NAME}",
    _I,
)
_DROP_INDEX = re.compile(r"^\s*DROP\s+INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?", _I)
_REWRITE_COMMAND = re.compile(r"^\s*(?:VACUUM\s+(?:\(\s*)?FULL\b|CLUSTER\b)", _I)
_VOLATILE = re.compile(
    r"\b(?:random|gen_random_uuid|uuid_generate_v[14]|clock_timestamp|timeofday|nextval|txid_current)\s*\(",
    _I,
)
_TRANSACTION_CONTROL = re.compile(r"^\s*(?:BEGIN|COMMIT|END|ROLLBACK|START\s+TRANSACTION)\b", _I)

_EXPAND_CONTRACT = (
    "expand/contract: release code that no longer uses it first, then remove it in a later "
    "deploy once no running version needs it"
)
_SAFE = {
    "drop-table": "stop using the table in one release; DROP TABLE in a later release ("
    + _EXPAND_CONTRACT
    + ")",
    "drop-column": "stop reading and writing the column in one release; DROP COLUMN in a later "
    "release (" + _EXPAND_CONTRACT + ")",
    "rename-column": "add the new column, write both, backfill, switch reads, drop the old one "
    "in a later release",
    "rename-table": "create the new table (or a view with the old name), move readers and "
    "writers, drop the old name in a later release",
    "alter-column-type": "add a column of the new type, backfill it in batches, switch readers, "
    "drop the old column in a later release",
    "set-not-null": "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT in "
    "a later migration; then SET NOT NULL (PostgreSQL ≥ 12 uses the valid constraint, no scan)",
    "add-column-not-null": "add the column nullable (or with a constant DEFAULT), backfill, then "
    "enforce NOT NULL with a NOT VALID check constraint validated later",
    "create-index": "CREATE INDEX CONCURRENTLY, alone in its own migration file (golang-migrate "
    "runs a file as one implicit transaction, which CONCURRENTLY cannot run in)",
    "concurrent-index-not-alone": "move the CONCURRENTLY statement into a migration file of its "
    "own (a file with several statements runs in one implicit transaction)",
    "drop-index": "DROP INDEX CONCURRENTLY, alone in its own migration file",
    "constraint-not-valid": "ADD CONSTRAINT … NOT VALID, then ALTER TABLE … VALIDATE CONSTRAINT "
    "in a later migration (validation takes a weaker lock)",
    "add-unique-constraint": "CREATE UNIQUE INDEX CONCURRENTLY (own file), then ADD CONSTRAINT "
    "… UNIQUE USING INDEX",
    "table-rewrite": "add the column without the rewriting part (nullable, constant DEFAULT), "
    "fill it in batches or with a trigger, and compute generated values in the app or a view",
    "transaction-control": "leave transactions to golang-migrate; split the file instead",
}


def _table_key(name: str) -> str:
    parts = [p.strip().strip('"') for p in re.split(r"\s*\.\s*", name)]
    key = ".".join(parts).lower() if any(p != p.lower() for p in parts) else ".".join(parts)
    return key.removeprefix("public.").lower()


def _actions(body: str) -> Iterator[tuple[int, str]]:
    """Top-level comma-separated actions of an ALTER TABLE, with their offsets in ``body``."""
    depth, start = 0, 0
    for index, ch in enumerate(body + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield start, body[start:index]
            start = index + 1


_ACTION_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"^\s*DROP\s+(?:COLUMN\s+)?(?!CONSTRAINT\b)", _I),
        "drop-column",
        "drops a column the running version may still read or write",
    ),
    (
        re.compile(r"^\s*RENAME\s+TO\b", _I),
        "rename-table",
        "renames a table the running version still uses by its old name",
    ),
    (
        re.compile(r"^\s*RENAME\s+(?:COLUMN\s+)?(?!CONSTRAINT\b)", _I),
        "rename-column",
        "renames a column the running version still uses by its old name",
    ),
    (
        re.compile(r"^\s*ALTER\s+(?:COLUMN\s+)?\S+\s+(?:SET\s+DATA\s+)?TYPE\b", _I),
        "alter-column-type",
        "changes a column's type (rewrites the table under an exclusive lock; the old version breaks)",
    ),
    (
        re.compile(r"^\s*ALTER\s+(?:COLUMN\s+)?\S+\s+SET\s+NOT\s+NULL\b", _I),
        "set-not-null",
        "SET NOT NULL scans the whole table under an exclusive lock, and the old version may still write NULLs",
    ),
]


def _check_action(action: str) -> tuple[str, str] | None:  # noqa: PLR0911 — one rule per return
    for pattern, rule, message in _ACTION_RULES:
        if pattern.search(action):
            return rule, message
    if re.match(
        r"^\s*ADD\s+(?:COLUMN\s+)?(?!CONSTRAINT\b|CHECK\b|FOREIGN\b|UNIQUE\b|PRIMARY\b)", action, _I
    ):
        if re.search(r"\bGENERATED\s+ALWAYS\s+AS\s*\(.*\)\s*STORED\b", action, _I):
            return (
                "table-rewrite",
                "a STORED generated column rewrites the whole table under an exclusive lock",
            )
        if re.search(r"\b(?:BIG|SMALL)?SERIAL\b", action, _I) or (
            re.search(r"\bDEFAULT\b", action, _I) and _VOLATILE.search(action)
        ):
            return (
                "table-rewrite",
                "a volatile DEFAULT rewrites the whole table under an exclusive lock",
            )
        if re.search(r"\bNOT\s+NULL\b", action, _I) and not re.search(r"\bDEFAULT\b", action, _I):
            return (
                "add-column-not-null",
                "NOT NULL column without DEFAULT: fails on a non-empty table and breaks the old version's INSERTs",
            )
        return None
    if re.match(r"^\s*ADD\s+(?:CONSTRAINT\s+\S+\s+)?(?:UNIQUE|PRIMARY\s+KEY)\b", action, _I):
        if not re.search(r"\bUSING\s+INDEX\b", action, _I):
            return (
                "add-unique-constraint",
                "builds a unique index while holding an exclusive lock on the table",
            )
        return None
    if re.match(r"^\s*ADD\s+(?:CONSTRAINT\s+\S+\s+)?(?:CHECK|FOREIGN\s+KEY)\b", action, _I):
        if not re.search(r"\bNOT\s+VALID\s*$", action, _I):
            return (
                "constraint-not-valid",
                "adding a CHECK or FOREIGN KEY without NOT VALID scans the table under a lock that blocks writes",
            )
    return None


def lint_sql(sql: str, file: str = "<sql>", *, new_tables: set[str] | None = None) -> list[Finding]:
    """Findings for one migration file. ``new_tables`` (updated in place) are tables created by
    pending migrations: changes to them cannot hurt a running version and are not flagged."""
    created = new_tables if new_tables is not None else set()
    statements = list(split_statements(mask_sql(sql)))
    findings: list[Finding] = []
    for statement in statements:
        for offset, rule, message in _check_statement(
            statement, created, alone=len(statements) == 1
        ):
            line = sql.count("\n", 0, offset) + 1
            findings.append(Finding(file, line, rule, message, _SAFE[rule]))
    return findings


def _check_statement(  # noqa: C901, PLR0911 — one branch per kind of statement
    statement: Statement, created: set[str], *, alone: bool
) -> list[tuple[int, str, str]]:
    text, start = statement.text, statement.start
    if match := _CREATE_TABLE.match(text):
        created.add(_table_key(match.group("table")))
        return []
    if _TRANSACTION_CONTROL.match(text):
        return [(start, "transaction-control", "explicit transaction control in a migration file")]
    if _DROP_TABLE.match(text):
        return [(start, "drop-table", "drops a table the running version may still use")]
    if _REWRITE_COMMAND.match(text):
        return [(start, "table-rewrite", "rewrites a table under an exclusive lock")]
    if match := _CREATE_INDEX.match(text):
        if match.group("concurrently"):
            return (
                []
                if alone
                else [(start, "concurrent-index-not-alone", _NOT_ALONE % "CREATE INDEX")]
            )
        if _table_key(match.group("table")) in created:
            return []
        return [
            (
                start,
                "create-index",
                "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds",
            )
        ]
    if match := _DROP_INDEX.match(text):
        if not match.group("concurrently"):
            return [
                (
                    start,
                    "drop-index",
                    "DROP INDEX without CONCURRENTLY blocks reads and writes on the table",
                )
            ]
        return [] if alone else [(start, "concurrent-index-not-alone", _NOT_ALONE % "DROP INDEX")]
    if (match := _ALTER_TABLE.match(text)) and _table_key(match.group("table")) not in created:
        found = []
        for offset, action in _actions(text[match.end() :]):
            if hit := _check_action(action):
                lead = len(action) - len(action.lstrip())
                found.append((start + match.end() + offset + lead, *hit))
        return found
    return []


_NOT_ALONE = "%s CONCURRENTLY in a file with other statements fails: golang-migrate runs the file in one transaction"


def lint_file(path: Path, *, new_tables: set[str] | None = None) -> list[Finding]:
    return lint_sql(path.read_text(encoding="utf-8"), str(path), new_tables=new_tables)


def lint_files(paths: Iterable[Path]) -> list[Finding]:
    """Lint migration files in order; tables created by earlier files count as new."""
    created: set[str] = set()
    findings: list[Finding] = []
    for path in paths:
        findings.extend(lint_file(path, new_tables=created))
    return findings


_NON_TRANSACTIONAL = re.compile(
    r"\bCONCURRENTLY\b|^\s*(?:VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM)\b", _I
)


def runs_in_one_transaction(sql: str) -> bool:
    """True when golang-migrate runs the whole file as one implicit transaction, so a failure
    leaves no trace of it (no explicit BEGIN/COMMIT, nothing that cannot run in a transaction)."""
    for statement in split_statements(mask_sql(sql)):
        if _TRANSACTION_CONTROL.match(statement.text) or _NON_TRANSACTIONAL.search(statement.text):
            return False
    return True


def statement_at_line(sql: str, line: int) -> str | None:
    """The statement (original text) that covers ``line`` (1-based) of ``sql``."""
    masked = mask_sql(sql)
    offsets = [0]
    for text_line in sql.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(text_line))
    if not 1 <= line < len(offsets):
        return None
    target = offsets[line - 1]
    best: Statement | None = None
    for statement in split_statements(masked):
        if statement.start <= target + len(sql.splitlines()[line - 1]):
            best = statement
    if best is None:
        return None
    return sql[best.start : best.start + len(best.text)].strip()
