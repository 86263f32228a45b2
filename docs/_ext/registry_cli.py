"""Sphinx extension: ``.. registry-cli::`` documents every `registry` command from the typer app.

The click command tree behind the typer app is walked at build time, so the reference cannot
drift from the code.
"""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from registry.docs.generate import rst_text  # the model pages' escaping: one rule for both


def _commands(cmd, path: list[str]):
    """(path, command) for every command below the root, depth first, sorted by name."""
    # Duck-typed: recent typer releases carry their own copy of click's classes.
    if hasattr(cmd, "commands"):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if getattr(sub, "hidden", False):
                continue
            yield path + [name], sub
            yield from _commands(sub, path + [name])


def _param_lines(ctx, cmd) -> list[str]:
    lines: list[str] = []
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        record = p.get_help_record(ctx)
        if record is None or p.name == "help":
            continue
        flags, help_text = record
        kind = " (argument)" if p.param_type_name == "argument" else ""
        lines.append(f"- ``{flags}``{kind}" + (f": {rst_text(help_text)}" if help_text else ""))
    return lines


def cli_rst() -> list[str]:
    import typer.main

    from registry.cli import app

    root = typer.main.get_command(app)
    lines: list[str] = []
    for path, cmd in _commands(root, ["registry"]):
        title = " ".join(path)
        ctx = cmd.context_class(cmd, info_name=title)
        lines += ["", title, "-" * len(title), ""]
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += ["::", "", f"   {title} {usage}".rstrip(), ""]
        if cmd.help:
            lines += [rst_text(cmd.help), ""]
        lines += _param_lines(ctx, cmd) + [""]
    return lines


class RegistryCli(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(cli_rst(), source="registry-cli"), node)
        return node.children


def setup(app):
    app.add_directive("registry-cli", RegistryCli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
