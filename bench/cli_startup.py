"""CLI start-up: `registry list --json` and a cold `registry show` against `python -c pass`.

Run: .venv/bin/python bench/cli_startup.py [runs]
Each command runs in a fresh interpreter, interleaved, so the baseline sees the same machine load.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "registry list --json": [sys.executable, "-m", "registry", "list", "--json"],
    "registry show glm4-chat-1m": [sys.executable, "-m", "registry", "show", "glm4-chat-1m"],
    "registry show glm4-chat-1m --json": [sys.executable, "-m", "registry", "show", "glm4-chat-1m", "--json"],
}


def main() -> None:
    env = {**os.environ, "REGISTRY_HOME": tempfile.mkdtemp(prefix="glmreg-bench-"), "COLUMNS": "120"}
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(RUNS):
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':40} {'median s':>9} {'min s':>7} {'x python':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:40} {med:9.3f} {min(ts):7.3f} {med / base:9.1f}")


if __name__ == "__main__":
    main()
