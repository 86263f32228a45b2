"""Start an engine's Python server process early, while the registry is still planning the launch.

A Python inference server spends most of its start-up importing its framework (llama-cpp-python's
server: ~0.45 s of a ~0.5 s start for a small model). `registry launch` spends about as long
importing the catalog, reading the store and estimating memory before it knows the server's argv.
Done one after the other that doubles the wait; so `registry launch` spawns the interpreter first
(`python -m registry.prestart MODULE`), which imports MODULE's __main__ and then blocks on stdin.
When the plan is ready, the registry sends the real argv (the engine's own `python -m MODULE ...`
command, which is what gets recorded) and the process runs MODULE as __main__ with it. If the plan
goes elsewhere (another engine, an error, --dry-run), stdin is closed and the process exits
without output: nothing is started that the user did not ask for.

Stdlib only, and little of it at module level: the waiting interpreter imports this module before
it starts on the server's imports, and the registry imports it before anything else.
"""

from __future__ import annotations

import json
import os
import sys

# The llama.cpp engine's server module; registry/engines/llamacpp.py builds its `python -m` command from
# this name (defined here because this module is imported before anything heavier).
LLAMA_CPP_SERVER = "llama_cpp.server"

# llama_cpp.server reads its settings from environment variables too (pydantic-settings, any case) and
# CONFIG_FILE replaces the argv altogether: PORT=5000 in a user's shell would move a server the registry
# waits for on another port. These are dropped from its environment (the fields of its ServerSettings and
# ModelSettings in llama-cpp-python 0.3.36; tests/test_launcher.py checks the list against the installed one).
LLAMA_CPP_ENV = frozenset("""
API_KEY DISABLE_PING_EVENTS HOST INTERRUPT_REQUESTS PORT ROOT_PATH SSL_CERTFILE SSL_KEYFILE CONFIG_FILE
CACHE CACHE_SIZE CACHE_TYPE CHAT_FORMAT CHAT_TEMPLATE_KWARGS CLIP_MODEL_PATH DRAFT_MODEL DRAFT_MODEL_NUM_PRED_TOKENS
EMBEDDING FLASH_ATTN HF_MODEL_REPO_ID HF_PRETRAINED_MODEL_NAME_OR_PATH HF_TOKENIZER_CONFIG_PATH KV_OVERRIDES
LAST_N_TOKENS_SIZE LOGITS_ALL LORA_BASE LORA_PATH MAIN_GPU MODEL MODEL_ALIAS MUL_MAT_Q N_BATCH N_CTX N_GPU_LAYERS
N_THREADS N_THREADS_BATCH N_UBATCH NUMA OFFLOAD_KQV ROPE_FREQ_BASE ROPE_FREQ_SCALE ROPE_SCALING_TYPE RPC_SERVERS
SEED SPLIT_MODE TENSOR_SPLIT TYPE_K TYPE_V USE_MLOCK USE_MMAP VERBOSE VOCAB_ONLY YARN_ATTN_FACTOR YARN_BETA_FAST
YARN_BETA_SLOW YARN_EXT_FACTOR YARN_ORIG_CTX
""".split())
UNSET_ENV = {LLAMA_CPP_SERVER: LLAMA_CPP_ENV}


def clean_env(unset: frozenset, extra: dict | None = None) -> dict:
    """This process's environment without the variables a server would take over its argv."""
    # REGISTRY_API_KEY is `registry serve`'s secret: no engine started from here needs it
    env = {k: v for k, v in os.environ.items() if k.upper() not in unset and k != "REGISTRY_API_KEY"}
    env.update(extra or {})
    return env


def option_value(argv: list[str], *names: str) -> str | None:
    """The value argv gives an option, as `--name VALUE` or `--name=VALUE` (None when absent)."""
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _gguf(argv: list[str]) -> bool:
    """The command line names a GGUF build: --format ggufv2 (or gguf), or, without a format, a GGUF
    quantization name (--quant or a FAMILY:QUANT tag), as the catalog would infer the format."""
    from .formats import GGUF_QUANTS
    from .naming import format_name, quant_key

    fmt = option_value(argv, "--format", "-f")
    if fmt is not None:
        return format_name(fmt) == "ggufv2"
    words = [w for w in argv[2:] if not w.startswith("-")]
    quant = option_value(argv, "--quant", "-q") or (words[0].partition(":")[2] if words else "")
    return bool(quant) and quant_key(quant) in {quant_key(q) for q in GGUF_QUANTS}


def guess(argv: list[str]) -> str | None:
    """The server module a `registry launch ...` command line will most likely run, or None.

    Only the llama.cpp path is guessed: a GGUF build (or --engine llama.cpp) on this machine, one
    node. A wrong guess costs an interpreter that exits at once; a missed one costs only the overlap.
    """
    if len(argv) < 2 or argv[1] != "launch" or os.environ.get("REGISTRY_NO_PRESTART"):
        return None
    if any(a in ("--dry-run", "--help", "-h") or a.startswith("--hardware") for a in argv[2:]):
        return None
    if (option_value(argv, "--nodes") or "1") != "1":
        return None
    from .naming import engine_name

    engine = engine_name(option_value(argv, "--engine", "-e"))
    if engine not in (None, "llama.cpp") or (engine is None and not _gguf(argv)):
        return None
    import importlib.util

    try:
        if importlib.util.find_spec("llama_cpp") is None:
            return None
    except (ImportError, ValueError):
        return None
    return LLAMA_CPP_SERVER


class Prestarted:
    """A server interpreter waiting on stdin for its argv."""

    def __init__(self, module: str, log_dir):
        import subprocess
        import tempfile
        from pathlib import Path

        self.module = module
        self.settled = False  # handed its argv, or cancelled
        # The registry's pid in the name: a log left by a registry that was killed can be told apart
        fd, name = tempfile.mkstemp(prefix=f".prestart-{os.getpid()}-", suffix=".log", dir=log_dir)
        self.log_path = Path(name)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, module], stdin=subprocess.PIPE, stdout=fd,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=clean_env(UNSET_ENV.get(module, frozenset())))
        finally:
            os.close(fd)

    def matches(self, argv: list[str], env: dict) -> bool:
        """Whether this process can run `argv`: the same interpreter and module, no environment of its own
        (variables a framework reads at import time would come too late)."""
        return argv[:3] == [sys.executable, "-m", self.module] and not env and self.proc.poll() is None

    def run(self, argv: list[str], log_path):
        """Hand over the argv; the log collected so far moves to log_path. Raises OSError if the process
        is gone (the caller then starts the command the ordinary way)."""
        os.replace(self.log_path, log_path)
        self.log_path = log_path
        self.proc.stdin.write((json.dumps({"argv": argv[3:]}) + "\n").encode())
        self.proc.stdin.close()
        self.settled = True
        return self.proc

    def cancel(self) -> None:
        """Let the waiting process exit unused; nothing once it has been handed its argv or cancelled."""
        if self.settled:
            return
        self.settled = True
        try:
            self.proc.stdin.close()  # EOF: a child done importing exits without running anything
        except OSError:
            pass
        # One still importing its framework would read the EOF only then (~0.3 s later, which a launch that
        # failed early made the user wait for): it has been handed nothing and runs nothing, so it is ended.
        self.proc.kill()
        self.proc.wait()
        self.log_path.unlink(missing_ok=True)


_pending: Prestarted | None = None


def start(argv: list[str]) -> None:
    """Called first thing by the CLI: prestart the server a launch command line will need."""
    global _pending
    module = guess(argv)
    if module is None:
        return
    try:
        from . import paths

        logs = paths.logs_dir()
        _remove_orphan_logs(logs)
        _pending = Prestarted(module, logs)
    except OSError:
        _pending = None  # no prestart: the launch starts the server the ordinary way


def _remove_orphan_logs(log_dir) -> None:
    """Logs of prestarts whose registry process was killed before it could hand over or cancel."""
    from .procs import pid_exists

    for p in log_dir.glob(".prestart-*-*.log"):
        pid = p.name.split("-")[1]
        if pid.isdigit() and not pid_exists(int(pid)):
            p.unlink(missing_ok=True)


def claim() -> Prestarted | None:
    """The prestarted process, once (the launcher takes it, or cancels it)."""
    global _pending
    p, _pending = _pending, None
    return p


def _main(module: str) -> None:
    import importlib
    import runpy

    # Import the server's modules now; its __main__ is dropped again so that runpy executes it fresh.
    importlib.import_module(module + ".__main__")
    sys.modules.pop(module + ".__main__", None)
    line = sys.stdin.readline()
    if not line:
        return  # the registry chose otherwise or stopped: nothing to run
    req = json.loads(line)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # as a server started with stdin from /dev/null
    os.close(null)
    sys.argv = [module, *req["argv"]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(sys.argv[1])
