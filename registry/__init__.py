"""glm-registry: a typed, multi-format model registry for the GLM family.

    >>> import registry
    >>> registry.get("glm4-chat-1m").context_length
    1048576
    >>> registry.resolve("glm4-chat-1m", "ggufv2", "Q4_K").hubs["huggingface"].files
    ['glm-4-9b-chat-1m.Q4_K.gguf']
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from .errors import NotFoundError, RegistryError, SpecError, StoreError

if TYPE_CHECKING:
    from .catalog import Catalog, Resolved
    from .schema import Family, Spec

from .version import __version__
__all__ = [
    "Catalog", "Family", "NotFoundError", "RegistryError", "Resolved", "Spec", "SpecError",
    "StoreError", "artifacts", "catalog", "families", "fit", "get", "launch", "plan", "ps", "pull", "resolve",
    "search", "search_builds", "stop",
]


def __getattr__(name: str):
    # The typed classes are imported on first use: importing the package (which every `registry`
    # command and `python -m registry.prestart` does) stays free of pydantic and YAML.
    if name in ("Catalog", "Resolved"):
        import importlib

        return getattr(importlib.import_module(".catalog", __name__), name)
    if name in ("Family", "Spec"):
        from . import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'registry' has no attribute {name!r}")


def catalog(include_user: bool = True) -> Catalog:
    """The whole catalog: shipped specs (parsed once per process) plus registered families."""
    from .catalog import load

    return load(include_user=include_user)


def get(name: str) -> Family:
    """One family by name; NotFoundError lists the nearest names."""
    return catalog().get(name)


def families(
    format: str | None = None,
    quant: str | None = None,
    engine: str | None = None,
    ability: str | None = None,
    min_context: int | None = None,
) -> list[Family]:
    """Families with at least one spec matching every filter given."""
    return catalog().families(format=format, quant=quant, engine=engine, ability=ability, min_context=min_context)


def search(text: str) -> list[Family]:
    """Families whose name, description, hub IDs or architecture mention every word of `text`."""
    return catalog().search(text)


def search_builds(text: str) -> list[dict]:
    """Builds (a spec narrowed to the quantizations named) whose family, format, uploader, hub repository,
    quantization or engine mention every word, as `registry search --json` gives them."""
    return [h.to_dict() for h in catalog().search_builds(text)]


def resolve(name: str, format: str | None = None, quant: str | None = None, size: float | None = None,
            uploader: str | None = None) -> Resolved:
    """Pin a build to one spec with its hub model IDs, revision and files: a tag (`"glm4-chat-1m:Q4_K"`), or
    (family, format, quant), the format optional where one format has the quantization. `uploader` (or a name
    like 'bartowski/glm-4-9b-0414') picks among the uploaders of one format and size."""
    return catalog().resolve(name, format, quant, size=size, uploader=uploader)


# --- what the CLI's build commands do, from Python (each returns what their --json prints) -------------------


def fit(name: str, hardware: str | None = None, context: int | str | None = None, quant: str | None = None,
        format: str | None = None) -> dict:
    """Every build of a family (or the one a tag names) with its memory estimate and whether it fits this machine
    or `hardware` (a profile such as "1xH100-80G", "24GB", "cpu-64GB"); `quant="auto"` adds the best pick.
    `context`: tokens, "32k", "1M" or "max"."""
    from .launcher import fit as fit_
    from .naming import parse_context

    return fit_(name, hardware=hardware, context=parse_context(context), quant=quant, format=format)


def plan(name: str, format: str | None = None, quant: str | None = None, *, engine: str | None = None,
         hardware: str | None = None, context: int | str | None = None, **options):
    """The launch plan of a build (engine, argv, env, port, artifact, memory estimate, rejected engines), as
    `registry launch --dry-run` makes it; `.to_dict()` is its JSON. Without a quantization: a running deployment
    of the family, else a local build, else the best build that fits. `options`: gpus, nodes, port, host,
    profile, size, threads, extra_args (words for the engine's command line, as after `registry launch ... --`:
    checked by the engine's parser)."""
    from . import launcher
    from .naming import parse_context, split_tag

    context = parse_context(context)
    if split_tag(name, quant)[1] is None:
        pick = launcher.pick_build(name, format, context, hardware)
        name, format, quant = pick["family"], pick["format"], pick["quantization"]
    return launcher.plan(name, format, quant, engine=engine, hardware=hardware, context=context, **options)


def launch(name: str, format: str | None = None, quant: str | None = None, *, timeout: float = 300.0,
           new: bool = False, **options) -> dict:
    """Start a build here and wait until it answers (a running deployment of it is reused unless `new`); the
    deployment as `registry ps --json` shows it, `reused` beside it. Takes plan()'s arguments."""
    from . import launcher
    from .views import deployment_view

    p = plan(name, format, quant, **options)
    if not new and options.get("port") is None:
        from .naming import parse_context

        same = launcher.running_same(p, options.get("engine"), parse_context(options.get("context")),
                                     options.get("threads"))
        if same:
            return {**deployment_view(same[0]), "reused": True}
    dep = launcher.launch(p, timeout=timeout, say=lambda m: None, spinner=False)
    return {**deployment_view(dep), "reused": False}


def ps(all: bool = False) -> list[dict]:
    """Running deployments (`all`: stopped and failed ones too), as `registry ps --json`."""
    from .launcher import ps as ps_
    from .views import deployment_view

    return [deployment_view(d) for d in ps_(all_=all)]


def stop(name: str | int) -> list[dict]:
    """Stop the running deployments a tag FAMILY:QUANT, family name or deployment id names; what happened to each."""
    from . import launcher

    return [{"id": d.id, "family": d.family, "quantization": d.quantization, "result": launcher.stop(d)}
            for d in launcher.find(str(name), active_only=True)]


def artifacts(family: str | None = None) -> list[dict]:
    """Every local build (of one family), one dict each: tag, format, quantization, size, path, created, in_use."""
    from .builds import local_builds

    return local_builds(family)


def pull(name: str, format: str | None = None, quant: str | None = None, *, uploader: str | None = None,
         hub: str | None = None, offline: bool | None = None, revision: str | None = None):
    """Fetch a build (the store, then the Hugging Face cache, then the hub) and record it; a PullResult with its
    path. Takes a tag or (family, format, quant) as resolve() does."""
    from .hub import pull as pull_

    r = resolve(name, format, quant, uploader=uploader)
    return pull_(r, hub=hub, offline=offline, revision=revision, say=lambda m: None)


class _Package(types.ModuleType):
    """`registry.catalog` is the function above. The submodule of the same name, imported lazily now,
    would replace it when first loaded (the import system sets it on the package); keep the function."""

    def __setattr__(self, name: str, value) -> None:
        if name == "catalog" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
