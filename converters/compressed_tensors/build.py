"""One compressed-tensors build: check inputs, quantize with llm-compressor, save, verify, record.

Everything that can be checked before loading weights is (family, quantization, source layout,
output name); the model is then loaded, the recipe's targets resolved against it (architecture
covered, group size divides every targeted width), calibrated, and saved into a temporary sibling
directory that is renamed onto the final name only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

from registry.errors import RegistryError
from registry.procs import pid_exists
from registry.hub.integrity import tree_sha256
from registry.schema import QUANTS_BY_FORMAT, Family

from ..options import ConvertResult, record
from ..source import checkpoint_config
from . import calibration as cal
from . import recipes

FORMAT = "compressed-tensors"
# Files of the source that are weights or rewritten by the save; everything else is copied
# (tokenizer files, chat_template.jinja, generation_config.json, licence, ...).
_NOT_COPIED = ("config.json", "model.safetensors.index.json", "recipe.yaml")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
RECIPE_FILE = "glm_registry_recipe.json"


def family_of(name: str) -> Family:
    from registry.catalog import load

    return load().get(name)


def quants_for(family: Family, quant: str) -> list[str]:
    if quant != "all":
        if quant not in QUANTS_BY_FORMAT[FORMAT]:
            raise RegistryError(
                f"{quant!r} is not a compressed-tensors quantization; use one of: {', '.join(recipes.SUPPORTED)}"
            )
        return [quant]
    out = [q for s in family.specs if s.format == FORMAT for q in s.quantizations if q in recipes.SUPPORTED]
    if not out:
        raise RegistryError(f"family {family.name} has no compressed-tensors spec; name one --quant ({', '.join(recipes.SUPPORTED)})")
    return out


def source_config(source: Path, family: Family) -> tuple[dict, str]:
    """(config.json, architecture class) of a source this converter can build from; errors otherwise."""
    cfg, arch = checkpoint_config(source, family)
    if cfg.get("auto_map") or not _transformers_knows(cfg.get("model_type")):
        raise RegistryError(
            f"the compressed-tensors recipes do not cover {arch}: it needs the repository's own code "
            "(trust_remote_code) and vLLM's compressed-tensors loader expects Transformers' layout; "
            "convert the Transformers-native checkpoint (e.g. glm-4-9b-chat-hf, GlmForCausalLM)"
        )
    if "quantization_config" in cfg:
        raise RegistryError(f"{source} is already quantized ({cfg['quantization_config'].get('quant_method')}); start from the BF16 checkpoint")
    if not any(source.glob("*.safetensors")):
        raise RegistryError(f"{source} has no .safetensors weights")
    return cfg, arch


def _transformers_knows(model_type: str | None) -> bool:
    from transformers import CONFIG_MAPPING

    return bool(model_type) and model_type in CONFIG_MAPPING


def output_dir(req, quant: str, several: bool, create: bool = True) -> Path:
    from registry import paths

    if req.out is None:
        out = paths.artifacts_dir() / f"{req.family}-{quant}"
    else:
        out = Path(req.out).expanduser() / quant if several else Path(req.out).expanduser()
    if out.exists() and not req.force:
        raise RegistryError(f"output {out} already exists; remove it, choose another --out, or rebuild it with --force")
    if not out.parent.is_dir():
        if req.out is not None and not several:
            raise RegistryError(f"output's parent directory {out.parent} does not exist")
        if create:
            out.parent.mkdir(parents=True, exist_ok=True)
    return out


def plan_calibration(req, recipe: dict) -> cal.CalibrationPlan | None:
    spec = recipe.get("calibration_spec") or {}
    if not recipe.get("needs_calibration"):
        if req.calibration:
            req.say(f"note: {recipe['quantization']} is data-free; --calibration is not used")
        return None
    for flag, v in (("--samples", req.samples), ("--max-seq-len", req.max_seq_len)):
        if v is not None and v < 1:
            raise RegistryError(f"{flag} must be a positive number, got {v}")
    source = req.calibration or (spec.get("datasets") or [cal_default("dataset")])[0]
    if Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())
    mix = tuple(cal.Bucket(**b) for b in spec.get("length_mix", []))
    samples = req.samples or spec.get("samples") or cal_default("samples")
    max_len = req.max_seq_len or spec.get("max_seq_length") or cal_default("max_seq_length")
    # An explicit --seed (0 included) wins over the spec's (seed 002: 42); neither: 0.
    seed = req.seed if req.seed is not None else spec.get("seed") or 0
    split = spec.get("split") or cal_default("split")
    return cal.CalibrationPlan(source=str(source), split=split, samples=samples, max_seq_len=max_len, seed=seed,
                               length_mix=mix)


def cal_default(key: str):
    return recipes.DEFAULT_CALIBRATION[key]


def resolve_targets(model, recipe: dict, arch: str) -> list[str]:
    """Names of the layers the recipe quantizes; errors where the recipe does not fit the model."""
    import torch
    from compressed_tensors.utils import match_named_modules

    hit = [(n, m) for n, m in match_named_modules(model, recipe["targets"], recipe["ignore"])
           if isinstance(m, torch.nn.Linear)]
    if recipe.get("experts_only") and not any(".experts." in n for n, _ in hit):
        raise RegistryError(
            f"the {recipe['quantization']} recipe quantizes routed-expert MLPs only and {arch} has none "
            "(a dense model); use FP8_DYNAMIC or a W4A16 build"
        )
    if not hit:
        raise RegistryError(
            f"the {recipe['quantization']} recipe does not cover {arch}: its targets "
            f"({', '.join(recipe['targets'])}) match no Linear layer outside its ignore list"
        )
    gs = recipe.get("group_size")
    if gs:
        bad = [(n, m.in_features) for n, m in hit if m.in_features % gs]
        if bad:
            n, w = bad[0]
            raise RegistryError(
                f"group size {gs} does not divide the input width {w} of {n} ({len(bad)} layer(s) affected); "
                "choose a group size that divides it (W4A16_GS32/64/128)"
            )
    return [n for n, _ in hit]


@contextmanager
def _quiet(progress: bool):
    """llm-compressor logs and draws bars on stderr; keep them for people, not for --json or tests."""
    if progress:
        yield
        return
    import llmcompressor  # noqa: F401  (it enables its logger on import: import first, then silence)
    from loguru import logger
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    logger.disable("llmcompressor")
    logger.disable("compressed_tensors")
    try:
        yield
    finally:
        logger.enable("llmcompressor")
        logger.enable("compressed_tensors")
        hf_logging.enable_progress_bar()
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


@contextmanager
def _main_device(device: str):
    """llm-compressor 0.14 calibrates on `get_main_device()` (the first accelerator, else CPU); point
    every module that imported it at the device asked for."""
    import sys

    import torch
    from compressed_tensors.utils import patch_attr
    from llmcompressor.utils import dev

    import llmcompressor.pipelines.sequential.pipeline  # noqa: F401  (import before patching its name)

    original = dev.get_main_device
    target = torch.device(device)
    with ExitStack() as stack:
        for name, mod in list(sys.modules.items()):
            if name.startswith("llmcompressor") and getattr(mod, "get_main_device", None) is original:
                stack.enter_context(patch_attr(mod, "get_main_device", lambda: target))
        yield


@contextmanager
def _cpu_safe_cache():
    """llm-compressor 0.14's AWQ pins cached activations unconditionally, which raises on CPU-only
    torch ("Cannot access accelerator device"); pinning only speeds up host-to-GPU copies."""
    import torch
    from compressed_tensors.utils import patch_attr
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    with patch_attr(IntermediatesCache, "pin_memory", lambda self, *a, **k: None):
        yield


def copy_side_files(source: Path, dest: Path) -> list[str]:
    copied = []
    for f in sorted(source.iterdir()):
        if not f.is_file() or f.name in _NOT_COPIED or f.name.endswith(_WEIGHT_SUFFIXES):
            continue
        if (dest / f.name).exists() and f.name != "generation_config.json":
            continue
        shutil.copy2(f, dest / f.name)
        copied.append(f.name)
    return copied


class CalibrationData:
    """Calibration sets read and tokenized once per run: `--quant all` calibrates every build with the
    same data, so the set is read, and each plan's samples tokenized, only the first time."""

    def __init__(self, source: Path):
        self.source = source
        self._tokenizer = None
        self._convs: dict[tuple[str, str], list] = {}
        self._ids: dict[cal.CalibrationPlan, list[list[int]]] = {}

    def conversations(self, plan: cal.CalibrationPlan) -> list:
        key = (plan.source, plan.split)
        if key not in self._convs:
            self._convs[key] = cal.read_conversations(plan.source, plan.split)
        return self._convs[key]

    def token_ids(self, plan: cal.CalibrationPlan) -> list[list[int]]:
        if plan not in self._ids:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.source)
            self._ids[plan] = cal.tokenize(self.conversations(plan), self._tokenizer, plan)
        return self._ids[plan]


def build_one(req, family: Family, quant: str, out: Path, src_cfg: dict, arch: str,
              calib: CalibrationData | None = None):
    calib = calib or CalibrationData(Path(req.source))
    recipe = recipes.build(family, quant, req.method)
    if recipe["modifier"] == "AWQModifier":
        from .awq_mappings import mappings_for

        recipe["awq_mappings"] = mappings_for(arch)
    plan = plan_calibration(req, recipe)
    spec_cal = recipe.get("calibration_spec") or {}
    # An explicit --all-experts / --no-all-experts wins over the spec's choice.
    all_experts = req.all_experts if req.all_experts is not None else bool(spec_cal.get("all_experts"))
    ds = None
    if plan:
        # Read and tokenize the calibration set before loading weights: a broken file fails fast.
        ids = calib.token_ids(plan)
        ds = cal.as_dataset(ids)
        recipe["calibration"] = {**plan.to_dict(), "all_experts": all_experts,
                                 "tokens": sum(len(x) for x in ids)}
    if recipe.get("drop_mtp") or src_cfg.get("num_nextn_predict_layers"):
        # Transformers does not load MTP/NextN layers, so the build never has them; say so in
        # config.json too, or vLLM would look for their weights.
        recipe["drop_mtp"] = True

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    sweep_stale(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _term_as_exit():
            if req.path not in (None, "by-shard", "by-layer", "loaded"):
                raise RegistryError(f"path {req.path!r}: use by-shard, by-layer or loaded")
            if plan is not None and req.path == "by-shard":
                raise RegistryError(f"{quant} calibrates activations, which needs the model run layer by layer; "
                                    "it is built by layer (leave the path to the default)")
            if plan is None and req.path in (None, "by-shard"):
                known = _build_by_shard(req, recipe, arch, tmp)
            else:
                known = {}
                _build_loaded(req, recipe, arch, tmp, plan, ds, all_experts)
            _fix_config(tmp, recipe)
            copy_side_files(Path(req.source), tmp)
            (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
            report = None
            if req.report:
                from .check import compare

                report = compare(Path(req.source), tmp)
            sha, size = tree_sha256(tmp, known=known)  # the digest `registry verify` re-checks
            old = None
            if out.exists() and getattr(req, "force", False):  # --force: the old build goes once the new one is whole
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
            if out.exists():
                raise RegistryError(f"output {out} appeared while building; nothing was changed")
            os.rename(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    res = ConvertResult(family=family.name, format=FORMAT, quantization=quant, path=out, sha256=sha,
                        size_bytes=size, parent=str(Path(req.source).resolve()), recipe=recipe, report=report)
    return res


def _build_by_shard(req, recipe: dict, arch: str, tmp: Path) -> dict[str, str]:
    """Data-free: quantize shard by shard from the files (shard.py); returns the shards' digests."""
    from . import layout, shard

    device = shard.check_device(req.device or "cpu")
    index = layout.read_index(Path(req.source))
    model = layout.meta_model(Path(req.source))
    recipe["quantized_layers"] = len(resolve_targets(model, recipe, arch))
    mods = recipes.modifiers(recipe)
    lay = layout.layout(model, index, mods[0])
    del model
    recipe["path"] = "by-shard"
    tmp.mkdir(parents=True)
    known = shard.build(index, lay, tmp, device)
    # config.json: the source's, with the quantization_config compressed-tensors writes (as
    # llm-compressor's save does: it re-saves the original config, vLLM reads that one best).
    cfg = json.loads((Path(req.source) / "config.json").read_text())
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    lay.compressor.update_config(str(tmp))
    from llmcompressor.recipe import Recipe

    Recipe.from_modifiers(mods).yaml(file_path=str(tmp / "recipe.yaml"))
    return known


def _build_loaded(req, recipe: dict, arch: str, tmp: Path, plan, ds, all_experts: bool) -> None:
    """Calibrated (or the reference path): load the model, run oneshot, save.

    By layer (the default for calibrated schemes): the weights are loaded offloaded, to CPU, or to
    disk with --offload-dir, and llm-compressor's sequential pipeline onloads one decoder layer at a
    time to --device for calibration; the save writes shards no larger than the source's.
    "loaded": the whole model in memory, as before (what the equivalence tests compare with).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from . import moe

    by_layer = req.path != "loaded"
    device = None
    with ExitStack() as stack:
        save_kw = {}
        if by_layer:
            from compressed_tensors.offload import load_offloaded_model

            from . import layout, shard

            device = shard.check_device(req.device or "cpu")
            shard._malloc_release()  # layers onloaded and freed one after another: give memory back
            stack.enter_context(_main_device(device))
            index = layout.read_index(Path(req.source))
            if req.offload_dir:
                off = Path(req.offload_dir).expanduser()
                off.mkdir(parents=True, exist_ok=True)
                folder = off / f".{tmp.name.lstrip('.')}-offload"
                stack.callback(shutil.rmtree, folder, ignore_errors=True)
                # Built on the meta device, every weight a link to its source shard: nothing is
                # loaded until its layer is calibrated.
                model = layout.disk_offloaded_model(Path(req.source), index, folder, device)
            else:
                with load_offloaded_model():  # the layers wait in CPU memory
                    model = AutoModelForCausalLM.from_pretrained(req.source, dtype=torch.bfloat16, device_map="cpu")
            largest = max(index.shard_bytes().values())
            save_kw = {"max_shard_size": max(largest, 2**26)}
        else:
            model = AutoModelForCausalLM.from_pretrained(req.source, dtype=torch.bfloat16)
        moe.linearize(model)
        recipe["quantized_layers"] = len(resolve_targets(model, recipe, arch))
        recipe["path"] = "by-layer" if by_layer else "loaded"
        if device:
            recipe["device"] = device
        from llmcompressor import oneshot

        stack.enter_context(_cpu_safe_cache())
        counts = stack.enter_context(moe.count_expert_tokens(model))
        kwargs = {}
        if ds is not None:
            kwargs = dict(dataset=ds, num_calibration_samples=len(ds), max_seq_length=plan.max_seq_len,
                          shuffle_calibration_samples=False)
        oneshot(model=model, recipe=recipes.modifiers(recipe), moe_calibrate_all_experts=all_experts, **kwargs)
        if plan is not None:
            cov = moe.coverage(counts, all_experts)
            if cov:
                recipe["calibration"]["expert_coverage"] = cov
                if cov["experts_without_tokens"] and not all_experts:
                    req.say(f"warning: {len(cov['experts_without_tokens'])} experts saw no calibration token; "
                            "consider --all-experts or more samples")
        if by_layer:
            # llm-compressor's save converts the offloading to accelerate's, saves, and converts it
            # back; the model is dropped right after, and the way back fails for a model built on
            # the meta device (buffers computed at init): skip it.
            import llmcompressor.transformers.compression.compressed_tensors_utils as ctu
            from compressed_tensors.utils import patch_attr

            stack.enter_context(patch_attr(ctu, "from_accelerate", lambda model: None))
        model.save_pretrained(tmp, save_compressed=True, **save_kw)
        del model


def sweep_stale(out: Path) -> None:
    """Remove temporary siblings of `out` left by builds that were killed (their process is gone)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        pid = p.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_exists(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    for p in out.parent.glob(f".{out.name}.old-*"):  # a --force rebuild killed between its two renames
        pid = p.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_exists(int(pid)):
            if out.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.rename(p, out)  # the old build comes back


@contextmanager
def _term_as_exit():
    """SIGTERM and SIGHUP raise SystemExit in the main thread, so the cleanup above runs as for Ctrl-C."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _fix_config(path: Path, recipe: dict) -> None:
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if recipe.get("drop_mtp") and cfg.get("num_nextn_predict_layers"):
        cfg["num_nextn_predict_layers"] = 0
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    for f in path.iterdir():  # the safetensors writer leaves 0600; builds are meant to be shared
        if f.is_file():
            f.chmod(0o644)


def run(req) -> list:
    family = family_of(req.family)
    quants = quants_for(family, req.quant)
    calib = CalibrationData(Path(req.source))
    for q in quants:
        # The calibration set read (a broken line, a hub out of reach: one line at once) before
        # Transformers and llm-compressor are imported, which takes seconds; it is tokenized in build_one.
        # An output that exists is refused first, as before a set is downloaded.
        output_dir(req, q, len(quants) > 1, create=False)
        recipe = recipes.build(family, q, req.method)
        if recipe.get("needs_calibration"):
            calib.conversations(plan_calibration(req, recipe))
    src_cfg, arch = source_config(Path(req.source), family)
    outs = [output_dir(req, q, len(quants) > 1) for q in quants]
    results = []
    for q, out in zip(quants, outs):
        # Libraries print progress and warnings; keep stdout for our --json output.
        with contextlib.redirect_stdout(sys.stderr), _quiet(req.progress):
            res = build_one(req, family, q, out, src_cfg, arch, calib)
        if req.record:
            record([res])  # each build as it is made: a later failure keeps the earlier ones
        req.say(f"built {q}: {res.path}")
        results.append(res)
    return results
