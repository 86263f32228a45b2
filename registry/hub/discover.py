"""`registry discover`: the public quantized uploads of a family's base repositories, and specs for those the
catalog lacks, for a person to review.

The hub's model tree: an upload whose card says `base_model: REPO` with `base_model_relation: quantized` (or
that the hub classifies so) carries the tag `base_model:quantized:REPO`, and the Hub API lists them with
`GET /api/models?filter=base_model:quantized:REPO` (huggingface_hub's HfApi.list_models(filter=...); the
`expand` fields siblings, tags and library_name give each repository's files). Each upload's format and
quantizations come from its file names and config.json (registry/hub/recognise.py); a GGUF upload's header is
read over HTTP range requests (registry/gguf_header.py), never the whole file. Nothing is written to the
catalog: the specs are printed (or written as a user family with --write) for a maintainer to read.
ModelScope has no model-tree search that this reads; its mirrors are left to the maintainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import OfflineError
from .recognise import GgufLayout, from_config, gguf_layout
from .tree import Unreadable, _config, _derivatives, _file_type, read_header

# Z.ai renamed the THUDM organisation to zai-org (Xinference's glm4-chat entry names zai-org/glm-4-9b-chat-hf
# where older cards name THUDM/...): an upload's card may name either, and the model tree keeps the name written.
_RENAMED = {"THUDM": "zai-org"}

Say = Callable[[str], None]


@dataclass
class Upload:
    repo: str
    base: str
    status: str  # "new", "in catalog" or "unrecognised"
    format: str | None = None
    quantizations: list[str] = field(default_factory=list)
    where: str | None = None  # the family whose spec has it
    missing: list[str] = field(default_factory=list)  # quantizations on the hub that the catalog's spec lacks
    note: str = ""
    layout: GgufLayout | None = None
    custom_code: bool = False

    def to_dict(self) -> dict:
        return {"repo": self.repo, "base": self.base, "status": self.status, "format": self.format,
                "quantizations": self.quantizations, "in_family": self.where, "missing_quantizations": self.missing,
                "note": self.note}


@dataclass
class Proposal:
    spec: dict
    repos: list[str]
    replaces: int | None = None  # the index of the family's spec this one extends
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # what the schema says, when the spec does not validate in the family

    def yaml(self) -> str:
        """The spec as a list item to paste under `specs:`, its source and notes as comments."""
        import yaml

        head = [f"  # {'extends spec ' + str(self.replaces + 1) + ' with' if self.replaces is not None else 'new:'} "
                + ", ".join(f"https://huggingface.co/{r}" for r in self.repos)]
        head += [f"  #   {n}" for n in self.notes]
        if self.error:
            head.append(f"  #   does not validate: {self.error}")
        body = yaml.safe_dump([self.spec], sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
        return "\n".join(head + ["  " + line for line in body.rstrip("\n").splitlines()]) + "\n"

    def to_dict(self) -> dict:
        return {"spec": self.spec, "repos": self.repos, "extends_spec": self.replaces, "notes": self.notes,
                "valid": self.error is None, "error": self.error, "yaml": self.yaml()}


@dataclass
class Discovery:
    family: str
    bases: list[str]
    uploads: list[Upload]
    proposals: list[Proposal]

    def to_dict(self) -> dict:
        return {"family": self.family, "bases": self.bases, "uploads": [u.to_dict() for u in self.uploads],
                "proposals": [p.to_dict() for p in self.proposals]}


def bases(fam, extra: tuple[str, ...] = ()) -> list[str]:
    """The family's own repositories on Hugging Face: its full-precision specs' and its recipes' parents, the
    other releases of the same publisher (GLM-5.3's unsuffixed repository is its FP8 release), and their names
    under the renamed organisation."""
    out: list[str] = []
    own = [s for s in fam.specs if "huggingface" in s.hubs]
    vendors = {s.hubs["huggingface"].model_id.split("/")[0] for s in own if s.format == "pytorch"}
    for s in sorted(own, key=lambda s: s.format != "pytorch"):
        out += [m for m in s.hubs["huggingface"].all_model_ids() if m.split("/")[0] in vendors]
    for s in fam.specs:
        if s.recipe and s.recipe.parent:
            out.append(s.recipe.parent)
    out += list(extra)
    for r in list(out):
        owner, _, name = r.partition("/")
        if owner in _RENAMED:
            out.append(f"{_RENAMED[owner]}/{name}")
    return list(dict.fromkeys(out))


def _recognise(info, base: str, headers: bool) -> Upload:
    files = [s.rfilename for s in (info.siblings or [])]
    tags = list(info.tags or [])
    up = Upload(repo=info.id, base=base, status="new")
    layout = gguf_layout(files)
    if layout is not None:
        up.format, up.layout, up.quantizations = "ggufv2", layout, list(layout.quantizations)
        notes = []
        if headers and layout.quantizations:
            from ..formats import gguf_base

            q = layout.quantizations[0]
            h = read_header(info.id, layout.first_files[q])
            ft = _file_type(h)
            arch = h.metadata.get("general.architecture")
            notes.append(f"GGUF header of {layout.first_files[q]}: architecture {arch}, {ft}")
            if ft and ft != gguf_base(q) and not ft.startswith("file type"):
                notes.append(f"its file type {ft} is not what the name {q} says ({gguf_base(q)}): check the file")
        for f in layout.unnamed[:3]:
            why = "its name carries no quantization a file_template can hold"
            if headers:
                why += f" (its header says {_file_type(read_header(info.id, f))})"
            notes.append(f"{f}: {why}")
        if not layout.quantizations:
            up.status = "unrecognised"
        up.note = "; ".join(notes)
        return up
    cfg = _config(info.id)
    got = from_config(info.id, cfg, tags, getattr(info, "library_name", None))
    if isinstance(got, str):
        up.status, up.note = "unrecognised", got
        return up
    up.format, q = got
    up.quantizations = [q]
    up.custom_code = bool(cfg and cfg.get("auto_map"))
    return up


def _base_size(fam, base: str) -> float | int:
    """The size of the spec that publishes `base` (else the full-precision spec's, else the architecture's)."""
    size = next((s.size_in_billions for s in fam.specs
                 if any(base.lower() == m.lower() for src in s.hubs.values() for m in src.all_model_ids())),
                next((s.size_in_billions for s in fam.specs if s.format == "pytorch"), fam.architecture.total_params_b))
    return int(size) if float(size).is_integer() else size


def _catalog_index(catalog) -> dict[str, tuple[str, int]]:
    """Every hub repository the catalog names (lower-case) -> (family, spec index)."""
    out: dict[str, tuple[str, int]] = {}
    for name in catalog.names():
        fam = catalog.get(name)
        for i, s in enumerate(fam.specs):
            for src in s.hubs.values():
                for m in src.all_model_ids():
                    out.setdefault(m.lower(), (name, i))
    return out


def _gguf_source(repo: str, layout: GgufLayout, quants: list[str]) -> dict:
    src: dict = {"model_id": repo, "file_template": layout.file_template}
    templates = {q: t for q, t in layout.file_templates.items() if q in quants}
    if templates:
        src["file_templates"] = templates
    parts = {q: n for q, n in layout.split_parts.items() if q in quants}
    if parts:
        src["split_parts"] = parts
        if layout.split_style != "gguf-split":
            src["split_style"] = layout.split_style
        if layout.split_dir:
            src["split_dir"] = True
    return src


def _spec_files(spec) -> set[str]:
    src = spec.hubs.get("huggingface")
    return {f for q in spec.quantizations for f in src.files_for(q)} if src else set()


def _missing_in_spec(spec, up: Upload) -> tuple[list[str], dict]:
    """The upload's GGUF builds that its catalog spec lacks and whose files the spec's template names exactly;
    and their split parts."""
    src = spec.hubs.get("huggingface")
    if src is None or up.layout is None:
        return [], {}
    add, parts = [], {}
    probe = src.model_copy(update={"split_parts": {**src.split_parts, **up.layout.split_parts}})
    for q in up.missing:
        if q in spec.quantizations or src.model_id_for(q).lower() != up.repo.lower():
            continue
        files = probe.files_for(q)
        if files and files[0] == up.layout.first_files[q]:
            add.append(q)
            if q in up.layout.split_parts:
                parts[q] = up.layout.split_parts[q]
    return add, parts


def _dump(spec) -> dict:
    """A spec as its file writes it: defaults left out, `engines: [a, b]` where no engine has a rule."""
    d = spec.model_dump(mode="json", exclude_defaults=True)
    if all(not r for r in d.get("engines", {}).values()):
        d["engines"] = list(d["engines"])
    if float(d["size_in_billions"]).is_integer():
        d["size_in_billions"] = int(d["size_in_billions"])
    return d


def discover(fam, catalog, *, extra_bases: tuple[str, ...] = (), headers: bool = True, limit: int = 200,
             say: Say | None = None) -> Discovery:
    """The quantized uploads of `fam`'s base repositories, which the catalog has, and specs for the rest."""
    from . import is_offline as offline

    if offline():
        raise OfflineError("`registry discover` asks the hub for uploads; it cannot run offline "
                           "(unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)")
    index = _catalog_index(catalog)
    found: dict[str, Upload] = {}
    base_list = bases(fam, extra_bases)
    for base in base_list:
        for info in _derivatives(base, limit):
            if info.id in found or info.id.lower() in {b.lower() for b in base_list}:
                continue
            if say:
                say(f"reading {info.id}")
            key = info.id.lower()
            if key in index:
                where, i = index[key]
                up = Upload(repo=info.id, base=base, status="in catalog", where=where)
                spec = catalog.get(where).specs[i]
                up.format, up.quantizations = spec.format, list(spec.quantizations)
                if spec.format == "ggufv2":  # does the spec list every build the repository has?
                    up.layout = gguf_layout([s.rfilename for s in (info.siblings or [])])
                    if up.layout:
                        have = _spec_files(spec)
                        up.missing = [q for q in up.layout.quantizations if up.layout.first_files[q] not in have]
                found[info.id] = up
                continue
            try:
                found[info.id] = _recognise(info, base, headers)
            except Unreadable as e:
                found[info.id] = Upload(repo=info.id, base=base, status="unrecognised", note=str(e))
    uploads = sorted(found.values(), key=lambda u: ({"new": 0, "in catalog": 1, "unrecognised": 2}[u.status], u.repo))
    return Discovery(fam.name, base_list, uploads, _proposals(fam, uploads))


def _proposals(fam, uploads: list[Upload]) -> list[Proposal]:
    from ..formats import loaders

    out: list[Proposal] = []
    extended: dict[int, Proposal] = {}

    def extend(i: int, repo: str) -> Proposal:
        if i not in extended:
            extended[i] = Proposal(_dump(fam.specs[i]), [], replaces=i)
            out.append(extended[i])
        if repo not in extended[i].repos:
            extended[i].repos.append(repo)
        return extended[i]

    # builds of repositories the catalog has, which their spec does not list yet
    for up in uploads:
        if up.status != "in catalog" or up.where != fam.name or not up.missing:
            continue
        i = next(i for i, s in enumerate(fam.specs) if any(up.repo.lower() == m.lower() for src in s.hubs.values()
                                                          for m in src.all_model_ids()))
        add, parts = _missing_in_spec(fam.specs[i], up)
        if add:
            p = extend(i, up.repo)
            p.spec["quantizations"] = p.spec["quantizations"] + add
            if parts:
                hub = p.spec["hubs"]["huggingface"]
                hub["split_parts"] = {**hub.get("split_parts", {}), **parts}
            p.notes.append(f"adds {', '.join(add)}, published in {up.repo}")
        rest = [q for q in up.missing if q not in add]
        if rest:
            (p if add else extend(i, up.repo)).notes.append(
                f"{up.repo} also has {', '.join(rest)}, whose file names the spec's file_template does not produce")

    # new uploads: one spec per GGUF repository; other formats one per uploader, a repository per build
    groups: dict[tuple[str, str], list[Upload]] = {}
    for up in uploads:
        if up.status != "new":
            continue
        owner = up.repo.split("/")[0]
        key = (up.format, up.repo if up.format == "ggufv2" else owner.lower())
        groups.setdefault(key, []).append(up)
    for (fmt, _), ups in groups.items():
        owner = ups[0].repo.split("/")[0]
        size = _base_size(fam, ups[0].base)
        same = next((i for i, s in enumerate(fam.specs) if s.format == fmt and s.size_in_billions == size
                     and s.publisher.lower() == owner.lower()), None)
        if fmt != "ggufv2" and same is not None and "huggingface" in fam.specs[same].hubs:
            p = extend(same, ups[0].repo)
            hub = p.spec["hubs"]["huggingface"]
            for up in ups:
                for q in up.quantizations:
                    if q not in p.spec["quantizations"]:
                        p.spec["quantizations"] = p.spec["quantizations"] + [q]
                        hub.setdefault("model_ids", {})[q] = up.repo
                        p.notes.append(f"adds {q}: {up.repo}")
                if up.repo not in p.repos:
                    p.repos.append(up.repo)
            continue
        spec: dict = {"format": fmt, "size_in_billions": size, "quantizations": [], "engines": loaders(fmt)}
        notes = [f"base_model:quantized:{ups[0].base}"]
        if fmt == "ggufv2":
            up = ups[0]
            spec["quantizations"] = list(up.quantizations)
            spec["hubs"] = {"huggingface": _gguf_source(up.repo, up.layout, up.quantizations)}
            if up.note:
                notes.append(up.note)
        else:
            src: dict = {"model_id": ups[0].repo}
            for up in ups:
                for q in up.quantizations:
                    if q in spec["quantizations"]:
                        notes.append(f"{up.repo} is a second {fmt} {q} build of {owner}: not proposed")
                        continue
                    spec["quantizations"].append(q)
                    if up.repo != ups[0].repo:
                        src.setdefault("model_ids", {})[q] = up.repo
                if up.custom_code:
                    src["custom_code"] = True
            spec["hubs"] = {"huggingface": src}
        if same is not None:  # another build of this format and size from the same uploader: name this one
            spec["uploader"] = f"{owner}.{ups[0].repo.split('/')[1]}"
            notes.append(f"spec {same + 1} has {fmt} {size:g}B from {owner} too: `uploader` tells them apart")
        out.append(Proposal(spec, [u.repo for u in ups], notes=notes))
    _validate(fam, out)
    return out


def proposed_family(fam, proposals: list[Proposal]) -> list[dict]:
    """The family's specs with the proposals applied (extended specs replaced, new ones appended)."""
    specs = [_dump(s) for s in fam.specs]
    for p in proposals:
        if p.replaces is not None:
            specs[p.replaces] = p.spec
        else:
            specs.append(p.spec)
    return specs


def _validate(fam, proposals: list[Proposal]) -> None:
    """Each proposal checked by the schema, alone and in the family (uniqueness of format, size and uploader)."""
    from pydantic import ValidationError

    from ..loader import format_validation_error
    from ..schema import Family, Spec

    for p in proposals:
        try:
            Spec.model_validate(p.spec)
        except ValidationError as e:
            p.error = format_validation_error(e, "proposal", fam.name)
    body = fam.model_dump(mode="json", exclude_none=True)
    body["specs"] = proposed_family(fam, [p for p in proposals if p.error is None])
    try:
        Family.model_validate(body)
    except ValidationError as e:
        for p in proposals:
            p.error = p.error or format_validation_error(e, "proposal", fam.name)


def write_family(fam, proposals: list[Proposal], path, name: str, force: bool = False) -> int:
    """Write the proposals as a user family NAME (the family's facts, the proposed specs) that validates;
    returns the number of specs. The file appears whole or not at all."""
    from pathlib import Path

    import yaml

    from ..errors import RegistryError
    from ..loader import validate_data

    path = Path(path)
    good = [p for p in proposals if p.error is None]
    if not good:
        raise RegistryError(f"nothing to write: discover found no upload of {fam.name} that the catalog lacks")
    if path.exists() and not force:
        raise RegistryError(f"{path} exists; pass --force to overwrite it, or give another file")
    body = fam.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    body["name"] = name
    body["description"] = f"Uploads of {fam.name} found by `registry discover` (to review): " + fam.description
    body["specs"] = [p.spec for p in good]
    validate_data(body, str(path))  # the file validates as written, or nothing is written
    head = [f"# {name}: uploads of {fam.name} that the catalog lacks, found by `registry discover`.",
            "# Read each one before registering it (`registry register FILE`). Sources:"]
    head += [f"#   https://huggingface.co/{r}" for p in good for r in p.repos]
    text = "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120,
                                                   allow_unicode=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(good)
