"""What a hub repository holds, from its file names and its config.json: format, quantizations, GGUF file layout.

Pure functions over what the hub lists (no network): `registry discover` (registry/hub/discover.py) feeds
them a repository's files and config and turns the answer into a spec. The names are the registry's own
(registry/formats.py), so a result drops into a spec as it is.

Sources for the shapes read here:
  [cfg]  config.json's `quantization_config.quant_method`: "awq" and "gptq" with `bits` (AutoAWQ, GPTQModel),
         "compressed-tensors" with `config_groups.*.weights` / `input_activations` and `format`
         (compressed-tensors' QuantizationConfig), "fp8" (the publisher's block FP8), "modelopt" with
         `quant_algo` (NVFP4, FP8).
  [mlx]  mlx-lm's convert writes `quantization: {group_size, bits[, mode]}` into config.json (mode "mxfp4" /
         "mxfp8" for the microscaling types); unquantized conversions have none; mlx-community names each
         repository after its build (GLM-4.5-Air-4bit, GLM-5-8bit-MXFP8).
  [split] llama.cpp's gguf-split names parts NAME-00001-of-00003.gguf; older uploads cut files into
         NAME.gguf.part1of3; unsloth keeps split builds in a folder named after the quantization.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..formats import QUANTS_BY_FORMAT

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_PART = re.compile(r"^(?P<stem>.+\.gguf)\.part(?P<i>\d+)of(?P<n>\d+)$")
# Files in a GGUF repository that are not builds of the model: vision projectors, importance matrices.
_NOT_BUILDS = ("mmproj", "imatrix")


@dataclass
class GgufLayout:
    """The GGUF builds of one repository, in the schema's terms (HubSource)."""

    quantizations: list[str] = field(default_factory=list)
    file_template: str | None = None
    file_templates: dict[str, str] = field(default_factory=dict)
    split_parts: dict[str, int] = field(default_factory=dict)
    split_style: str = "gguf-split"
    split_dir: bool = False
    first_files: dict[str, str] = field(default_factory=dict)  # quantization -> its (first) file
    unnamed: list[str] = field(default_factory=list)  # .gguf files whose names carry no known quantization


def _quant_pattern() -> re.Pattern:
    names = sorted(QUANTS_BY_FORMAT["ggufv2"], key=len, reverse=True)  # UD-Q4_K_XL before Q4_K
    alt = "|".join(re.escape(n) for n in names)
    # A quantization stands between separators: GLM-5-UD-Q4_K_XL.gguf, glm-4-9b-chat.Q4_K_S.gguf.
    return re.compile(rf"(?<![A-Za-z0-9])({alt})(?=[-._/]|$)", re.IGNORECASE)


_GGUF_QUANT = _quant_pattern()
_CANON = {q.lower(): q for q in reversed(QUANTS_BY_FORMAT["ggufv2"])}  # 'q4_k_m' -> 'Q4_K_M' ('BF16' first)


def gguf_quant(name: str) -> tuple[str, int, int] | None:
    """The quantization a GGUF file name carries, with where it stands in the name; the last match wins
    (a model name may itself look like one)."""
    found = list(_GGUF_QUANT.finditer(name))
    if not found:
        return None
    m = found[-1]
    text = m.group(1)
    exact = text if text in QUANTS_BY_FORMAT["ggufv2"] else _CANON[text.lower()]
    return exact, m.start(1), m.end(1)


def gguf_layout(files: list[str]) -> GgufLayout | None:
    """The GGUF builds among a repository's files, or None when it has no .gguf file."""
    out = GgufLayout()
    templates: dict[str, str] = {}
    seen_gguf = False
    for path in sorted(files):
        folder, _, base = path.rpartition("/")
        parts, style = 1, None
        m = _SPLIT.match(base)
        p = _PART.match(base)
        if m:
            if int(m["i"]) != 1:
                continue
            name, parts, style = m["stem"] + ".gguf", int(m["n"]), "gguf-split"
        elif p:
            if int(p["i"]) != 1:
                continue
            name, parts, style = p["stem"], int(p["n"]), "part"
        elif base.endswith(".gguf"):
            name = base
        else:
            continue
        seen_gguf = True
        if any(k in base.lower() for k in _NOT_BUILDS):
            continue
        q = gguf_quant(name)
        if q is None:
            out.unnamed.append(path)
            continue
        quant, s, e = q
        if folder and not (parts > 1 and folder == quant):
            out.unnamed.append(path)  # a folder the schema cannot name (only unsloth's per-quantization one)
            continue
        if quant in templates:
            continue  # the same build under two spellings: keep the first
        templates[quant] = name[:s] + "{quantization}" + name[e:]
        out.quantizations.append(quant)
        out.first_files[quant] = path
        if parts > 1:
            out.split_parts[quant] = parts
            out.split_style = style or out.split_style
            out.split_dir = out.split_dir or bool(folder)
    if not seen_gguf:
        return None
    if templates:
        counts: dict[str, int] = {}
        for t in templates.values():
            counts[t] = counts.get(t, 0) + 1
        out.file_template = max(counts, key=lambda t: (counts[t], -len(t)))
        out.file_templates = {q: t for q, t in templates.items() if t != out.file_template}
    return out


def _by_name(repo_id: str, fmt: str) -> str | None:
    """A quantization the repository's name ends with (QuantTrio/GLM-4.5-Air-AWQ-FP16Mix, mlx-community/GLM-5-4bit)."""
    name = repo_id.split("/")[-1].lower()
    for q in sorted(QUANTS_BY_FORMAT[fmt], key=len, reverse=True):
        if name.endswith("-" + q.lower()) or name.endswith("-" + q.lower().replace("_", "-")):
            return q
    return None


def _compressed_tensors(qc: dict) -> str | None:
    """The compressed-tensors scheme of a quantization_config [cfg]."""
    fmt = str(qc.get("format") or "")
    if fmt.startswith("nvfp4"):
        groups = list((qc.get("config_groups") or {}).values())
        return "NVFP4" if any(g.get("input_activations") for g in groups if isinstance(g, dict)) else "NVFP4A16"
    if fmt.startswith("mxfp4"):
        return "MXFP4"
    for g in (qc.get("config_groups") or {}).values():
        if not isinstance(g, dict):
            continue
        w, a = g.get("weights") or {}, g.get("input_activations")
        bits, kind = w.get("num_bits"), w.get("type")
        if kind == "float" and bits == 8:
            if w.get("strategy") == "block":
                return "FP8_BLOCK"
            return "FP8_DYNAMIC" if isinstance(a, dict) and a.get("dynamic") is True else "FP8"
        if kind == "int" and bits == 4 and not a:
            gs = w.get("group_size")
            return f"W4A16_GS{gs}" if f"W4A16_GS{gs}" in QUANTS_BY_FORMAT["compressed-tensors"] else "W4A16"
        if kind == "int" and bits == 8:
            return "W8A8" if a else "W8A16"
    return None


def from_config(repo_id: str, config: dict | None, tags: list[str], library: str | None) -> tuple[str, str] | str:
    """(format, quantization) of a safetensors repository, or a line saying why it is not recognised."""
    cfg = config or {}
    if library == "mlx" or "mlx" in tags:  # [mlx]
        q = _by_name(repo_id, "mlx")
        if q is None:
            mq = cfg.get("quantization") or {}
            bits, mode = mq.get("bits"), mq.get("mode")
            q = {"mxfp4": "mxfp4", "mxfp8": "8bit-MXFP8"}.get(mode) if mode else None
            q = q or (f"{bits}bit" if bits else "bf16" if not mq else None)
        if q not in QUANTS_BY_FORMAT["mlx"]:
            return f"an MLX repository whose build ({q or 'unknown'}) the mlx format does not name"
        return "mlx", q
    qc = cfg.get("quantization_config")
    if not isinstance(qc, dict):
        return "no .gguf files and no quantization_config in config.json (a full-precision copy or a fine-tune?)"
    method = str(qc.get("quant_method") or "").lower()
    if method in ("awq", "gptq"):
        q = _by_name(repo_id, method) or (f"Int{qc.get('bits')}" if qc.get("bits") else None)
        if q not in QUANTS_BY_FORMAT[method]:
            return f"{method} with bits={qc.get('bits')!r}, which the {method} format does not name"
        return method, q
    if method == "compressed-tensors":
        q = _by_name(repo_id, "compressed-tensors") or _compressed_tensors(qc)
        return ("compressed-tensors", q) if q else "a compressed-tensors scheme this registry does not name"
    if method == "fp8":
        return "fp8", "FP8"
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or "").upper()
        return ("modelopt", algo) if algo in QUANTS_BY_FORMAT["modelopt"] else f"modelopt quant_algo {algo or '?'}"
    return f"quant_method {method or '?'} is not a format of this registry"
