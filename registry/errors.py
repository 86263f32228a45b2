"""The registry's error types. Every one carries a message a person can act on."""

from __future__ import annotations

from collections.abc import Iterable


class RegistryError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""


class NotFoundError(RegistryError, LookupError):
    """A family, format, quantization or engine that the registry does not have."""


class SpecError(RegistryError, ValueError):
    """A spec file or document that does not validate. `lines`: every problem, one per line, where
    there are several (the message itself names the first and counts the rest)."""

    lines: list[str] | None = None


class StoreError(RegistryError):
    """The state database refused an operation (duplicate, missing row, bad URL)."""


class ArgumentError(RegistryError, TypeError):
    """A Python API call given a value of the wrong type (registry.get(None))."""


def want(kind: type | tuple[type, ...], label: str, value, optional: bool = False):
    """`value` if it is of `kind` (bool is no number here), else one ArgumentError naming the argument."""
    if value is None and optional:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join("a string" if k is str else "a number" if k in (int, float) else k.__name__ for k in kinds)
        names = "a number" if set(kinds) <= {int, float} else names
        raise ArgumentError(f"{label} must be {names}{' or None' if optional else ''}, not {type(value).__name__} {value!r}")
    return value


def nearest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The closest names to `word`, for 'did you mean' hints."""
    import difflib  # only when a name was not found: every command imports this module

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.4)
    # Substring matches help with short prefixes such as 'glm4' that difflib scores low.
    extra = [c for c in choices if word.lower() in c.lower() and c.lower() not in hits]
    return [lowered[h] for h in hits] + extra[: max(0, n - len(hits))]


def not_found(kind: str, word: str, choices: Iterable[str], hint: str = "") -> NotFoundError:
    choices = sorted(set(choices))
    near = nearest(word, choices)
    msg = f"unknown {kind} {word!r}"
    if near:
        msg += f"; nearest: {', '.join(near)}"
    elif choices:
        msg += f"; known: {', '.join(choices)}"
    if hint:
        msg += f" ({hint})"
    return NotFoundError(msg)
