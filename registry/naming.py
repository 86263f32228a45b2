"""Names as people type them: one place that reads a build's tag, a format, an engine, a quantization.

- a tag `FAMILY:QUANT` (glm4-chat-1m:Q4_K) wherever a family, --format and --quant are taken, as
  Ollama's `name:tag` and the router's model names;
- formats and engines in any case, with the short names people use (`gguf` for ggufv2, `vLLM`);
- quantizations in any case and either GGUF spelling (q4_k_m finds the catalog's Q4_K).

Pure functions over registry.formats' data: no pydantic, so the CLI can call them before the catalog loads.
"""

from __future__ import annotations

from .errors import RegistryError
from .formats import FORMATS, GGUF_ALIASES

FORMAT_ALIASES = {"gguf": "ggufv2", "ggufv3": "ggufv2", "compressed_tensors": "compressed-tensors",
                  "safetensors": "pytorch"}
ENGINE_ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "llama_cpp": "llama.cpp",
                  "llama-cpp-python": "llama.cpp", "mlx": "mlx-lm", "mlx_lm": "mlx-lm", "mlxlm": "mlx-lm"}


def split_tag(name: str, quant: str | None = None) -> tuple[str, str | None]:
    """`glm4-chat-1m:Q4_K` -> ('glm4-chat-1m', 'Q4_K'); a plain name keeps --quant. Both, disagreeing: an error."""
    fam, sep, tag = name.partition(":")
    if not sep:
        return name, quant
    if not fam or not tag:
        raise RegistryError(f"{name!r} is not a build tag; write FAMILY:QUANT, e.g. glm4-chat-1m:Q4_K")
    if quant is not None and quant_key(quant) != quant_key(tag):
        raise RegistryError(f"{name!r} names quantization {tag} but --quant says {quant}; give one of them")
    return fam, tag


def format_name(fmt: str | None) -> str | None:
    """The catalog's name of a format typed in any case or by its short name (gguf -> ggufv2)."""
    if fmt is None:
        return None
    f = fmt.strip().lower()
    return FORMAT_ALIASES.get(f, f)


def engine_name(engine: str | None) -> str | None:
    """The registry's name of an engine typed in any case (vLLM -> vllm, llamacpp -> llama.cpp)."""
    if engine is None:
        return None
    e = engine.strip().lower()
    return ENGINE_ALIASES.get(e, e)


def quant_key(quant: str, fmt: str | None = "ggufv2") -> str:
    """What two spellings of one quantization share: upper case, GGUF's short K-quant names as llama.cpp's,
    without separators (`4bit` is `4-bit`, `w4a16-gs64` is `W4A16_GS64`)."""
    q = quant.strip().upper().replace("-", "_")
    q = GGUF_ALIASES.get(q, q) if fmt in (None, "ggufv2") else q
    return q.replace("_", "").replace(" ", "")


def same_quant(a: str, b: str, fmt: str | None = "ggufv2") -> bool:
    return quant_key(a, fmt) == quant_key(b, fmt)


def gguf_type(fmt: str, quant: str) -> str | None:
    """llama.cpp's name of a GGUF build's quantization (Q4_K -> Q4_K_M, FP16 -> F16); None for other formats."""
    if fmt != "ggufv2":
        return None
    return GGUF_ALIASES.get(quant, quant)


def spec_quant(spec, quant: str) -> str | None:
    """The spec's own name for `quant`, in any case and either side of the GGUF aliases (q4_k_m / Q4_K)."""
    if quant in spec.quantizations:
        return quant
    key = quant_key(quant, spec.format)
    return next((q for q in spec.quantizations if quant_key(q, spec.format) == key), None)


def quant_fields(fmt: str, quant: str, spec=None) -> dict[str, str | None]:
    """A quantization as every JSON output names it: the catalog's spelling (the spec's, where one is known)
    and llama.cpp's (`gguf_type`, GGUF builds only)."""
    name = quant
    if spec is not None:
        name = spec_quant(spec, quant) or quant
    return {"quantization": name, "gguf_type": gguf_type(fmt, name)}


def known_quant(quant: str) -> bool:
    """Some format has this quantization (in any spelling)."""
    return any(same_quant(quant, q, f) for f, d in FORMATS.items() for q in d["quantizations"])


CONTEXT_UNITS = {"k": 1024, "m": 1024 * 1024}  # 32k = 32768, 128K = 131072, 1M = 1048576 (as model cards count)


def parse_context(text: str | int | None) -> int | str | None:
    """A context length as people write it: 32768, 32k, 128K, 1M, or `max` (the longest that fits)."""
    if text is None or isinstance(text, int):
        return text
    t = text.strip().lower().replace("_", "").replace(",", "")
    if t == "max":
        return "max"
    unit = CONTEXT_UNITS.get(t[-1:], 1)
    num = t[:-1] if unit > 1 else t
    try:
        n = float(num) * unit if "." in num else int(num) * unit
    except ValueError:
        raise RegistryError(f"--context {text!r}: give tokens as a number (32768), with k or M (32k, 128K, 1M), "
                            "or max (the longest that fits)") from None
    if n < 1 or n != int(n):
        raise RegistryError(f"--context {text!r} must be a whole number of tokens, at least 1")
    return int(n)
