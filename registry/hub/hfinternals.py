"""The huggingface_hub names this package uses beyond hf_hub_download's documented API, in one place.

Known to work with huggingface_hub >=1.20,<2 (pyproject.toml pins this range; tests/test_hub.py checks
that the installed version is inside it and that every name in NAMES exists, so an upgrade that moves
one fails there, not in the middle of a pull). tests/test_hub.py and tests/test_discover.py pass with
the 1.20.0, 1.30.0 and 1.33.0 wheels. The bounds:
- 1.20.0 is the oldest release these tests were run with (hfdownload.py resumes a dropped
  connection itself); 1.0 brought the httpx client behind `get_session`, `set_client_factory` and
  `http_stream_backoff` (0.x used requests: no `.stream`, no client factory).
- 2.0 moved the HTTP stack to httpx2: a client factory must return an httpx2 client and transport
  errors are httpx2's, so `timeout_client_factory` and `transport_errors` below would be wrong there.

Why each name is used:
- `utils.http_stream_backoff`, `utils.hf_raise_for_status`, `constants.MAX_HTTP_DOWNLOAD_SIZE`: the GET
  that file_download.http_get makes (408 and 429 retried with backoff, the hub's errors raised as its own
  exceptions, no file over 50 GB without Xet), streamed by hfdownload.py into a `blobs/<etag>.incomplete`
  file this package holds, resumed with Range: hf_hub_download writes to a per-process temporary name and
  deletes it on failure, so it cannot resume an interrupted pull; and http_get retries a read that timed
  out 5 times, 1 s apart, after every chunk, so a 1 s REGISTRY_HUB_TIMEOUT waited 11 s on a stall.
- `file_download.repo_folder_name`, `file_download.REGEX_COMMIT_HASH`: the cache layout
  (`models--org--name`) and what a commit id looks like, as hf_hub_download writes and reads them.
- `utils.build_hf_headers`: the token and user-agent headers hf_hub_download sends.
- `utils.get_session`: the shared httpx client (the timeout and offline hook installed below apply).
- `utils.WeakFileLock`: the per-blob lock hf_hub_download takes, so this package, transformers and
  `hf download` never write the same blob at once.
- `utils._http.hf_request_event_hook` with `set_client_factory`: huggingface_hub's default client
  (offline mode, request ids) rebuilt with a timeout, which it does not set.
- `utils.filter_repo_objects`: the allow/ignore globbing snapshot_download applies to a repository.
- `utils._detect_agent._REGISTRY_FETCH_TIMEOUT` (1.3x on; optional, not in NAMES): the first request's
  user agent asks the endpoint for `/api/agent-harnesses` with a 3 s timeout of its own, so a hub that
  never answers held a pull for REGISTRY_HUB_TIMEOUT + 3 s; `timeout_client_factory` lowers it to the
  timeout when that is shorter.

Every import is inside a function: `registry list` and `show` never import huggingface_hub.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

# (module, attribute) for every name above; tests/test_hub.py checks they all exist.
NAMES: tuple[tuple[str, str], ...] = (
    ("huggingface_hub.utils", "http_stream_backoff"),
    ("huggingface_hub.utils", "hf_raise_for_status"),
    ("huggingface_hub.constants", "MAX_HTTP_DOWNLOAD_SIZE"),
    ("huggingface_hub.file_download", "repo_folder_name"),
    ("huggingface_hub.file_download", "REGEX_COMMIT_HASH"),
    ("huggingface_hub.utils", "build_hf_headers"),
    ("huggingface_hub.utils", "get_session"),
    ("huggingface_hub.utils", "WeakFileLock"),
    ("huggingface_hub.utils", "filter_repo_objects"),
    ("huggingface_hub.utils._http", "hf_request_event_hook"),
    ("huggingface_hub", "set_client_factory"),
)


def missing() -> list[str]:
    """The names in NAMES the installed huggingface_hub lacks, as `module.attribute`."""
    import importlib

    gone = []
    for module, attr in NAMES:
        try:
            ok = hasattr(importlib.import_module(module), attr)
        except ImportError:
            ok = False
        if not ok:
            gone.append(f"{module}.{attr}")
    return gone


@contextlib.contextmanager
def stream_get(url: str, headers: dict, timeout: float):
    """The GET file_download.http_get makes (no retry on a transport error: the caller resumes), its status
    checked as huggingface_hub checks it; yields the httpx response, its body not read yet."""
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    with http_stream_backoff(method="GET", url=url, headers=headers, timeout=timeout, retry_on_exceptions=(),
                             retry_on_status_codes=(408, 429)) as response:
        hf_raise_for_status(response)
        yield response


def max_plain_download() -> int:
    """The largest file the hub serves without Xet (huggingface_hub refuses a plain GET of a bigger one)."""
    from huggingface_hub import constants

    return constants.MAX_HTTP_DOWNLOAD_SIZE


def repo_folder_name(repo_id: str) -> str:
    """The cache folder of a model repository (`models--org--name`)."""
    from huggingface_hub.file_download import repo_folder_name as name

    return name(repo_id=repo_id, repo_type="model")


def is_commit(revision: str) -> bool:
    from huggingface_hub.file_download import REGEX_COMMIT_HASH

    return bool(REGEX_COMMIT_HASH.fullmatch(revision))


def hub_headers() -> dict:
    """The headers hf_hub_download sends: HF_TOKEN or the saved token, the user agent."""
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers()


def session():
    """huggingface_hub's shared httpx client."""
    from huggingface_hub.utils import get_session

    return get_session()


def blob_lock(path: Path, timeout: float | None = None):
    """hf_hub_download's lock for one blob (a context manager); raises filelock.Timeout after `timeout`."""
    from huggingface_hub.utils import WeakFileLock

    return WeakFileLock(path, timeout=timeout)


def filter_repo_objects(names: list[str], allow: list[str], ignore: list[str]) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects as pick

    return list(pick(names, allow_patterns=allow, ignore_patterns=ignore))


def timeout_client_factory(seconds: float) -> None:
    """huggingface_hub's default client, with a timeout, made its client from now on."""
    import httpx
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import hf_request_event_hook

    def factory() -> httpx.Client:  # huggingface_hub's default_client_factory, with a timeout
        return httpx.Client(event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True,
                            timeout=httpx.Timeout(seconds))

    set_client_factory(factory)
    try:
        from huggingface_hub.utils import _detect_agent
    except ImportError:  # before 1.3x: no such lookup
        return
    global _agent_lookup_s
    if _agent_lookup_s is None:
        _agent_lookup_s = getattr(_detect_agent, "_REGISTRY_FETCH_TIMEOUT", None)
    if isinstance(_agent_lookup_s, (int, float)):
        _detect_agent._REGISTRY_FETCH_TIMEOUT = min(_agent_lookup_s, seconds)


_agent_lookup_s: float | None = None  # huggingface_hub's own timeout for the agent lookup


def transport_errors():
    """The module whose exceptions huggingface_hub's client raises for timeouts and network errors (httpx)."""
    import httpx

    return httpx
