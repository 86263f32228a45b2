"""The Hugging Face cache, read without any network call (huggingface_hub's own look-ups)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import hfinternals
from .names import safe_relative_name


def cache_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default, read at call time.

    huggingface_hub reads these variables once at import; reading them here lets a process
    (or a test) change them later and still agree with the layout other tools use.
    """
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / hfinternals.repo_folder_name(repo_id)


def is_commit(revision: str) -> bool:
    return hfinternals.is_commit(revision)


def commit_for(repo_id: str, revision: str) -> str | None:
    """The commit a branch/tag pointed at when last downloaded (refs/<revision>), or None."""
    from .names import safe_revision

    if is_commit(revision):
        return revision
    ref = repo_folder(repo_id) / "refs" / safe_revision(revision)
    try:
        commit = ref.read_text(errors="replace")[:100].strip()
    except OSError:
        return None
    return commit if is_commit(commit) else None  # anything else would name a folder outside snapshots/


def cached_file(repo_id: str, revision: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    safe_relative_name(filename)
    hit = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir()), revision=revision, repo_type="model")
    return Path(hit) if isinstance(hit, str) else None


def snapshot_dir(repo_id: str, revision: str) -> Path | None:
    commit = commit_for(repo_id, revision)
    if commit is None:
        return None
    d = repo_folder(repo_id) / "snapshots" / commit
    return d if d.is_dir() else None


def snapshot_missing(snap: Path) -> list[str]:
    """What a cached snapshot lacks for an engine to load it: config, and every indexed weight shard."""
    missing = []
    if not (snap / "config.json").is_file():
        missing.append("config.json")
    indexes = sorted(snap.glob("*.index.json"))
    if indexes:
        for idx in indexes:
            try:
                shards = set(json.loads(idx.read_text()).get("weight_map", {}).values())
            except (OSError, ValueError):
                missing.append(f"{idx.name} (unreadable)")
                continue
            missing += sorted(s for s in shards if not (snap / s).is_file())
    elif not any(p.is_file() for pat in ("*.safetensors", "*.bin") for p in snap.glob(pat)):
        missing.append("weights (*.safetensors)")
    return missing
