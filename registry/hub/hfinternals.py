"""The huggingface_hub names this package uses beyond hf_hub_download's documented API, in one place.

Known to work with huggingface_hub >=1.20,<2 (pyproject.toml pins this range; tests/test_hub.py checks
that the installed version is inside it and that every name in NAMES exists, so an upgrade that moves
one fails there, not in the middle of a pull). tests/test_hub.py and tests/test_discover.py pass with
the 1.20.0, 1.30.0 and 1.33.0 wheels. The bounds:
- 1.20.0 is the first release whose http_get resumes after the server drops the connection mid-body
  (httpx.RemoteProtocolError; before, a dropped download failed the pull). 1.10.0 added
  `utils.tqdm.silent_tqdm`; 1.1 gave http_get its `tqdm_class`; 1.0 brought the httpx client behind
  `get_session` and `set_client_factory` (0.x used requests: no `.stream`, no client factory).
- 2.0 moved the HTTP stack to httpx2: a client factory must return an httpx2 client and transport
  errors are httpx2's, so `timeout_client_factory` and `transport_errors` below would be wrong there.

Why each name is used:
- `file_download.http_get`: the transfer into a `blobs/<etag>.incomplete` file this package holds, with
  `resume_size`; hf_hub_download writes to a per-process temporary name and deletes it on failure, so
  it cannot resume an interrupted pull. Its private `_nb_retries=0` (PARAMS) turns off its own retries:
  it retries a read that timed out 5 times, 1 s apart, so a 1 s REGISTRY_HUB_TIMEOUT waited 11 s;
  hfdownload.py retries dropped connections itself and lets a timeout end the download.
- `file_download.repo_folder_name`, `file_download.REGEX_COMMIT_HASH`: the cache layout
  (`models--org--name`) and what a commit id looks like, as hf_hub_download writes and reads them.
- `utils.build_hf_headers`: the token and user-agent headers hf_hub_download sends.
- `utils.get_session`: the shared httpx client (the timeout and offline hook installed below apply).
- `utils.WeakFileLock`: the per-blob lock hf_hub_download takes, so this package, transformers and
  `hf download` never write the same blob at once.
- `utils.tqdm.silent_tqdm`: http_get's own bar off; progress is reported by integrity.HashingWriter.
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

from pathlib import Path

# (module, attribute) for every name above; tests/test_hub.py checks they all exist.
NAMES: tuple[tuple[str, str], ...] = (
    ("huggingface_hub.file_download", "http_get"),
    ("huggingface_hub.file_download", "repo_folder_name"),
    ("huggingface_hub.file_download", "REGEX_COMMIT_HASH"),
    ("huggingface_hub.utils", "build_hf_headers"),
    ("huggingface_hub.utils", "get_session"),
    ("huggingface_hub.utils", "WeakFileLock"),
    ("huggingface_hub.utils", "filter_repo_objects"),
    ("huggingface_hub.utils.tqdm", "silent_tqdm"),
    ("huggingface_hub.utils._http", "hf_request_event_hook"),
    ("huggingface_hub", "set_client_factory"),
)

# (module, function, parameter) for the private parameters used; tests/test_hub.py checks them too.
PARAMS: tuple[tuple[str, str, str], ...] = (("huggingface_hub.file_download", "http_get", "_nb_retries"),)


def missing() -> list[str]:
    """The names in NAMES and PARAMS the installed huggingface_hub lacks, as `module.attribute[(parameter)]`."""
    import importlib
    import inspect

    gone = []
    for module, attr in NAMES:
        try:
            ok = hasattr(importlib.import_module(module), attr)
        except ImportError:
            ok = False
        if not ok:
            gone.append(f"{module}.{attr}")
    for module, func, param in PARAMS:
        try:
            ok = param in inspect.signature(getattr(importlib.import_module(module), func)).parameters
        except (ImportError, AttributeError):
            ok = False
        if not ok:
            gone.append(f"{module}.{func}({param})")
    return gone


def http_get(url: str, fh, *, resume_size: int, headers: dict, expected_size: int | None, displayed_filename: str) -> None:
    """Stream `url` into the open file `fh` from byte `resume_size` on, with no bar of huggingface_hub's own
    and no retry of its own: a timeout or a dropped connection is raised to the caller (httpx's errors)."""
    from huggingface_hub.file_download import http_get as get
    from huggingface_hub.utils.tqdm import silent_tqdm

    get(url, fh, resume_size=resume_size, headers=headers, expected_size=expected_size,
        displayed_filename=displayed_filename, tqdm_class=silent_tqdm, _nb_retries=0)


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
