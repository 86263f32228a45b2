"""Hub: get a resolved build onto this machine, offline-first, and check it.

Order (issue 5): a local artifact in the store, then the Hugging Face cache, then a download.
Nothing here touches the network while a local copy exists, or at all when offline
(HF_HUB_OFFLINE=1, or offline=True).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HubError, IntegrityError, OfflineError
from .names import choose_hub, licence_notices, safe_relative_name, safe_revision

__all__ = ["fetch", "pull", "verify", "PullResult", "HubError", "OfflineError", "IntegrityError", "is_offline"]

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def is_offline(offline: bool | None = None) -> bool:
    if offline is not None:
        return offline
    return any(
        os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@dataclass
class PullResult:
    path: Path  # the GGUF file (first part if split) or the snapshot folder
    source: str  # "store", "cache" or "download"
    hub: str | None
    model_id: str | None
    revision: str | None
    commit: str | None
    files: list[Path] = field(default_factory=list)
    artifact_ids: list[int] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "source": self.source, "hub": self.hub, "model_id": self.model_id,
            "revision": self.revision, "commit": self.commit, "files": [str(f) for f in self.files],
            "artifact_ids": self.artifact_ids, "notices": self.notices,
        }


def _label(resolved) -> str:
    return f"{resolved.family.name} {resolved.spec.format} {resolved.quantization}"


def _pull_cmd(resolved) -> str:
    """The command that pulls this very build: the uploader named where several publish the format in one size."""
    return (f"registry pull {resolved.family.launch_name(resolved.spec)} --format {resolved.spec.format} "
            f"--quant {resolved.quantization}")


def convert_cmd(resolved) -> str:
    """The command that builds it here (the checkpoint folder named after the parent repository, as a download
    of it would be)."""
    rec = resolved.spec.recipe
    src = rec.parent.split("@")[0].rsplit("/", 1)[-1] if rec and rec.parent else "CHECKPOINT"
    return (f"registry convert {resolved.family.name} --from ./{src} --to {resolved.spec.format} "
            f"--quant {resolved.quantization}")


def fetch(resolved, hub: str | None = None, offline: bool | None = None, *, progress: bool = False,
          say: Say | None = None) -> Path:
    """The local path of a build: GGUF file (first part if split) or snapshot folder."""
    return pull(resolved, hub=hub, offline=offline, progress=progress, say=say).path


def pull(resolved, hub: str | None = None, offline: bool | None = None, *, progress: bool = False,
         say: Say | None = None, revision: str | None = None) -> PullResult:
    """Fetch a build (store, then the Hugging Face cache, then the hub); the artifact rows record the exact
    commit that was resolved (model@commit), and `revision` (a commit, branch or tag) pins one."""
    import dataclasses

    from . import hfcache, local

    say = say if say is not None else _stderr
    off = is_offline(offline)
    label = _label(resolved)
    if resolved.hubs:
        which = choose_hub(list(resolved.hubs), hub)
        src = resolved.hubs[which]
        if revision:
            src = dataclasses.replace(src, revision=safe_revision(revision))
        safe_revision(src.revision)  # a user spec's revision names refs/<revision> in the cache
        files = [safe_relative_name(f) for f in src.files]
    else:
        which, src, files = None, None, []

    hit = local.find(resolved, files)  # 1. the store
    if hit is not None and revision and src is not None:
        # a pinned pull takes only what was recorded at that commit (or under that branch or tag name)
        want = f"{src.model_id}@{revision}"
        hit = hit if all(r.parent == want for r in hit[1]) else None
    if hit is not None:
        path, rows = hit
        return PullResult(path, "store", which, src.model_id if src else None, src.revision if src else None, None,
                          [Path(r.path) for r in rows], [r.id for r in rows])
    if src is None:
        parent = resolved.spec.recipe.parent if resolved.spec.recipe and resolved.spec.recipe.parent else None
        raise HubError(
            f"{label} is not published on a hub and there is no local artifact; build it with `{convert_cmd(resolved)}`"
            + (f" (a download of {parent})" if parent else "")
        )
    parent = f"{src.model_id}@{src.revision}"  # ModelScope: the revision name (its commit is not looked up)

    def at(commit: str | None) -> str:  # what an artifact row records: the exact commit when it is known
        return f"{src.model_id}@{commit or src.revision}"

    if which == "modelscope":
        from . import modelscope

        if not off:
            notices = licence_notices(resolved.family, which, src.model_id, src.url)
            for n in notices:
                say(n)
        else:
            notices = []
        path = modelscope.download(src.model_id, src.revision, files, off)
        paths_ = [path.parent / f for f in files] if files else [path]
        ids = [local.record(resolved, p, parent).id for p in paths_]
        return PullResult(path, "modelscope", which, src.model_id, src.revision, None, paths_, ids, notices)

    # 2. the Hugging Face cache (huggingface_hub's own look-ups, no network)
    missing: list[str]
    if files:
        cached = {f: hfcache.cached_file(src.model_id, src.revision, f) for f in files}
        missing = [f for f, p in cached.items() if p is None]
        if not missing:
            paths_ = [cached[f] for f in files]
            commit = hfcache.commit_for(src.model_id, src.revision)
            ids = [local.record(resolved, p, at(commit)).id for p in paths_]
            return PullResult(paths_[0], "cache", which, src.model_id, src.revision, commit, paths_, ids)
    else:
        snap = hfcache.snapshot_dir(src.model_id, src.revision)
        missing = hfcache.snapshot_missing(snap) if snap else ["the whole snapshot"]
        if not missing:
            ids = [local.record(resolved, snap, at(snap.name)).id]
            return PullResult(snap, "cache", which, src.model_id, src.revision, snap.name, [snap], ids)

    if off:
        raise OfflineError(
            f"offline, and {label} is not on this machine: {src.model_id}@{src.revision} lacks {', '.join(missing)} "
            f"in the Hugging Face cache ({hfcache.cache_dir()}) and the store has no artifact; "
            f"run `{_pull_cmd(resolved)}` with the network on"
        )

    # 3. download
    from .hfdownload import download, list_repo, select_files, select_snapshot
    from .progress import Bars

    notices = licence_notices(resolved.family, which, src.model_id, src.url)
    for n in notices:  # before any request: the user learns the terms first
        say(n)
    listing = list_repo(src.model_id, src.revision)
    remote = select_files(listing, files) if files else select_snapshot(listing)
    with Bars(progress) as bars:
        got = download(listing, remote, bars, say)
    if files:
        paths_ = [got[f][0] for f in files]
        ids = [local.record(resolved, got[f][0], at(listing.commit), got[f][1]).id for f in files]
        path = paths_[0]
    else:
        path = hfcache.repo_folder(src.model_id) / "snapshots" / listing.commit
        paths_ = [path]
        ids = [local.record(resolved, path, at(listing.commit)).id]
    return PullResult(path, "download", which, src.model_id, src.revision, listing.commit, paths_, ids, notices)


def verify(resolved, *, raise_on_error: bool = True) -> list[dict]:
    """Re-check local copies of a build; a bad file is moved aside and its row removed."""
    from .verification import verify_build

    return verify_build(resolved, raise_on_error=raise_on_error)
