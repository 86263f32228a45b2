"""Which hub, which files: safe relative names, snapshot patterns, licence notices."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from .errors import HubError

HUBS = ("huggingface", "modelscope")

# What an engine needs from a safetensors/pytorch snapshot (weights, configs, tokenizer, remote
# code for trust_remote_code models, chat templates). Everything else (original/ checkpoints,
# GGUF/ONNX/Flax/TF copies, images) is skipped. fnmatch semantics, as huggingface_hub's
# filter_repo_objects applies them ('*' also matches '/').
SNAPSHOT_ALLOW = ["*.json", "*.safetensors", "*.py", "*.model", "*.tiktoken", "*.txt", "*.jinja", "LICENSE*"]
SNAPSHOT_IGNORE = ["original/*", "*.gguf", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.ot", "*.pth", "*.pt"]
# Repos without safetensors publish pytorch_model*.bin; only then are .bin weights fetched.
BIN_WEIGHTS = ["*.bin"]


def choose_hub(available: list[str], hub: str | None) -> str:
    """--hub, else REGISTRY_HUB, else huggingface (or the only hub the spec has)."""
    wanted = hub or os.environ.get("REGISTRY_HUB") or None
    if wanted is not None and wanted not in HUBS:
        raise HubError(f"unknown hub {wanted!r}; choose one of: {', '.join(HUBS)}")
    if wanted is None:
        wanted = "huggingface" if "huggingface" in available or not available else available[0]
    if available and wanted not in available:
        raise HubError(f"this build is not published on {wanted}; it is on: {', '.join(available)} (pass --hub)")
    return wanted


def safe_relative_name(name: str) -> str:
    """A repo file name that stays inside the snapshot folder.

    Sub-folders are allowed (some GGUF repos keep one folder per quantization); absolute names,
    backslashes and '..' or empty components, which would escape the cache, are refused.
    """
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        raise HubError(f"refusing file name {name!r}: it must be a relative name inside the repo, without '\\'")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in name.split("/")) or "" in name.split("/") or not parts:
        raise HubError(f"refusing file name {name!r}: '..', '.' or empty path components would escape the cache")
    return name


def safe_revision(revision: str) -> str:
    """A commit, branch or tag name that names no file outside the cache's refs/ folder."""
    from ..schema import revision_problem

    problem = revision_problem(revision)
    if problem:
        raise HubError(f"refusing revision {revision!r}: {problem}; give a commit id, branch or tag name")
    return revision


def safe_blob_name(name: str, what: str) -> str:
    """A name the hub sent (an ETag, a commit id) that becomes one file name in the cache."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00") or len(name) > 255:
        raise HubError(f"refusing {what} {name!r} from the hub: it is not a plain file name; is HF_ENDPOINT a Hub mirror?")
    return name


def licence_notices(family, hub: str, model_id: str, url: str) -> list[str]:
    """What a user must know before downloading (seed 000: registration for commercial use)."""
    lic = family.licence
    out = []
    where = lic.url or url
    if lic.gated:
        out.append(
            f"{model_id} is gated on {hub}: accept the {lic.name} licence at {url} with your account, "
            f"then set HF_TOKEN (licence: {where})"
        )
    if lic.commercial_use == "registration-required":
        out.append(
            f"{family.name} is under the {lic.name} licence ({where}): commercial use requires registration"
            + (f" at {lic.registration_url}" if lic.registration_url else "")
            + (f"; questions: {lic.contact}" if lic.contact else "")
        )
    elif lic.commercial_use == "forbidden":
        out.append(f"{family.name} is under the {lic.name} licence ({where}): commercial use is forbidden")
    return out
