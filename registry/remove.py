"""`registry rm`: remove a local build or a cached download, its files and its store rows together.

What a build's local copies are: its store rows (a `registry convert` build, a pulled file or snapshot)
and what the Hugging Face cache holds for it (pulled by another tool). A cached file is a symlink in
`snapshots/<commit>/` to `blobs/<sha256>`; both go, the blob only when no other snapshot links to it.
A build that a running deployment serves is refused.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NotFoundError, RegistryError


@dataclass
class Target:
    path: Path  # what the row (or the cache) names: a file, the first part of a split GGUF, or a folder
    kind: str  # "local build", "cached download" or "missing" (a row whose files are gone)
    rows: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # everything deleted, links and blobs included
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "artifact_ids": self.rows, "size_bytes": self.size_bytes,
                "files": [str(f) for f in self.files]}


def _in_hf_cache(p: Path) -> bool:
    from .hub import hfcache

    try:
        return Path(os.path.abspath(p)).is_relative_to(Path(os.path.abspath(hfcache.cache_dir())))
    except (OSError, ValueError):
        return False


def _links_to(blob: Path, snapshots: Path, but: set[Path]) -> bool:
    """Another snapshot file links to this blob."""
    for f in snapshots.rglob("*"):
        if f.is_symlink() and f not in but and f.resolve() == blob:
            return True
    return False


def _files_of(path: Path) -> tuple[list[Path], int]:
    """What removing `path` deletes, and the bytes freed."""
    from .hub.integrity import split_parts

    if path.is_dir() and not path.is_symlink():
        files = [f for f in path.rglob("*") if f.is_file() or f.is_symlink()]
        return _expand(files) + [path], sum(_size(f) for f in files)
    parts = [q for q in split_parts(path) if q.exists() or q.is_symlink()]
    return _expand(parts), sum(_size(q) for q in parts)


def _size(f: Path) -> int:
    try:
        return f.stat().st_size
    except OSError:
        return 0


def _expand(files: list[Path]) -> list[Path]:
    """Files plus, for cache symlinks, the blobs they point at that nothing else uses."""
    out = list(files)
    links = {f for f in files if f.is_symlink()}
    for f in links:
        blob = f.resolve()
        snaps = next((p for p in f.parents if p.name == "snapshots"), None)
        if blob.parent.name == "blobs" and blob.exists() and snaps is not None and not _links_to(blob, snaps, links):
            out.append(blob)
    return out


@dataclass
class _Row:
    id: int
    path: str
    node: str
    family: str


def targets(resolved=None, artifact_id: int | None = None) -> list[Target]:
    """The local copies of a build (or of one artifact row), each with the rows and files it takes."""
    from . import paths

    rows = []
    if paths.has_database():
        from .store import Store

        if artifact_id is not None:
            head = Store().artifact_heads().get(artifact_id)  # not the columns a damaged row can't load
            if head is None:
                raise NotFoundError(f"no artifact with id {artifact_id}; `registry show NAME --artifacts` lists them")
            rows = [_Row(artifact_id, *head)]
            from .launching.deployments import elsewhere

            elsewhere(rows[0], f"registry rm {artifact_id}", "artifact")  # its files are on that machine
        else:
            from .hub import local

            rows = local.rows(resolved)
    elif artifact_id is not None:
        raise NotFoundError(f"no artifact with id {artifact_id}: nothing has been recorded yet")
    out: dict[Path, Target] = {}
    for r in rows:
        p = Path(r.path)
        t = out.get(p)
        if t is None:
            exists = p.exists() or p.is_symlink()
            kind = "missing" if not exists else "cached download" if _in_hf_cache(p) else "local build"
            t = out[p] = Target(p, kind)
        t.rows.append(r.id)
    if resolved is not None and artifact_id is None:
        for p in _cached(resolved):
            out.setdefault(p, Target(p, "cached download"))
    for t in out.values():
        if t.kind != "missing":
            t.files, t.size_bytes = _files_of(t.path)
    return list(out.values())


def _cached(resolved) -> list[Path]:
    """What the Hugging Face cache holds for this build (whether recorded or not)."""
    from .hub import hfcache

    src = resolved.hubs.get("huggingface")
    if src is None:
        return []
    if src.files:
        return [p for f in src.files if (p := hfcache.cached_file(src.model_id, src.revision, f)) is not None]
    snap = hfcache.snapshot_dir(src.model_id, src.revision)
    return [snap] if snap is not None else []


def check_not_served(found: list[Target]) -> None:
    from .launching.deployments import ps

    ids = {i for t in found for i in t.rows}
    names = {str(t.path) for t in found}
    for d in ps(mine=True):  # a build on this machine is served from this machine
        if d.artifact_id in ids or names & set(d.argv or []):
            raise RegistryError(f"deployment {d.id} ({d.family} {d.quantization}, pid {d.pid}) serves this build; "
                                f"`registry stop {d.id}` first")


def remove(found: list[Target]) -> None:
    """Per copy: delete its files, then its rows (a copy whose files cannot all be deleted keeps its rows)."""
    for t in found:
        for f in t.files:
            try:
                if f.is_dir() and not f.is_symlink():
                    shutil.rmtree(f)
                else:
                    f.unlink(missing_ok=True)
            except OSError as e:
                raise RegistryError(f"cannot remove {f}: {e.strerror}; the store still records {t.path}") from None
        if t.rows:
            from .store import Store

            Store().remove_artifacts(t.rows)
