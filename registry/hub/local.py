"""The store's artifact rows for hub builds: look-up (no network) and recording."""

from __future__ import annotations

import os
from pathlib import Path

from .. import paths
from .integrity import SHA256_RE, content_address, sha256_file, split_parts, tree_sha256


def quant_names(resolved) -> set[str]:
    return {resolved.quantization, resolved.canonical}


def family_rows(family: str) -> list:
    """Every artifact row of a family, oldest first (none without a database): one store query that
    rows() and find() can share across many builds of the family."""
    if not paths.has_database():
        return []  # nothing recorded yet; don't create a database for a look-up
    from ..sqlite_read import artifacts

    found = artifacts(family)
    if found is None:  # not the default SQLite database
        from ..store import Store

        found = Store().artifacts(family=family)
    return found


def _other_uploaders_repos(resolved) -> set[str]:
    """Hub repositories of the family's other builds in this format (another uploader's GGUF of the same
    quantization): a file pulled from one of them does not answer for this build."""
    spec = resolved.spec
    own = {m for h in spec.hubs.values() for m in h.all_model_ids()}
    return {m for s in resolved.family.specs if s is not spec and s.format == spec.format
            for h in s.hubs.values() for m in h.all_model_ids()} - own


def is_demo(row) -> bool:
    """A build `registry demo` made: marked in its recipe, or (recorded by an older demo in the real store)
    a file under the demo's folder. Look-up never takes one for a real build."""
    if isinstance(row.recipe, dict) and row.recipe.get("demo"):
        return True
    try:
        return Path(row.path).resolve().is_relative_to(paths.demo_home().resolve())
    except (OSError, ValueError):
        return False


def rows(resolved, recorded: list | None = None, all_nodes: bool = False) -> list:
    """Artifact rows of this family/format/quantization on this machine (every node's: all_nodes), newest
    first; `recorded`: family_rows() already read. The demo's toys only while the demo runs (in its own home)."""
    found = family_rows(resolved.family.name) if recorded is None else recorded
    names = quant_names(resolved)
    others = _other_uploaders_repos(resolved)
    demo = paths.in_demo()
    return [r for r in reversed(found) if r.format == resolved.spec.format and r.quantization in names
            and (all_nodes or paths.owns(r.node))
            and (r.parent or "").split("@")[0] not in others and (demo or not is_demo(r))]


def only_elsewhere(resolved, what: str) -> None:
    """Refuse when other nodes record this build and this machine has no copy: name them and what to run there."""
    from ..errors import NotFoundError

    here = paths.node()
    nodes = sorted({r.node for r in rows(resolved, all_nodes=True) if not paths.owns(r.node)})
    if nodes:
        raise NotFoundError(f"{resolved.family.name} {resolved.spec.format} {resolved.quantization} is recorded on "
                            f"node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)}, not on this one ({here}): "
                            f"run `{what}` there")


def _local_size(p: Path) -> int | None:
    """Bytes of a local build: a split GGUF counts all its parts (None when one is missing)."""
    parts = split_parts(p)
    return sum(q.stat().st_size for q in parts) if all(q.is_file() for q in parts) else None


def find(resolved, files: list[str], recorded: list | None = None) -> tuple[Path, list] | None:
    """A usable local artifact: the file (first part of a split GGUF) or folder, and its rows."""
    usable = []
    for r in rows(resolved, recorded):
        p = Path(r.path)
        # a pulled part is recorded with its own size; a local split build with all its parts' total
        if p.is_dir() or (p.is_file() and r.size_bytes in (p.stat().st_size, _local_size(p))):
            usable.append((p, r))
    if not usable:
        return None
    for p, r in usable:  # a hub pull: every part must be beside the first
        if files and p.name in files:
            first = p.parent / files[0]
            if all((p.parent / f).is_file() for f in files):
                return first, [rr for pp, rr in usable if pp.parent == p.parent]
    p, r = usable[0]  # a local build (e.g. `registry convert`)
    return p, [r]


def record(resolved, path: Path, parent: str, digest: str | None = None):
    """Add the artifact row of a pulled file or snapshot folder; the sha256 comes from the download,
    the blob's content address, or is computed."""
    from ..store import Store

    if path.is_dir():
        digest, size = tree_sha256(path, blob_names=True)  # a cache snapshot's LFS files are not re-read
    else:
        if digest is None:
            addr = content_address(path)
            digest = addr[1] if addr and SHA256_RE.match(addr[1]) and addr[0] == "sha256" else sha256_file(path)
        size = os.path.getsize(path)
    return Store().add_artifact(
        family=resolved.family.name, format=resolved.spec.format, quantization=resolved.quantization,
        path=str(path), sha256=digest, size_bytes=size, parent=parent, recipe=None,
    )
