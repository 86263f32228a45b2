"""What an engine's Python environment holds: run there by its own interpreter (`python -c` with this
file's text), or imported here for the registry's own environment. Standard library only, no import of
the engine itself (vLLM's import takes seconds and may initialise a GPU): its modules are looked up,
its distributions' versions and identities read from their metadata.

    python -c "$(cat _probe.py)" MODULE[,MODULE...] DIST[,DIST...]   ->  one JSON line
"""

import importlib.util
import json
import sys


def importable(module):
    """The module is found here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def identity(name):
    """What tells this installation of distribution `name` from any other, from its metadata alone: its
    version, its .dist-info folder (path and modification time), the hash of its RECORD (every installed file
    and its hash), and the modification time of the folder holding it (an install, upgrade or removal of any
    package beside it). None where that cannot vouch for the code: not installed, no RECORD (not installed
    by an installer), or an editable install (its source changes leave the metadata as it was)."""
    import hashlib
    import importlib.metadata
    import os

    try:
        d = importlib.metadata.distribution(name)
        record = d.read_text("RECORD")
        direct = json.loads(d.read_text("direct_url.json") or "{}")
        if not record or direct.get("dir_info", {}).get("editable"):
            return None
        own = next(x for x in (line.split(",")[0] for line in record.splitlines()) if x.endswith(".dist-info/RECORD"))
        folder = os.path.dirname(os.path.abspath(str(d.locate_file(own))))
        stamps = [os.stat(folder).st_mtime_ns, os.stat(os.path.dirname(folder)).st_mtime_ns]
    except (ImportError, OSError, ValueError, StopIteration, AttributeError):
        return None
    return (f"{name} {d.version} {folder} {stamps[0]} {stamps[1]} "
            f"{hashlib.sha256(record.encode('utf-8', 'surrogateescape')).hexdigest()}")


def describe(modules, dists):
    """{"python": interpreter, "modules": {module: importable}, "versions": {dist: version or None},
    "identities": {dist: identity(dist)}} (torch is always among the distributions: its local version names
    the build, +cpu, +cu128, +rocm6.4)."""
    import importlib.metadata  # ~10 ms: only where the versions are asked for

    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    found = {m: importable(m) for m in modules}
    versions = {d: version(d) for d in [*dists, "torch"]}
    return {"python": sys.executable, "modules": found, "versions": versions,
            "identities": {d: identity(d) for d in dists if versions[d]}}


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1].split(","), sys.argv[2].split(",") if len(sys.argv) > 2 else [])))
