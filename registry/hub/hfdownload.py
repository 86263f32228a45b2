"""Downloads from the Hugging Face Hub (or an HF_ENDPOINT mirror) into huggingface_hub's cache.

The layout is the one hf_hub_download writes (blobs/<etag>, snapshots/<commit>/<name> symlinks,
refs/<revision>), so transformers, vLLM and `hf` share what this downloads. The transfer itself is
the GET huggingface_hub's http_get makes (hfinternals.stream_get: which versions it works with is said
there), streamed into a stable `blobs/<etag>.incomplete` file and resumed from its size with Range:
hf_hub_download 1.x writes to a per-process temporary name and deletes it on failure
(file_download._download_to_tmp_and_move), so it cannot resume an interrupted `registry pull`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from . import hfcache, hfinternals
from .errors import HubError, IntegrityError, OfflineError, one_line
from .integrity import CHUNK, HashingWriter, git_blob_sha1, quarantine
from .names import BIN_WEIGHTS, SNAPSHOT_ALLOW, SNAPSHOT_IGNORE, safe_blob_name, safe_relative_name, safe_revision
from .timeouts import install as install_timeout


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int | None
    sha256: str | None  # LFS files: the sha256 the hub publishes
    blob_id: str | None  # the git blob id (sha1); the checksum of regular files

    @property
    def expected(self) -> tuple[str, str] | None:
        if self.sha256:
            return "sha256", self.sha256
        if self.blob_id:
            return "git-sha1", self.blob_id
        return None


@dataclass(frozen=True)
class Listing:
    repo_id: str
    revision: str
    commit: str
    files: dict[str, RemoteFile]


def translate(exc: BaseException, repo_id: str, revision: str, filename: str | None = None) -> HubError:
    """huggingface_hub/httpx errors as one actionable line."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    httpx = hfinternals.transport_errors()
    ep = endpoint()
    page = f"{ep}/{repo_id}"
    if isinstance(exc, OfflineModeIsEnabled):
        return OfflineError(
            f"huggingface_hub is in offline mode (HF_HUB_OFFLINE was set when it was imported) and "
            f"{repo_id}@{revision} is not cached"
        )
    if isinstance(exc, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its licence at {page} while logged in, then set HF_TOKEN to a token of that account"
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"revision {revision!r} does not exist in {repo_id}" + _branches_hint(repo_id))
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(
            f"repository {repo_id} not found at {ep} (or it is private or gated and HF_TOKEN is unset or lacks access)"
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubError(f"{repo_id}@{revision} has no file {filename!r}")
    if isinstance(exc, httpx.TimeoutException):
        from .timeouts import hub_timeout

        return HubError(
            f"{ep} did not answer within {hub_timeout():g} s ({type(exc).__name__}); check the network or HF_ENDPOINT, "
            "set REGISTRY_HUB_TIMEOUT to wait longer, or pass --offline to use what is cached"
        )
    if isinstance(exc, (httpx.ConnectError, httpx.TimeoutException, httpx.NetworkError)):
        return HubError(
            f"cannot reach {ep} ({one_line(exc)}); check the network, set HF_ENDPOINT to a mirror, "
            "or pass --offline to use what is cached"
        )
    if isinstance(exc, HfHubHTTPError):
        code = exc.response.status_code if exc.response is not None else "?"
        return HubError(f"{ep} answered HTTP {code} for {repo_id}@{revision}: {one_line(exc)}")
    return HubError(f"{repo_id}@{revision}: {one_line(exc)}")


def _branches_hint(repo_id: str) -> str:
    try:
        from huggingface_hub import HfApi

        install_timeout()
        refs = HfApi(endpoint=endpoint()).list_repo_refs(repo_id)
        names = [b.name for b in refs.branches] + [t.name for t in refs.tags]
        return f"; it has: {', '.join(names)}" if names else ""
    except Exception:  # the hint is optional; the error above stands without it
        return ""


def list_repo(repo_id: str, revision: str) -> Listing:
    """The repo's files at `revision`, with sizes and checksums (model_info with files_metadata)."""
    from huggingface_hub import HfApi

    safe_revision(revision)
    t = install_timeout()
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, files_metadata=True, timeout=t)
    except Exception as e:
        raise translate(e, repo_id, revision) from None
    if not info.sha:
        raise HubError(f"{endpoint()} did not say which commit {repo_id}@{revision} is; is HF_ENDPOINT a Hub mirror?")
    if not hfcache.is_commit(info.sha):  # it names snapshots/<commit> and is written to refs/<revision>
        raise HubError(f"{endpoint()} answered commit {info.sha!r} for {repo_id}@{revision}, which is not a 40-hex "
                       "commit id; is HF_ENDPOINT a Hub mirror?")
    files = {
        s.rfilename: RemoteFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None, s.blob_id)
        for s in info.siblings or []
    }
    return Listing(repo_id, revision, info.sha, files)


def select_files(listing: Listing, wanted: list[str]) -> list[RemoteFile]:
    for w in wanted:
        safe_relative_name(w)
    missing = [w for w in wanted if w not in listing.files]
    if missing:
        have = sorted(n for n in listing.files if n.endswith(".gguf") or ".gguf.part" in n) or sorted(listing.files)
        raise HubError(
            f"{listing.repo_id}@{listing.revision} has no file {', '.join(missing)}; "
            f"it has: {', '.join(have) or '(no files)'}"
        )
    return [listing.files[w] for w in wanted]


def select_snapshot(listing: Listing) -> list[RemoteFile]:
    """The files an engine needs from a safetensors/pytorch repo."""
    names = list(listing.files)
    allow = list(SNAPSHOT_ALLOW)
    if not any(n.endswith(".safetensors") for n in names):
        allow += BIN_WEIGHTS
    chosen = hfinternals.filter_repo_objects(names, allow, list(SNAPSHOT_IGNORE))
    for n in chosen:
        safe_relative_name(n)
    if not any(n.endswith((".safetensors", ".bin")) for n in chosen):
        raise HubError(
            f"{listing.repo_id}@{listing.revision} has no weights (*.safetensors); it has: {', '.join(sorted(names)) or '(no files)'}"
        )
    return [listing.files[n] for n in chosen]


def download(listing: Listing, files: list[RemoteFile], bars, say) -> dict[str, tuple[Path, str | None]]:
    """Fetch `files` at the listing's commit; return name -> (snapshot path, sha256 if computed).

    Files already in the snapshot are kept as they are (they were verified when they arrived).
    """
    folder = hfcache.repo_folder(listing.repo_id)
    snap = folder / "snapshots" / listing.commit
    out: dict[str, tuple[Path, str | None]] = {}
    for rf in files:
        pointer = snap / rf.name
        if not _inside(pointer, snap):
            raise HubError(f"refusing file name {rf.name!r}: it resolves outside {snap}")
        if pointer.is_file():
            out[rf.name] = (pointer, None)
            continue
        out[rf.name] = (pointer, _download_one(listing, rf, folder, pointer, bars, say))
    _write_ref(folder, listing.revision, listing.commit)
    return out


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)


def _download_one(listing: Listing, rf: RemoteFile, folder: Path, pointer: Path, bars, say) -> str | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    repo_id, commit = listing.repo_id, listing.commit
    url = hf_hub_url(repo_id, rf.name, revision=commit, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint(), timeout=install_timeout())  # HEAD: etag (blob name), size, location
    except Exception as e:
        raise translate(e, repo_id, listing.revision, rf.name) from None
    if not meta.etag:
        raise HubError(f"{url} sent no ETag; is HF_ENDPOINT a Hub mirror?")
    if rf.sha256 and len(meta.etag) == 64 and meta.etag != rf.sha256:
        raise HubError(
            f"the hub's metadata for {repo_id}/{rf.name} disagree: the listing says sha256 {rf.sha256}, "
            f"the file's X-Linked-Etag says {meta.etag}; try again later"
        )
    size = meta.size if meta.size is not None else rf.size
    blob = folder / "blobs" / safe_blob_name(meta.etag, "ETag")
    lock = hfcache.cache_dir() / ".locks" / folder.name / f"{meta.etag}.lock"
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    digest = None
    with _blob_lock(lock, rf.name, say):
        if not blob.exists():
            digest = _fetch_blob(meta.location or url, url, blob, rf, size, bars, say)
        _link(blob, pointer)
    return digest


@contextlib.contextmanager
def _blob_lock(lock: Path, name: str, say):
    """The lock hf_hub_download takes for this blob; another pull (or transformers, `hf download`)
    holding it is downloading the same file, so this one says so and waits, then finds the blob."""
    from filelock import Timeout

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hfinternals.blob_lock(lock, timeout=0.05))
        except Timeout:
            say(f"waiting for another download of {name} to finish (it holds {lock})")
            stack.enter_context(hfinternals.blob_lock(lock))
        yield


def _fetch_blob(location: str, url: str, blob: Path, rf: RemoteFile, size: int | None, bars, say) -> str:
    partial = blob.with_name(blob.name + ".incomplete")
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:  # not a prefix of this file; keep it for inspection
        moved = quarantine(partial)
        say(f"{partial} was longer than {rf.name} ({have} > {size} bytes); moved it to {moved}")
        have = 0
    if size is not None:
        free = shutil.disk_usage(blob.parent).free
        if free < size - have:
            say(f"warning: {rf.name} needs {size - have:,} more bytes but {blob.parent} has {free:,} free")
    headers = hfinternals.hub_headers()  # HF_TOKEN / the saved token
    if urlparse(location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # signed CDN URLs must not get the hub token (as hf_hub_download)
    if have:
        say(f"resuming {rf.name} at {have:,} of {size:,} bytes" if size else f"resuming {rf.name} at {have:,} bytes")
    task = bars.add(rf.name, size, have)
    t = install_timeout()
    try:
        with open(partial, "a+b") as fh:
            w = HashingWriter(fh, task)
            _transfer(location, fh, w, headers, size, rf.name, say, t)
            digest = w.sha256(partial)
    except Exception as e:
        kept = partial.stat().st_size if partial.exists() else 0
        of = f" of {size:,}" if size is not None else ""
        where = f"{kept:,}{of} bytes are kept in {partial}"
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HubError(
                f"disk full while downloading {rf.name} into {blob.parent}: {where}; free space and pull again to resume"
            ) from None
        if isinstance(e, hfinternals.transport_errors().TimeoutException):
            host = urlparse(location)
            raise HubError(
                f"{host.scheme}://{host.netloc} did not answer within {t:g} s while sending {rf.name} "
                f"({type(e).__name__}); {where}; pull again to resume, or set REGISTRY_HUB_TIMEOUT to wait longer"
            ) from None
        raise HubError(f"downloading {rf.name} failed ({one_line(e)}); {where}; pull again to resume") from None
    expected = rf.expected
    if expected is not None:
        kind, want = expected
        got = digest if kind == "sha256" else git_blob_sha1(partial)
        if got != want:
            moved = quarantine(partial)
            raise IntegrityError(
                f"checksum mismatch for {rf.name}: the hub says {kind} {want}, the download has {got}; "
                f"the file was moved to {moved}; pull again to download it afresh"
            )
    os.replace(partial, blob)
    return digest


DROPS_IN_A_ROW = 5  # dropped connections retried with no new byte between them, as huggingface_hub's http_get
DROP_PAUSE_S = 1.0


def _transfer(location: str, fh, w: HashingWriter, headers: dict, size: int | None, name: str, say, t: float) -> None:
    """Stream `location` into `fh` (through `w`) from the bytes it holds on, resumed with Range after a dropped
    or refused connection, or a body that ends short.

    A timeout is not retried: it already means the server sent nothing for REGISTRY_HUB_TIMEOUT seconds, the
    whole stall the user allows (huggingface_hub's http_get retried it 5 times, 1 s apart, after every chunk:
    a 1 s timeout waited 11 s). A download that keeps bringing bytes is resumed after every drop.
    """
    httpx = hfinternals.transport_errors()
    drops = 0
    while True:
        fh.flush()
        have = os.fstat(fh.fileno()).st_size
        if size is not None and have == size:
            return
        if not have and size is not None and size > hfinternals.max_plain_download():
            raise ValueError(f"{name} is {size:,} bytes: the hub serves files over "
                             f"{hfinternals.max_plain_download():,} bytes through Xet only")
        ask = {**headers, "Range": f"bytes={have}-"} if have else headers
        try:
            with hfinternals.stream_get(location, ask, t) as response:
                if have and response.status_code == 200:  # the server ignored Range: the whole file again
                    w.seek(0)
                    w.truncate()
                for chunk in response.iter_bytes(CHUNK):
                    w.write(chunk)
            fh.flush()
            now = os.fstat(fh.fileno()).st_size
            if size is None or now == size:
                return
            if now > size:
                raise OSError(f"the server sent {now:,} bytes of {name}, which has {size:,}")
            why = f"the body ended at {now:,} of {size:,} bytes"
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            fh.flush()
            now = os.fstat(fh.fileno()).st_size
            why = one_line(e)
            if now <= have and drops >= DROPS_IN_A_ROW:
                raise
        drops = 0 if now > have else drops + 1
        if drops > DROPS_IN_A_ROW:
            raise OSError(f"{why}, {drops} times in a row")
        say(f"the connection dropped ({why}); resuming {name} at {now:,} bytes")
        time.sleep(DROP_PAUSE_S)


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()  # a link left dangling by a quarantined blob
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # no symlinks (some Windows/network filesystems): a copy, as huggingface_hub does
        shutil.copyfile(blob, pointer)


def _write_ref(folder: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    safe_revision(revision)
    ref = folder / "refs" / revision
    if not _inside(ref, folder / "refs") or not _inside(os.path.realpath(ref.parent), os.path.realpath(folder)):
        raise HubError(f"refusing revision {revision!r}: its ref file {ref} would be outside {folder / 'refs'}")
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(ref.name + f".{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)
