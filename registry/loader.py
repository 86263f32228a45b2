"""Reading spec files: YAML in, a validated Family out, or one error naming file, family and field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SpecError

if TYPE_CHECKING:  # pydantic and the models are imported by validate_data: reading a file needs neither
    from pydantic import ValidationError

    from .schema import Family

MAX_SPEC_BYTES = 512 * 1024  # a family is a few KB; anything this big is a mistake, not a spec

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
    import yaml

    from .spec_yaml import load

    try:
        data = load(text, where)
    except SpecError:
        raise
    except ValueError as e:  # Python's int() refuses over 4300 digits; the YAML constructor lets that through
        what = "an integer has over 4300 digits" if "digits" in str(e) else f"a value cannot be read ({e})"
        raise SpecError(f"{where}: {what}; no field of a spec needs a number that long") from None
    except RecursionError:
        raise SpecError(f"{where}: nested too deeply to read; a family spec is a few levels deep") from None
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
    from pydantic import ValidationError

    from .schema import Family

    name = data.get("name") if isinstance(data.get("name"), str) else "?"
    try:
        return Family.model_validate(data)
    except ValidationError as e:
        raise spec_error(e, where, name) from None


def read_spec_file(path: str | Path) -> Family:
    """Load and validate one spec file; SpecError names the file, family, field and problem."""
    return validate_data(parse_text(read_spec_text(path), str(path)), str(path))


def read_spec_text(path: str | Path) -> str:
    """A spec file's text, read only if it is a regular UTF-8 file of spec size."""
    import stat

    path = Path(path)
    where = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except OSError as e:
        raise SpecError(f"{where}: cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(f"{where}: is a directory, not a spec file")
    if not stat.S_ISREG(st.st_mode):
        # /dev/zero never ends and a FIFO blocks until someone writes: read only regular files
        raise SpecError(f"{where}: is not a regular file (a device, FIFO or socket); give a .yaml file")
    too_big = (f"{where}: file is over the {MAX_SPEC_BYTES}-byte limit for a spec; a family spec is a few KB")
    if st.st_size > MAX_SPEC_BYTES:
        raise SpecError(too_big.replace("file is over", f"file is {st.st_size} bytes, over"))
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # the file may have grown since stat
    except OSError as e:
        raise SpecError(f"{where}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(too_big)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{where}: not UTF-8 (bad byte at offset {e.start}); save the file as UTF-8") from None
    return text
