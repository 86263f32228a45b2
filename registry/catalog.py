"""The catalog: shipped specs plus user-registered families, with look-up, filters and resolve."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import paths
from .errors import NotFoundError, RegistryError, SpecError, not_found, want
from .formats import QUANTS_BY_FORMAT
from .naming import engine_name, format_name, gguf_type, quant_key, spec_quant, split_tag
from .vocabulary import ENGINES, HUB_URLS

if TYPE_CHECKING:  # the models (pydantic) are imported where a load validates: plain families need none
    from .schema import Family, Spec


@dataclass(frozen=True)
class Entry:
    family: Family
    origin: str  # "shipped" or "user"
    path: str | None = None


@dataclass(frozen=True)
class HubFiles:
    hub: str
    model_id: str
    revision: str
    files: list[str] = field(default_factory=list)  # empty: the whole snapshot

    @property
    def url(self) -> str:
        return HUB_URLS[self.hub] + self.model_id


@dataclass(frozen=True)
class BuildHit:
    """One spec's builds that match a search: the quantizations that matched (all, if none named one)."""

    family: Family
    spec: Spec
    quantizations: list[str]

    def model_ids(self) -> list[str]:
        return list(dict.fromkeys(h.model_id_for(q) for h in self.spec.hubs.values() for q in self.quantizations))

    def to_dict(self) -> dict[str, object]:
        ids = self.model_ids()
        return {
            "name": self.family.name, "format": self.spec.format, "size_in_billions": self.spec.size_in_billions,
            "quantizations": self.quantizations, "uploader": self.spec.publisher,
            "uploaders": list(dict.fromkeys(i.split("/")[0] for i in ids)),
            "model_ids": ids, "engines": list(self.spec.engines),
        }


@dataclass(frozen=True)
class Resolved:
    """One (family, format, quantization) pinned to a spec and its hub objects."""

    family: Family
    spec: Spec
    quantization: str  # as the spec names it (e.g. Q4_K)
    canonical: str  # as tools name it (e.g. Q4_K_M)
    hubs: dict[str, HubFiles]
    engines: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "family": self.family.name,
            "uploader": self.spec.publisher,
            "format": self.spec.format,
            "size_in_billions": self.spec.size_in_billions,
            "quantization": self.quantization,
            "canonical_quantization": self.canonical,
            "gguf_type": gguf_type(self.spec.format, self.quantization),
            "engines": self.engines,
            "hubs": {
                k: {"model_id": h.model_id, "revision": h.revision, "files": h.files, "url": h.url}
                for k, h in self.hubs.items()
            },
        }


def _spec_text(item) -> str:
    if isinstance(item, Path):
        from .loader import read_spec_text

        return read_spec_text(item)  # a folder on disk: the file checks (size, type) apply
    return item.read_text(encoding="utf-8")  # inside a zip: read through importlib.resources


_plain = False


def use_plain(on: bool = True) -> None:
    """This process only reads the catalog (the CLI's read commands, a GGUF conversion): shipped families come
    from the compiled catalog as plain objects (registry/plain.py) when it is current, without importing
    pydantic. use_plain(False): catalogs loaded from then on are the models again."""
    global _plain
    _plain = on


@functools.lru_cache(maxsize=4)
def _load_shipped(directory, plain: bool = False) -> tuple[Entry, ...]:
    """Every spec file of a folder (a Path, or a Traversable inside a zip install), parsed once per
    process; the parsed YAML comes from the compiled catalog when the files are unchanged (plain: the
    validated families too)."""
    from . import compiled
    from .version import __version__

    items = sorted((p for p in directory.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
    texts = [(str(p), _spec_text(p)) for p in items]
    k = compiled.key(__version__, [(p.name, t) for p, (_, t) in zip(items, texts)])
    if plain:
        stored = compiled.read_families(k)
        if stored is not None and len(stored[1]) == len(texts):
            from . import plain as plain_mod

            fams = plain_mod.families(*stored)  # validated (names unique too) before they were stored
            return tuple(Entry(f, "shipped", where) for f, (where, _) in zip(fams, texts))
    from .loader import parse_text, validate_data

    datas = compiled.read(k)
    hit = datas is not None and len(datas) == len(texts)
    if not hit:
        datas = [parse_text(t, where) for where, t in texts]
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for (where, _), data in zip(texts, datas):
        fam = validate_data(data, where)
        if fam.name in seen:
            raise SpecError(f"{where}: family {fam.name!r}: field name: duplicate of the family in {seen[fam.name]}")
        seen[fam.name] = where
        entries.append(Entry(fam, "shipped", where))
    if not hit or plain:  # plain here: the stored families were missing or of another key
        from .plain import shape
        from .schema import Family

        compiled.write(k, datas, [e.family.model_dump(mode="json", exclude_none=True) for e in entries],
                       shape(Family))
    return tuple(entries)


def shipped() -> tuple[Entry, ...]:
    d = paths.specs_dir()
    if not d.is_dir():
        raise SpecError(f"{d}: specs directory not found; set REGISTRY_SPECS_DIR to a folder of spec files, "
                        "or reinstall glm-registry (its wheel carries registry/specs/)")
    return _load_shipped(d, _plain)


def _user_entries() -> list[Entry]:
    if not paths.has_database():
        return []  # nothing registered yet: no need to import SQLAlchemy
    if _plain:
        from .sqlite_read import user_families

        rows = user_families()
        entries = None if rows is None else _plain_user_entries(rows)
        if entries is not None:
            return entries
    from pydantic import ValidationError

    from .loader import format_validation_error
    from .schema import Family
    from .store import Store

    out = []
    for row in Store().user_families():
        try:
            fam = Family.model_validate(row.body)
        except ValidationError as e:  # a schema change made an old registration invalid
            raise SpecError(format_validation_error(e, f"registered family (from {row.source_path})", row.name)) from None
        out.append(Entry(fam, "user", row.source_path))
    return out


def _plain_user_entries(rows: list[tuple[str, str, str | None]]) -> list[Entry] | None:
    """The registered families (rows read with sqlite3) as plain families: their validated dumps are cached as
    the shipped ones are, keyed by the rows; a miss validates them with the models. None: a row that does not
    read as JSON (the Store says what is wrong with it)."""
    import json

    if not rows:
        return []
    from . import compiled, plain
    from .version import __version__

    k = compiled.key(__version__, [(f"user family {name}\0{src}", body) for name, body, src in rows])
    stored = compiled.read_families(k, "user")
    if stored is None or len(stored[1]) != len(rows):
        from pydantic import ValidationError

        from .loader import format_validation_error
        from .schema import Family

        try:
            bodies = [json.loads(body) for _, body, _ in rows]
        except (ValueError, TypeError):
            return None
        dumps = []
        for (name, _, src), body in zip(rows, bodies):
            try:
                fam = Family.model_validate(body)
            except ValidationError as e:  # a schema change made an old registration invalid
                raise SpecError(format_validation_error(e, f"registered family (from {src})", name)) from None
            dumps.append(fam.model_dump(mode="json", exclude_none=True))
        stored = plain.shape(Family), dumps
        compiled.write(k, bodies, dumps, stored[0], "user")
    return [Entry(f, "user", src) for f, (_, _, src) in zip(plain.families(*stored), rows)]


class Catalog:
    """Shipped entries up front; user-registered ones read from the store only when needed,
    so `registry show <shipped name>` never opens the database."""

    def __init__(self, entries: list[Entry] | tuple[Entry, ...], user_loader: Callable[[], list[Entry]] | None = None):
        self._entries = {e.family.name: e for e in entries}
        self._user_loader = user_loader

    def _all(self) -> dict[str, Entry]:
        if self._user_loader is not None:
            loader, self._user_loader = self._user_loader, None
            for e in loader():
                self._entries.setdefault(e.family.name, e)  # shipped names win
        return self._entries

    @classmethod
    def load(cls, include_user: bool = True) -> Catalog:
        return cls(shipped(), _user_entries if include_user else None)

    def names(self) -> list[str]:
        return sorted(self._all())

    def entry(self, name: str) -> Entry:
        want(str, "family name", name)
        name = split_tag(name)[0]  # `show glm4-chat-1m:Q4_K` is that family
        hub = self.hub_build(name)  # a pasted hub id, zai-org/GLM-4.5-Air: its family
        if hub is not None:
            return self._all()[hub[0].name]
        name = split_uploader(name)[1]  # bartowski/glm-4-9b-0414: the family glm-4-9b-0414
        if name in self._entries:
            return self._entries[name]
        found = self._all()
        if name in found:
            return found[name]
        lower = {k.lower(): v for k, v in found.items()}  # names in any case: GLM-4.5-Air
        if name.lower() in lower:
            return lower[name.lower()]
        raise not_found("family", name, self._entries, "`registry list` shows them all")

    def hub_build(self, model_id: str) -> tuple[Family, Spec, str | None] | None:
        """The family and spec a hub repository id (in any case) belongs to, and the quantization where the
        uploader publishes one repository per build; None for a name that is no catalog repository."""
        if "/" not in model_id:
            return None
        want_id = model_id.strip().lower()
        for entry in self._all().values():
            for spec in entry.family.specs:
                for src in spec.hubs.values():
                    per_quant = {m.lower(): q for q, m in src.model_ids.items()}
                    if want_id in per_quant:
                        return entry.family, spec, per_quant[want_id]
                    if src.model_id.lower() == want_id:
                        return entry.family, spec, None
        return None

    def get(self, name: str) -> Family:
        return self.entry(name).family

    def families(
        self,
        format: str | None = None,
        quant: str | None = None,
        engine: str | None = None,
        ability: str | None = None,
        min_context: int | None = None,
    ) -> list[Family]:
        for label, v in (("format", format), ("quant", quant), ("engine", engine), ("ability", ability)):
            want(str, label, v, optional=True)
        want((int, float), "min_context", min_context, optional=True)
        format, engine = format_name(format), engine_name(engine)
        if format and format not in QUANTS_BY_FORMAT:
            raise not_found("format", format, QUANTS_BY_FORMAT)
        if engine and engine not in ENGINES:
            raise not_found("engine", engine, ENGINES)
        out = []
        for name in self.names():
            fam = self._entries[name].family
            if ability and ability not in fam.abilities:
                continue
            if min_context and fam.context_length < min_context:
                continue
            specs = [s for s in fam.specs if not format or s.format == format]
            if quant:
                specs = [s for s in specs if spec_quant(s, quant) is not None]
            if engine:
                # with a quant, the engine must serve that quant (seed 004: vLLM only for 'none')
                specs = [s for s in specs if engine in (s.engines_for(spec_quant(s, quant)) if quant else s.engines)]
            if specs:
                out.append(fam)
        return out

    def search(self, text: str) -> list[Family]:
        words = want(str, "search text", text).lower().split()
        out = []
        for name in self.names():
            fam = self._entries[name].family
            hay = " ".join(
                [fam.name, fam.description, fam.vendor, " ".join(fam.abilities), " ".join(fam.languages)]
                + [m for s in fam.specs for h in s.hubs.values() for m in h.all_model_ids()]
                + [s.format for s in fam.specs]
                + fam.quantizations()
                + [gguf_type(s.format, q) or q for s in fam.specs for q in s.quantizations]  # q4_k_m finds Q4_K
                + fam.architecture.hf_classes
            ).lower()
            if all(w in hay for w in words):
                out.append(fam)
        return out

    def search_builds(self, text: str) -> list[BuildHit]:
        """Builds (specs, narrowed to the quantizations named) whose family, format, uploader, hub repository,
        quantization or engine mention every word: `unsloth`, `mlx 4bit`, `glm-4.7 awq`."""
        words = want(str, "search text", text).lower().split()
        hits = []
        for name in self.names():
            fam = self._all()[name].family
            for spec in fam.specs:
                ids = [m for h in spec.hubs.values() for m in h.all_model_ids()]
                hay = [fam.name, spec.format, spec.publisher, *ids, *spec.engines, *fam.architecture.hf_classes]
                quants = list(spec.quantizations)
                for w in words:
                    named = [q for q in quants if w in q.lower() or quant_key(w, spec.format) == quant_key(q, spec.format)]
                    if named:  # a quantization word narrows the build to those quantizations
                        quants = named
                    elif not any(w in h.lower() for h in hay):
                        break
                else:
                    hits.append(BuildHit(fam, spec, quants))
        return hits

    def resolve(self, name: str, format: str | None = None, quant: str | None = None,
                size: float | None = None, uploader: str | None = None) -> Resolved:
        """Pin (family, format, quant) to one spec; an unknown format or quantization names the nearest.
        `name` may be a tag FAMILY:QUANT; without a format, the one format of the family that has the
        quantization (several: an error naming them).

        Where several uploaders publish the format in one size, `uploader` (or a name such as
        bartowski/glm-4-9b-0414) picks one; without it the spec listed first in the family's file answers (the
        family's preferred), unless no hub publishes that one's build and another uploader's spec has it."""
        want(str, "family name", name)
        want(str, "format", format, optional=True)
        want(str, "quant", quant, optional=True)
        want((int, float), "size", size, optional=True)
        want(str, "uploader", uploader, optional=True)
        name, quant = split_tag(name, quant)
        hub = self.hub_build(name)
        if hub is not None:  # zai-org/GLM-4.5-Air: that repository's spec, and its one build where it has one
            fam_, spec_, q_ = hub
            name, named = fam_.name, None
            if quant is None or spec_quant(spec_, quant) is not None:  # a tag naming another build: the family's
                format = format or spec_.format
                size = size if size is not None else spec_.size_in_billions
                quant = quant or q_ or (spec_.quantizations[0] if len(spec_.quantizations) == 1 else None)
                named = spec_.publisher
        else:
            named, name = split_uploader(name)
        if named and uploader and named.lower() != uploader.lower():
            raise RegistryError(f"{named}/{name} names uploader {named!r} but --from says {uploader!r}; give one")
        uploader = uploader or named
        fam = self.get(name)
        name = fam.name  # as the catalog spells it (names are read in any case)
        format = format_name(format)
        if quant is None:
            raise RegistryError(f"give a quantization: {name}:QUANT or --quant; {name} has: "
                                f"{', '.join(fam.quantizations())}")
        if format is None:
            having = list(dict.fromkeys(s.format for s in fam.specs if spec_quant(s, quant) is not None))
            if not having:
                raise not_found("quantization", quant, fam.quantizations(),
                                f"{name} has: {', '.join(fam.quantizations())}")
            if len(having) > 1:
                raise RegistryError(f"{name} has {quant} in formats {', '.join(having)}; pass --format "
                                    f"(e.g. --format {having[0]})")
            format = having[0]
        specs = [s for s in fam.specs if s.format == format]
        if not specs:
            raise not_found("format", format, fam.formats(), f"{name} has: {', '.join(fam.formats())}")
        if uploader is not None:
            mine = [s for s in specs if s.publisher.lower() == uploader.lower()]
            if not mine:
                have = list(dict.fromkeys(s.publisher for s in specs))
                raise not_found("uploader", uploader, have, f"{name} {format} builds come from: {', '.join(have)}")
            specs = mine
        if size is not None:
            sized = [s for s in specs if s.size_in_billions == size]
            if not sized:
                sizes = ", ".join(s.size_label for s in specs)
                raise NotFoundError(f"family {name} has no {format} spec of {size:g}B; sizes: {sizes}")
            specs = sized
        matches = [s for s in specs if spec_quant(s, quant) is not None]
        if not matches:
            have = list(dict.fromkeys(q for s in specs for q in s.quantizations))
            raise not_found("quantization", quant, have, f"{name} {format} has: {', '.join(have)}")
        sizes = list(dict.fromkeys(s.size_label for s in matches))
        if len(sizes) > 1:
            raise NotFoundError(f"{name} {format} {quant} exists in sizes {', '.join(sizes)}; pass a size")
        # One size: the uploader named, else the family's preferred (listed first), unless it only describes a
        # build made here and another uploader publishes it on a hub (`pull glm-4-9b-0414:Q5_K_M`: bartowski's)
        spec = matches[0]
        if uploader is None and not spec.hubs:
            spec = next((s for s in matches if s.hubs), spec)
        q = spec_quant(spec, quant)
        assert q is not None
        return resolved_build(fam, spec, q)


def check_buildable(fam: Family, fmt: str, quant: str | None = None) -> None:
    """A build goes into a format the family has a spec for; otherwise nothing could name it afterwards
    (`run`, `launch`, `rm` FAMILY:QUANT look builds up through the specs), so it is refused before it starts.
    The one exception is a build whose recipe a spec of another format gives (GLM-5's NVFP4 recipe lives on
    its modelopt spec): the family describes how it is made."""
    if any(s.format == fmt for s in fam.specs):
        return
    if quant and quant.lower() != "all" and any(s.recipe is not None and spec_quant(s, quant) for s in fam.specs):
        return
    raise RegistryError(
        f"{fam.name} has no {fmt} spec, so a {fmt} build of it could not be launched, run or removed by its tag; "
        f"{fam.name} has: {', '.join(fam.formats())}. For a {fmt} build of your own, describe it in a family: "
        f"`registry init my-{fam.name}`, add a {fmt} spec, `registry register my-{fam.name}.yaml`, then convert "
        f"with that name")


def split_uploader(name: str) -> tuple[str | None, str]:
    """'bartowski/glm-4-9b-0414' -> ('bartowski', 'glm-4-9b-0414'); a plain family name has no uploader
    (family names never hold a slash)."""
    if "/" in name:
        up, _, fam = name.partition("/")
        return up or None, fam
    return None, name


def resolved_build(fam: Family, spec: Spec, quant: str) -> Resolved:
    """One spec's build of `quant` (the spec's own spelling) with its hub objects."""
    hubs = {
        hub: HubFiles(hub, src.model_id_for(quant), src.revision_for(quant), src.files_for(quant))
        for hub, src in spec.hubs.items()
    }
    return Resolved(fam, spec, quant, spec.canonical_quant(quant), hubs, spec.engines_for(quant))


def load(include_user: bool = True) -> Catalog:
    return Catalog.load(include_user=include_user)
