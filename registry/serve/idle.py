"""`registry serve --keep-alive`: how long an auto-launched deployment may sit idle before serve stops it.

Ollama's keep_alive, as its users write it: a duration (30s, 5m, 1h, 1h30m, or plain seconds), 0 to
stop a deployment as soon as its last answer ends, `never` (or a negative number) to keep it running.
The default is `never`: what serve did before the option existed, and right for GLM builds that take
minutes to load; `--keep-alive 5m` is Ollama's default.
"""

from __future__ import annotations

import re

NEVER = "never"
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_keep_alive(text: str | None) -> float | None:
    """Seconds, or None for never."""
    from ..errors import RegistryError

    raw = (text or NEVER).strip().lower()
    if raw in (NEVER, "forever", "-1", "inf"):
        return None
    try:
        value = float(raw)  # plain seconds, as Ollama takes a number
    except ValueError:
        value = None
    if value is not None and value == value:  # not NaN
        return None if value < 0 else value
    if raw and _PART.sub("", raw) == "":
        return sum(float(n) * _UNIT[u] for n, u in _PART.findall(raw))
    raise RegistryError(f"--keep-alive {text!r}: give how long an idle auto-launched deployment keeps running, "
                        "e.g. 30s, 5m, 1h (0: stop after each answer; never: keep it)")


def show(seconds: float | None) -> str:
    return NEVER if seconds is None else f"{seconds:g}s"
