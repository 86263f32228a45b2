"""The `registry` command. Exit codes: 0 ok, 1 user error (one line on stderr), 2 usage error.

Nothing imports this package; heavy parts are imported inside the commands that need them.
Each command group lives in its own module and registers itself on the shared app.
"""

from __future__ import annotations

import sys

from ..errors import RegistryError
from . import catalog_cmds  # noqa: F401  (registers commands)
from . import hub_cmds  # noqa: F401
from . import convert_cmds  # noqa: F401
from . import docs_cmds  # noqa: F401
from . import launch_cmds  # noqa: F401
from .app import app


def main() -> None:
    try:
        app()
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
