"""YAML for spec files: PyYAML's C loader with the limits a spec needs (unique string keys, a bound on
alias expansion). Apart from the loader so that reading a compiled catalog never imports PyYAML."""

from __future__ import annotations

from typing import Any

import yaml

from .errors import SpecError

# Nodes after expanding aliases: a family is a few hundred; a "billion laughs" file is billions.
MAX_SPEC_NODES = 100_000

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):  # every key of a spec is a name; 1, true or a list is a typo
            shown = repr(key) if isinstance(key, (int, float, bool)) or key is None else "a " + type(key).__name__
            raise yaml.constructor.ConstructorError(
                None, None, f"key {shown} is not a string; keys are names (quote it)", key_node.start_mark
            )
        if key in out:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (line {line})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Nodes `node` stands for once aliases are expanded (memoised per node, so it costs the file's size).

    A node reached again while it is being counted is a recursive alias: counted as over the limit.
    """
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(n: yaml.Node) -> int:
        k = id(n)
        if k in sizes:
            return sizes[k]
        if k in busy:
            return limit + 1
        busy.add(k)
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(a) + size(b) for a, b in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c) for c in n.value)
        else:
            total = 1
        busy.discard(k)
        sizes[k] = total = min(total, limit + 1)
        return total

    return size(node)


def load(text: str, where: str) -> Any:
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_SPEC_NODES) > MAX_SPEC_NODES:
            raise SpecError(
                f"{where}: its aliases (*name) expand to over {MAX_SPEC_NODES} values (or refer to themselves); "
                "a family spec is a few hundred: write the values out instead of nesting aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
