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

__version__ = "0.1.0"
__all__ = [
    "Catalog", "Family", "NotFoundError", "RegistryError", "Resolved", "Spec", "SpecError",
    "StoreError", "catalog", "families", "get", "resolve", "search",
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


def resolve(name: str, format: str, quant: str, size: float | None = None, uploader: str | None = None) -> Resolved:
    """Pin (family, format, quant) to one spec with its hub model IDs, revision and files; `uploader` (or a
    name like 'bartowski/glm-4-9b-0414') picks among the uploaders of one format and size."""
    return catalog().resolve(name, format, quant, size=size, uploader=uploader)


class _Package(types.ModuleType):
    """`registry.catalog` is the function above. The submodule of the same name, imported lazily now,
    would replace it when first loaded (the import system sets it on the package); keep the function."""

    def __setattr__(self, name: str, value) -> None:
        if name == "catalog" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
