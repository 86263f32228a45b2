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
    import httpx
    from huggingface_hub import constants, set_client_factory
    from huggingface_hub.utils._http import hf_request_event_hook

    def factory() -> httpx.Client:  # huggingface_hub's default_client_factory, with a timeout
        return httpx.Client(event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True,
                            timeout=httpx.Timeout(t))

    set_client_factory(factory)
    constants.HF_HUB_DOWNLOAD_TIMEOUT = t
    constants.HF_HUB_ETAG_TIMEOUT = t
    _installed = t
    return t
