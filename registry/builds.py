"""Every local build across families, one row each (`registry ls`, `list --local`, registry.artifacts()).

A build is an artifact row of the store (converted, pulled or recorded), named by its tag FAMILY:QUANT in
the catalog's spelling, with its format, size, path, when it was made and the running deployments that
serve it. The demo's toys appear only inside the demo's own home, as everywhere else.
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
