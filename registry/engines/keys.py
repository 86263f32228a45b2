"""An API key for an engine bound beyond loopback, handed over the way each engine reads one.

Where the engine reads a key from its environment it goes there (its /proc environ is readable by its
owner only), else to its own option (which `ps -e` shows every user of the machine). Either way the
store, `ps` and the API see it redacted (registry/redact.py). Sources:
- llama-cpp-python's server: ServerSettings.api_key (pydantic-settings, so the API_KEY variable too;
  llama_cpp/server/settings.py, 0.3.x); it guards every route with it, /v1/models included.
- vLLM: `--api-key`, or VLLM_API_KEY (vllm/entrypoints/openai/api_server.py: `envs.VLLM_API_KEY or
  args.api_key`), checked on /v1 routes.
- SGLang: `--api-key` (sglang/srt/server_args.py), no variable.
"""

from __future__ import annotations

from ..errors import RegistryError

ENV = {"llama.cpp": "API_KEY", "vllm": "VLLM_API_KEY"}
OPTION = {"llama.cpp": "--api_key", "vllm": "--api-key", "sglang": "--api-key"}


def protect(engine: str, cmd, host: str, key: str | None) -> tuple[str | None, bool]:
    """Give `cmd` (an engines.Command) the key when it binds beyond loopback, or when a key was given.
    Returns (the key or None, whether it was generated here). An engine with no key option bound beyond
    loopback is refused."""
    import secrets

    from ..addresses import is_loopback

    if key is None and is_loopback(host):
        return None, False
    if engine not in OPTION:
        raise RegistryError(f"{engine} has no API key option, so --host {host} would serve anyone who can reach "
                            f"this machine: bind it to 127.0.0.1 and put `registry serve --host {host} --api-key KEY` "
                            "in front, or choose another engine with --engine (llama.cpp, vllm, sglang take "
                            "--api-key)")
    made = key is None
    key = key or secrets.token_urlsafe(24)
    if engine in ENV:
        cmd.env[ENV[engine]] = key
    else:
        cmd.argv += [OPTION[engine], key]
    return key, made
