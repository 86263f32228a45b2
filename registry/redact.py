"""Secrets out of what the registry records and shows: API keys in argv and the environment, a database
URL's password in its messages.

A key given to an engine (its own --api-key option, or the variable it reads) or to `registry serve` is
replaced by SECRET before a command line or environment reaches the store, `ps`, `--json` or the API.
procs.cmdline() reads /proc through here too, so a recorded process still matches the running one.
"""

from __future__ import annotations

SECRET = "<secret>"
# The engines' own key options: llama-cpp-python's server (--api_key), vLLM and SGLang (--api-key).
FLAGS = ("--api-key", "--api_key")
KEY_FILE_FLAG = "--api-key-file"  # registry serve's option that names a key file (defined here: serve imports it)
_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def secret_name(name: str) -> bool:
    """An environment variable that holds a credential (REGISTRY_API_KEY, API_KEY, VLLM_API_KEY, HF_TOKEN...)."""
    up = name.upper()
    return any(w in up for w in _WORDS)


def argv(words: list[str]) -> list[str]:
    out, hide = [], False
    for w in words:
        if hide:
            out.append(SECRET)
            hide = False
            continue
        flag, eq, _ = w.partition("=")
        if flag in FLAGS:
            if eq:
                out.append(f"{flag}={SECRET}")
            else:
                out.append(w)
                hide = True
            continue
        out.append(w)
    return out


def env(values: dict[str, str]) -> dict[str, str]:
    return {k: (SECRET if secret_name(k) and v else v) for k, v in values.items()}


def has_key(words: list[str], values: dict[str, str]) -> bool:
    """The command was given an API key (by a key option, a key file or a key variable)."""
    return any(w.partition("=")[0] in (*FLAGS, KEY_FILE_FLAG) for w in words) or any(
        secret_name(k) and k.upper().endswith("API_KEY") and v for k, v in values.items())


def url(u: str) -> str:
    """A database URL as messages may show it: its password (user:PASSWORD@ or ?password=) as SECRET."""
    import re

    u = re.sub(r"(://[^/@:]*:)[^/@]*@", rf"\1{SECRET}@", u)
    return re.sub(r"([?&]password=)[^&]*", rf"\1{SECRET}", u, flags=re.IGNORECASE)
