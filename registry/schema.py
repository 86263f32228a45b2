"""The typed schema of a model family and its specs (pydantic v2).

A spec file in registry/specs/ holds one Family: its facts (licence, architecture, chat settings:
registry/facts.py) and its specs. The vocabulary (formats: registry/formats.py; engines and hubs:
registry/vocabulary.py) is the registry's own language; facts about particular models live only in
registry/specs/.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from .facts import Architecture, ChatSettings, EngineName, Licence, Strict
from .formats import ENGINE_MODALITIES, FORMATS, GGUF_ALIASES, GGUF_QUANTS, QUANTS_BY_FORMAT, loaders
from .spec_methods import GS_RE, LOCAL_UPLOADER, FamilyMethods, HubSourceMethods, SpecMethods, check_template  # noqa: F401
from .vocabulary import ENGINE_TITLES, ENGINES, HUB_TITLES, HUB_URLS, HUBS, TOOL_PARSER_ENGINES

SCHEMA_VERSION = 1
__all__ = ["ENGINE_MODALITIES", "ENGINE_TITLES", "ENGINES", "GGUF_ALIASES", "GGUF_QUANTS", "HUB_TITLES", "HUB_URLS",
           "QUANTS_BY_FORMAT", "TOOL_PARSER_ENGINES",  # re-exported vocabulary
           "Architecture", "ChatSettings", "EngineName", "Licence", "Strict"]  # and the family's facts

# --- vocabulary ---------------------------------------------------------------------------

HubName = Literal[*HUBS]  # type: ignore[valid-type]

# Formats and their quantization names are data (registry/formats.py): the engines that load each,
# their flags, bits per weight.
FormatName = Literal[*FORMATS]  # type: ignore[valid-type]
Modality = Literal["text", "image", "video"]

Language = Literal["en", "zh", "de", "fr", "es", "ja", "ko", "ru", "ar", "it", "pt", "vi"]
Ability = Literal["chat", "generate", "tools", "reasoning", "vision"]

FamilyName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
]
HubId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
]
# An uploader: a hub account name (the part of a repository id before the slash), or 'local'.
Uploader = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Scalar = str | int | float | bool | None
# A release number as engines publish them: 0.23.0, 0.5.13.post1, 4.46 (PEP 440 release + post).
VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}(\.?post\d+)?$")


# --- spec-level ------------------------------------------------------------------------------


def _check_gguf_template(v: str) -> str:
    check_template(v)
    if "{quantization}" not in v:
        raise ValueError(f"file template {v!r} lacks '{{quantization}}'")
    try:
        v.format(quantization="Q4_K_M")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"file template {v!r} has a placeholder other than {{quantization}}: {e}")
    return v


# A hub revision is a commit id or a git ref name (branch, tag, refs/pr/N): the rules of
# `git check-ref-format`. huggingface_hub writes a branch's commit to <cache>/refs/<revision>, so a
# name with '..', a leading '/', a backslash or control characters would name a file outside the cache.
_REF_RULES = [  # (what is wrong, how to find it)
    ("it contains '..'", re.compile(r"\.\.")),
    ("it starts with '/' (an absolute path)", re.compile(r"^/")),
    ("it contains a backslash", re.compile(r"\\")),
    ("it contains a space or control character", re.compile(r"[\x00-\x20\x7f]")),
    ("it contains one of ~ ^ : ? * [", re.compile(r"[~^:?*\[]")),
    ("it contains '@{'", re.compile(r"@\{|^@$")),
    ("it has an empty component ('//' or a trailing '/')", re.compile(r"//|/$")),
    ("a component starts with '.' or ends with '.lock', or it ends with '.'", re.compile(r"(^|/)\.|\.lock(/|$)|\.$")),
]


def revision_problem(rev: object) -> str | None:
    """Why `rev` is not a hub revision (commit, branch or tag name), or None when it is one."""
    if not isinstance(rev, str) or not rev:
        return "it must be a non-empty string (a commit id, branch or tag)"
    if len(rev) > 255:
        return "it is longer than 255 characters"
    for why, pattern in _REF_RULES:
        if pattern.search(rev):
            return why
    return None


def _check_revision(rev: str, where: str) -> str:
    problem = revision_problem(rev)
    if problem:
        raise ValueError(f"{where} {rev!r} is not a hub revision (a commit id, branch or tag): {problem}")
    return rev


class HubSource(HubSourceMethods, Strict):
    model_id: HubId
    model_ids: dict[str, HubId] = Field(
        {}, description="A repository per quantization where an uploader publishes one per build (MLX, AWQ, GPTQ).")
    revision: str = "main"
    revisions: dict[str, str] = Field({}, description="Hub branch per quantization, where an uploader publishes each build on its own branch.")
    file_template: str | None = Field(None, description="GGUF file name, with {quantization}.")
    file_templates: dict[str, str] = Field(
        {}, description="A file name per quantization where one differs from file_template (GLM-Edge's F16).")
    split_parts: dict[str, PositiveInt] = Field({}, description="Quantizations published in N parts.")
    split_style: Literal["gguf-split", "part"] = "gguf-split"
    custom_code: bool = Field(False, description="The repository ships its own model or tokenizer code (auto_map in "
                              "config.json or tokenizer_config.json): engines need --trust-remote-code.")
    split_dir: bool = Field(False, description="Split builds sit in a folder named after the quantization (unsloth).")

    @field_validator("file_templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        for t in v.values():
            _check_gguf_template(t)
        return v

    @field_validator("file_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return None if v is None else _check_gguf_template(v)

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str) -> str:
        return _check_revision(v, "revision")

    @field_validator("revisions")
    @classmethod
    def _revisions(cls, v: dict[str, str]) -> dict[str, str]:
        for q, rev in v.items():
            _check_revision(rev, f"revisions[{q}]")
        return v

class EngineRule(Strict):
    quantizations: list[str] | None = Field(None, description="None: every quantization of the spec.")
    min_compute_capability: float | None = None
    note: str | None = None


class Hardware(Strict):
    min_compute_capability: float | None = Field(None, description="e.g. 10.0 for Blackwell-only NVFP4.")
    min_gpus: PositiveInt | None = None
    note: str | None = None


class LaunchProfile(Strict):
    engine: EngineName
    name: str = "default"
    description: str | None = None
    args: dict[str, Scalar | list[str]] = Field(
        {}, description="Flags in order; true means a bare flag, a list repeats values."
    )
    env: dict[str, str] = {}
    port: PositiveInt | None = None
    source: str | None = Field(None, description="Where the command comes from, e.g. 'the bullpoint/GLM-4.6-AWQ model card'.")

    @field_validator("args")
    @classmethod
    def _flags(cls, v: dict[str, Any]) -> dict[str, Any]:
        for flag in v:
            if not flag.startswith("-") or " " in flag:
                raise ValueError(f"argument {flag!r} must be a single flag starting with '-'")
        return v


class LengthBucket(Strict):
    min_tokens: PositiveInt
    max_tokens: PositiveInt
    fraction: float = Field(gt=0, le=1)


class Calibration(Strict):
    datasets: list[str] = []
    split: str | None = None
    samples: PositiveInt | None = None
    max_seq_length: PositiveInt | None = None
    seed: int | None = None
    length_mix: list[LengthBucket] = []
    all_experts: bool = Field(False, description="Every expert sees every token while calibrating (MoE-aware calibration).")
    passes: list[str] = []
    chat_template: bool = True

    @model_validator(mode="after")
    def _mix(self) -> Calibration:
        if self.length_mix and abs(sum(b.fraction for b in self.length_mix) - 1.0) > 1e-6:
            raise ValueError("length_mix fractions must add up to 1")
        return self


class Recipe(Strict):
    tool: Literal["llmcompressor", "modelopt", "llama.cpp", "glm-registry", "autoawq"]
    tool_version: str | None = None
    method: Literal["oneshot", "awq", "gptq", "rtn", "ptq", "convert"]
    scheme: str
    num_bits: PositiveInt | None = None
    symmetric: bool | None = None
    strategy: Literal["group", "channel", "tensor", "block"] | None = None
    group_size: PositiveInt | None = Field(None, description="None with _GSn quantizations: taken from the name.")
    targets: list[str] = []
    ignore: list[str] = []
    calibration: Calibration | None = None
    drop_mtp: bool = False
    save_compressed: bool | None = None
    parent: HubId | None = None
    notes: str | None = None
    source: str | None = None


class Imatrix(Strict):
    """Which of a GGUF spec's quantizations were made with an importance matrix, and from what text."""

    quantizations: list[str] | Literal["all"] = "all"  # all: every build but the unquantized F16/BF16/F32
    dataset: str | None = Field(None, description="The calibration text the uploader names (a URL or file name).")
    source: str | None = Field(None, description="Where the uploader says so.")


class Spec(SpecMethods, Strict):
    """One published or buildable artifact set of a family (a docs page's "Model Spec N")."""

    format: FormatName
    size_in_billions: PositiveFloat
    quantizations: list[str] = Field(min_length=1)
    hubs: dict[HubName, HubSource] = {}
    engines: dict[EngineName, EngineRule] = Field(min_length=1)
    hardware: Hardware | None = None
    launch: list[LaunchProfile] = []
    recipe: Recipe | None = None
    served_name: str | None = Field(None, description="Name the server announces, e.g. 'glm-4-9b-chat'.")
    uploader: Uploader | None = Field(
        None, description="Who publishes the build (bartowski, unsloth ...) where its hub repository's owner does "
        "not say so; default: that owner, or 'local' for a build made here. Look-ups choose among a format's "
        "builds of one size by it (`--from bartowski`, or the name `bartowski/glm-4-9b-0414`).")
    imatrix: Imatrix | None = Field(
        None, description="GGUF: the quantizations made with an importance matrix (llama.cpp's imatrix).")
    total_params_b: PositiveFloat | None = Field(
        None, description="The build card's own parameter count where it differs from the family's (e.g. MTP dropped).")
    active_params_b: PositiveFloat | None = Field(
        None, description="The build card's own active-parameter count (what a decode step reads).")

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_list(cls, v: Any) -> Any:
        # `engines: [vllm, transformers]` is shorthand for rules with no restriction.
        if isinstance(v, list):
            return {e: {} for e in v}
        return {k: ({} if r is None else r) for k, r in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        allowed = QUANTS_BY_FORMAT[self.format]
        for q in self.quantizations:
            if q not in allowed:
                raise ValueError(
                    f"quantization {q!r} is not a {self.format} quantization; "
                    f"{self.format} has: {', '.join(allowed)}"
                )
        twice = sorted({q for q in self.quantizations if self.quantizations.count(q) > 1})
        if twice:
            raise ValueError(f"quantizations lists {', '.join(map(repr, twice))} twice; keep one of each")
        quants = set(self.quantizations)
        if self.imatrix is not None:
            if self.format != "ggufv2":
                raise ValueError(f"imatrix describes GGUF builds; this spec is {self.format}")
            extra = [] if self.imatrix.quantizations == "all" else sorted(set(self.imatrix.quantizations) - quants)
            if extra:
                raise ValueError(f"imatrix names quantization(s) {', '.join(map(repr, extra))} that the spec lacks")
        can = loaders(self.format)
        for engine in self.engines:
            if engine not in can:
                raise ValueError(f"engine {engine} does not load {self.format} builds (they load in {', '.join(can)})")
        for engine, rule in self.engines.items():
            for q in rule.quantizations or []:
                if q not in quants:
                    raise ValueError(f"engine rule for {engine} names quantization {q!r} that the spec lacks")
        for hub, src in self.hubs.items():
            for label, keyed in (("revisions", src.revisions), ("split_parts", src.split_parts),
                                 ("model_ids", src.model_ids), ("file_templates", src.file_templates)):
                for q in keyed:
                    if q not in quants:
                        raise ValueError(
                            f"{hub} {label} names quantization {q!r} that the spec lacks "
                            f"(it has: {', '.join(self.quantizations)})"
                        )
            if self.format == "ggufv2" and src.file_template is None:
                raise ValueError(f"{hub}: a ggufv2 spec needs file_template (e.g. 'name.{{quantization}}.gguf')")
            if self.format != "ggufv2" and (src.file_template is not None or src.file_templates):
                raise ValueError(f"{hub}: file_template is for ggufv2 specs; {self.format} repos are whole snapshots")
        for p in self.launch:
            if p.engine not in self.engines:
                raise ValueError(f"launch profile {p.name!r} uses engine {p.engine!r} that the spec does not list")
        names = [(p.engine, p.name) for p in self.launch]
        if len(set(names)) != len(names):
            raise ValueError("two launch profiles share an engine and name")
        return self

class Family(FamilyMethods, Strict):
    """One model family: the launch key, its facts, licence, architecture and specs."""

    schema_version: Literal[1] = 1
    name: FamilyName
    description: str = Field(min_length=1)
    vendor: str = "Zhipu AI"
    licence: Licence
    languages: list[Language] = Field(min_length=1)
    abilities: list[Ability] = Field(min_length=1)
    modalities: list[Modality] = Field(["text"], description="Input the model takes: text, image (vision), video.")
    context_length: PositiveInt
    architecture: Architecture
    chat: ChatSettings | None = None
    specs: list[Spec] = Field(min_length=1)
    sources: list[str] = Field([], description="Where the facts in this file come from.")
    engine_floors: dict[EngineName, str] = Field(
        {}, description="The first release of an engine that serves this family, where the publisher names one "
        "(GLM-5.2's README: vLLM 0.23.0+, SGLang 0.5.13.post1+); plans and launches say when it is not met.")

    @field_validator("engine_floors")
    @classmethod
    def _floors(cls, v: dict[str, str]) -> dict[str, str]:
        for engine, floor in v.items():
            if not VERSION_RE.match(floor):
                raise ValueError(f"engine_floors.{engine} {floor!r} is not a release number (e.g. '0.23.0' or "
                                 "'0.5.13.post1')")
        return v

    @model_validator(mode="after")
    def _unique_specs(self) -> Family:
        # Several uploaders may publish a format in one size (unsloth's, bartowski's GGUF); one uploader once.
        keys = [(s.format, s.size_in_billions, s.publisher.lower()) for s in self.specs]
        for k in sorted(set(keys), key=str):
            if keys.count(k) > 1:
                raise ValueError(f"two specs share format {k[0]!r} and size {k[1]:g}B from the same uploader "
                                 f"{k[2]!r}; merge them, or set uploader on one")
        return self

    @model_validator(mode="after")
    def _modalities(self) -> Family:
        if "text" not in self.modalities:
            raise ValueError("modalities must include text (every GLM model takes a text prompt)")
        if ("vision" in self.abilities) != any(m in self.modalities for m in ("image", "video")):
            raise ValueError("abilities lists vision exactly when modalities list image or video input")
        return self

    @model_validator(mode="after")
    def _tool_parsers(self) -> Family:
        # A family that lists tools must say, for each engine that parses tool calls server-side, which
        # parser it uses or that the engine has none: a missing one silently serves tool calls as text.
        if "tools" not in self.abilities:
            return self
        for engine in TOOL_PARSER_ENGINES:
            if engine not in self.engines():
                continue
            if self.chat is None or (engine not in self.chat.tool_call_parsers and self.chat.tool_call_parser is None):
                raise ValueError(
                    f"abilities lists tools but chat names no tool-call parser for {engine}; set chat.tool_call_parser, "
                    f"or chat.tool_call_parsers.{engine}: null with chat.tool_call_note saying why")
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editors."""
    schema = Family.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://glm-registry.invalid/schema/family-v1.json"
    return schema
