"""What an engine's Python environment holds: run there by its own interpreter (`python -c` with this
file's text), or imported here for the registry's own environment. Standard library only, no import of
the engine itself (vLLM's import takes seconds and may initialise a GPU): its modules are looked up,
its distributions' versions read from their metadata.

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


def describe(modules, dists):
    """{"python": interpreter, "modules": {module: importable}, "versions": {dist: version or None}}
    (torch is always among the distributions: its local version names the build, +cpu, +cu128, +rocm6.4)."""
    import importlib.metadata  # ~10 ms: only where the versions are asked for

    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    found = {m: importable(m) for m in modules}
    return {"python": sys.executable, "modules": found, "versions": {d: version(d) for d in [*dists, "torch"]}}


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1].split(","), sys.argv[2].split(",") if len(sys.argv) > 2 else [])))
