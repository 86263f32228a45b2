"""Reading spec files: YAML in, a validated Family out, or one error naming file, family and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError
from .schema import Family

MAX_SPEC_BYTES = 512 * 1024  # a family is a few KB; anything this big is a mistake, not a spec

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (line {line})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _error_line(e: dict[str, Any], where: str, family: str) -> str:
    msg = e["msg"].removeprefix("Value error, ")
    text = f"{where}: family {family!r}: field {_loc(tuple(e['loc']))}: {msg}"
    bad = e.get("input")
    if e["type"] not in ("missing",) and not isinstance(bad, dict) and bad is not None:
        shown = repr(bad)
        text += f" (got {shown[:80] + '...' if len(shown) > 80 else shown})"
    return text


def validation_error_lines(err: ValidationError, where: str, family: str) -> list[str]:
    """Every error of one validation, one line each with its field path (what `registry validate` prints)."""
    return [_error_line(e, where, family) for e in err.errors()]


def format_validation_error(err: ValidationError, where: str, family: str) -> str:
    """The first error on one line, saying how many more there are and where to see them."""
    text = _error_line(err.errors()[0], where, family)
    more = err.error_count() - 1
    if more:
        text += f" [and {more} more error{'s' if more > 1 else ''}; `registry validate` on the file lists them all]"
    return text


def spec_error(err: ValidationError, where: str, family: str) -> SpecError:
    e = SpecError(format_validation_error(err, where, family))
    e.lines = validation_error_lines(err, where, family)
    return e


def parse_text(text: str, where: str) -> dict[str, Any]:
    if not text.strip():
        raise SpecError(f"{where}: file is empty; a spec file holds one family mapping (see `registry schema`)")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML{pos}: {problem}") from None
    if data is None:
        raise SpecError(f"{where}: file holds no data; a spec file holds one family mapping")
    if not isinstance(data, dict):
        raise SpecError(
            f"{where}: the top level must be a mapping (one family), got a {type(data).__name__}; "
            "write one family per file"
        )
    return data


def validate_data(data: dict[str, Any], where: str) -> Family:
    name = data.get("name") if isinstance(data.get("name"), str) else "?"
    try:
        return Family.model_validate(data)
    except ValidationError as e:
        raise spec_error(e, where, name) from None


def read_spec_file(path: str | Path) -> Family:
    """Load and validate one spec file; SpecError names the file, family, field and problem."""
    path = Path(path)
    where = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    if path.is_dir():
        raise SpecError(f"{where}: is a directory, not a spec file")
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            f"{where}: file is {size} bytes, over the {MAX_SPEC_BYTES}-byte limit for a spec; "
            "a family spec is a few KB"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{where}: not UTF-8 (bad byte at offset {e.start}); save the file as UTF-8") from None
    return validate_data(parse_text(text, where), where)
