"""The registry's names for engines and hubs, defined once: the schema's types (EngineName, HubName), the
CLI's name reading (registry.naming), the engine modules (registry.engines.MODULES) and the pages derive
from these. Pure data, no imports: the CLI reads it at start-up."""

from __future__ import annotations

# The inference engines a spec may list, in the catalog's order (registry.engines.RANK is the launcher's).
ENGINES: tuple[str, ...] = ("llama.cpp", "vllm", "sglang", "transformers", "mlx-lm")
ENGINE_TITLES = {"llama.cpp": "llama.cpp", "vllm": "vLLM", "sglang": "SGLang", "transformers": "Transformers",
                 "mlx-lm": "mlx-lm"}
# Engines that parse tool calls server-side with a named parser (--tool-call-parser).
TOOL_PARSER_ENGINES: tuple[str, ...] = ("vllm", "sglang")

HUBS: tuple[str, ...] = ("huggingface", "modelscope")
# A model's page on each hub is this prefix plus its model id.
HUB_URLS = {"huggingface": "https://huggingface.co/", "modelscope": "https://modelscope.cn/models/"}
HUB_TITLES = {"huggingface": "Hugging Face", "modelscope": "ModelScope"}
