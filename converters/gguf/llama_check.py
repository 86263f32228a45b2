"""Is the installed llama.cpp safe on this CPU? `python -m converters.gguf.llama_check`.

ggml's AMX matmul (compiled in by -march=native on Intel CPUs with AMX, Sapphire Rapids and
later) segfaults on Q4_K weights (llama.cpp issue 20824), taking down the demo, the conversion
reports and the servers the launcher starts. scripts/setup.sh builds llama-cpp-python with the
AMX ISA turned off and runs this module after every install, because pip reuses a cached wheel
whatever the build flags say. Two checks, each one line:

1. the library's system info does not say `AMX_INT8 = 1` on a CPU that has AMX;
2. a tiny Q4_K_M build (the demo's ChatGLM architecture) evaluates in a child process, so a crash
   is reported as a signal instead of killing the checker.

Exit 0 when both hold, 1 otherwise. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

FIX = ("rebuild it without AMX: CFLAGS/CXXFLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' "
       "pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python (scripts/setup.sh does this)")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_amx() -> bool:
    return bool({"amx_int8", "amx_tile", "amx_bf16"} & cpu_flags())


def system_info() -> str:
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode(errors="replace")


def amx_kernels(info: str | None = None) -> bool:
    """Whether the loaded ggml has its AMX kernels (it reports `AMX_INT8 = 1` only then)."""
    return "AMX_INT8 = 1" in (system_info() if info is None else info)


def build_tiny_q4k(work: Path) -> Path:
    """A tiny random ChatGLMModel checkpoint -> F16 GGUF -> Q4_K_M GGUF under `work`; returns the Q4_K_M."""
    from converters.tiny import build_checkpoint

    from .core import convert
    from .quantize import quantize

    ckpt = build_checkpoint("chatglm", work / "ckpt")
    f16 = convert(ckpt, work / "tiny.F16.gguf", "F16")
    return quantize(f16, work / "tiny.Q4_K_M.gguf", "Q4_K_M")


def _evaluate(path: str) -> None:
    """Child side: load the build and run one batch of tokens through llama_decode."""
    import llama_cpp

    m = llama_cpp.Llama(path, n_ctx=64, n_batch=64, logits_all=True, verbose=False, seed=0)
    try:
        m.eval(list(range(1, 33)))
        row = m.scores[31]
        if not all(x == x for x in row[:16]):  # NaN logits are a broken kernel too
            raise SystemExit("logits are NaN")
    finally:
        m.close()


def evaluate_in_child(gguf: Path, timeout: float = 300) -> str | None:
    """None if `gguf` evaluates in a child process, else what went wrong (a signal, an error)."""
    r = subprocess.run([sys.executable, "-m", "converters.gguf.llama_check", "--evaluate", str(gguf)],
                       capture_output=True, text=True, timeout=timeout)
    return describe(r.returncode, r.stderr)


def describe(returncode: int, stderr: str) -> str | None:
    """A child's exit as one phrase: None for success, its signal's name, or its last error line."""
    if returncode == 0:
        return None
    if returncode < 0:
        return f"crashed with {signal.Signals(-returncode).name}"
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return f"failed (exit {returncode}): {tail}"


def problems() -> list[str]:
    """Everything wrong with the installed llama.cpp on this CPU, one line each; empty if it is safe."""
    out = []
    if cpu_has_amx() and amx_kernels():
        out.append("the installed llama-cpp-python runs ggml's AMX kernels on this AMX CPU (AMX_INT8 = 1), "
                   f"which crash on Q4_K weights; {FIX}")
    with tempfile.TemporaryDirectory(prefix="registry-llama-check-") as d:
        why = evaluate_in_child(build_tiny_q4k(Path(d)))
    if why:
        out.append(f"a tiny Q4_K_M build {why} in llama.cpp; {FIX}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--evaluate"]:
        _evaluate(argv[1])
        return 0
    found = problems()
    for line in found:
        print(f"llama.cpp check: {line}", file=sys.stderr)
    if not found:
        amx = "AMX CPU, AMX kernels off" if cpu_has_amx() else "no AMX on this CPU"
        print(f"llama.cpp check: ok ({amx}; a tiny Q4_K_M build evaluates)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
