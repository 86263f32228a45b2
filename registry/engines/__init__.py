"""One module per inference engine; each answers can_serve(Request) -> Verdict and
command(Request, model, host, port, Verdict) -> [Command] (one per node, from an ok verdict)."""

from __future__ import annotations

import importlib

from ..errors import not_found
from ..vocabulary import ENGINES
from .base import Command, Request, Verdict

# engine name (registry.vocabulary) -> its module here, where the two differ
MODULES = {e: {"llama.cpp": "llamacpp", "mlx-lm": "mlx"}.get(e, e) for e in ENGINES}
# Preference when several can serve a build: the GPU servers first (throughput), llama.cpp for GGUF,
# mlx-lm for MLX builds on a Mac, Transformers last (a reference server, not a production one).
RANK = ("vllm", "sglang", "llama.cpp", "mlx-lm", "transformers")

__all__ = ["Command", "Request", "Verdict", "get", "RANK"]


def get(name: str):
    if name not in MODULES:
        raise not_found("engine", name, MODULES)
    return importlib.import_module(f".{MODULES[name]}", __name__)
