"""Mutation testing, bounded: single-line bugs put into core code, one at a time, each run against the
tests that should catch it. A mutant is killed when those tests fail, survived when they pass.

Run: .venv/bin/python bench/mutation.py                 # every mutant, a kill-rate table per module
     .venv/bin/python bench/mutation.py --list          # the mutants, without running anything
     .venv/bin/python bench/mutation.py -k estimate     # only mutants whose id or file contains this
     .venv/bin/python bench/mutation.py --json out.json

Each mutant replaces one exact line fragment (it must occur exactly once in its file, so a mutant
that no longer applies after a refactor is reported as stale, not silently skipped) in a copy of
the repository under a temporary directory; the working tree is never edited. Tests run with
`pytest -x -q -p no:cacheprovider` in that copy. mutmut (3.x) would generate mutants itself, but it
runs the whole suite under its own trampoline: hours on a 2-core machine for these modules, where
this list takes minutes. Add a mutant for every bug a review finds that no test caught.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ("registry", "converters", "tests", "docs", "pyproject.toml", "README.md")


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str  # an exact fragment of one line
    new: str
    tests: tuple[str, ...]  # pytest node ids or files
    equivalent: str = ""  # why this mutant cannot change behaviour (listed, not run, not counted)


M = Mutant
GGUF = "tests/test_gguf.py"
MUTANTS: list[Mutant] = [
    # --- converters/gguf -------------------------------------------------------------------------
    M("dsa-value-length-from-nope", "converters/gguf/archs/glm_dsa.py", "w.add_value_length_mla(int(v))",
      "w.add_value_length_mla(int(nope))", (f"{GGUF}::test_glm5_sparse_attention_equals_transformers",)),
    M("dsa-indexer-topk-dropped", "converters/gguf/archs/glm_dsa.py",
      'w.add_indexer_top_k(ck.cfg_int("index_topk"))', 'w.add_indexer_top_k(4096)',
      (f"{GGUF}::test_glm5_sparse_attention_equals_transformers",)),
    M("dsa-kv-b-v-rows-from-nope", "converters/gguf/archs/glm_dsa.py", "a = h * (nope + v) + nope",
      "a = h * (nope + v)", (f"{GGUF}::test_glm5_sparse_attention_equals_transformers",)),
    M("dsa-indexer-proj-not-f32", "converters/gguf/archs/glm_dsa.py",
      't.keep_f32 = t.keep_f32 or ".indexer.proj." in gguf_name', "t.keep_f32 = t.keep_f32",
      (f"{GGUF}::test_vocab_and_hparams_written",)),
    M("moe-groups-dropped", "converters/gguf/archs/glm4moe.py", "if (g := ck.cfg_int(\"n_group\", default=None)) and g > 1:",
      "if False:", (f"{GGUF}::test_f16_logits_match_transformers",)),
    M("moe-router-not-f32", "converters/gguf/archs/glm4moe.py",
      't.keep_f32 = t.keep_f32 or ".ffn_gate_inp." in gguf_name', "t.keep_f32 = t.keep_f32",
      (f"{GGUF}::test_vocab_and_hparams_written",)),
    M("moe-scale-dropped", "converters/gguf/archs/glm4moe.py",
      'w.add_expert_weights_scale(ck.cfg_float("routed_scaling_factor", default=1.0, positive=True))',
      "w.add_expert_weights_scale(1.0)", (f"{GGUF}::test_f16_logits_match_transformers",)),
    M("moe-norm-topk-dropped", "converters/gguf/archs/glm4moe.py",
      'w.add_expert_weights_norm(bool(ck.cfg("norm_topk_prob", default=False)))',
      "w.add_expert_weights_norm(False)", (f"{GGUF}::test_f16_logits_match_transformers",)),
    # Not written with a test in mind: plausible one-line slips in the converters' shared code.
    M("head-count-kv-from-heads", "converters/gguf/arch.py", "w.add_head_count_kv(int(n_head_kv))",
      "w.add_head_count_kv(int(n_head))", (GGUF,)),
    M("norms-not-f32", "converters/gguf/arch.py", "keep_f32=len(ref.shape) == 1,", "keep_f32=False,",
      (f"{GGUF}::test_vocab_and_hparams_written",),
      equivalent="the writer keeps every 1-D tensor F32 itself (writer.py: `len(t.shape) == 1`); the test "
                 "that every 1-D tensor is F32 kills the mutant of both lines"),
    M("writer-norms-not-f32", "converters/gguf/writer.py", "if t.keep_f32 or len(t.shape) == 1 or",
      "if t.keep_f32 or", (f"{GGUF}::test_vocab_and_hparams_written",),
      equivalent="arch.plain() sets keep_f32 for every 1-D tensor already (the mirror of norms-not-f32)"),
    M("mtp-always-kept", "converters/gguf/arch.py", "if self.is_mtp(name) and not self.keep_mtp:",
      "if self.is_mtp(name) and False:", (GGUF,)),
    M("glm4-rope-full-head", "converters/gguf/archs/glm4.py",  # write_gqa_hparams: glm4 and glm4moe
      'w.add_rope_dimension_count(int(head_dim * ck.cfg_float("partial_rotary_factor", default=0.5, positive=True)))',
      "w.add_rope_dimension_count(int(head_dim))", (GGUF,)),
    M("chatglm-rope-ratio-ignored", "converters/gguf/archs/chatglm.py",
      'base = 10000.0 * ck.cfg_float("rope_ratio", default=1.0, positive=True)', "base = 10000.0", (GGUF,)),
    # The hub layout's hparam only: n_kv() also sizes the expected tensors, which would still be right.
    M("chatglm-mqa-groups-ignored", "converters/gguf/archs/chatglm.py",
      'n_ff = ck.cfg_int("ffn_hidden_size")\n            n_kv = self.n_kv()',
      'n_ff = ck.cfg_int("ffn_hidden_size")\n            n_kv = n_head', (GGUF,)),
    M("eos-last-not-first", "converters/gguf/vocab.py", "eos = eos[0]", "eos = eos[-1]", (f"{GGUF}::test_vocab_and_hparams_written",)),
    M("add-bos-on", "converters/gguf/vocab.py", "w.add_add_bos_token(False)", "w.add_add_bos_token(True)", (f"{GGUF}::test_vocab_and_hparams_written",)),
    M("eot-dropped", "converters/gguf/vocab.py", 'w.add_eot_token_id(sp["<|user|>"])', "pass", (GGUF,)),
    # --- registry/estimate.py --------------------------------------------------------------------
    M("llamacpp-kv-halved", "registry/estimate.py", "kv = int(info.kv_elements_per_token * n_ctx * kvb)",
      "kv = int(info.kv_elements_per_token * n_ctx * kvb / 2)", ("tests/test_estimate.py",)),
    M("llamacpp-mla-v-counted", "registry/estimate.py", "v = 0 if self.mla else", "v = 0 if False else",
      ("tests/test_estimate.py",)),
    M("llamacpp-indexer-dropped", "registry/estimate.py", "+ v + self.indexer_dim)", "+ v)",
      ("tests/test_estimate.py",)),
    M("gqa-kv-halved", "registry/estimate.py", "return 2 * layers * kv_heads * head_dim * b",
      "return layers * kv_heads * head_dim * b", ("tests/test_estimate.py",)),
    M("mla-rope-key-dropped", "registry/estimate.py",
      "per_layer = (arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)", "per_layer = (arch.kv_lora_rank or 0)",
      ("tests/test_estimate.py",)),
    M("dsa-indexer-key-dropped", "registry/estimate.py", "per_layer += arch.indexer_head_dim or 0", "pass",
      ("tests/test_estimate.py",)),
    M("fp8-kv-as-f16", "registry/estimate.py", '"fp8": 1, "fp8_e4m3": 1', '"fp8": 2, "fp8_e4m3": 1',
      ("tests/test_estimate.py",)),
    M("per-gpu-not-divided", "registry/estimate.py", "return -(-(self.total - self.host) // self.gpus)",
      "return self.total - self.host",
      ("tests/test_estimate.py", "tests/test_launcher.py::test_seed_002_memory_and_bandwidth")),
    M("q4km-bpw-wrong", "registry/formats.py", '"Q4_K_M": 4.89', '"Q4_K_M": 4.5',
      ("tests/test_estimate.py",)),
    M("context-default-ignored", "registry/estimate.py", "ctx = context or family.context_length\n    w =",
      "ctx = family.context_length\n    w =", ("tests/test_estimate.py",)),
    # --- registry/engines (the launcher's argv) --------------------------------------------------
    M("vllm-context-ignored", "registry/engines/vllm.py", 'args["--max-model-len"] = req.context\n',
      "pass\n", ("tests/test_launcher.py::test_context_reaches_the_engine_argv",)),
    M("sglang-context-ignored", "registry/engines/sglang.py", 'args["--context-length"] = req.context\n',
      "pass\n", ("tests/test_launcher.py::test_context_reaches_the_engine_argv",)),
    M("smi-mib-as-mb", "registry/hardware.py", "memory_bytes=int(mib * 2**20)", "memory_bytes=int(mib * 10**6)",
      ("tests/test_hardware.py",)),
    M("smi-old-driver-no-retry", "registry/hardware.py", 'if code != 0 and "compute_cap" in text:', "if False:",
      ("tests/test_hardware.py",)),
    M("smi-index-ignored", "registry/hardware.py", "compute_capability=cap, index=int(parts[0])",
      "compute_capability=cap, index=0", ("tests/test_hardware.py",)),
    M("stop-all-stops-nothing", "registry/cli/launch_cmds.py", "deps = launcher.ps(mine=True) if all_ else",
      "deps = [] if all_ else", ("tests/test_launcher.py::test_next_free_port_no_prestart_and_stop_all",)),
    M("no-prestart-ignored", "registry/prestart.py", ' or os.environ.get("REGISTRY_NO_PRESTART"):', ":",
      ("tests/test_launcher.py::test_next_free_port_no_prestart_and_stop_all",)),
    M("taken-port-not-moved", "registry/launching/ports.py", "    if given:\n        raise RegistryError(f\"port",
      "    if True:\n        raise RegistryError(f\"port",
      ("tests/test_launcher.py::test_next_free_port_no_prestart_and_stop_all",)),
    # --- registry/hub -----------------------------------------------------------------------------
    M("verify-file-sha-not-compared", "registry/hub/verification.py", "if row is not None and row.sha256 != actual:",
      "if False:", ("tests/test_hub.py::test_verify_finds_a_corrupted_local_build",)),
    M("verify-folder-digest-not-compared", "registry/hub/verification.py", "ok = digest == row.sha256", "ok = True",
      ("tests/test_hub.py::test_verify_finds_a_changed_file_in_a_local_folder_build",)),
    M("verify-content-address-skipped", "registry/hub/verification.py", "if got != want:", "if False:",
      ("tests/test_hub.py::test_verify_without_a_row_checks_the_cache_by_content_address",)),
    M("verify-no-quarantine", "registry/hub/verification.py", 'r["moved_to"] = str(quarantine(Path(r["path"])))',
      "pass", ("tests/test_hub.py::test_verify_finds_a_corrupted_local_build",)),
    M("verify-row-kept", "registry/hub/verification.py", "store.remove_artifact(rid)", "pass",
      ("tests/test_hub.py::test_verify_finds_a_corrupted_local_build",)),
    M("blob-lock-no-op", "registry/hub/hfdownload.py", "with _blob_lock(lock, rf.name, say):",
      "with contextlib.nullcontext():", ("tests/test_hub.py::test_two_pulls_at_once_download_once",)),
    M("download-checksum-skipped", "registry/hub/hfdownload.py", "        if got != want:\n            moved",
      "        if False:\n            moved", ("tests/test_hub.py::test_checksum_mismatch_moves_the_download_aside",)),
    M("token-sent-to-cdn", "registry/hub/hfdownload.py", 'headers.pop("authorization", None)', "pass",
      ("tests/test_hub.py::test_token_is_not_sent_to_another_host_on_redirect",)),
    M("resume-ignored", "registry/hub/hfdownload.py", "have = partial.stat().st_size if partial.exists() else 0",
      "have = 0", ("tests/test_hub.py::test_a_partial_file_from_an_interrupted_pull_is_resumed",)),
    M("ref-not-written", "registry/hub/hfdownload.py", "    os.replace(tmp, ref)", "    tmp.unlink()",
      ("tests/test_hub.py::test_revision_per_quant_downloads_that_branch",)),
    M("offline-ignored", "registry/hub/__init__.py", 'in {"1", "ON", "YES", "TRUE"} for v in',
      'in {"ON", "YES", "TRUE"} for v in',
      ("tests/test_hub.py::test_offline_pull_uses_the_hf_cache_and_makes_no_request",
       "tests/test_hub.py::test_hf_hub_offline_1_makes_no_request_even_when_the_hub_has_the_file")),
    # Not written with a test in mind: the hub code's smaller decisions.
    M("split-parts-count-off", "registry/hub/integrity.py", 'n = int(m["n"])', 'n = int(m["n"]) - 1',
      ("tests/test_hub.py", f"{GGUF}::test_split_build_is_found_as_a_local_artifact")),
    M("content-address-any-dir", "registry/hub/integrity.py", 'if real.parent.name != "blobs":', "if False:",
      ("tests/test_hub.py",)),
    M("manifest-without-paths", "registry/hub/integrity.py", 'lines.append(f"{digest}  {rel}\\n")',
      'lines.append(f"{digest}\\n")', ("tests/test_hub.py",)),
    M("longer-partial-kept", "registry/hub/hfdownload.py", "if size is not None and have > size:", "if False:",
      ("tests/test_hub.py",)),
    M("snapshot-file-redownloaded", "registry/hub/hfdownload.py", "        if pointer.is_file():\n",
      "        if False:\n", ("tests/test_hub.py",)),
    M("dotdot-allowed", "registry/hub/names.py", 'if any(p in ("..", ".") for p in name.split("/"))',
      'if any(p in (".",) for p in name.split("/"))', ("tests/test_hub.py",)),
    M("notices-after-download", "registry/hub/__init__.py", "    for n in notices:  # before any request",
      "    for n in []:  # before any request", ("tests/test_hub.py",)),
    # --- registry/schema.py ---------------------------------------------------------------------
    M("schema-experts-per-token", "registry/facts.py", "if self.experts_per_token > self.experts:", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-duplicate-quants", "registry/schema.py", "if twice:",
      "if False:", ("tests/test_bad_specs.py",)),
    M("schema-active-over-total", "registry/facts.py", "if self.active_params_b and self.active_params_b > self.total_params_b:",
      "if False:", ("tests/test_bad_specs.py",)),
    M("schema-moe-active", "registry/facts.py", "if self.active_params_b is None:", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-dense-experts", "registry/facts.py", "elif self.experts:", "elif False:", ("tests/test_bad_specs.py",)),
    M("schema-gqa-needs", "registry/facts.py", "if self.kv_heads is None or self.head_dim is None:", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-mla-needs", "registry/facts.py", "elif self.kv_lora_rank is None or self.qk_rope_head_dim is None:",
      "elif False:", ("tests/test_bad_specs.py",)),
    M("schema-dsa-topk", "registry/facts.py", 'if self.attention == "dsa" and self.indexer_topk is None:', "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-template-placeholder", "registry/schema.py", "v.format(quantization=\"Q4_K_M\")", "pass",
      ("tests/test_bad_specs.py",)),
    M("schema-length-mix", "registry/schema.py",
      "if self.length_mix and abs(sum(b.fraction for b in self.length_mix) - 1.0) > 1e-6:", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-split-parts-quant", "registry/schema.py",
      'for label, keyed in (("revisions", src.revisions), ("split_parts", src.split_parts),',
      'for label, keyed in (("revisions", src.revisions),', ("tests/test_bad_specs.py",)),
    M("schema-gguf-needs-template", "registry/schema.py", 'if self.format == "ggufv2" and src.file_template is None:',
      "if False:", ("tests/test_bad_specs.py",)),
    M("schema-template-only-gguf", "registry/schema.py",
      'if self.format != "ggufv2" and (src.file_template is not None or src.file_templates):',
      "if False:", ("tests/test_bad_specs.py",)),
    M("schema-profile-engine", "registry/schema.py", "if p.engine not in self.engines:", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-profile-duplicate", "registry/schema.py", "if len(set(names)) != len(names):", "if False:",
      ("tests/test_bad_specs.py",)),
    M("schema-alias", "registry/formats.py", 'GGUF_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M"',
      'GGUF_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_S"', ("tests/test_catalog.py",)),
]


def module_of(m: Mutant) -> str:
    return "converters/gguf" if m.file.startswith("converters/gguf") else \
        "registry/hub" if m.file.startswith("registry/hub") else \
        "registry/engines" if m.file.startswith("registry/engines") else m.file


def _apply(root: Path, m: Mutant) -> str | None:
    """Put the mutant into the copy; the reason it cannot, or None."""
    p = root / m.file
    text = p.read_text()
    n = text.count(m.old)
    if n != 1:
        return f"stale: the fragment occurs {n} times in {m.file}"
    p.write_text(text.replace(m.old, m.new))
    return None


def _run(root: Path, m: Mutant, timeout: float) -> tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.monotonic() - t0, ""
    dt = time.monotonic() - t0
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    if r.returncode == 0:
        return "survived", dt, tail[0]
    if r.returncode in (4, 5):  # usage error / no tests collected: the test named does not exist
        return "error", dt, tail[0]
    return "killed", dt, tail[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only mutants whose id or file contains this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mutant's test run")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.id or args.k in m.file]
    if args.list:
        for m in chosen:
            print(f"{m.id:36} {m.file:40} {' '.join(m.tests)}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="glmreg-mutants-") as tmp:
        base = Path(tmp) / "pristine"
        base.mkdir()
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, base / name, ignore=shutil.ignore_patterns("__pycache__", "_build"))
            else:
                shutil.copy2(src, base / name)
        for m in chosen:
            work = Path(tmp) / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work, symlinks=True)
            why = _apply(work, m)
            if m.equivalent and not why:
                status, dt, tail = "equivalent", 0.0, m.equivalent
            elif why:
                status, dt, tail = "stale", 0.0, why
            else:
                status, dt, tail = _run(work, m, args.timeout)
            results.append({**asdict(m), "module": module_of(m), "status": status, "seconds": round(dt, 1),
                            "last_line": tail})
            print(f"{status:16} {dt:6.1f}s  {m.id}  ({tail})", flush=True)
    by_mod: dict[str, list[dict]] = {}
    for r in results:
        by_mod.setdefault(r["module"], []).append(r)
    print("\nmodule                         killed / mutants   not killed (equivalent ones are not counted)")
    for mod, rs in by_mod.items():
        counted = [r for r in rs if r["status"] != "equivalent"]
        killed = sum(r["status"].startswith("killed") for r in counted)
        rate = f"{100 * killed / len(counted):5.0f}%" if counted else "    -"
        left = [f"{r['id']} ({r['status']})" for r in rs if not r["status"].startswith("killed")]
        print(f"{mod:30} {killed:3} / {len(counted):<3} {rate}   {', '.join(left)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["status"].startswith("killed") or r["status"] == "equivalent" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
