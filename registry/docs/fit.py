"""The pages' "Does it fit, and what do I type" tables: every build of a spec against four machines people
have (a 24 GB GPU, an 80 GB GPU, one 8 x H100 node, a 64 GB CPU box), asked of the launcher exactly as
`registry fit --hardware H` asks it, with the `registry launch` line of each build.

A page depends only on the specs: the hub build is planned (never the local store), and the machines are
named hardware strings (registry/data/gpus.yaml) with a fixed core count, never this machine's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..schema import ENGINE_TITLES, Family, Spec

# (column heading, --hardware string): the machines of the table, smallest first
MACHINES: tuple[tuple[str, str], ...] = (
    ("24 GB GPU (RTX 4090)", "1xRTX-4090"),
    ("80 GB GPU (H100)", "1xH100-80G"),
    ("8 x H100 80 GB", "8xH100-80G"),
    ("CPU, 64 GB RAM", "cpu-64GB"),
)
CPU_CORES = 16  # a string's machine otherwise takes this machine's core count; a page must not
GB = 1e9  # the CLI's unit (registry fit, registry show): decimal gigabytes


def gb(n: int | float | None) -> str:
    """Bytes as the CLI prints them."""
    return "-" if n is None else f"{n / GB:,.1f} GB"


def machine(hardware: str):
    from ..hardware import from_string

    hw = from_string(hardware)
    assert hw is not None, hardware
    return dataclasses.replace(hw, cpu_cores=CPU_CORES, physical_cores=CPU_CORES)


def launch_line(fam: Family, spec: Spec, quant: str) -> str:
    """What a person types on a machine that fits (the launcher picks the engine)."""
    line = f"registry launch {fam.name} --format {spec.format} --quant {quant}"
    if sum(1 for s in fam.specs if s.format == spec.format) > 1:
        line += f" --size {spec.size_in_billions:g}"
    return line


def _short(reasons: list[str]) -> str:
    """The telling reason's first clause, for a table cell (`registry fit` prints them all, whole): a memory
    shortfall where an engine could otherwise serve it, else the first engine's reason."""
    reason = next((r for r in reasons if "memory" in r), reasons[0])
    reason = reason.split(": ", 1)[1] if re.match(r"^[\w.-]+: ", reason) else reason
    reason = reason.split("; ", 1)[0]
    return reason.split(", ", 1)[0] if len(reason) > 80 else reason


def cell(b: dict[str, Any]) -> str:
    if b["fits"]:
        if b["gpus"]:
            need = f"{gb(b['per_gpu_bytes'])} /GPU" + (f" + {gb(b['host_bytes'])} host" if b.get("host_bytes") else "")
        else:
            need = f"{gb(b['total_bytes'])} host"
        return f"yes: {ENGINE_TITLES[b['engine']]}, {need} at context {b['context']:,}"
    return f"no: {_short(b['reasons'])}"


def fit_rows(fam: Family, spec: Spec) -> list[dict[str, Any]]:
    """Per quantization: weights, one cell per machine, the launch line; as `registry fit --hardware` sees it."""
    from ..catalog import resolved_build
    from ..launching.fit import build_fit
    from ..launching.plan import hub_artifact

    machines = [machine(h) for _, h in MACHINES]
    rows = []
    for q in spec.quantizations:
        resolved = resolved_build(fam, spec, q)
        art = hub_artifact(resolved)
        fits = [build_fit(resolved, hw, art) for hw in machines]
        weights = next((b["weights_bytes"] for b in fits if b["weights_bytes"]), None)
        rows.append({"quantization": q, "weights": gb(weights), "cells": [cell(b) for b in fits],
                     "fits": [b["fits"] for b in fits], "engines": [b["engine"] for b in fits],
                     "launch": launch_line(fam, spec, q), "builds": fits})
    return rows


def suggested(fam: Family, spec: Spec, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """(quantization, engine) of the page's headline launch line: on the smallest machine where any build
    fits, the planner's `auto` choice there among the spec's builds (what `registry fit --quant auto` picks);
    where none fits anywhere, the spec's first quantization on its first engine."""
    from ..launching.fit import auto_choice

    for i, (_, hardware) in enumerate(MACHINES):
        if any(r["fits"][i] for r in rows):
            pick = auto_choice(fam, machine(hardware), [r["builds"][i] for r in rows])
            return pick["quantization"], pick["engine"]
    q = spec.quantizations[0]
    return q, (spec.engines_for(q) or list(spec.engines))[0]
