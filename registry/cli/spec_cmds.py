"""`registry init NAME`: start a family of your own from a commented template that validates as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from ..paths import resource
from .app import app

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # schema.FamilyName, checked here before any import


def template_text(name: str, file: str) -> str:
    return resource("data", "family-template.yaml").read_text(encoding="utf-8").format(name=name, file=file)


@app.command()
def init(
    name: str = typer.Argument(..., help="Name of the new family: lower-case letters, digits, '.', '_' and '-'."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: NAME.yaml here)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the file if it exists."),
) -> None:
    """Write a commented spec template for a family of your own (it validates as written)."""
    from ..catalog import shipped
    from ..errors import RegistryError

    if not NAME_RE.match(name):
        raise RegistryError(f"family name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
                            "(at most 64, starting with a letter or digit), e.g. my-glm-finetune")
    if name in {e.family.name for e in shipped()}:
        raise RegistryError(f"{name!r} is a shipped family's name; choose another (`registry show {name}` shows it)")
    path = out if out is not None else Path(f"{name}.yaml")
    if path.is_dir():
        path = path / f"{name}.yaml"
    if path.exists() and not force:
        raise RegistryError(f"{path} exists; pass --force to overwrite it, or --out another file")
    path.write_text(template_text(name, str(path)), encoding="utf-8")
    print(f"wrote {path}: a template of family {name} that validates as written.")
    print("Fill in the lines marked FILL IN (description, licence, context length, the architecture from your")
    print("config.json, the hub repository), then:")
    print(f"  registry validate {path}")
    print(f"  registry register {path}")
