"""Where the registry keeps its state. REGISTRY_HOME moves all of it (tests use that)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def home() -> Path:
    env = os.environ.get("REGISTRY_HOME")
    if env:
        p = Path(env).expanduser()
    else:
        from platformdirs import user_data_dir  # only when no override is set

        p = Path(user_data_dir("glm-registry", appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p


def resource(*parts: str):
    """A file or folder shipped inside the package (specs, data tables, templates, the page), read
    through importlib.resources so that a wheel, a zip or an editable install all find it."""
    on_disk = PACKAGE_DIR.joinpath(*parts)
    if on_disk.exists():  # the package is a folder (what importlib.resources answers then too), ~5 ms sooner
        return on_disk
    from importlib.resources import files

    node = files("registry")
    for part in parts:
        node = node / part
    return node


def specs_dir():
    """The shipped catalog: REGISTRY_SPECS_DIR, else the package's own registry/specs/."""
    env = os.environ.get("REGISTRY_SPECS_DIR")
    return Path(env) if env else resource("specs")


def checkout_root() -> Path | None:
    """The source checkout this package runs from (editable install or `python -m` in a clone), else
    None: an installed wheel has no docs/ to write into."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "docs" / "conf.py").is_file():
        return root
    return None


def database_url() -> str:
    url = os.environ.get("REGISTRY_DATABASE_URL")
    return url or f"sqlite:///{home() / 'registry.db'}"


_NODE_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"


def node() -> str:
    """The machine this process acts for: REGISTRY_NODE, else the host name. Rows of the shared store
    record it, and each machine acts only on its own rows (registry/nodes.py)."""
    import re
    import socket

    name = os.environ.get("REGISTRY_NODE") or socket.gethostname().split(".")[0] or "localhost"
    if not re.fullmatch(_NODE_NAME, name):
        from .errors import RegistryError

        raise RegistryError(f"REGISTRY_NODE={name!r} is not a node name: give 1-63 letters, digits, '.', '_' or '-' "
                            "(starting with a letter or digit), e.g. REGISTRY_NODE=gpu-box-1")
    return name


def single_machine(url: str | None = None) -> bool:
    """The store is a SQLite file, which one machine uses, and REGISTRY_NODE is unset: every row in it is
    this machine's, whichever host name wrote it (a laptop's name changes with its network)."""
    return not os.environ.get("REGISTRY_NODE") and (url or database_url()).startswith("sqlite")


def owns(name: str | None) -> bool:
    """A row of node `name` is this machine's to check and act on."""
    return name == node() or single_machine()


def has_database() -> bool:
    """True when a database may hold user state; lets read paths skip importing SQLAlchemy."""
    if os.environ.get("REGISTRY_DATABASE_URL"):
        return True
    return (home() / "registry.db").exists()


def artifacts_dir() -> Path:
    p = home() / "artifacts"
    p.mkdir(parents=True, exist_ok=True)
    return p


# `registry demo` keeps everything it makes (a random-weight toy recorded as glm4-chat-1m builds, its
# deployments and logs) in a home of its own, so that nothing it makes can pass for a real build.
DEMO_ENV = "REGISTRY_DEMO"


def demo_home() -> Path:
    """Where `registry demo` keeps its state: `demo/` under the registry home."""
    return home() / "demo"


def in_demo() -> bool:
    """True while `registry demo` runs (its own home is then the registry home)."""
    return os.environ.get(DEMO_ENV) == "1"


def logs_dir() -> Path:
    p = home() / "logs"
    p.mkdir(mode=0o700, parents=True, exist_ok=True)  # engines' logs hold prompts and, for SGLang, its key
    return p


def locks_dir() -> Path:
    """Locks shared by every registry process of this user on this machine, whatever their homes:
    ports are a machine's, not a home's. The user's runtime dir, else a private folder in the temp dir;
    the home when neither is ours to use."""
    import tempfile

    base = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else None
    p = Path(base) / "glm-registry" if base else Path(tempfile.gettempdir()) / f"glm-registry-{uid or 'user'}"
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        if uid is not None and p.stat().st_uid != uid:  # someone else's folder under a shared /tmp
            raise PermissionError(p)
        return p
    except OSError:
        p = home() / "locks"
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        return p
