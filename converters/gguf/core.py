"""HF checkpoint directory -> GGUF (F16, BF16 or Q8_0), streaming, for every GLM architecture."""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError

from . import progress as _progress
from .arch import ARCHS, GlmArch
from .reader import Checkpoint, CheckpointError
from .writer import OUTTYPES, write_gguf

FILE_TYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}  # llama_ftype values (general.file_type)


def arch_for(ck: Checkpoint, keep_mtp: bool = False) -> GlmArch:
    from . import archs  # noqa: F401  (registers the architecture modules)

    classes = ck.config.get("architectures") or []
    for c in classes:
        if c in ARCHS:
            return ARCHS[c](ck, keep_mtp)
    raise CheckpointError(
        f"{ck.dir / 'config.json'}: architectures {classes or '(none)'} is not a GLM architecture this converter handles; "
        f"known: {', '.join(sorted(ARCHS))}"
    )


class _Discard:
    """A writer that drops what it is given: write_hparams run against it validates config.json first."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def prepare_out(out: Path, force: bool = False) -> Path:
    """`out`, checked: its folder exists and, unless `force` (rebuild it), neither it nor a split part does. The
    writers put the new file in place by rename, so a forced rebuild replaces the old one only when complete."""
    out = Path(out)
    if force:
        if not out.parent.is_dir():
            raise RegistryError(f"output directory {out.parent} does not exist; create it first")
        return out
    if out.exists():
        raise RegistryError(f"{out} already exists; remove it, choose another --out, or rebuild it with --force")
    shards = sorted(out.parent.glob(f"{out.stem}-*-of-*.gguf")) if out.parent.is_dir() else []
    if shards:
        raise RegistryError(f"{shards[0]} (a split build of {out.name}) already exists; remove it or choose another --out")
    if not out.parent.is_dir():
        raise RegistryError(f"output directory {out.parent} does not exist; create it first")
    return out


def convert(src: Path, out: Path, outtype: str = "F16", *, keep_mtp: bool = False,
            split_max_size: int | None = None, progress: bool = False) -> Path:
    """Convert checkpoint `src` to GGUF at `out`; returns the first file (the only one unless split)."""
    return convert_files(src, out, outtype, keep_mtp=keep_mtp, split_max_size=split_max_size, progress=progress)[0]


def convert_files(src: Path, out: Path, outtype: str = "F16", *, keep_mtp: bool = False,
                  split_max_size: int | None = None, progress: bool = False, force: bool = False) -> list[Path]:
    """Convert; the written files (one, or the shards of a split build in order)."""
    return convert_build(src, out, outtype, keep_mtp=keep_mtp, split_max_size=split_max_size, progress=progress,
                         force=force, hashed=False)[0]


def convert_build(src: Path, out: Path, outtype: str = "F16", *, keep_mtp: bool = False,
                  split_max_size: int | None = None, progress: bool = False, force: bool = False,
                  hashed: bool = True) -> tuple[list[Path], str | None]:
    """Convert; the written files and their sha256 (as `registry verify` checks), taken while writing (None
    when not `hashed`: nobody keeps it). `force`: replace an existing `out` (by rename, once the new file is
    whole)."""
    import gguf

    outtype = outtype.upper()
    if outtype not in OUTTYPES:
        raise RegistryError(f"outtype {outtype!r} is not one the converter writes; use F16, BF16 or Q8_0")
    ck = Checkpoint(src)
    arch = arch_for(ck, keep_mtp)
    out = prepare_out(out, force)
    tensors = arch.plan()  # resolves every source tensor before anything is written
    arch.write_hparams(_Discard())  # and reads (so checks) every hyper-parameter
    from .vocab import load_vocab

    vocab = load_vocab(ck)  # read once, and fail on a bad tokenizer before writing

    def meta(w) -> None:
        from .vocab import write_vocab

        name = ck.config.get("_name_or_path") or ck.dir.name
        w.add_name(str(name).rstrip("/").split("/")[-1] or ck.dir.name)
        arch.write_hparams(w)
        w.add_file_type(FILE_TYPES[outtype])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        write_vocab(w, vocab, ck, arch.pre_tokenizer)

    prog = _progress.make(progress, f"{out.name}")
    try:
        return write_gguf(out, arch.gguf_arch, meta, tensors, outtype, split_max_size, prog, hashed)
    except PermissionError as e:
        raise RegistryError(f"cannot write in {out.parent}: {e.strerror}; choose a writable --out") from None
    finally:
        prog.close()
