"""`registry docs build|check`: the RST model pages generated from the specs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import App, JsonOpt, _print_json, app

docs_app = App(help="Generate and check the RST model pages (docs/models).", no_args_is_help=True)
app.add_typer(docs_app, name="docs")

OutOpt = typer.Option(None, "--out", help="Directory of the generated pages (default: the checkout's docs/models).")


def _out(out: Path | None) -> Path:
    """--out, else docs/models of the checkout the package runs from; an installed wheel has none."""
    if out is not None:
        return out
    from ..errors import RegistryError
    from ..paths import checkout_root

    root = checkout_root()
    if root is None:
        raise RegistryError("no checkout to write the pages into (this is an installed package); "
                            "give a folder: registry docs build --out DIR")
    return root / "docs" / "models"


@docs_app.command("build")
def build(out: Optional[Path] = OutOpt, json_: bool = JsonOpt) -> None:
    """Write one RST page per family plus index.rst (same specs, same bytes)."""
    from ..docs import build as build_pages

    out = _out(out)
    res = build_pages(out)
    if json_:
        _print_json(res.to_dict())
        return
    total = len(res.written) + len(res.unchanged)
    print(f"{total} pages in {out}: {len(res.written)} written, {len(res.unchanged)} unchanged"
          + (f", {len(res.removed)} removed ({', '.join(res.removed)})" if res.removed else ""))


@docs_app.command("check")
def check(out: Optional[Path] = OutOpt, json_: bool = JsonOpt) -> None:
    """Exit 1, naming the pages, when the pages under --out differ from what the specs generate."""
    out = _out(out)
    from ..docs import check as check_pages
    from ..docs.generate import StaleDocsError

    stale = check_pages(out)
    if json_:
        _print_json({"ok": not stale, "stale": [{"path": p, "reason": r} for p, r in stale]})
        if stale:
            raise typer.Exit(1)
        return
    if stale:
        names = "; ".join(f"{p} ({r})" for p, r in stale)
        raise StaleDocsError(f"stale pages: {names}; run `registry docs build --out {out}` and commit them")
    print(f"ok: the pages in {out} match the specs")
