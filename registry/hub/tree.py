"""The hub read over HTTP for `registry discover`: a base's quantized derivatives (the model tree), a
repository's config.json, and a GGUF file's header by range requests, never the whole file."""

from __future__ import annotations

import json

from .errors import HubError

HEADER_LIMIT = 64 << 20  # a GGUF header (vocabulary, merges) is a few MB; stop reading past this
CONFIG_LIMIT = 1 << 20


class Unreadable(HubError):
    """One upload's file could not be read (a gated repository, a file that is not what its name says): that upload
    is reported as unrecognised and the others are read; a hub that cannot be reached stops the run."""


def _endpoint() -> str:
    from .hfdownload import endpoint

    return endpoint()


def _derivatives(base: str, limit: int):
    from huggingface_hub import HfApi

    from .hfdownload import translate
    from .timeouts import install

    install()
    try:
        api = HfApi(endpoint=_endpoint())
        return list(api.list_models(filter=f"base_model:quantized:{base}", expand=["siblings", "tags", "library_name"],
                                    limit=limit))
    except Exception as e:
        raise translate(e, base, "main") from None


def _get(repo: str, filename: str, headers: dict | None = None, stream: bool = False):
    """GET a file of the repository's main branch (a context manager when `stream`)."""
    from huggingface_hub import hf_hub_url

    from .hfinternals import hub_headers, session
    from .timeouts import install

    t = install()
    url = hf_hub_url(repo, filename, endpoint=_endpoint())
    h = {**hub_headers(), **(headers or {})}
    return session().stream("GET", url, headers=h, timeout=t) if stream else session().get(url, headers=h, timeout=t)


def _config(repo: str) -> dict | None:
    """The repository's config.json, or None when it has none (or it is not JSON)."""
    from .hfdownload import translate

    try:
        r = _get(repo, "config.json")
    except Exception as e:
        raise translate(e, repo, "main", "config.json") from None
    if r.status_code == 404 or len(r.content) > CONFIG_LIMIT:
        return None
    if r.status_code >= 400:
        raise Unreadable(f"{_endpoint()} answered HTTP {r.status_code} for {repo}/config.json"
                         + (" (a gated repository?)" if r.status_code in (401, 403) else ""))
    try:
        data = json.loads(r.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _Ranges:
    """`read(n)` as HTTP range requests on one hub file, at most HEADER_LIMIT bytes in all."""

    def __init__(self, repo: str, filename: str):
        self.repo, self.filename, self.pos, self.size = repo, filename, 0, None

    def read(self, n: int) -> bytes:
        n = min(n, HEADER_LIMIT - self.pos)
        if n <= 0:
            raise Unreadable(f"{self.repo}/{self.filename}: the GGUF header runs past {HEADER_LIMIT >> 20} MiB; "
                           "not read further")
        with _get(self.repo, self.filename, {"Range": f"bytes={self.pos}-{self.pos + n - 1}"}, stream=True) as r:
            if r.status_code == 416:
                return b""
            if r.status_code >= 400:
                raise Unreadable(f"{_endpoint()} answered HTTP {r.status_code} for {self.repo}/{self.filename}")
            # 206: the range asked for; 200: a server without ranges sends the whole file, of which only the
            # bytes up to the range's end are read before the connection is closed
            skip = self.pos if r.status_code == 200 else 0
            want = skip + n
            got = bytearray()
            for chunk in r.iter_bytes():
                got += chunk
                if len(got) >= want:
                    break
            total = r.headers.get("Content-Range", "").rpartition("/")[2]
            length = r.headers.get("Content-Length", "")
            if total.isdigit():
                self.size = int(total)
            elif r.status_code == 200 and length.isdigit():
                self.size = int(length)
        data = bytes(got[skip:want])
        self.pos += len(data)
        return data


def read_header(repo: str, filename: str):
    """The GGUF header of one hub file, read over range requests."""
    from .. import gguf_header
    from ..errors import RegistryError
    from .hfdownload import translate

    src = _Ranges(repo, filename)
    try:
        buf = _Primed(src)
        return gguf_header.read_stream(buf, f"{repo}/{filename}", buf.size)
    except HubError:
        raise
    except RegistryError as e:  # not a GGUF file, or a truncated one
        raise Unreadable(str(e)) from None
    except Exception as e:
        raise translate(e, repo, "main", filename) from None


class _Primed:
    """The first range read up front, so the file's size (Content-Range) is known before parsing."""

    def __init__(self, src: _Ranges):
        self.src, self.first = src, src.read(1 << 20)
        self.size = src.size if src.size is not None else len(self.first)

    def read(self, n: int) -> bytes:
        data, self.first = self.first[:n], self.first[n:]
        if len(data) < n:
            data += self.src.read(n - len(data))
        return data


def _file_type(header) -> str | None:
    """The llama.cpp file type a GGUF header records (general.file_type), by gguf's own names."""
    v = header.metadata.get("general.file_type")
    if v is None:
        return None
    try:
        from gguf.constants import LlamaFileType
    except ImportError:  # the gguf extra is not installed: the number is still the fact
        return f"file type {v}"
    try:
        name = LlamaFileType(int(v)).name
    except ValueError:
        return f"file type {v}"
    return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
