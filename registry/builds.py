"""Every local build across families, one row each (`registry ls`, `list --local`, registry.artifacts()).

A build is an artifact row of the store (converted, pulled or recorded), named by its tag FAMILY:QUANT in
the catalog's spelling, with its format, size, path, when it was made and the running deployments that
serve it. The demo's toys appear only inside the demo's own home, as everywhere else.

pick_build: the build `registry run|launch FAMILY` takes when no quantization is named (a running one, a
local one, else the best that fits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import paths


def local_builds(family: str | None = None) -> list[dict[str, Any]]:
    """The recorded builds (of one family, if given), oldest first, as plain data."""
    if not paths.has_database():
        return []  # nothing recorded; `registry ls` creates no database
    from .launching.deployments import ps
    from .catalog import load
    from .errors import NotFoundError
    from .hub.local import is_demo
    from .store import Store
    from .views import artifact_view

    cat = load()
    if family is not None:
        family = cat.get(family).name
    rows = Store().artifacts(family=family)
    running = ps()
    demo = paths.in_demo()
    out = []
    for a in rows:
        if not demo and is_demo(a):
            continue
        try:
            fam = cat.get(a.family)
        except NotFoundError:  # a family unregistered since: the row still names its files
            fam = None
        view = artifact_view(a, fam)
        users = [d.id for d in running if d.artifact_id == a.id or a.path in (d.argv or [])]
        out.append({"tag": f"{a.family}:{view['quantization']}", "family": a.family, **view,
                    "exists": Path(a.path).exists(), "in_use": users})
    return out


def pick_build(name: str, format: str | None = None, context: int | str | None = None,
               hardware: str | None = None) -> dict:
    """The build `registry run FAMILY` and `registry launch FAMILY` take when no quantization is named: a running
    deployment of the family (the newest), else a local build (the newest whose file is there), else the one
    `registry fit FAMILY --quant auto` picks on this (or that) machine. {family, format, quantization, why}."""
    from .catalog import load, spec_quant
    from .errors import RegistryError
    from .launching.deployments import ps
    from .launching.fit import fit
    from .naming import format_name

    fam = load().get(name)
    format = format_name(format)
    if hardware is None:  # what runs and what is on disk are this machine's
        for d in reversed(ps()):
            if d.family == fam.name and (format is None or d.format == format):
                return {"family": fam.name, "format": d.format, "quantization": d.quantization,
                        "why": f"running as deployment {d.id}"}
        for b in reversed(local_builds(fam.name)):
            known = any(s.format == b["format"] and spec_quant(s, b["quantization"]) for s in fam.specs)
            if b["exists"] and known and (format is None or b["format"] == format):
                return {"family": fam.name, "format": b["format"], "quantization": b["quantization"],
                        "why": f"the local build at {b['path']}"}
    auto = fit(fam.name, hardware=hardware, context=context, quant="auto", format=format)["auto"]
    if not auto["quantization"]:
        raise RegistryError(f"no build of {fam.name} fits {'this machine' if hardware is None else hardware} "
                            f"(`registry fit {fam.name}` says why); name one as {fam.name}:QUANT")
    return {"family": fam.name, "format": auto["format"], "quantization": auto["quantization"],
            "why": "the best build that fits here (`registry fit --quant auto`)"}
