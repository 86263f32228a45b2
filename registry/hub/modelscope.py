"""ModelScope downloads through the optional `modelscope` package (extra: glm-registry[modelscope]).

ModelScope keeps its own cache (MODELSCOPE_CACHE) and checks each file's sha256 against its
hub's listing while downloading (modelscope.hub.utils.utils.file_integrity_validation).
"""

from __future__ import annotations

from pathlib import Path

from .errors import HubError, OfflineError, one_line
from .names import SNAPSHOT_ALLOW, SNAPSHOT_IGNORE


def download(model_id: str, revision: str, files: list[str], offline: bool) -> Path:
    """The local path of `files[0]` (GGUF) or of the snapshot folder (files empty)."""
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise HubError(
            "ModelScope downloads need the 'modelscope' package: pip install 'glm-registry[modelscope]' "
            "(or pass --hub huggingface)"
        ) from None
    # ModelScope's default branch is 'master'; a spec's default 'main' means "the default branch".
    rev = None if revision == "main" else revision
    try:  # modelscope >= 1.20: snapshot_download(model_id, revision, allow_patterns, ignore_patterns, local_files_only)
        folder = snapshot_download(
            model_id,
            revision=rev,
            allow_patterns=files or SNAPSHOT_ALLOW,
            ignore_patterns=None if files else SNAPSHOT_IGNORE,
            local_files_only=offline,
        )
    except Exception as e:  # modelscope raises several unrelated types; name the repo and the cause
        if offline:
            raise OfflineError(f"offline, and {model_id}@{revision} is not in the ModelScope cache ({one_line(e)})") from None
        raise HubError(f"ModelScope download of {model_id}@{revision} failed: {one_line(e)}") from None
    root = Path(folder)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        have = sorted(p.name for p in root.glob("*.gguf*"))
        raise HubError(f"{model_id}@{revision} on ModelScope has no file {', '.join(missing)}; it has: {', '.join(have) or '(none)'}")
    return root / files[0] if files else root
