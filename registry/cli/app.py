"""The typer app and the small helpers every command module shares."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
import typer.core


def _first_sentence(text: str) -> str:
    """A command's line in `registry --help`: its help's first sentence, whole (click cuts it at 45 characters)."""
    para = " ".join(text.strip().split("\n\n")[0].split())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def _value_name(param) -> str:
    return param.name.upper().replace("_", "-")


class Command(typer.core.TyperCommand):
    """Help as people read it: whole sentences in the command list, and values named (NAME, FORMAT)
    instead of typer's <str> / <list[Path]> types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if isinstance(p, typer.core.TyperArgument):
                p.metavar = p.metavar or _value_name(p)
                p.display_type_rich = lambda ctx: None  # the name says it; no type beside it
            elif isinstance(p, typer.core.TyperOption) and not p.is_flag and p.metavar is None:
                p.metavar = _value_name(p)

    def get_short_help_str(self, limit: int = 45) -> str:
        return _first_sentence(self.short_help or self.help or "")


class Group(typer.core.TyperGroup):
    def get_short_help_str(self, limit: int = 45) -> str:
        return _first_sentence(self.short_help or self.help or "")


class App(typer.Typer):
    """Every command of the registry (sub-apps too) is a `Command`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, cls: Any = None, **kwargs: Any):  # type: ignore[override]
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
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


