"""Plain-data views of families, shared by `registry show --json`, the tables and the docs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .formats import GGUF_ALIASES
from .vocabulary import ENGINE_TITLES, HUB_TITLES, HUB_URLS

if TYPE_CHECKING:  # views take models or the plain families of the compiled catalog (registry/plain.py)
    from .schema import Family, Spec


def spec_view(spec: Spec, index: int) -> dict[str, Any]:
    d = spec.model_dump(mode="json", exclude_none=True)
    rules = d.pop("engines")
    hubs = d.pop("hubs")
    out: dict[str, Any] = {
        "index": index,
        "title": f"Model Spec {index} ({spec.format}, {spec.size_label} Billion)",
        "format": spec.format,
        "size_in_billions": spec.size_in_billions,
        "quantizations": list(spec.quantizations),
        "quantization_aliases": {
            q: GGUF_ALIASES[q] for q in spec.quantizations if spec.format == "ggufv2" and q in GGUF_ALIASES
        },
        "engines": list(spec.engines),
        "engine_titles": [ENGINE_TITLES[e] for e in spec.engines],
        "engine_note": spec.engine_rule_text(),
        "engine_rules": rules,
        "model_id": next(iter(spec.hubs.values())).model_id if spec.hubs else None,
        "uploader": spec.publisher,
        "hubs": {
            hub: {**src, "url": HUB_URLS[hub] + src["model_id"], "title": HUB_TITLES[hub]}
            for hub, src in hubs.items()
        },
    }
    out.update({k: v for k, v in d.items() if k not in out})
    return out


SHORT_CONTEXT = 32768  # the memory figures' shorter context (the pages' "KV cache, 32,768 tokens")


def kv_dtype(spec: Spec) -> str:
    """The KV cache type the spec's launch profiles ask for (some cards' commands use fp8), else f16."""
    from .estimate import KV_BYTES

    for p in spec.launch:
        dtype = p.args.get("--kv-cache-dtype")
        if isinstance(dtype, str) and dtype in KV_BYTES:
            return dtype
    return "f16"


def memory_view(fam: Family, spec: Spec) -> dict[str, Any]:
    """The memory figures of a spec's builds, as its docs page has them (bytes): weights at the quantization's bits
    per weight, the KV cache at 32,768 tokens and at the full context, weights + KV at the full context, and the
    memory the build needs at each of the two contexts, the engine's buffers included, as `registry fit
    --hardware H --context N` counts it (launching.fit.build_memory: the same function, so they cannot disagree)."""
    from .catalog import resolved_build
    from .errors import RegistryError
    from .estimate import bits_per_weight
    from .launching.fit import build_memory, memory_hardware

    short = min(SHORT_CONTEXT, fam.context_length)
    rows = []
    for q in spec.quantizations:
        try:
            r = resolved_build(fam, spec, q)
            full, part = build_memory(r, fam.context_length), build_memory(r, short)
            bpw: float | None = bits_per_weight(spec.format, q)
        except RegistryError:  # no bits-per-weight figure for this name
            full = part = bpw = None
        if full is None or part is None:
            rows.append({"quantization": q, "bits_per_weight": bpw, "weights_bytes": None,
                         "kv_cache_short_bytes": None, "kv_cache_full_bytes": None, "total_full_bytes": None,
                         "memory_short_bytes": None, "memory_full_bytes": None})
            continue
        rows.append({"quantization": q, "bits_per_weight": bpw, "weights_bytes": full.weights,
                     "kv_cache_short_bytes": part.kv_cache, "kv_cache_full_bytes": full.kv_cache,
                     "total_full_bytes": full.weights + full.kv_cache,
                     "memory_short_bytes": part.total, "memory_full_bytes": full.total})
    return {"kv_cache_dtype": kv_dtype(spec), "short_context": short, "full_context": fam.context_length,
            "hardware": memory_hardware(spec.format), "builds": rows}


def family_view(fam: Family, origin: str = "shipped") -> dict[str, Any]:
    d = fam.model_dump(mode="json", exclude_none=True)
    d.pop("specs")
    specs = []
    for i, s in enumerate(fam.specs, 1):
        v = spec_view(s, i)
        v["launch"] = v.get("launch", [])  # the launch profiles (the model cards' commands), [] where none
        v["memory"] = memory_view(fam, s)
        specs.append(v)
    return {
        "name": fam.name,
        "model_name": fam.name,
        "origin": origin,
        **{k: v for k, v in d.items() if k != "name"},
        "formats": fam.formats(),
        "specs": specs,
    }


def family_row(fam: Family) -> dict[str, Any]:
    """One line of `registry list`."""
    return {
        "name": fam.name,
        "context_length": fam.context_length,
        "params_b": fam.architecture.total_params_b,
        "active_params_b": fam.architecture.active_params_b,
        "kind": fam.architecture.kind,
        "formats": fam.formats(),
        "quantizations": fam.quantizations(),
        "engines": fam.engines(),
        "abilities": list(fam.abilities),
        "languages": list(fam.languages),
        "licence": fam.licence.name,
    }


def recipe_summary(recipe: dict[str, Any] | None) -> str:
    """One line for tables: scheme, method, group size, calibration, targets and ignore list."""
    if not recipe:
        return ""
    parts = [str(recipe.get("scheme") or recipe.get("quantization") or ""), str(recipe.get("method") or "")]
    if recipe.get("group_size"):
        parts.append(f"group {recipe['group_size']}")
    cal = recipe.get("calibration")
    if isinstance(cal, dict) and "tokens" in cal:  # an importance matrix (converters/gguf/imatrix_run.py)
        parts.append(f"imatrix over {cal['tokens']} tokens ({cal.get('chunks')} x {cal.get('chunk_size')}) "
                     f"from {Path(str(cal.get('dataset'))).name}")
    elif isinstance(cal, dict):
        parts.append(f"calibration {cal.get('samples')} x {cal.get('max_seq_length')} tokens from {cal.get('dataset')}"
                     + (", all experts" if cal.get("all_experts") else ""))
    if recipe.get("targets"):
        parts.append("targets " + ", ".join(map(str, recipe["targets"])))
    if recipe.get("ignore"):
        parts.append("ignore " + ", ".join(map(str, recipe["ignore"])))
    im = recipe.get("imatrix")
    if isinstance(im, dict):
        parts.append(f"imatrix {Path(str(im.get('path'))).name} ({im.get('tokens')} tokens from "
                     f"{Path(str(im.get('dataset'))).name})")
    if recipe.get("demo"):
        parts.insert(0, "registry demo's random-weight toy")
    if recipe.get("drop_mtp"):
        parts.append("MTP dropped")
    return "; ".join(p for p in parts if p)


def artifact_view(a: Any, fam: Family | None = None) -> dict[str, Any]:
    """A recorded build (registry.store.Artifact) as plain data, recipe and report included; with its family,
    the quantization in the catalog's spelling (a converter records llama.cpp's) beside llama.cpp's."""
    return {
        "id": a.id, "node": a.node, "format": a.format, **_quant_names(fam, a.format, a.quantization), "path": a.path,
        "size_bytes": a.size_bytes, "sha256": a.sha256, "parent": a.parent,
        "created": a.created.isoformat() if a.created else None,
        "recipe": a.recipe, "recipe_summary": recipe_summary(a.recipe), "report": a.report,
        "demo": _is_demo(a),  # `registry demo`'s random-weight toy: never picked for a real build
    }


def _quant_names(fam: Family | None, fmt: str, quant: str) -> dict[str, Any]:
    from .catalog import spec_quant
    from .naming import quant_fields

    spec = next((s for s in fam.specs if s.format == fmt and spec_quant(s, quant)), None) if fam else None
    return quant_fields(fmt, quant, spec)


def with_quant_names(d: dict[str, Any], fam: Family | None) -> dict[str, Any]:
    """A build's JSON (a converter's result) with `quantization` in the catalog's spelling and llama.cpp's beside it
    (`gguf_type`): one spelling in every JSON output, whichever name a tool recorded."""
    return {**d, **_quant_names(fam, d["format"], d["quantization"])}


def _is_demo(a: Any) -> bool:
    from .hub.local import is_demo

    return is_demo(a)


def deployment_view(dep) -> dict[str, Any]:
    """One deployment as `registry ps --json`, `launch --json` and the REST API give it."""
    from . import redact
    from .launching.deployments import address
    from .naming import gguf_type
    from .sqlite_read import DEPLOYMENT_COLUMNS

    dumped = dep.model_dump(mode="json")  # in the model's field order (a row loaded by the ORM has its own)
    d = {**{k: dumped[k] for k in DEPLOYMENT_COLUMNS}, "gguf_type": gguf_type(dep.format, dep.quantization),
         "address": address(dep)}
    # rows written before keys were kept out of the store may still hold one
    d["argv"], d["env"] = redact.argv(d["argv"] or []), redact.env(d["env"] or {})
    d["extra_args"] = redact.argv(d.get("extra_args") or [])
    if d.get("process") and d["process"].get("cmdline"):
        d["process"] = {**d["process"], "cmdline": redact.argv(d["process"]["cmdline"])}
    if redact.has_key(dep.argv or [], dep.env or {}):
        d["api_key"] = "set"
    return d
