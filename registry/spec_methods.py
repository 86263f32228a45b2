"""What the schema's models answer beyond their fields (a spec's publisher, the files of a build, a family's
formats), apart from pydantic: the models of registry/schema.py and registry/facts.py take these methods from
here, and so do the plain objects a read command builds from the compiled catalog (registry/plain.py) without
importing pydantic. One definition of each answer for both."""

from __future__ import annotations

import re

from .formats import ENGINE_MODALITIES, GGUF_ALIASES
from .vocabulary import ENGINE_TITLES

LOCAL_UPLOADER = "local"
GS_RE = re.compile(r"_GS(\d+)$")


def check_template(template: str) -> str:
    if ".." in template or template.startswith(("/", "\\")) or "\\" in template:
        raise ValueError(f"file template {template!r} must be a plain relative name without '..' or '\\'")
    return template


class ChatMethods:
    def tool_parser_for(self, engine: str) -> str | None:
        """The parser `engine` is started with (None: it parses no tool calls for this model)."""
        if engine in self.tool_call_parsers:
            return self.tool_call_parsers[engine]
        return self.tool_call_parser


class HubSourceMethods:
    def revision_for(self, quant: str) -> str:
        return self.revisions.get(quant, self.revision)

    def model_id_for(self, quant: str) -> str:
        return self.model_ids.get(quant, self.model_id)

    def all_model_ids(self) -> list[str]:
        return list(dict.fromkeys([self.model_id, *self.model_ids.values()]))

    def files_for(self, quant: str) -> list[str]:
        """The file names of one GGUF quantization, split parts included."""
        template = self.file_templates.get(quant, self.file_template)
        if template is None:
            return []
        name = check_template(template.format(quantization=quant))
        parts = self.split_parts.get(quant, 1)
        if parts == 1:
            return [name]
        if self.split_dir:  # e.g. UD-Q4_K_XL/GLM-5-UD-Q4_K_XL-00001-of-00010.gguf
            name = f"{quant}/{name}"
        if self.split_style == "part":
            return [f"{name}.part{i}of{parts}" for i in range(1, parts + 1)]
        stem = name[: -len(".gguf")] if name.endswith(".gguf") else name
        return [f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]


class SpecMethods:
    @property
    def publisher(self) -> str:
        """Who publishes this build: the uploader key, else the owner of its first hub repository, else
        'local' (built here from the recipe)."""
        if self.uploader:
            return self.uploader
        for src in self.hubs.values():
            return src.model_id.split("/")[0]
        return LOCAL_UPLOADER

    def canonical_quant(self, quant: str) -> str:
        """The name a converter or engine uses (Q4_K -> Q4_K_M for GGUF)."""
        return GGUF_ALIASES.get(quant, quant) if self.format == "ggufv2" else quant

    def engines_for(self, quant: str) -> list[str]:
        return [e for e, r in self.engines.items() if r.quantizations is None or quant in r.quantizations]

    def engine_rule_text(self) -> str:
        """Seed 004's wording, e.g. 'vLLM only available for quantization none'."""
        notes = []
        for e, r in self.engines.items():
            if r.quantizations is not None and set(r.quantizations) != set(self.quantizations):
                qs = ", ".join(r.quantizations)
                word = "quantization" if len(r.quantizations) == 1 else "quantizations"
                notes.append(f"{ENGINE_TITLES[e]} only available for {word} {qs}")
        return "; ".join(notes)

    def recipe_for(self, quant: str):
        if self.recipe is None:
            return None
        m = GS_RE.search(quant)
        if self.recipe.group_size is None and m:
            return self.recipe.model_copy(update={"group_size": int(m.group(1))})
        return self.recipe

    def min_compute_capability(self, engine: str | None = None) -> float | None:
        caps = [self.hardware.min_compute_capability] if self.hardware else []
        if engine and engine in self.engines:
            caps.append(self.engines[engine].min_compute_capability)
        caps = [c for c in caps if c is not None]
        return max(caps) if caps else None

    def profiles(self, engine: str) -> list:
        return [p for p in self.launch if p.engine == engine]

    @property
    def size_label(self) -> str:
        s = self.size_in_billions
        return str(int(s)) if float(s).is_integer() else str(s)


class FamilyMethods:
    def shares_slot(self, spec) -> bool:
        """Another spec has this one's format and size (so the uploader tells them apart)."""
        return sum(s.format == spec.format and s.size_in_billions == spec.size_in_billions for s in self.specs) > 1

    def launch_name(self, spec) -> str:
        """The name that picks this spec: the family's, qualified by the uploader where another uploader
        publishes the same format and size (bartowski/glm-4-9b-0414)."""
        return f"{spec.publisher}/{self.name}" if self.shares_slot(spec) else self.name

    def uploaders(self) -> list[str]:
        return list(dict.fromkeys(s.publisher for s in self.specs))

    def engine_takes(self, engine: str) -> list[str]:
        """The model's input modalities that `engine` does not take here (empty: all of them)."""
        return [m for m in self.modalities if m not in ENGINE_MODALITIES.get(engine, ("text",))]

    def formats(self) -> list[str]:
        return list(dict.fromkeys(s.format for s in self.specs))

    def quantizations(self) -> list[str]:
        return list(dict.fromkeys(q for s in self.specs for q in s.quantizations))

    def engines(self) -> list[str]:
        return list(dict.fromkeys(e for s in self.specs for e in s.engines))
