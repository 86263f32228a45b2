"""Catalog commands: list, show, search, resolve, schema, validate, register, unregister, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .app import JsonOpt, complete_name, _catalog, _console, _kv, _print_json, _table, app

# --- read commands -------------------------------------------------------------------------


@app.command("list")
def list_(
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Only families with a spec in this format."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Only families offering this quantization."),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Only families this engine can serve."),
    ability: Optional[str] = typer.Option(None, "--ability", help="Only families with this ability: chat, generate, tools, reasoning or vision."),
    min_context: Optional[int] = typer.Option(None, "--min-context", help="Only families with at least this context."),
    local: bool = typer.Option(False, "--local", help="The local builds instead (as `registry ls`)."),
    json_: bool = JsonOpt,
) -> None:
    """List model families (--local: the local builds)."""
    if local:
        from .local_cmds import show_local_builds

        return show_local_builds(json_)
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
        raise typer.Exit(1)
    if json_:
        return
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


@app.command()
def show(
    name: str = typer.Argument(..., help="Family name, e.g. glm4-chat-1m, or a build tag, e.g. glm4-chat-1m:Q4_K.",
                      autocompletion=complete_name),
    artifacts: bool = typer.Option(False, "--artifacts", help="Also list the recorded builds with their recipes and quality reports."),
    node: Optional[str] = typer.Option(None, "--node", help="With --artifacts: only this node's (machine's) builds."),
    json_: bool = JsonOpt,
) -> None:
    """Show a family and every spec (--artifacts: and its recorded builds)."""
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
        return
    _show_table(view)
    if view.get("build"):
        b = view["build"]
        _console().print(f"build {name}: {b['format']} {b['quantization']}"
                         + (f" (llama.cpp {b['gguf_type']})" if b.get("gguf_type") else "")
                         + "; " + "; ".join(f"{h}: {x['model_id']}@{x['revision']} {' '.join(x['files'])}".rstrip()
                                            for h, x in b["hubs"].items()), markup=False, highlight=False)
    _show_memory_and_launch(view)
    if not artifacts and paths.has_database():
        _console().print(f"Recorded builds and their recipes: registry show {entry.family.name} --artifacts")


def _show_table(v: dict[str, Any]) -> None:
    con = _console()
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
        con.print("GGUF names Q3_K, Q4_K and Q5_K are llama.cpp's Q3_K_M, Q4_K_M and Q5_K_M.")
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
    con = _console()
    gb = lambda n: "n/a" if n is None else f"{n / 1e9:,.1f} GB"  # noqa: E731
    for s in v["specs"]:
        m = s["memory"]
        rows = [[b["quantization"], "n/a" if b["bits_per_weight"] is None else f"{b['bits_per_weight']:.2f}",
                 gb(b["weights_bytes"]), gb(b["kv_cache_short_bytes"]), gb(b["kv_cache_full_bytes"]),
                 gb(b["total_full_bytes"]), gb(b["memory_short_bytes"]), gb(b["memory_full_bytes"])]
                for b in m["builds"]]
        _table(f"Estimated memory, Model Spec {s['index']} ({s['format']}); KV cache in {m['kv_cache_dtype']}; "
               f"\"needs\" adds the engine's buffers, as `registry fit --hardware {m['hardware']} --context N` "
               "counts them",
               ["quant", "bits/weight", "weights", f"KV {m['short_context']:,} tokens",
                f"KV {m['full_context']:,} tokens", "weights + KV at full context",
                f"needs at {m['short_context']:,}", "needs at full context"], rows)
        for p in s["launch"]:
            line = f"registry launch {v['name']} --format {s['format']} --quant {s['quantizations'][0]}" + (
                f" --profile {p['name']}" if p.get("name", "default") != "default" or len(s["launch"]) > 1 else "")
            con.print(f"Launch profile {p['engine']} {p.get('name', 'default')}"
                      + (": " + p["description"].rstrip(".") if p.get("description") else "")
                      + (f" (from {p['source']})" if p.get("source") else "") + f"\n  {line}",
                      markup=False, highlight=False)


def _artifacts(family, node: str | None = None) -> list[dict[str, Any]]:
    """Recorded builds of a family (every node's, or one node's); none (and no database import) when no store
    exists yet."""
    from .. import paths

    if not paths.has_database():
        return []
    from ..store import Store
    from ..views import artifact_view

    return [artifact_view(a, family) for a in Store().artifacts(family=family.name, node=node)]


@app.command()
def search(words: list[str] = typer.Argument(..., help="Words to look for: a family, an uploader, a hub repository, a format, a quantization or an engine."),
           json_: bool = JsonOpt) -> None:
    """Find builds by family, uploader, hub repository, format, quantization or engine (every word must match),
    e.g. `registry search unsloth`, `registry search mlx 4bit`."""
    text = " ".join(words)
    rows = [h.to_dict() for h in _catalog().search_builds(text)]
    if json_:
        _print_json(rows)
    if not rows:  # like `list` and grep: finding nothing is not success
        print(f"error: no build matches {text!r}; `registry list` shows the families, and every word must match "
              "a family, uploader, hub repository, format, quantization or engine", file=sys.stderr)
        raise typer.Exit(1)
    if json_:
        return
    _table(None, ["family", "format", "size", "quantizations", "hub repositories"],
           [[r["name"], r["format"], f"{r['size_in_billions']:g}B", ", ".join(r["quantizations"]),
             "\n".join(r["model_ids"]) or "(built locally)"] for r in rows])


@app.command()
def resolve(
    name: str = typer.Argument(..., help="Family name, or a build tag FAMILY:QUANT."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size", help="Size in billions, where a format has several."),
    uploader: Optional[str] = typer.Option(None, "--from", help="Uploader, where several publish the format in "
                                           "one size: bartowski, unsloth or local; or name it: bartowski/FAMILY."),
    json_: bool = JsonOpt,
) -> None:
    """Pin a family/format/quant to its hub repo, revision and files."""
    r = _catalog().resolve(name, format, quant, size=size, uploader=uploader)
    d = r.to_dict()
    if json_:
        _print_json(d)
        return
    rows = [[h, x["model_id"], x["revision"], "\n".join(x["files"]) or "(snapshot)"] for h, x in d["hubs"].items()]
    _table(f"{r.family.name} {r.spec.format} {r.quantization} -> {r.canonical} from {r.spec.publisher}; "
           f"engines: {', '.join(r.engines)}",
           ["hub", "model id", "revision", "files"], rows)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec file."""
    from ..schema import json_schema

    _print_json(json_schema())


# --- spec files ----------------------------------------------------------------------------


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Spec files to check."), json_: bool = JsonOpt) -> None:
    """Check spec files, printing every problem on its own line with its field path; exit 1 if any is invalid."""
    from ..errors import SpecError
    from ..loader import read_spec_file

    results = []
    names: dict[str, str] = {}
    for f in files:
        try:
            fam = read_spec_file(f)
            if fam.name in names:
                raise SpecError(f"{f}: family {fam.name!r}: field name: duplicate of the family in {names[fam.name]}")
            names[fam.name] = str(f)
            results.append({"file": str(f), "ok": True, "family": fam.name})
        except SpecError as e:
            lines = e.lines or [str(e)]
            results.append({"file": str(f), "ok": False, "error": str(e), "errors": lines})
    if json_:
        _print_json(results)
    else:
        for r in results:
            if r["ok"]:
                print(f"ok: {r['file']} ({r['family']})")
            else:
                for line in r["errors"]:
                    print(f"error: {line}", file=sys.stderr)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


@app.command()
def register(
    file: Path = typer.Argument(..., help="A spec file of your own family (`registry init NAME` writes one)."),
    replace: bool = typer.Option(False, "--replace", help="Replace the family of that name if it is registered."),
) -> None:
    """Add a user family to the store (it cannot shadow a shipped name)."""
    from ..catalog import shipped
    from ..errors import SpecError
    from ..loader import read_spec_file
    from ..store import Store

    fam = read_spec_file(file)
    shipped_names = {e.family.name for e in shipped()}
    if fam.name in shipped_names:
        raise SpecError(f"{file}: family {fam.name!r}: field name: a shipped family has this name; choose another")
    store = Store()
    replaced = replace and any(r.name == fam.name for r in store.user_families())
    store.register_family(fam.name, fam.model_dump(mode="json", exclude_none=True), str(file.resolve()),
                          replace=replace)
    verb = "replaced" if replaced else "registered"
    print(f"{verb} {fam.name} ({len(fam.specs)} spec{'s' if len(fam.specs) != 1 else ''})")


@app.command()
def unregister(name: str) -> None:
    """Remove a user family from the store."""
    from ..store import Store

    Store().unregister_family(name)
    print(f"unregistered {name}")


@app.command()
def demo(json_: bool = JsonOpt) -> None:
    """Run the whole registry path locally, with no hub (see README)."""
    from ..demo import run

    say = (lambda m: print(m, file=sys.stderr)) if json_ else print
    result = run(say=say, progress=not json_ and sys.stderr.isatty())
    if json_:
        _print_json(result)


