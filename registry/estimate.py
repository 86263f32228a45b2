"""Memory estimates from the architecture and the quantization (no files needed).

Weights: parameters x bits per weight. KV cache per token: GQA keeps K and V for every KV head
(2 x layers x kv_heads x head_dim x bytes); MLA keeps one compressed latent plus the rope key
(layers x (kv_lora_rank + qk_rope_head_dim) x bytes); DSA adds its indexer's key per token. Linear-attention
layers (GLM-5.3-Flash's KDA) keep a fixed state per sequence, not per token: only the other layers count.
The launcher refines these (exact GGUF sizes from the file header, engine overheads).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RegistryError

KV_BYTES = {"f16": 2, "bf16": 2, "auto": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "q8_0": 1.0625, "f32": 4}


def bits_per_weight(fmt: str, quant: str) -> float:
    from .formats import bits_per_weight as table

    bpw = table(fmt, quant)
    if bpw is None:
        raise RegistryError(f"no bits-per-weight figure for {fmt} {quant}; add it to registry/formats.py")
    return bpw


def weights_bytes(params_b: float, fmt: str, quant: str) -> int:
    """Bytes of weights for params_b billion parameters in this format and quantization."""
    return int(params_b * 1e9 * bits_per_weight(fmt, quant) / 8)


def kv_bytes_per_token(arch, kv_dtype: str = "f16") -> float:
    """KV cache bytes per token of context, all cached layers (the MTP layer keeps no cache here, nor do
    linear-attention layers, whose state does not grow with the context)."""
    b = KV_BYTES.get(kv_dtype)
    if b is None:
        raise RegistryError(f"unknown KV cache dtype {kv_dtype!r}; use one of: {', '.join(KV_BYTES)}")
    layers = arch.layers - arch.linear_attention_layers
    if arch.attention == "gqa":
        kv_heads = arch.kv_heads or arch.attention_heads
        head_dim = arch.head_dim or arch.hidden_size // arch.attention_heads
        return 2 * layers * kv_heads * head_dim * b
    per_layer = (arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)
    if arch.attention == "dsa":
        per_layer += arch.indexer_head_dim or 0
    return layers * per_layer * b


@dataclass
class Estimate:
    weights: int
    kv_cache: int
    context: int
    overhead: int = 0  # engine runtime: compute buffers, CUDA context, activations (all devices)
    gpus: int = 0  # devices the weights and KV cache are sharded over; 0 = host memory
    weights_source: str = "parameters x bits per weight"
    notes: list[str] = field(default_factory=list)
    host: int = 0  # of the total, bytes left in host memory (llama.cpp's layers not offloaded to the GPUs)

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    @property
    def per_gpu(self) -> int | None:
        """Bytes on each GPU: an even share of weights, KV cache and overhead (tensor/expert parallel)."""
        if not self.gpus:
            return None
        return -(-(self.total - self.host) // self.gpus)

    def to_dict(self) -> dict:
        return {"weights_bytes": self.weights, "kv_cache_bytes": self.kv_cache, "overhead_bytes": self.overhead,
                "context": self.context, "total_bytes": self.total, "gpus": self.gpus,
                "per_gpu_bytes": self.per_gpu, "host_bytes": self.host, "weights_source": self.weights_source,
                "notes": self.notes}


def estimate(family, spec, quant: str, context: int | None = None, kv_dtype: str = "f16") -> Estimate:
    """Weights of this build plus the KV cache for `context` tokens (default: the family's full context)."""
    ctx = context or family.context_length
    w = weights_bytes(spec.total_params_b or family.architecture.total_params_b, spec.format, quant)
    kv = int(kv_bytes_per_token(family.architecture, kv_dtype) * ctx)
    return Estimate(weights=w, kv_cache=kv, context=ctx)


# --- refinements the launcher uses ----------------------------------------------------------------

# Per-GPU runtime memory beyond weights and KV: CUDA context, activations, graph buffers.
# Seed 002's VRAM table puts "Activation ~2GB" per GPU for vLLM; SGLang and Transformers are given the
# same allowance (no published figure; an allowance, not a measurement).
GPU_OVERHEAD = {"vllm": 2 * 10**9, "sglang": 2 * 10**9, "transformers": 2 * 10**9}
# Host-side allowance for Transformers on CPU: activations and allocator slack.
CPU_OVERHEAD = {"transformers": 10**9}


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says: the tensor data bytes and the shapes the compute buffers depend on."""

    path: str
    weights: int
    arch: str
    layers: int
    embd: int
    ff: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context_length: int
    file_type: int | None
    value_dim: int = 0  # attention.value_length (0: the key's length)
    mla: bool = False  # MLA (kv_lora_rank set): llama.cpp caches K only, V is a view of it
    indexer_dim: int = 0  # DSA: the indexer's key length, kept in a second cache

    @property
    def kv_elements_per_token(self) -> int:
        """Cache elements per token, all layers, as llama.cpp allocates them (src/llama-kv-cache.cpp)."""
        v = 0 if self.mla else self.kv_heads * (self.value_dim or self.head_dim)
        return self.layers * (self.kv_heads * self.head_dim + v + self.indexer_dim)


def gguf_info(path: str | Path) -> GGUFInfo:
    """Read a GGUF header (the first part's, for a split build; weights count every part's tensor data).
    Read once per file version in a process: the longest context that fits asks at many contexts."""
    try:
        st = Path(path).stat()
        return _gguf_info(str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return _gguf_info.__wrapped__(str(path), None, None)  # the reader names what is wrong


@functools.lru_cache(maxsize=32)
def _gguf_info(path: str, size: int | None, mtime_ns: int | None) -> GGUFInfo:
    from . import gguf_header
    from .hub.integrity import split_parts

    h = gguf_header.read(path)
    weights = h.data_bytes + sum(gguf_header.read(p).data_bytes for p in split_parts(Path(path))[1:])
    m = h.metadata
    arch = str(m.get("general.architecture", ""))

    def g(key: str, default=0):
        v = m.get(f"{arch}.{key}", default)
        return max(v) if isinstance(v, list) else v  # per-layer lists (e.g. head_count_kv): the largest

    heads = int(g("attention.head_count", 1) or 1)
    embd = int(g("embedding_length", 0))
    kv = int(g("attention.head_count_kv", heads))
    head_dim = int(g("attention.key_length", 0) or (embd // heads if heads else 0))
    vocab = int(m.get("tokenizer.ggml.tokens", 0))  # an array of strings: the header reader gives its length
    if not vocab and "token_embd.weight" in h.tensors:
        vocab = int(h.tensors["token_embd.weight"][-1])
    ft = m.get("general.file_type")
    return GGUFInfo(str(path), weights, arch, int(g("block_count", 0)), embd, int(g("feed_forward_length", 0)), heads,
                    kv, head_dim, vocab, int(g("context_length", 0)), int(ft) if ft is not None else None,
                    value_dim=int(g("attention.value_length", 0)), mla=bool(g("attention.kv_lora_rank", 0)),
                    indexer_dim=int(g("attention.indexer.key_length", 0)))


def llamacpp_estimate(info: GGUFInfo, n_ctx: int, n_batch: int = 512, n_ubatch: int | None = None,
                      kv_dtype: str = "f16") -> Estimate:
    """Host memory llama.cpp needs to serve a GGUF on CPU.

    weights: the tensors' bytes from the header (mmap'd; all pages are touched once a token is decoded);
    KV: layers x kv_heads x (key + value length) x n_ctx x bytes; for MLA (GLM-5) the key only, which
    holds the latent and the rope key (llama.cpp's V is a view of it), plus the DSA indexer's key cache;
    checked against llama.cpp's "KV buffer size" log lines (tests/test_estimate.py); compute buffer: llama.cpp reserves its graph for
    a full micro-batch, whose largest live tensors are the logits (n_ubatch x vocab) and the FFN
    activations (n_ubatch x 2 ff, fused gate+up), plus a few n_embd-wide ones, all f32; output buffer:
    one row of logits per sequence. llama-cpp-python adds a scores array (n_batch x vocab f32) that it
    fills one row per evaluated batch, so it is counted once. Checked against llama.cpp's own log on a tiny
    chatglm GGUFs (n_ctx 512): llama.cpp's log says "CPU compute buffer size = 24.51 MiB" (8 heads,
    hidden 1024) and 24.01 MiB (16 heads); this formula gives 19.5 and 24.5 MiB.
    """
    kvb = KV_BYTES[kv_dtype]
    kv = int(info.kv_elements_per_token * n_ctx * kvb)
    overhead, notes = _llamacpp_buffers(info.vocab, info.embd, info.ff, info.heads, n_ctx, n_ubatch or n_batch)
    return Estimate(weights=info.weights, kv_cache=kv, context=n_ctx, overhead=overhead,
                    weights_source="GGUF header (tensor data bytes)", notes=notes)


def _llamacpp_buffers(vocab: int, embd: int, ff: int, heads: int, n_ctx: int, ub: int) -> tuple[int, list[str]]:
    """llama.cpp's compute, output and scores buffers (bytes), from the header's shapes or the spec's."""
    # The attention scores (n_ubatch x n_ctx per head, f32: llama-cpp-python's server starts llama.cpp with
    # flash attention disabled) with their mask (n_ubatch x n_ctx, f32), and the FFN activations, are not live
    # at once: the allocator reuses one region for the larger of the two. Measured on a tiny chatglm GGUF
    # (4 heads, n_ubatch 512; tests/test_daily.py): llama.cpp's log says 7.0, 22.0, 82.0 and 322.0 MiB at
    # n_ctx 512, 2048, 8192 and 32768, i.e. 2 MiB + n_ctx x n_ubatch x 4 bytes x (heads + 1).
    compute = 4 * ub * (vocab + 4 * embd + max(2 * ff, n_ctx * (heads + 1)))
    output = 4 * vocab
    scores_row = 4 * vocab
    return compute + output + scores_row, [f"compute buffer ~{compute / 2**20:.1f} MiB for n_ubatch {ub}"]


def engine_estimate(family, spec, quant: str, engine: str, context: int | None = None, gpus: int = 0,
                    kv_dtype: str = "f16", gguf_path: str | Path | None = None) -> Estimate:
    """The memory a build needs on `engine`: weights, KV for `context`, and the engine's overhead.

    With gpus > 0 the weights and KV are sharded evenly (tensor parallel; expert parallel places whole
    experts instead of slices, which holds the same bytes per GPU) and each GPU carries its own overhead.
    """
    ctx = context or family.context_length
    if gguf_path is not None:
        return llamacpp_estimate(gguf_info(gguf_path), ctx, kv_dtype=kv_dtype)
    base = estimate(family, spec, quant, ctx, kv_dtype)
    if engine == "llama.cpp":
        # No file yet: the spec's shapes stand in for the header's (its KV formula covers MLA too).
        a = family.architecture
        overhead, notes = _llamacpp_buffers(a.vocab_size, a.hidden_size, a.intermediate_size or 4 * a.hidden_size,
                                            a.attention_heads, ctx, 512)
        return Estimate(base.weights, base.kv_cache, ctx, overhead, 0, notes=notes)
    if gpus:
        overhead = GPU_OVERHEAD.get(engine, 2 * 10**9) * gpus
    else:
        overhead = CPU_OVERHEAD.get(engine, 10**9)
    return Estimate(base.weights, base.kv_cache, ctx, overhead, gpus)


def bytes_read_per_token(family, spec, quant: str) -> int:
    """Weights a decode step reads: the active parameters (all of them for a dense model)."""
    a = family.architecture
    params = spec.active_params_b or a.active_params_b or spec.total_params_b or a.total_params_b
    return weights_bytes(params, spec.format, quant)


def decode_bound_tok_s(family, spec, quant: str, bandwidth_bytes_s: float) -> float:
    """Seed 002's memory-bandwidth bound: tok/s = bandwidth / bytes read per token.

    Seed 002 uses one GPU's bandwidth (its H100 / H200 / RTX PRO figures scale with the per-GPU number),
    and its measured speeds are ~50% of this bound ("Memory Bandwidth Efficiency: 50.3%").
    """
    return bandwidth_bytes_s / bytes_read_per_token(family, spec, quant)
