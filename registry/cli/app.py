"""The typer app and the small helpers every command module shares."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer


app = typer.Typer(
    name="registry",
    help="A typed, multi-format model registry for the GLM family.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _console():  # rich is imported only when a table is printed
    from rich.console import Console

    return Console()


def _catalog():
    from ..catalog import load

    return load()


def _table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    t = Table(title=title, header_style="bold", title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*r)
    _console().print(t)


