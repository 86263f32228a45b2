"""CLI start-up: the read commands (list, show, search, resolve, fit, ps; tables and --json) against
`python -c pass`.

Run: .venv/bin/python bench/cli_startup.py [runs]
Each command runs in a fresh interpreter, interleaved with the baseline, so both see the same machine load;
the ratio is each command's median over the baseline's median. The registry home is a fresh one (no
database; the compiled catalog is written by the warm-up run), and for the rows "with a store" one with a
registered family and a deployment in its SQLite store. Bytecode is cached as an install has it
(PYTHONDONTWRITEBYTECODE is dropped), so the figures are those of a second and later command.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
BASELINE = "python -c pass"
READS = [
    "list", "list --json",
    "show glm4-chat-1m", "show glm4-chat-1m --json",
    "search unsloth", "search unsloth --json",
    "resolve glm4-chat-1m:Q4_K", "resolve glm4-chat-1m:Q4_K --json",
    "fit glm4-chat-1m", "fit glm4-chat-1m --json",
    "ps", "ps --json",
]
COMMANDS = {BASELINE: [sys.executable, "-c", "pass"],
            **{f"registry {c}": [sys.executable, "-m", "registry", *c.split()] for c in READS}}
# the same command through typer and the pydantic models (the path --help and usage errors take)
TYPER = "registry list --json (typer path)"
COMMANDS[TYPER] = COMMANDS["registry list --json"]
# a home with a store: a registered family (a user's own spec) and a stopped deployment
STORED = {f"registry {c} (with a store)": [sys.executable, "-m", "registry", *c.split()]
          for c in ("list --json", "search glm --json", "ps -a --json")}
COMMANDS.update(STORED)
GOAL = 5.0  # times the baseline


def _store(env: dict) -> None:
    """A registered family and a stopped deployment in the home `env` names."""
    spec = os.path.join(env["REGISTRY_HOME"], "my-glm.yaml")
    for args in (["init", "my-glm", "--out", spec], ["register", spec]):
        subprocess.run([sys.executable, "-m", "registry", *args], env=env, stdout=subprocess.DEVNULL, check=True)
    code = ("from registry.store import Store; Store().add_deployment(family='glm4-chat-1m', format='ggufv2', "
            "quantization='Q4_K', engine='llama.cpp', argv=['x'], env={}, port=8080, status='stopped')")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(REGISTRY_HOME=tempfile.mkdtemp(prefix="glmreg-bench-"), COLUMNS="120")
    stored = {**env, "REGISTRY_HOME": tempfile.mkdtemp(prefix="glmreg-bench-")}
    _store(stored)
    envs = {name: {**env, "REGISTRY_TYPER_ONLY": "1"} if name == TYPER else stored if name in STORED else env
            for name in COMMANDS}
    for name, argv in COMMANDS.items():  # warm-up: bytecode and the compiled catalog written
        subprocess.run(argv, env=envs[name], stdout=subprocess.DEVNULL, check=True)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(RUNS):
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=envs[name], stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times[BASELINE])
    print(f"{RUNS} runs each; ratio = median / median of `{BASELINE}` in the same run (goal: {GOAL:g}x)")
    print(f"{'command':42} {'median s':>9} {'min s':>7} {'x python':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        mark = "" if name in (BASELINE, TYPER) else ("  ok" if med / base <= GOAL else "  over")
        print(f"{name:42} {med:9.3f} {min(ts):7.3f} {med / base:9.1f}{mark}")


if __name__ == "__main__":
    main()
