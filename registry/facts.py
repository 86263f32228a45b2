"""The family-level facts of a spec file (pydantic v2): licence, architecture, chat settings; and Strict, the
base of every model of the schema (registry/schema.py holds the specs and the Family that gathers them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from .spec_methods import ChatMethods
from .vocabulary import ENGINES

EngineName = Literal[*ENGINES]  # type: ignore[valid-type]


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a spec must not be silently ignored."""

    # strict: `true` is not 1, "8" is not 8; allow_inf_nan: .inf and .nan are no sizes (JSON has no Infinity)
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True, allow_inf_nan=False)


# --- family-level facts ---------------------------------------------------------------------


class Licence(Strict):
    name: str = Field(description="Licence name, e.g. 'glm-4' or 'mit'.")
    url: str | None = None
    attribution: str | None = Field(None, description="Text derived works must show, e.g. 'Built with glm-4'.")
    naming: str | None = Field(None, description="Naming rule for derived models.")
    required_prefix: str | None = Field(None, description="Prefix a derived model's name must carry.")
    commercial_use: Literal["allowed", "registration-required", "forbidden"] = "allowed"
    registration_url: str | None = None
    restrictions: list[str] = []
    contact: str | None = None
    gated: bool = Field(False, description="The hub asks users to accept the licence before download.")


class Architecture(Strict):
    hf_classes: list[str] = Field(min_length=1, description="config.json 'architectures' values.")
    model_type: str | None = None
    kind: Literal["dense", "moe"]
    total_params_b: PositiveFloat
    active_params_b: PositiveFloat | None = None
    layers: PositiveInt
    hidden_size: PositiveInt
    intermediate_size: PositiveInt | None = None
    attention: Literal["gqa", "mla", "dsa"]
    attention_heads: PositiveInt
    kv_heads: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    # MLA / DSA (GLM-5)
    q_lora_rank: PositiveInt | None = None
    kv_lora_rank: PositiveInt | None = None
    qk_rope_head_dim: NonNegativeInt | None = Field(None, description="0: no rotary part (GLM-5.3-Flash's NoPE MLA).")
    qk_nope_head_dim: PositiveInt | None = None
    v_head_dim: PositiveInt | None = None
    # DSA's lightning indexer (GLM-5)
    indexer_heads: PositiveInt | None = None
    indexer_head_dim: PositiveInt | None = None
    indexer_topk: PositiveInt | None = None
    # MoE
    experts: PositiveInt | None = None
    experts_per_token: PositiveInt | None = None
    shared_experts: NonNegativeInt | None = None
    moe_intermediate_size: PositiveInt | None = None
    dense_layers: NonNegativeInt | None = Field(None, description="Leading dense layers (first_k_dense_replace).")
    mtp_layers: NonNegativeInt = 0
    linear_attention_layers: NonNegativeInt = Field(
        0, description="Of `layers`, those with linear attention (KDA, gated delta-net): a fixed recurrent state per "
        "sequence and no per-token KV cache; the rest use `attention` (GLM-5.3-Flash: 34 of 45).")
    vocab_size: PositiveInt

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        if self.kind == "moe":
            if not self.experts or not self.experts_per_token:
                raise ValueError("a moe architecture needs experts and experts_per_token")
            if self.experts_per_token > self.experts:
                raise ValueError(
                    f"experts_per_token ({self.experts_per_token}) exceeds experts ({self.experts})"
                )
            if self.active_params_b is None:
                raise ValueError("a moe architecture needs active_params_b")
        elif self.experts:
            raise ValueError("a dense architecture has no experts; set kind: moe")
        if self.linear_attention_layers >= self.layers:
            raise ValueError(f"linear_attention_layers ({self.linear_attention_layers}) must be fewer than layers "
                             f"({self.layers}): some layers keep the {self.attention} attention")
        if self.active_params_b and self.active_params_b > self.total_params_b:
            raise ValueError("active_params_b exceeds total_params_b")
        if self.attention == "gqa":
            if self.kv_heads is None or self.head_dim is None:
                raise ValueError("gqa attention needs kv_heads and head_dim")
            if self.attention_heads % self.kv_heads:
                raise ValueError(
                    f"attention_heads ({self.attention_heads}) is not a multiple of kv_heads ({self.kv_heads})"
                )
        elif self.kv_lora_rank is None or self.qk_rope_head_dim is None:
            raise ValueError(f"{self.attention} attention needs kv_lora_rank and qk_rope_head_dim")
        if self.attention == "dsa" and self.indexer_topk is None:
            raise ValueError("dsa attention needs indexer_topk (the sparse-attention indexer's top-k)")
        return self


class ChatSettings(ChatMethods, Strict):
    template: str = Field(description="Chat template family name, e.g. 'chatglm4', 'glm45' or 'glm47'.")
    stop: list[str] = []
    stop_token_ids: list[NonNegativeInt] = []
    tool_call_parser: str | None = Field(None, description="The engines' tool-call parser name (vLLM and SGLang share GLM's).")
    tool_call_parsers: dict[EngineName, str | None] = Field(
        {}, description="Per engine, where it differs; null: that engine has no parser for this model's tool calls.")
    tool_call_note: str | None = Field(None, description="Why an engine has no parser, and what serves tool calls instead.")
    reasoning_parser: str | None = None

    @model_validator(mode="after")
    def _note_for_none(self) -> ChatSettings:
        missing = [e for e, p in self.tool_call_parsers.items() if p is None]
        if missing and not self.tool_call_note:
            raise ValueError(f"tool_call_parsers says {', '.join(missing)} has no parser; "
                             "add tool_call_note saying why and what serves tool calls instead")
        return self
