"""The typer app and the small helpers every command module shares."""

from __future__ import annotations

import json
import os
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


class EngineArgsCommand(Command):
    """A command that passes what follows `--` to an engine (`registry launch TAG -- --seed 7`): those words
    are kept out of the command's own parsing, in ctx.meta["engine_args"] (engine_args(ctx) reads them)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            args, ctx.meta["engine_args"] = args[:i], args[i + 1:]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- ENGINE-ARGS...]"]


def engine_args(ctx: Any) -> list[str]:
    return list(ctx.meta.get("engine_args") or [])


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

COMPLETE_VAR = "_REGISTRY_COMPLETE"  # set by the script `registry completion SHELL` prints


def completion_classes() -> None:
    """Typer's completion classes (its scripts and its handler agree on `complete_bash`); the app is built with
    add_completion=False, so that no --install-completion options clutter every command."""
    from typer._completion_classes import completion_init

    completion_init()


if os.environ.get(COMPLETE_VAR):
    completion_classes()

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def _version(value: bool) -> None:
    if value:
        from ..version import __version__

        print(f"registry (glm-registry) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """A typed, multi-format model registry for the GLM family."""


def complete_name(incomplete: str) -> list[str]:
    """Shell completion of a family name, and after FAMILY: of its build tags (`registry completion`)."""
    try:
        cat = _catalog()
        fam, sep, _ = incomplete.partition(":")
        if sep:
            return [f"{fam}:{q}" for q in cat.get(fam).quantizations()
                    if f"{fam}:{q}".lower().startswith(incomplete.lower())]
        return [n for n in cat.names() if n.startswith(incomplete)]
    except Exception:  # completion must never print a traceback into the shell
        return []


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


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
    con = _console()
    if not con.is_terminal:
        _plain_table(title, columns, rows)
        return
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
    con = _console()
    if not con.is_terminal:
        sys.stdout.write("".join(f"{k}: {v}\n" for k, v in rows))
        return
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in rows:
        head.add_row(Text(k), Text(v))
    con.print(head)
