"""What the commands print: JSON, tables and key/value lines, for a person at a terminal or for a pipe.
Free of typer, so that the read commands' fast path (registry/cli/fast.py) prints through the same code."""

from __future__ import annotations

import json
import sys
from typing import Any


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _terminal() -> bool:
    """Whether rich would take stdout for a terminal, answered without importing rich where that is plain: no
    terminal and none of the variables that make rich call one so (a pipe or file, the usual case of a script)."""
    import os

    if not sys.stdout.isatty() and not any(v in os.environ for v in ("FORCE_COLOR", "TTY_COMPATIBLE")):
        return False
    return _console().is_terminal


def _line(text: str) -> None:
    """One line of text as it is (no markup, no highlighting)."""
    if not _terminal():
        sys.stdout.write(text + "\n")
        return
    _console().print(text, markup=False, highlight=False)


def _console(stderr: bool = False):
    """rich's console (imported only when something is printed): no highlighting of digits inside names; off a
    terminal, no wrapping at 80 columns (a pipe gets whole lines)."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c.soft_wrap = True
    return c


def _catalog():
    from ..catalog import load

    return load()


Cell = "str | tuple[str, str]"  # a cell, or (text, rich style) for a coloured one (fits yes/no)


def _table(title: str | None, columns: list[str], rows: list[list], lines: bool = False) -> None:
    """A table: boxed for a person at a terminal; plain aligned columns with whole names in a pipe or file,
    one row per line (`registry list | grep glm-4.5-air`, awk, sort)."""
    if not _terminal():
        _plain_table(title, columns, rows)
        return
    con = _console()
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, header_style="bold", title_justify="left", show_lines=lines)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(Text(c[0], style=c[1]) if isinstance(c, tuple) else Text(c) for c in r))
    con.print(t)


def _plain_table(title: str | None, columns: list[str], rows: list[list]) -> None:
    def one_line(c) -> str:
        text = c[0] if isinstance(c, tuple) else str(c)
        return "; ".join(x.strip() for x in text.splitlines() if x.strip()) or "-"

    cells = [[one_line(c) for c in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(columns, *cells)]
    out = [title] if title else []
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [columns, *cells]]
    sys.stdout.write("\n".join(out) + "\n")


def _kv(rows: list[tuple[str, str]]) -> None:
    """Key/value lines (`registry show`'s head): a grid at a terminal, `key: value` lines in a pipe."""
    if not _terminal():
        sys.stdout.write("".join(f"{k}: {v}\n" for k, v in rows))
        return
    con = _console()
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in rows:
        head.add_row(Text(k), Text(v))
    con.print(head)
