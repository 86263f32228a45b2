"""ModelScope downloads through the optional `modelscope` package (extra: glm-registry[modelscope]).

ModelScope keeps its own cache (MODELSCOPE_CACHE) and checks each file's sha256 against its
hub's listing while downloading (modelscope 1.40 delegates to modelscope_hub: _download.py,
DownloadManager.download_file, which retries and then leaves nothing at the target path).
MODELSCOPE_ENDPOINT chooses the hub (tests point it at tests/fixtures/msserver.py).
"""

from __future__ import annotations

from pathlib import Path

from .errors import HubError, IntegrityError, OfflineError, one_line
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
        bad = _checksum_failures(e)
        if bad:
            raise IntegrityError(
                f"ModelScope served {', '.join(bad)} of {model_id}@{revision} with a sha256 other than its own listing's "
                f"(retried, then refused; nothing was kept): {one_line(e)}; pull again later or pass --hub huggingface"
            ) from None
        if offline:
            raise OfflineError(f"offline, and {model_id}@{revision} is not in the ModelScope cache ({one_line(e)})") from None
        raise HubError(f"ModelScope download of {model_id}@{revision} failed: {one_line(e)}") from None
    root = Path(folder)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        have = sorted(p.name for p in root.glob("*.gguf*"))
        raise HubError(f"{model_id}@{revision} on ModelScope has no file {', '.join(missing)}; it has: {', '.join(have) or '(none)'}")
    return root / files[0] if files else root


def _checksum_failures(e: BaseException) -> list[str]:
    """Files modelscope refused because their bytes contradict the listing's sha256 or size.

    modelscope 1.40 (modelscope_hub 0.5) raises FileDownloadError with `failed_files` mapping each
    path to its error, a FileIntegrityError (errors.py) for a hash or size mismatch.
    """
    try:
        from modelscope_hub.errors import FileIntegrityError  # FileSizeMismatchError is one
    except ImportError:  # an older modelscope: its own message says what failed
        return []
    failed = getattr(e, "failed_files", None) or {}
    return sorted(p for p, err in failed.items() if isinstance(err, FileIntegrityError))
