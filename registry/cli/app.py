"""The typer app and the small helpers every command module shares."""

from __future__ import annotations

import os
from typing import Any

import typer
import typer.core

from .fast import COMPLETE_VAR  # set by the script `registry completion SHELL` prints
from .output import Cell, _catalog, _console, _kv, _plain_table, _print_json, _table  # noqa: F401  (the commands' helpers)


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
