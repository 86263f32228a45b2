"""A failed write as one line that says what to do: disk full (and how much is needed), read-only,
file-size limit, no permission. Shared by every converter that writes builds and by the claim files."""

from __future__ import annotations

import shutil
from pathlib import Path

from registry.errors import RegistryError


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def write_error(e: OSError, out: Path, need: int | None) -> RegistryError:
    """A failed write as one line: disk full (how much is needed), read-only, file-size limit, no permission."""
    import errno

    d = Path(out).parent
    try:
        free = shutil.disk_usage(d).free
    except OSError:
        free = None
    needs = f"; the build needs about {mib(need)}" if need else ""
    has = f", {mib(free)} free there" if free is not None else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RegistryError(f"disk full writing {out} in {d}{needs}{has}; free space or choose another --out")
    if e.errno == errno.EFBIG:
        return RegistryError(f"writing {out} hit the file-size limit (ulimit -f){needs}; raise the limit or split the "
                             "build (--split-max-size)")
    if e.errno == errno.EROFS:
        return RegistryError(f"cannot write {out}: {d} is on a read-only filesystem; choose a writable --out")
    if e.errno in (errno.EACCES, errno.EPERM):
        return RegistryError(f"cannot write in {d}: {e.strerror}; choose a writable --out")
    return RegistryError(f"cannot write {out}: {e.strerror or e}; choose another --out")
