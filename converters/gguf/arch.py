"""What every GLM architecture module provides, and the registry of HF class name -> module.

An architecture module subclasses GlmArch, registers the Hugging Face class names it handles,
and holds only what differs: its GGUF arch name, the hyper-parameter keys it writes and any tensor
splits/merges. Plain renames (HF name -> GGUF name) are gguf-py's TensorNameMap, the table llama.cpp's
own converter uses: it has every HF name of GLM-4-0414, ChatGLM (hub and HF layouts), Glm4Moe and
GLM-5's DSA that these modules write, so no per-architecture rename table is kept here.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from .reader import Checkpoint, CheckpointError

ARCHS: dict[str, type["GlmArch"]] = {}


def register(*hf_classes: str):
    def deco(cls: type["GlmArch"]) -> type["GlmArch"]:
        for c in hf_classes:
            ARCHS[c] = cls
        return cls

    return deco


@dataclass
class OutTensor:
    """One GGUF tensor: its name, numpy-order shape, and its data as float32 row blocks in order."""

    name: str
    shape: tuple[int, ...]
    chunks: Callable[..., Iterator["np.ndarray"]]  # noqa: F821  (raw=True: blocks as stored, see src_dtype)
    keep_f32: bool = False
    src_dtype: str | None = None  # safetensors dtype of every source, when chunks(raw=True) is supported
    # The raw bytes as (file, offset, length) ranges in order, when they are whole source tensors laid end
    # to end (a rename, rows concatenated, experts stacked): the writer can then copy them in the kernel.
    spans: Callable[[], list[tuple]] | None = None


_LAYER = re.compile(r"(?:model\.layers|transformer\.encoder\.layers)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


class GlmArch:
    gguf_arch: str = ""
    hf_prefix: str = ""  # stripped before the TensorNameMap look-up, as llama.cpp's converter strips it
    skip: tuple[str, ...] = ()  # regexes of HF tensors that have no GGUF counterpart

    def __init__(self, ck: Checkpoint, keep_mtp: bool = False):
        self.ck = ck
        self.keep_mtp = keep_mtp
        self.n_layers = ck.cfg_int("num_hidden_layers", "num_layers")
        self.n_mtp = ck.cfg_int("num_nextn_predict_layers", default=0, low=0)
        self.block_count = self.n_layers + (self.n_mtp if keep_mtp else 0)
        self._names = None  # gguf.TensorNameMap, built on first use (~0.2 s for a 93-block GLM-4.5)
        self._skip = [re.compile(p) for p in self.skip]

    # -- hyper-parameters --

    def write_hparams(self, w) -> None:
        raise NotImplementedError

    def write_common(self, w, *, ctx: int, n_embd: int, n_ff: int, n_head: int, n_head_kv: int, eps: float) -> None:
        w.add_context_length(int(ctx))
        w.add_embedding_length(int(n_embd))
        w.add_feed_forward_length(int(n_ff))
        w.add_block_count(self.block_count)
        w.add_head_count(int(n_head))
        w.add_head_count_kv(int(n_head_kv))
        w.add_layer_norm_rms_eps(float(eps))
        if self.keep_mtp and self.n_mtp:
            w.add_nextn_predict_layers(self.n_mtp)

    # -- tensors --

    def gguf_name(self, hf_name: str) -> str | None:
        """The GGUF name of a tensor that is a plain rename (`blk.3.attn_q.weight`), or None."""
        import gguf

        if self._names is None:
            arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == self.gguf_arch)
            self._names = gguf.get_tensor_name_map(arch, self.n_layers + self.n_mtp)
        return self._names.get_name(hf_name.removeprefix(self.hf_prefix), try_suffixes=(".weight", ".bias"))

    def special(self, hf_name: str) -> list[OutTensor] | None:
        """Tensors that are not a plain rename (merges, splits). None: not special; []: consumed."""
        return None

    def expected(self, e) -> None:
        """Add every HF tensor config.json implies, with its shape, to `e` (an expect.Expect)."""
        raise NotImplementedError

    def check_tensors(self) -> None:
        """Every expected tensor present with its shape, and no other: llama.cpp refuses anything else."""
        from . import expect

        e = expect.Expect(self.ck)
        self.expected(e)
        expect.check(e, n_blocks=self.n_layers + self.n_mtp, n_layers=self.n_layers, n_mtp=self.n_mtp,
                     skip=self._skip, layer_of=layer_of)

    def is_mtp(self, hf_name: str) -> bool:
        b = layer_of(hf_name)
        return b is not None and b >= self.n_layers

    def plan(self) -> list[OutTensor]:
        self.check_tensors()
        names = sorted(self.ck.tensors, key=lambda n: (layer_of(n) if layer_of(n) is not None else -1, n))
        out: list[OutTensor] = []
        for name in names:
            if any(s.search(name) for s in self._skip):
                continue
            if self.is_mtp(name) and not self.keep_mtp:
                continue
            sp = self.special(name)
            if sp is not None:
                out.extend(sp)
                continue
            new = self.gguf_name(name)
            if new is None:
                raise CheckpointError(
                    f"tensor {name!r} of {self.ck.dir} has no {self.gguf_arch} GGUF counterpart; "
                    f"is config.json's architectures right for these weights?"
                )
            out.append(self.plain(name, new))
        return out

    def plain(self, hf_name: str, gguf_name: str) -> OutTensor:
        ref = self.ck.ref(hf_name)
        return OutTensor(gguf_name, ref.shape, lambda raw=False: self.ck.blocks(hf_name, raw=raw),
                         keep_f32=len(ref.shape) == 1, src_dtype=ref.dtype, spans=lambda: [self.ck.span(hf_name)])

    def concat_rows(self, gguf_name: str, hf_names: list[str], keep_f32: bool = False) -> OutTensor:
        """Tensors stacked along their first axis (fused QKV) or as a new leading axis (experts)."""
        refs = [self.ck.ref(n) for n in hf_names]
        tail = refs[0].shape[1:]
        if any(r.shape[1:] != tail for r in refs):
            raise CheckpointError(f"cannot merge {hf_names[0]} .. {hf_names[-1]}: their shapes differ")
        shape = (sum(r.shape[0] for r in refs),) + tail
        return OutTensor(gguf_name, shape,
                         lambda raw=False: itertools.chain.from_iterable(self.ck.blocks(n, raw=raw) for n in hf_names),
                         keep_f32, _common_dtype(refs), lambda: [self.ck.span(n) for n in hf_names])

    def stack(self, gguf_name: str, hf_names: list[str]) -> OutTensor:
        refs = [self.ck.ref(n) for n in hf_names]
        if any(r.shape != refs[0].shape for r in refs):
            raise CheckpointError(f"cannot stack {hf_names[0]} .. {hf_names[-1]}: their shapes differ")
        return OutTensor(gguf_name, (len(refs),) + refs[0].shape,
                         lambda raw=False: itertools.chain.from_iterable(self.ck.blocks(n, raw=raw) for n in hf_names),
                         src_dtype=_common_dtype(refs), spans=lambda: [self.ck.span(n) for n in hf_names])


def stack_experts(arch: GlmArch, name: str, n_experts: int) -> list[OutTensor] | None:
    """MoE: per-expert tensors (as in the published GLM-4.5+ checkpoints) -> one 3-D tensor per layer.

    The tensor of expert 0 emits the stacked tensor; the other experts' tensors are consumed.
    """
    import gguf

    m = re.match(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$", name)
    if not m:
        return None
    bid, xid, kind = int(m.group(1)), int(m.group(2)), m.group(3)
    if xid != 0:
        return []
    names = [f"model.layers.{bid}.mlp.experts.{e}.{kind}_proj.weight" for e in range(n_experts)]
    missing = [n for n in names if not arch.ck.has(n)]
    if missing:
        raise CheckpointError(f"layer {bid} lacks expert tensor {missing[0]!r} (config says {n_experts} experts)")
    t = gguf.MODEL_TENSOR[{"gate": "FFN_GATE_EXP", "up": "FFN_UP_EXP", "down": "FFN_DOWN_EXP"}[kind]]
    return [arch.stack(gguf.TENSOR_NAMES[t].format(bid=bid) + ".weight", names)]


def exp_probs_b(arch: GlmArch, name: str) -> OutTensor:
    bid = int(name.split(".")[2])
    return OutTensor(f"blk.{bid}.exp_probs_b.bias", arch.ck.ref(name).shape, lambda raw=False: arch.ck.blocks(name, raw=raw),
                     keep_f32=True, src_dtype=arch.ck.ref(name).dtype)


def _common_dtype(refs) -> str | None:
    return refs[0].dtype if all(r.dtype == refs[0].dtype for r in refs) else None
