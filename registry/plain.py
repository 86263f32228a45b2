"""Families as plain objects, built from validated data without pydantic: what a read command (`registry list`,
`show`, `search`, `resolve`, `fit`) needs from the compiled catalog in a few milliseconds instead of pydantic's
~60 ms import and build of the schema.

The data is a Family's `model_dump(mode="json", exclude_none=True)`, stored by registry/compiled.py after
validation, with the schema's shape (which field holds which model: `shape()`, taken from the models when
the cache is written). A plain object answers its fields (None for one the dump left out: exclude_none drops
only fields whose value is None), the methods of registry/spec_methods.py (the models' own), and
`model_dump(mode="json", exclude_none=True)`: the same answers as the model it stands for.
"""

from __future__ import annotations

from typing import Any

from .spec_methods import ChatMethods, FamilyMethods, HubSourceMethods, SpecMethods

METHODS = {"Family": FamilyMethods, "Spec": SpecMethods, "HubSource": HubSourceMethods, "ChatSettings": ChatMethods}


def shape(model: type) -> dict[str, dict[str, list]]:
    """For `model` and every model under it: field -> [kind, model name], kind 'one', 'list', 'dict' (a model,
    a list or dict of models) or 'value' (anything else, model name None)."""
    import types
    import typing

    from pydantic import BaseModel

    def is_model(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, BaseModel)

    def nested(t: Any) -> tuple[str, type | None]:
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin in (typing.Union, types.UnionType):
            found = [nested(a) for a in args if a is not type(None)]
            models = [f for f in found if f[1] is not None]
            if models and len(found) > 1:
                raise TypeError(f"{t}: a model in a union with other types has no plain shape")
            return models[0] if models else ("value", None)
        if is_model(t):
            return "one", t
        if origin is list and args and is_model(args[0]):
            return "list", args[0]
        if origin is dict and len(args) == 2 and is_model(args[1]):
            return "dict", args[1]
        if any(nested(a)[1] is not None for a in args if not isinstance(a, (str, int))):
            raise TypeError(f"{t}: models nested this way have no plain shape")
        return "value", None

    out: dict[str, dict[str, list]] = {}

    def visit(cls: type) -> None:
        if cls.__name__ in out:
            return
        fields: dict[str, list] = {}
        out[cls.__name__] = fields
        for name, info in cls.model_fields.items():
            kind, sub = nested(info.annotation)
            fields[name] = [kind, sub.__name__ if sub else None]
            if sub is not None:
                visit(sub)

    visit(model)
    return out


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


class Plain:
    """A model's dumped data with attribute access; nested models become plain objects on first use."""

    __slots__ = ("_d", "_cache")
    _fields: dict[str, list] = {}
    _classes: dict[str, type] = {}

    def __init__(self, data: dict[str, Any]):
        object.__setattr__(self, "_d", data)
        object.__setattr__(self, "_cache", {})

    def __getattr__(self, name: str) -> Any:
        try:
            kind, sub = self._fields[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None
        cache = self._cache
        if name in cache:
            return cache[name]
        v = self._d.get(name)
        if v is not None and sub is not None:
            cls = self._classes[sub]
            v = cls(v) if kind == "one" else [cls(x) for x in v] if kind == "list" else {k: cls(x) for k, x in v.items()}
        cache[name] = v
        return v

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._d == self._d  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        import json

        return hash((type(self).__name__, json.dumps(self._d, sort_keys=True)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(plain {self._d.get('name', '')!s})"

    def model_dump(self, mode: str = "python", exclude_none: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The dump it was made from: only the one that stores (mode='json', exclude_none=True)."""
        if mode != "json" or not exclude_none or kwargs:
            raise TypeError("a plain family gives only model_dump(mode='json', exclude_none=True)")
        return _copy(self._d)

    def model_copy(self, update: dict[str, Any] | None = None) -> Plain:
        data = dict(self._d)
        for k, v in (update or {}).items():
            if k not in self._fields:
                raise AttributeError(f"{type(self).__name__!r} object has no field {k!r}")
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return type(self)(data)


def classes(shape_: dict[str, dict[str, list]]) -> dict[str, type]:
    """A plain class per model of the shape, with the model's methods where it has some."""
    out: dict[str, type] = {}
    for name, fields in shape_.items():
        bases = (METHODS[name], Plain) if name in METHODS else (Plain,)
        out[name] = type(name, bases, {"__slots__": (), "_fields": fields, "_classes": out})
    return out


def families(shape_: dict[str, dict[str, list]], dumps: list[dict[str, Any]]) -> list[Any]:
    """Plain Family objects of validated dumps."""
    cls = classes(shape_)["Family"]
    return [cls(d) for d in dumps]
