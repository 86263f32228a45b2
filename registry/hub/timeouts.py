"""How long any one hub call may wait for an answer: REGISTRY_HUB_TIMEOUT seconds (default 30).

huggingface_hub's client has no timeout (httpx `timeout=None`) and HfApi.model_info passes None
explicitly, so a hub or mirror that accepts the connection and never answers hangs `pull` for
ever. Every call this package makes gets the timeout: explicit where the API takes one, through the
client factory (list_repo_refs) and the download timeout constant (http_get: between chunks).
"""

from __future__ import annotations

import math
import os

from .errors import HubError

DEFAULT_S = 30.0
_installed: float | None = None


def hub_timeout() -> float:
    raw = os.environ.get("REGISTRY_HUB_TIMEOUT")
    if raw is None or not raw.strip():
        return DEFAULT_S
    try:
        t = float(raw)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or t <= 0:
        raise HubError(f"REGISTRY_HUB_TIMEOUT={raw!r}: give the seconds a hub call may wait, a positive number (default 30)")
    return t


def install() -> float:
    """Apply the timeout to huggingface_hub's shared client and download calls; returns it."""
    global _installed
    t = hub_timeout()
    if _installed == t:
        return t
    from huggingface_hub import constants

    from .hfinternals import timeout_client_factory

    timeout_client_factory(t)
    constants.HF_HUB_DOWNLOAD_TIMEOUT = t
    constants.HF_HUB_ETAG_TIMEOUT = t
    _installed = t
    return t
