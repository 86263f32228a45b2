"""Errors of the hub layer; all are RegistryError, so the CLI prints them on one line."""

from __future__ import annotations

from ..errors import NotFoundError, RegistryError


class HubError(RegistryError):
    """A download that cannot proceed: unknown revision, missing file, no network, disk full."""


class OfflineError(HubError, NotFoundError):
    """Offline (HF_HUB_OFFLINE=1 or --offline) and the build is not on this machine."""


class IntegrityError(HubError):
    """A file whose checksum differs from what the hub or the store recorded; it was moved aside."""


def one_line(exc: BaseException) -> str:
    """huggingface_hub's messages span several lines; the CLI prints one."""
    parts = [p.strip() for p in str(exc).splitlines() if p.strip()]
    return " ".join(parts) or type(exc).__name__
