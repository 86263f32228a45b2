"""Claiming a build's output names before writing them, so that two converts never share one.

`registry convert` checks that its outputs do not exist, spends minutes writing, then moves the
result into place: two runs into the same --out both passed the check and the later replaced the
earlier's file under its row. Each output is now claimed first by creating `.<name>.claim` with
O_EXCL (pid and process start time inside); a second run finds the claim of a live process and
stops. The claim is removed only after the build's row is recorded, so a claim whose process is
gone marks a final file that no row describes: the next run removes that file and the claim.
On an exception (Ctrl-C, SIGTERM, a failure) the files this run placed but did not record are
removed before the claims are released.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from registry import procs
from registry.errors import RegistryError


def claim_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.claim")


def _owner(c: Path) -> dict | None:
    try:
        d = json.loads(c.read_text())
        return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _recorded(path: Path) -> bool:
    from registry import paths

    if not paths.has_database():
        return False
    from registry.store import Store

    return Store().artifact_at(str(path)) is not None


def _split_siblings(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.stem}-*-of-*{out.suffix}")) if out.suffix == ".gguf" else []


def _create(c: Path, owner: dict) -> None:
    """Create claim `c` holding `owner`, or raise FileExistsError. The claim appears with its contents
    (written aside, then hard-linked into place): a claim created empty and filled after was read by a
    second run in between as one whose process is gone, and taken over."""
    tmp = c.with_name(f"{c.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(owner))
    try:
        os.link(tmp, c)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: create exclusively, filled a moment later
        fd = os.open(c, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as fh:
            json.dump(owner, fh)
    finally:
        tmp.unlink(missing_ok=True)


def _just_made(c: Path) -> bool:
    """An unreadable claim made a moment ago is being filled (the no-hard-link path), not left behind."""
    import time

    try:
        return time.time() - c.stat().st_mtime < 10
    except OSError:
        return False


def me() -> dict:
    return {"pid": os.getpid(), "start": procs.start_time(os.getpid())}


def is_live(owner: dict | None) -> bool:
    return bool(owner) and procs.alive(owner["pid"], owner.get("start"))


class Claims:
    """The output names one convert run holds; use as a context manager around the whole run."""

    def __init__(self, say=print):
        self.say = say
        self.held: list[Path] = []  # claim files
        self.placed: list[Path] = []  # final files written by this run, not yet recorded
        self.fresh: list[Path] = []  # claimed names that did not exist when claimed: this run makes them

    def claim(self, out: Path) -> Path:
        out = Path(out)
        c = claim_path(out)
        if c in self.held:
            return out
        if not out.parent.is_dir():
            raise RegistryError(f"output directory {out.parent} does not exist; create it first")
        for _ in range(3):
            try:
                _create(c, me())
            except FileExistsError:
                owner = _owner(c)
                if is_live(owner) or (owner is None and _just_made(c)):
                    who = f" (pid {owner['pid']})" if owner else ""
                    raise RegistryError(f"{out} is being written by another convert{who}; wait for it to finish "
                                        f"or choose another --out") from None
                self._clear_stale(out, c, owner)
                continue
            except OSError as e:  # read-only, disk full, no permission: the writer's one-line words
                from .writes import write_error

                raise write_error(e, out, None) from None
            self.held.append(c)
            if not out.exists() and not _split_siblings(out):
                self.fresh.append(out)
            return out
        raise RegistryError(f"could not claim {out} ({c} keeps coming back); remove {c} and try again")

    def _clear_stale(self, out: Path, c: Path, owner: dict | None) -> None:
        """A claim left by a run that died: what it placed under the final name was never recorded."""
        if owner is not None or c.exists():
            for f in [out, *_split_siblings(out)]:
                if f.exists() and not _recorded(f):
                    f.unlink() if not f.is_dir() or f.is_symlink() else shutil.rmtree(f, ignore_errors=True)
                    who = f"pid {owner['pid']}" if owner else "a run"
                    self.say(f"removed {f}: {who} wrote it and was interrupted before recording it")
        c.unlink(missing_ok=True)

    def placed_files(self, files) -> None:
        self.placed += [Path(f) for f in files]

    def recorded(self) -> None:
        self.placed.clear()
        self.fresh.clear()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            # complete builds without rows must not stay under final names: what this run placed, and
            # whatever appeared under a name it claimed (an interrupt can land between the move into
            # place and the bookkeeping) unless a row records it
            fresh = [f for out in self.fresh for f in [out, *_split_siblings(out)]]
            for f in dict.fromkeys([*self.placed, *fresh]):
                try:
                    if f.exists() and not _recorded(f):
                        shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
                except Exception:  # cleanup must not hide the interrupt (a database that went away)
                    pass
        for c in self.held:
            c.unlink(missing_ok=True)
        self.held.clear()


# --- temporary files of interrupted runs -----------------------------------------------------------

PARTIAL = "partial"


def partial_tag() -> str:
    """`partial-<pid>-<start>`: the part of a temporary name that says whose it is."""
    m = me()
    return f"{PARTIAL}-{m['pid']}-{m['start'] or 0}"


def sweep_partials(folder: Path, say=print) -> list[Path]:
    """Remove temporaries (`.*.partial-<pid>-<start>*`) whose process is gone; returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).glob(f".*.{PARTIAL}-*"))
    except OSError:
        return removed
    for p in entries:
        tail = p.name.split(f".{PARTIAL}-", 1)[1]
        bits = tail.split("-", 2)
        try:
            pid = int(bits[0])
            start = int(bits[1].split(".")[0]) if len(bits) > 1 else None
        except (ValueError, IndexError):
            continue
        if is_live({"pid": pid, "start": start or None}):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            continue
        removed.append(p)
    if removed:
        say(f"removed {len(removed)} temporary file(s) left by interrupted runs in {folder}")
    return removed
