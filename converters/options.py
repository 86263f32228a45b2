"""What `registry convert` asks of a converter: one request object, shared by every output format.

The CLI fills it and hands it to the converter package for the target format
(converters.gguf.run_convert or converters.compressed_tensors.run_convert); each converter
reads the fields it understands and ignores the rest; `record()` stores what they built. Kept free
of heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class ConvertRequest:
    family: str  # family name from the catalog (e.g. glm-4.7)
    source: Path  # Hugging Face checkpoint directory (hub layout)
    to: str  # target format: ggufv2 | compressed-tensors
    quant: str  # quantization, as the registry names it (Q4_K, W4A16_GS64, ...), or "all"
    out: Path | None = None  # output file or directory; None: under registry.paths.artifacts_dir()
    report: bool = False  # compute and store the KL / top-1 quality report
    record: bool = True  # record the result as an artifact in the store
    progress: bool = True  # rich progress bars on stderr
    # GGUF options
    outtype: str | None = None  # F16 | BF16 for the first pass (default F16)
    keep_mtp: bool = False  # keep MTP / NextN layers (GLM-4.5+); dropped by default
    split_max_size: int | None = None  # bytes; above it, output is split -0000N-of-0000M.gguf
    imatrix: Path | None = None  # importance matrix (llama.cpp imatrix GGUF or .dat) to quantize with
    chunks: int | None = None  # --calibration on GGUF: at most this many chunks for the imatrix
    chunk_size: int | None = None  # --calibration on GGUF: tokens per chunk (default 512)
    keep_first_pass: bool = False  # --out FILE.gguf of one quantization: keep the F16 pass beside it (and record it)
    # compressed-tensors options
    method: str | None = None  # awq | rtn (W4A16 scheme); None: the recipe's default
    calibration: str | None = None  # hub dataset name or local JSONL of chat messages (GGUF: text or JSONL file)
    samples: int | None = None
    max_seq_len: int | None = None
    seed: int | None = None  # calibration sampling seed; None: the spec's, else 0
    all_experts: bool | None = None  # MoE: every expert sees every calibration token; None: as the spec says
    device: str | None = None  # cpu | cuda:N: where weights are quantized / layers calibrated
    offload_dir: Path | None = None  # calibrated builds: layers not being calibrated wait here on disk
    dry_run: bool = False  # print the plan (memory, disk, path) and build nothing
    force: bool = False  # rebuild an output that exists (replaced only once the new one is complete)
    # by-shard | by-layer | loaded (the whole model in memory, the reference the tests compare with);
    # None: by-shard for data-free schemes, by-layer for calibrated ones
    path: str | None = None
    extra: dict = field(default_factory=dict)
    say: Callable[[str], None] = print  # one-line messages for people (warnings, results)


@dataclass
class ConvertResult:
    """One build produced by a converter (a --quant all run returns several)."""

    family: str
    format: str
    quantization: str
    path: Path
    sha256: str
    size_bytes: int
    parent: str | None = None  # the source checkpoint (path or hub id) or parent build
    recipe: dict | None = None
    report: dict | None = None  # {"reference","tokens","kl_divergence","top1_agreement"}
    artifact_id: int | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def record(results: list[ConvertResult]) -> None:
    """Record each build as an artifact row in the store; sets its artifact_id. On the default SQLite file the
    rows are written with sqlite3 (registry/sqlite_write.py: no SQLAlchemy import); elsewhere by the Store."""
    from registry import sqlite_write

    store = None
    for r in results:
        fields = dict(family=r.family, format=r.format, quantization=r.quantization, path=str(r.path),
                      sha256=r.sha256, size_bytes=r.size_bytes, parent=r.parent, recipe=r.recipe, report=r.report)
        r.artifact_id = sqlite_write.add_artifact(**fields) if store is None else None
        if r.artifact_id is None:
            if store is None:
                from registry.store import Store

                store = Store()
            r.artifact_id = store.add_artifact(**fields).id
