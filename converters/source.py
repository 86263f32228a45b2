"""The checkpoint a conversion starts from: its config.json, checked against the family named.

Both converters call `checkpoint_config` before loading any weights, so a wrong --from or a
checkpoint of another family fails at once with the same message whatever the target format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import RegistryError

if TYPE_CHECKING:  # a model, or a plain family of the compiled catalog (a GGUF conversion reads no more)
    from registry.schema import Family


def checkpoint_config(source: Path, family: Family) -> tuple[dict, str]:
    """(config.json as a dict, the architecture class it shares with the family); errors otherwise."""
    source = Path(source)
    if not source.is_dir():
        raise RegistryError(f"--from {source}: not a directory; give a Hugging Face checkpoint directory")
    cfg_path = source / "config.json"
    if not cfg_path.is_file():
        raise RegistryError(f"--from {source}: no config.json; give a Hugging Face checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RegistryError(f"{cfg_path}: not valid JSON ({e}); give a Hugging Face checkpoint directory") from None
    if not isinstance(cfg, dict):
        raise RegistryError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
    classes = cfg.get("architectures") or []
    if isinstance(classes, str):
        classes = [classes]
    known = family.architecture.hf_classes
    hit = next((c for c in classes if c in known), None)
    if hit is None:
        found = ", ".join(map(str, classes)) or "no architecture (no 'architectures' list)"
        raise RegistryError(
            f"{cfg_path} names {found}; family {family.name} is {', '.join(known)}: "
            f"convert a checkpoint of {family.name}, or name the family this checkpoint belongs to (`registry list`)"
        )
    return cfg, hit


def source_identity(source: Path) -> dict[str, list[int]]:
    """What a build's row records of the checkpoint it came from: each top-level file's size and mtime
    (ns), symlinks followed (a hub snapshot's files link to blobs). A later run that would reuse the build
    compares it with its own --from; hashing every shard again would cost as much as converting."""
    out = {}
    for p in sorted(Path(source).iterdir()):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out[p.name] = [st.st_size, st.st_mtime_ns]
    return out


def identity_difference(recorded: dict | None, now: dict) -> str | None:
    """Why a recorded source identity is not this one (the first difference), or None when they match."""
    if not isinstance(recorded, dict):
        return "its row does not record what checkpoint it was built from"
    for name in sorted(set(recorded) | set(now)):
        if name not in now:
            return f"{name} was in its checkpoint but is not in this one"
        if name not in recorded:
            return f"this checkpoint has {name}, which its checkpoint did not"
        if list(recorded[name]) != list(now[name]):
            return f"{name} differs in size or modification time"
    return None
