"""The read commands' work (list, show, search, resolve, fit, ps), free of typer: the typer commands
(registry/cli/catalog_cmds.py, launch_cmds.py) and the fast path (registry/cli/fast.py) both call these, so
that both print the same bytes. Each returns its exit code (1: nothing found, as grep)."""

from __future__ import annotations

import sys
from typing import Any

from .output import _catalog, _kv, _line, _print_json, _table

GB = 1e9


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / GB:,.1f} GB"


def list_families(format: str | None, quant: str | None, engine: str | None, ability: str | None,
                  min_context: int | None, json_: bool) -> int:
    from ..views import family_row

    from ..errors import not_found
    from ..formats import FORMATS
    from ..naming import known_quant

    if quant and not known_quant(quant):
        raise not_found("quantization", quant, {q for d in FORMATS.values() for q in d["quantizations"]})
    cat = _catalog()
    fams = cat.families(format=format, quant=quant, engine=engine, ability=ability and ability.lower(),
                        min_context=min_context)
    rows = [{**family_row(f), "origin": cat.entry(f.name).origin} for f in fams]
    if json_:
        _print_json(rows)
    if not rows:  # like grep: finding nothing is not success
        given = {"--format": format, "--quant": quant, "--engine": engine, "--ability": ability,
                 "--min-context": min_context}
        print("error: no family matches " + " ".join(f"{k} {v}" for k, v in given.items() if v is not None),
              file=sys.stderr)
        return 1
    if json_:
        return 0
    _table(
        None,
        ["name", "params", "context", "formats", "engines", "abilities", "licence"],
        [
            [
                r["name"] + (" (user)" if r["origin"] == "user" else ""),
                f"{r['params_b']:g}B" + (f" ({r['active_params_b']:g}B active)" if r["active_params_b"] else ""),
                f"{r['context_length']:,}",
                ", ".join(r["formats"]),
                ", ".join(r["engines"]),
                ", ".join(r["abilities"]),
                r["licence"],
            ]
            for r in rows
        ],
    )
    return 0


def show(name: str, artifacts: bool, node: str | None, json_: bool) -> int:
    from .. import paths
    from ..views import family_view

    cat = _catalog()
    entry = cat.entry(name)
    view = family_view(entry.family, entry.origin)
    if ":" in name:  # a tag: the build it names, too
        view["build"] = cat.resolve(name).to_dict()
    # Builds live in the database; a plain `show` of a shipped family never opens it (fast path).
    if artifacts:
        view["artifacts"] = _artifacts(entry.family, node)
    if json_:
        _print_json(view)
        return 0
    _show_table(view)
    if view.get("build"):
        b = view["build"]
        _line(f"build {name}: {b['format']} {b['quantization']}"
              + (f" (llama.cpp {b['gguf_type']})" if b.get("gguf_type") else "")
              + "; " + "; ".join(f"{h}: {x['model_id']}@{x['revision']} {' '.join(x['files'])}".rstrip()
                                 for h, x in b["hubs"].items()))
    _show_memory_and_launch(view)
    if not artifacts and paths.has_database():
        _line(f"Recorded builds and their recipes: registry show {entry.family.name} --artifacts")
    return 0


def _show_table(v: dict[str, Any]) -> None:
    arch = v["architecture"]
    lic = v["licence"]
    params = f"{arch['total_params_b']:g}B" + (
        f", {arch['active_params_b']:g}B active" if arch.get("active_params_b") else ""
    )
    head = [
        ("Family", v["name"]),
        ("Context Length", f"{v['context_length']}"),
        ("Languages", ", ".join(v["languages"])),
        ("Abilities", ", ".join(v["abilities"])),
        ("Description", v["description"]),
        ("Architecture", f"{', '.join(arch['hf_classes'])}: {arch['kind']}, {params}, {arch['layers']} layers, "
         f"hidden {arch['hidden_size']}, {arch['attention']} {arch['attention_heads']} heads"
         + (f" / {arch['kv_heads']} KV" if arch.get("kv_heads") else "")
         + (f", {arch['experts']} experts ({arch['experts_per_token']} active)" if arch.get("experts") else "")),
        ("Licence", lic["name"] + (f" ({lic['url']})" if lic.get("url") else "")
         + (f"; commercial use: {lic['commercial_use']}" if lic.get("commercial_use") else "")),
    ]
    if lic.get("attribution"):
        head.append(("Attribution", lic["attribution"]))
    if lic.get("naming"):
        head.append(("Naming", lic["naming"]))
    _kv(head)
    rows = []
    for s in v["specs"]:
        quants = ", ".join(
            q + (f" (= {s['quantization_aliases'][q]})" if q in s["quantization_aliases"] else "")
            for q in s["quantizations"]
        )
        engines = ", ".join(s["engine_titles"]) + (f" ({s['engine_note']})" if s["engine_note"] else "")
        hubs = "\n".join(
            f"{h['title']}: {h['model_id']}"
            + (f" @ {h['revision']}" if h.get("revision", "main") != "main" else "")
            + ("".join(f"\n  {q} @ {b}" for q, b in h.get("revisions", {}).items()))
            + (f"\n  files: {h['file_template']}" if h.get("file_template") else "")
            for h in s["hubs"].values()
        ) or "(built locally from its recipe)"
        rows.append([str(s["index"]), s["format"], f"{s['size_in_billions']:g}B", quants, engines, hubs])
    _table(None, ["#", "format", "size", "quantizations", "engines", "model id (revision)"], rows, lines=True)
    if any(s["quantization_aliases"] for s in v["specs"]):
        _line("GGUF names Q3_K, Q4_K and Q5_K are llama.cpp's Q3_K_M, Q4_K_M and Q5_K_M.")
    if v.get("artifacts"):
        arows = []
        for r in v["artifacts"]:
            rep = r.get("report") or {}
            quality = (f"KL {rep['kl_divergence']:.6f}, top-1 {rep['top1_agreement']:.1%} vs {rep.get('reference')}"
                       if rep.get("kl_divergence") is not None else "")
            arows.append([str(r["id"]), r["node"], r["format"], r["quantization"], r["path"], r["recipe_summary"], quality])
        _table("Built artifacts", ["id", "node", "format", "quant", "path", "recipe", "quality"], arows, lines=True)


def _show_memory_and_launch(v: dict[str, Any]) -> None:
    """What the family's docs page adds: each spec's memory figures and its launch profiles (the model
    cards' commands), in the units `registry fit` prints."""
    gb = lambda n: "n/a" if n is None else f"{n / 1e9:,.1f} GB"  # noqa: E731
    for s in v["specs"]:
        m = s["memory"]
        # the short context's columns only where it is shorter than the family's whole context
        both = m["short_context"] != m["full_context"]
        rows = [[b["quantization"], "n/a" if b["bits_per_weight"] is None else f"{b['bits_per_weight']:.2f}",
                 gb(b["weights_bytes"]), *([gb(b["kv_cache_short_bytes"])] if both else []),
                 gb(b["kv_cache_full_bytes"]), gb(b["total_full_bytes"]),
                 *([gb(b["memory_short_bytes"])] if both else []), gb(b["memory_full_bytes"])]
                for b in m["builds"]]
        _table(f"Estimated memory, Model Spec {s['index']} ({s['format']}); KV cache in {m['kv_cache_dtype']}; "
               f"\"needs\" adds the engine's buffers, as `registry fit --hardware {m['hardware']} --context N` "
               "counts them",
               ["quant", "bits/weight", "weights", *([f"KV {m['short_context']:,} tokens"] if both else []),
                f"KV {m['full_context']:,} tokens", "weights + KV at full context",
                *([f"needs at {m['short_context']:,}"] if both else []), "needs at full context"], rows)
        for p in s["launch"]:
            line = f"registry launch {v['name']} --format {s['format']} --quant {s['quantizations'][0]}" + (
                f" --profile {p['name']}" if p.get("name", "default") != "default" or len(s["launch"]) > 1 else "")
            _line(f"Launch profile {p['engine']} {p.get('name', 'default')}"
                  + (": " + p["description"].rstrip(".") if p.get("description") else "")
                  + (f" (from {p['source']})" if p.get("source") else "") + f"\n  {line}")


def _artifacts(family, node: str | None = None) -> list[dict[str, Any]]:
    """Recorded builds of a family (every node's, or one node's); none (and no database import) when no store
    exists yet."""
    from .. import paths

    if not paths.has_database():
        return []
    from ..store import Store
    from ..views import artifact_view

    return [artifact_view(a, family) for a in Store().artifacts(family=family.name, node=node)]


def search(words: list[str], json_: bool) -> int:
    text = " ".join(words)
    rows = [h.to_dict() for h in _catalog().search_builds(text)]
    if json_:
        _print_json(rows)
    if not rows:  # like `list` and grep: finding nothing is not success
        print(f"error: no build matches {text!r}; `registry list` shows the families, and every word must match "
              "a family, uploader, hub repository, format, quantization or engine", file=sys.stderr)
        return 1
    if json_:
        return 0
    _table(None, ["family", "format", "size", "quantizations", "hub repositories"],
           [[r["name"], r["format"], f"{r['size_in_billions']:g}B", ", ".join(r["quantizations"]),
             "\n".join(r["model_ids"]) or "(built locally)"] for r in rows])
    return 0


def resolve(name: str, format: str | None, quant: str | None, size: float | None, uploader: str | None,
            json_: bool) -> int:
    r = _catalog().resolve(name, format, quant, size=size, uploader=uploader)
    d = r.to_dict()
    if json_:
        _print_json(d)
        return 0
    rows = [[h, x["model_id"], x["revision"], "\n".join(x["files"]) or "(snapshot)"] for h, x in d["hubs"].items()]
    _table(f"{r.family.name} {r.spec.format} {r.quantization} -> {r.canonical} from {r.spec.publisher}; "
           f"engines: {', '.join(r.engines)}",
           ["hub", "model id", "revision", "files"], rows)
    return 0


def fits(name: str, hardware: str | None, context: str | None, quant: str | None, format: str | None,
        json_: bool) -> int:
    from ..launching.fit import fit
    from ..naming import parse_context

    res = fit(name, hardware=hardware, context=parse_context(context), quant=quant, format=format)
    if json_:
        _print_json(res)
        return 0
    rows, why = [], []  # reasons go under the table, numbered: in a cell they would wrap into a column
    for b in res["builds"]:
        if not b["fits"]:
            why.append(f"[{len(why) + 1}] {b['format']} {b['quantization']}: " + "\n    ".join(b["reasons"]))
        rows.append([b["format"], b["quantization"], b["engine"] or "-", _gb(b["weights_bytes"]),
                     _gb(b["kv_cache_bytes"]),
                     (_gb(b["per_gpu_bytes"]) + " /GPU" + (f" + {_gb(b['host_bytes'])} host" if b.get("host_bytes") else ""))
                     if b["gpus"] else _gb(b["total_bytes"]) + " host",
                     ("yes", "bold green") if b["fits"] else (f"no [{len(why)}]", "bold red")])
    # "need" is what each GPU must hold (or the host, without GPUs), at the context the estimate assumed
    ctxs = sorted({b["context"] for b in res["builds"] if b.get("context")})
    at = f" at {ctxs[0]:,} tokens" if len(ctxs) == 1 else ""
    need = ("need per GPU" if res["hardware"].get("gpus") else "need (host)") + at
    cols = ["format", "quant", "engine", "weights", "KV" + at, need, "fits"]
    if len(ctxs) > 1 or res.get("context") == "max":  # builds planned at different contexts: each row says its own
        cols.insert(5, "context")
        for r, b in zip(rows, res["builds"]):
            r.insert(5, f"{b['context']:,}" if b.get("context") else "-")
        if res.get("context") == "max" and res["hardware"].get("gpus"):  # and how much of it the GPUs hold alone
            cols.insert(6, "on GPUs only")
            for r, b in zip(rows, res["builds"]):
                r.insert(6, f"{b['max_context_gpu']:,}" if b.get("max_context_gpu") else "-")
    _table(f"{res['family']} on {res['hardware']['name']}", cols, rows)
    for line in why:
        _line(line)
    if res.get("auto"):
        a = res["auto"]
        if not a["quantization"]:
            _line("auto: no build fits")
            return 0
        _line(f"auto: {a['format']} {a['quantization']} on {a['engine']} at context {a['context']:,}: "
              f"~{a['decode_tok_s_bound']:g} tok/s at most (memory bandwidth bound; usable from "
              f"{a['usable_tok_s']:g} tok/s; host bandwidth {a['host_bandwidth_bytes_s'] / 1e9:.0f} GB/s, "
              f"{a['bandwidth_source']})\n  {a['command']}")
    return 0


def deployments(all_: bool, node: str | None, json_: bool, stdlib: bool = False) -> int:
    """stdlib: read the rows without SQLAlchemy where nothing is to be written (the fast path's)."""
    from ..launching.deployments import address, ps, ps_read

    deps = (ps_read if stdlib else ps)(all_=all_, node=node)
    if json_:
        from ..views import deployment_view

        _print_json([deployment_view(d) for d in deps])
        return 0
    if not deps:
        _line("no deployments" + ("" if all_ else " running (--all shows stopped ones)"))
        return 0
    from .. import paths

    _table(None, ["id", "node", "family", "format", "quant", "engine", "pid", "address", "status", "started"],
           [[str(d.id), d.node, d.family, d.format, d.quantization, d.engine, str(d.pid or "-"), address(d),
             d.status if paths.owns(d.node) else _seen(d), d.started.strftime("%Y-%m-%d %H:%M:%S")] for d in deps])
    return 0


def _seen(d) -> str:
    """Another node's status, as that node last wrote it, and how long ago it found the process alive."""
    from datetime import datetime, timezone

    if d.seen is None or d.status not in ("starting", "running"):
        return d.status
    seen = d.seen if d.seen.tzinfo else d.seen.replace(tzinfo=timezone.utc)
    s = max(0, int((datetime.now(timezone.utc) - seen).total_seconds()))
    ago = f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"
    return f"{d.status} (seen {ago} ago)"
