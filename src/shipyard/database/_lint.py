"""A linter for migrations that must be safe while two app versions share the schema (blue-green).

Pure functions over SQL text: no database. PostgreSQL's own parser (libpg_query, through postgast)
splits a file into statements and gives each one its syntax tree, so the rules look at what a
statement does: text in comments, string literals and function bodies is never SQL that runs here,
and a column named ``type`` is a name, not a keyword. A statement the parser rejects is reported as
such (golang-migrate would stop on it); the other statements of the file are still checked.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import postgast
from postgast import PgQueryError, find_nodes, parse, scan, unwrap_node

# libpg_query's syntax trees are protobuf messages. mypy cannot read postgast's stub of them (see
# pyproject.toml), so a message is typed Any here: names and matches on its class tell its kind.
pg = postgast.pg_query_pb2
_Message: TypeAlias = Any

__all__ = [
    "Finding",
    "lint_file",
    "lint_files",
    "lint_sql",
    "mask_sql",
    "runs_in_one_transaction",
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


# -- statements -----------------------------------------------------------------------------------
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_STRINGS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_SEMICOLON, _COMMA, _DOT, _STAR = "ASCII_59", "ASCII_44", "ASCII_46", "ASCII_42"
_OPEN, _CLOSE = frozenset({"ASCII_40", "ASCII_91"}), frozenset({"ASCII_41", "ASCII_93"})


class _Token(NamedTuple):
    start: int  # index of its first character
    end: int  # index just past its last character
    name: str  # PostgreSQL's name for its kind: "SCONST", "ASCII_59" (a ";"), "SQL_COMMENT", "DROP"


@dataclass(frozen=True)
class _Statement:
    start: int  # index of its first token in the file
    text: str  # as written, from its first token to its last (no ';', no trailing comment)
    tokens: tuple[_Token, ...]  # PostgreSQL's tokens of ``text``, comments left out
    node: _Message | None  # its syntax tree (locations: UTF-8 offsets in ``text``), if parsed
    error: str = ""  # the parser's message when it rejects the statement
    error_at: int = 0  # index in ``text`` of what the parser rejects


def _indexes(text: str) -> Callable[[int], int]:
    """Index in ``text`` of an offset in its UTF-8 encoding (libpg_query counts bytes)."""
    if text.isascii():
        return lambda offset: offset
    starts = list(accumulate((len(char.encode()) for char in text), initial=0))
    return lambda offset: bisect_right(starts, offset) - 1


def _error(exc: PgQueryError, text: str) -> tuple[str, int | None]:
    """The message of a parser error and the index in ``text`` it points at, if any (PostgreSQL
    counts that position in characters, from 1)."""
    index = int(exc.cursorpos) - 1
    return str(exc.message), index if 0 <= index < len(text) else None


# The scanner's kinds of token by number; a character it has no kind for is its own kind, and
# only some of those have a name ("ASCII_59"): the others ("{") are named the same way here.
_TOKEN_NAMES: dict[int, str] = {value.number: value.name for value in pg.Token.DESCRIPTOR.values}


def _tokens(sql: str) -> tuple[_Token, ...]:
    index = _indexes(sql)
    return tuple(
        _Token(index(t.start), index(t.end), _TOKEN_NAMES.get(t.token, f"ASCII_{t.token}"))
        for t in scan(sql).tokens
    )


def _scan(sql: str) -> tuple[tuple[_Token, ...], int]:
    """PostgreSQL's tokens of ``sql`` and where they stop: at the end, or where an unterminated
    quote or comment starts (the scanner rejects the whole text then, so scan up to it)."""
    try:
        return _tokens(sql), len(sql)
    except PgQueryError as exc:
        cut = min(_error(exc, sql)[1] or 0, len(sql))
    try:
        return _tokens(sql[:cut]), cut
    except PgQueryError:
        return (), 0


def _spans(sql: str) -> list[tuple[int, int]]:
    """(start, end) of each statement: the parser's, or where it rejects the file, the scanner's
    (split at each ``;`` token), so that one bad statement does not hide the others."""
    try:
        raws = parse(sql).stmts
    except PgQueryError:
        pass
    else:  # UTF-8 offsets and lengths; a length of 0 runs to the end of the text
        index, size = _indexes(sql), len(sql.encode())
        return [
            (
                index(raw.stmt_location),
                index(raw.stmt_location + raw.stmt_len if raw.stmt_len else size),
            )
            for raw in raws
        ]
    tokens, cut = _scan(sql)
    spans: list[tuple[int, int]] = []
    first: int | None = None
    last = 0
    for token in tokens:
        if token.name == _SEMICOLON and first is not None:
            spans.append((first, last))
            first = None
        elif token.name != _SEMICOLON and token.name not in _COMMENTS:
            first = token.start if first is None else first
            last = token.end
    if cut < len(sql):
        spans.append((cut if first is None else first, len(sql)))
    elif first is not None:
        spans.append((first, last))
    return spans


def _statement(sql: str, start: int, end: int) -> _Statement:
    """The statement in ``sql[start:end]``, parsed on its own so that locations in its tree are
    offsets in its text."""
    text = sql[start:end]
    scanned, cut = _scan(text)
    tokens = tuple(t for t in scanned if t.name not in _COMMENTS)
    if tokens:  # from its first token to its last: no comment or space around it
        first, last = tokens[0].start, tokens[-1].end if cut == len(text) else len(text)
        start, text = start + first, text[first:last]
        tokens = tuple(t._replace(start=t.start - first, end=t.end - first) for t in tokens)
    try:
        raws = parse(text).stmts
    except PgQueryError as exc:
        message, location = _error(exc, text)
        return _Statement(start, text, tokens, None, message, location or 0)
    return _Statement(start, text, tokens, unwrap_node(raws[0].stmt) if raws else None)


def _statements(sql: str) -> list[_Statement]:
    return [_statement(sql, start, end) for start, end in _spans(sql)]


def mask_sql(sql: str) -> str:
    """``sql`` with comments and the contents of string literals and ``$$`` bodies replaced by
    spaces, newlines kept, as PostgreSQL's scanner finds them: offsets in it are offsets in ``sql``."""
    tokens, cut = _scan(sql)
    blank = [(cut, len(sql))]
    for token in tokens:
        text = sql[token.start : token.end]
        if token.name in _COMMENTS:
            blank.append((token.start, token.end))
        elif token.name in _STRINGS:
            quote = text[: text.index("$", 1) + 1] if text.startswith("$") else "'"
            blank.append((token.start + text.index(quote) + len(quote), token.end - len(quote)))
    chars = list(sql)
    for start, end in blank:
        chars[start:end] = ("\n" if ch == "\n" else " " for ch in sql[start:end])
    return "".join(chars)


# -- rules ----------------------------------------------------------------------------------------
_Hit: TypeAlias = tuple[str, str]  # rule, message
_Located: TypeAlias = tuple[int, str, str]  # offset in the statement's text, rule, message

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
    "add-column-unique": "add the column without UNIQUE; CREATE UNIQUE INDEX CONCURRENTLY on it in "
    "a migration file of its own; then ALTER TABLE … ADD CONSTRAINT … UNIQUE USING INDEX (no "
    "build under the lock)",
    "add-column-foreign-key": "add the column without REFERENCES; then ALTER TABLE … ADD "
    "CONSTRAINT … FOREIGN KEY (col) REFERENCES … NOT VALID (its locks are held only for an "
    "instant, no scan); VALIDATE CONSTRAINT in a later migration (it blocks no writes)",
    "table-rewrite": "add the column without the rewriting part (nullable, constant DEFAULT), "
    "fill it in batches or with a trigger, and compute generated values in the app or a view",
    "transaction-control": "leave transactions to golang-migrate; split the file instead",
    "syntax-error": "fix the statement: golang-migrate would stop on this file with the same error",
}

_DROP_TABLE = "drop-table", "drops a table the running version may still use"
_DROP_COLUMN = "drop-column", "drops a column the running version may still read or write"
_RENAME_TABLE = "rename-table", "renames a table the running version still uses by its old name"
_RENAME_COLUMN = "rename-column", "renames a column the running version still uses by its old name"
_ALTER_TYPE = (
    "alter-column-type",
    "changes a column's type (rewrites the table under an exclusive lock; the old version breaks)",
)
_SET_NOT_NULL = (
    "set-not-null",
    "SET NOT NULL scans the whole table under an exclusive lock, and the old version may still write NULLs",
)
_NOT_NULL_CONSTRAINT = (
    "set-not-null",
    "a NOT NULL constraint without NOT VALID scans the whole table under an exclusive lock, and the old version may still write NULLs",
)
_ADD_NOT_NULL = (
    "add-column-not-null",
    "NOT NULL column without DEFAULT: fails on a non-empty table and breaks the old version's INSERTs",
)
_CREATE_INDEX = (
    "create-index",
    "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds",
)
_DROP_INDEX = "drop-index", "DROP INDEX without CONCURRENTLY blocks reads and writes on the table"
_NOT_ALONE = (
    "concurrent-index-not-alone",
    "{} CONCURRENTLY in a file with other statements fails: golang-migrate runs the file in one transaction",
)
_NOT_VALID = (
    "constraint-not-valid",
    "adding a CHECK or FOREIGN KEY without NOT VALID scans the table under a lock that blocks writes",
)
_COLUMN_CHECK = (
    "constraint-not-valid",
    "a CHECK on an added column is checked against every row under an exclusive lock",
)
_UNIQUE = (
    "add-unique-constraint",
    "builds a unique index while holding an exclusive lock on the table",
)
_COLUMN_UNIQUE = (
    "add-column-unique",
    "UNIQUE (or PRIMARY KEY) on an added column builds its index over the whole table while "
    "holding an exclusive lock on it: reads and writes wait",
)
_COLUMN_FOREIGN_KEY = (
    "add-column-foreign-key",
    "REFERENCES on an added column takes a lock on the referenced table that blocks its writes "
    "(and queues behind any long transaction on it) while the altered table is locked exclusively",
)
_COLUMN_FOREIGN_KEY_DEFAULT = (
    "add-column-foreign-key",
    "REFERENCES on an added column with a DEFAULT validates every row against the referenced "
    "table while both are locked against writes",
)
_STORED = (
    "table-rewrite",
    "a STORED generated column rewrites the whole table under an exclusive lock",
)
_SEQUENCE = (
    "table-rewrite",
    "a serial or identity column takes a sequence value for every row: it rewrites the whole table under an exclusive lock",
)
_VOLATILE_DEFAULT = (
    "table-rewrite",
    "a volatile DEFAULT rewrites the whole table under an exclusive lock",
)
_REWRITE = "table-rewrite", "rewrites a table under an exclusive lock"
_TRANSACTION = "transaction-control", "explicit transaction control in a migration file"

_VOLATILE = frozenset(
    "random gen_random_uuid uuid_generate_v1 uuid_generate_v1mc uuid_generate_v4 uuidv4 uuidv7 "
    "clock_timestamp timeofday nextval txid_current".split()
)
_SERIAL = frozenset("serial serial2 serial4 serial8 smallserial bigserial".split())


def _key(schema: str, name: str) -> str:
    """How ``created`` names a table: ``public`` is the default schema."""
    return f"{schema}.{name}" if schema not in ("", "public") else name


def _relation_key(relation: _Message) -> str:
    return _key(relation.schemaname, relation.relname)


def _names(items: Iterable[_Message]) -> list[str]:
    """The parts of a qualified name (a list of ``String`` nodes)."""
    return [item.string.sval for item in items if item.HasField("string")]


def _volatile(expression: _Message) -> bool:
    """Whether the expression calls a function known to be volatile (a new value for each row)."""
    calls = find_nodes(expression, pg.FuncCall)
    return any(not _VOLATILE.isdisjoint(_names(call.funcname)[-1:]) for call in calls)


def _option_on(option: _Message, name: str) -> bool:
    """Whether ``option`` is the option ``name`` switched on (``FULL``, ``FULL true``)."""
    if not option.HasField("def_elem") or option.def_elem.defname != name:
        return False
    arg = option.def_elem.arg
    match arg.WhichOneof("node"):
        case "string":
            return str(arg.string.sval).lower() not in {"false", "off", "no", "0"}
        case "integer":
            return bool(arg.integer.ival)
        case "boolean":
            return bool(arg.boolean.boolval)
    return True


def _added_column(column: _Message) -> _Hit | None:  # noqa: PLR0911 — one rule per return
    constraints = [node.constraint for node in column.constraints if node.HasField("constraint")]
    kinds = {c.contype for c in constraints}
    defaults = [c.raw_expr for c in constraints if c.contype == pg.CONSTR_DEFAULT]
    default = next((d for d in defaults if not (d.HasField("a_const") and d.a_const.isnull)), None)
    type_name = _names(column.type_name.names)
    if any(c.contype == pg.CONSTR_GENERATED and c.generated_kind == "s" for c in constraints):
        return _STORED
    if pg.CONSTR_IDENTITY in kinds or (len(type_name) == 1 and type_name[0] in _SERIAL):
        return _SEQUENCE
    if default is not None and _volatile(default):
        return _VOLATILE_DEFAULT
    if pg.CONSTR_NOTNULL in kinds and default is None:
        return _ADD_NOT_NULL
    if kinds & {pg.CONSTR_UNIQUE, pg.CONSTR_PRIMARY}:
        return _COLUMN_UNIQUE
    # PostgreSQL checks a new column's CHECK against every row; a FOREIGN KEY only when the
    # column has a DEFAULT (even DEFAULT NULL), otherwise every value is NULL and it skips that,
    # but it still locks the referenced table against writes.
    if pg.CONSTR_FOREIGN in kinds:
        return _COLUMN_FOREIGN_KEY_DEFAULT if defaults else _COLUMN_FOREIGN_KEY
    if pg.CONSTR_CHECK in kinds:
        return _COLUMN_CHECK
    return None


def _added_constraint(constraint: _Message) -> _Hit | None:
    validated = not constraint.skip_validation
    match constraint.contype:
        case pg.CONSTR_UNIQUE | pg.CONSTR_PRIMARY if not constraint.indexname:
            return _UNIQUE
        case pg.CONSTR_CHECK | pg.CONSTR_FOREIGN if validated:
            return _NOT_VALID
        case pg.CONSTR_NOTNULL if validated:  # ADD CONSTRAINT … NOT NULL col (PG 18)
            return _NOT_NULL_CONSTRAINT
    return None


def _definition(cmd: _Message) -> _Message:
    """What an ALTER TABLE clause adds or changes (its field ``def`` is a Python keyword)."""
    return getattr(cmd, "def")


def _altered(cmd: _Message) -> _Hit | None:
    definition = _definition(cmd)
    match cmd.subtype:
        case pg.AT_DropColumn:
            return _DROP_COLUMN
        case pg.AT_AlterColumnType:
            return _ALTER_TYPE
        case pg.AT_SetNotNull:
            return _SET_NOT_NULL
        case pg.AT_AddColumn if definition.HasField("column_def"):
            return _added_column(definition.column_def)
        case pg.AT_AddConstraint if definition.HasField("constraint"):
            return _added_constraint(definition.constraint)
    return None


def _clauses(statement: _Statement, relation: _Message) -> list[int]:
    """Indexes of the comma-separated clauses after the table name of an ALTER TABLE (its tree
    keeps no location for them)."""
    tokens = statement.tokens
    at = _indexes(statement.text)(max(relation.location, 0))
    index = next((i for i, t in enumerate(tokens) if t.start >= at), 0) + 1
    while index + 1 < len(tokens) and tokens[index].name == _DOT:  # schema.table
        index += 2
    if index < len(tokens) and (tokens[index].name == _STAR or tokens[index].name in _CLOSE):
        index += 1  # "name *" or "ONLY (name)"
    offsets, depth, follows = [], 0, True
    for token in tokens[index:]:
        if follows:
            offsets.append(token.start)
            follows = False
        if token.name in _OPEN:
            depth += 1
        elif token.name in _CLOSE:
            depth -= 1
        elif token.name == _COMMA and depth == 0:
            follows = True
    return offsets or [0]


def _check_alter_table(statement: _Statement, node: _Message, created: set[str]) -> list[_Located]:
    if node.objtype != pg.OBJECT_TABLE or not node.HasField("relation"):
        return []
    if _relation_key(node.relation) in created:
        return []
    cmds = [cmd.alter_table_cmd for cmd in node.cmds if cmd.HasField("alter_table_cmd")]
    offsets = _clauses(statement, node.relation)
    if len(offsets) != len(cmds):
        offsets = [offsets[0]] * len(cmds)
    return [
        (offset, *hit) for offset, cmd in zip(offsets, cmds, strict=True) if (hit := _altered(cmd))
    ]


def _check_rename(statement: _Statement, node: _Message, created: set[str]) -> list[_Located]:
    if not node.HasField("relation"):
        return []
    relation = node.relation
    table = node.rename_type == pg.OBJECT_TABLE
    if _relation_key(relation) in created:
        if table:  # the new name is as new as the old one
            created.add(_key(relation.schemaname, node.newname))
        return []
    column = node.rename_type == pg.OBJECT_COLUMN
    if table or (column and node.relation_type == pg.OBJECT_TABLE):
        return [(_clauses(statement, relation)[0], *(_RENAME_TABLE if table else _RENAME_COLUMN))]
    return []


def _check_index(node: _Message, created: set[str], *, alone: bool) -> _Hit | None:
    if node.concurrent:
        verb = "CREATE INDEX" if isinstance(node, pg.IndexStmt) else "DROP INDEX"
        return None if alone else (_NOT_ALONE[0], _NOT_ALONE[1].format(verb))
    if isinstance(node, pg.DropStmt):
        return _DROP_INDEX
    if node.HasField("relation") and _relation_key(node.relation) in created:
        return None
    return _CREATE_INDEX


def _check_command(node: object, created: set[str], *, alone: bool) -> _Hit | None:
    match node:
        case pg.CreateStmt() if node.HasField("relation"):
            created.add(_relation_key(node.relation))
        case pg.CreateTableAsStmt() if node.into.HasField("rel"):
            created.add(_relation_key(node.into.rel))
        case pg.TransactionStmt():
            return _TRANSACTION
        case pg.DropStmt(remove_type=pg.OBJECT_TABLE):
            names = [_names(name.list.items) for name in node.objects]
            keys = {_key(n[-2] if len(n) > 1 else "", n[-1] if n else "") for n in names}
            return None if keys <= created else _DROP_TABLE
        case pg.IndexStmt() | pg.DropStmt(remove_type=pg.OBJECT_INDEX):
            return _check_index(node, created, alone=alone)
        case pg.VacuumStmt(is_vacuumcmd=True):
            return _REWRITE if any(_option_on(o, "full") for o in node.options) else None
        case pg.ClusterStmt():
            return _REWRITE
    return None


def _check(statement: _Statement, created: set[str], *, alone: bool) -> list[_Located]:
    node = statement.node
    if node is None:
        message = f"PostgreSQL's parser rejects this statement: {statement.error}"
        return [(statement.error_at, "syntax-error", message)]
    if isinstance(node, pg.AlterTableStmt):
        return _check_alter_table(statement, node, created)
    if isinstance(node, pg.RenameStmt):
        return _check_rename(statement, node, created)
    hit = _check_command(node, created, alone=alone)
    return [(0, *hit)] if hit else []


def lint_sql(sql: str, file: str = "<sql>", *, new_tables: set[str] | None = None) -> list[Finding]:
    """Findings for one migration file. ``new_tables`` (updated in place) are tables created by
    pending migrations: changes to them cannot hurt a running version and are not flagged."""
    created = new_tables if new_tables is not None else set()
    statements = _statements(sql)
    findings: list[Finding] = []
    for statement in statements:
        for offset, rule, message in _check(statement, created, alone=len(statements) == 1):
            line = sql.count("\n", 0, statement.start + offset) + 1
            findings.append(Finding(file, line, rule, message, _SAFE[rule]))
    return findings


def lint_file(path: Path, *, new_tables: set[str] | None = None) -> list[Finding]:
    return lint_sql(path.read_text(encoding="utf-8"), str(path), new_tables=new_tables)


def lint_files(paths: Iterable[Path]) -> list[Finding]:
    """Lint migration files in order; tables created by earlier files count as new."""
    created: set[str] = set()
    findings: list[Finding] = []
    for path in paths:
        findings.extend(lint_file(path, new_tables=created))
    return findings


# -- golang-migrate -------------------------------------------------------------------------------
def _outside_transaction(statement: _Statement) -> bool:
    """Whether the statement ends golang-migrate's implicit transaction or cannot run in one."""
    node = statement.node
    match node:
        case None:  # rejected by the parser: only a CONCURRENTLY keyword tells
            return any(token.name == "CONCURRENTLY" for token in statement.tokens)
        case (
            pg.TransactionStmt()
            | pg.VacuumStmt(is_vacuumcmd=True)
            | pg.CreatedbStmt()
            | pg.DropdbStmt()
            | pg.AlterSystemStmt()
            | pg.CreateTableSpaceStmt()
            | pg.DropTableSpaceStmt()
        ):
            return True
        case pg.IndexStmt() | pg.DropStmt():
            return bool(node.concurrent)
        case pg.ReindexStmt():
            return any(_option_on(param, "concurrently") for param in node.params)
        case pg.AlterTableStmt():  # DETACH PARTITION … CONCURRENTLY
            return any(
                _definition(cmd.alter_table_cmd).partition_cmd.concurrent for cmd in node.cmds
            )
    return False


def runs_in_one_transaction(sql: str) -> bool:
    """True when golang-migrate runs the whole file as one implicit transaction, so a failure
    leaves no trace of it (no explicit BEGIN/COMMIT, nothing that cannot run in a transaction)."""
    return not any(_outside_transaction(statement) for statement in _statements(sql))


def statement_at_line(sql: str, line: int) -> str | None:
    """The statement (original text) that covers ``line`` (1-based) of ``sql``."""
    lines = sql.splitlines(keepends=True)
    if not 1 <= line <= len(lines):
        return None
    next_line = sum(len(text) for text in lines[:line])
    covering = [s for s in _statements(sql) if s.start < next_line]
    return covering[-1].text.strip() if covering else None
