"""The `registry` command. Exit codes: 0 ok, 1 user error (one line on stderr), 2 usage error.

Nothing imports this package; heavy parts are imported inside the commands that need them.
Each command group lives in its own module and registers itself on the shared app. This file
imports none of them at module level: `registry launch` first prestarts the server's interpreter
(registry/prestart.py), and that should happen before typer, pydantic and the catalog load.
"""

from __future__ import annotations

import sys


def _app():
    from . import catalog_cmds  # noqa: F401  (registers commands)
    from . import hub_cmds  # noqa: F401
    from . import convert_cmds  # noqa: F401
    from . import imatrix_cmds  # noqa: F401
    from . import docs_cmds  # noqa: F401
    from . import launch_cmds  # noqa: F401
    from . import serve_cmds  # noqa: F401
    from . import local_cmds  # noqa: F401
    from . import spec_cmds  # noqa: F401
    from .app import app

    # Importing the submodule registry.cli.app set the package's `app` attribute to that module;
    # `from registry.cli import app` means the typer app.
    globals()["app"] = app
    return app


def __getattr__(name: str):
    if name == "app":  # `from registry.cli import app` (the docs' CLI reference, tests): every command registered
        return _app()
    raise AttributeError(f"module 'registry.cli' has no attribute {name!r}")


def error_label() -> str:
    """'error:', in red where stderr is a terminal (NO_COLOR turns colour off, FORCE_COLOR on)."""
    import os

    colour = "NO_COLOR" not in os.environ and (bool(os.environ.get("FORCE_COLOR")) or sys.stderr.isatty())
    return "\033[1;31merror:\033[0m" if colour else "error:"


class Interrupted(SystemExit):
    """SIGINT, SIGTERM or SIGHUP, as an exit (130, 143, 129) that click does not turn into 'Aborted!' and exit 1; every
    `finally` and `except BaseException` on the way up still runs (temporary files, claims, child servers)."""


_signalled: list[int] = []
CLEANUP_GRACE_S = 15.0  # longer than the launcher's wait for a stopped server (10 s)


def _on_signal(signum, frame) -> None:
    """Raise the exit; a second signal, or cleanup that never comes, ends the process at once.

    The exception can be lost: raised while C code calls back into Python (ctypes swallows it), it
    never reaches the command. So a timer ends the process if it is still here after the grace;
    what it leaves (claims, temporaries of this pid) the next run removes."""
    import os
    import threading

    code = 128 + signum
    if _signalled:
        os._exit(_signalled[0])
    _signalled.append(code)

    def last_resort() -> None:
        print("interrupted", file=sys.stderr)
        os._exit(code)

    t = threading.Timer(CLEANUP_GRACE_S, last_resort)
    t.daemon = True
    t.start()
    raise Interrupted(code)


def main() -> None:
    import signal

    # first: a signal during start-up must clean up too. SIGHUP: the terminal or SSH session went away.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    from .. import prestart

    prestart.start(sys.argv)
    from ..errors import RegistryError
    from .fast import run

    interrupted = None
    try:
        code = run(sys.argv[1:])  # a read command without typer; None: typer takes the command line
        if code is None:
            _app()()
        else:
            sys.exit(code)
    except RegistryError as e:
        print(f"{error_label()} {e}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted) as e:
        print("interrupted", file=sys.stderr)
        interrupted = e.code if isinstance(e, Interrupted) else 130
        sys.exit(interrupted)
    finally:
        p = prestart.claim()  # not taken by a launch (an error, or another engine chosen): let it go
        if p is not None:
            p.cancel()
        # The command is done. Python's exit would now run full garbage collections over the ~70k
        # objects of pydantic, SQLAlchemy and typer (~0.1 s a command); frozen objects are skipped.
        import gc

        gc.freeze()
        if interrupted is not None:
            _end_interrupted(interrupted)


def _end_interrupted(code: int) -> None:
    """An interrupted command whose work goes on in another thread ends here, without the interpreter's
    finalization: llama.cpp's quantize cannot be stopped, and its thread, still in the C call, calls back into
    Python (its log) and reads the parameters Python owns while the interpreter tears them down, which ended
    the process with SIGSEGV instead of the exit code. Every `finally` on the way up has run by now: the
    temporary files and claims are gone."""
    import os
    import threading

    if threading.active_count() > 1:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
