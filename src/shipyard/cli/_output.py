"""What humans read on stderr: tables (fitted to a terminal, whole everywhere else), sizes."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

_UNBOUNDED = 100_000


@functools.cache
def err() -> Console:
    """The console on stderr (it writes to whatever ``sys.stderr`` is when it prints)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_table(console: Console, table: Table) -> None:
    """``table`` on ``console``: fitted to a terminal's width; written out whole (no column cut
    or wrapped at 80 characters) when it goes to a pipe, a file or a CI log."""
    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update(width=_UNBOUNDED), table).maximum
    whole = Console(
        file=console.file,
        width=max(needed, 1),
        highlight=False,
        soft_wrap=True,
        color_system=console.color_system,  # type: ignore[arg-type]
    )
    whole.print(table)


def human_size(size: int) -> str:
    """``size`` bytes as B, KiB, MiB or GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":  # noqa: PLR2004
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
