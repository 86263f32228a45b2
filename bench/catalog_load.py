"""Catalog load: parse + validate every shipped spec (cold) against a cached look-up, same process.

Run: .venv/bin/python bench/catalog_load.py
"""

from __future__ import annotations

import statistics
import time

import registry
from registry.catalog import _load_shipped

RUNS = 50


def main() -> None:
    cold = []
    for _ in range(RUNS):
        _load_shipped.cache_clear()
        t0 = time.perf_counter()
        cat = registry.catalog(include_user=False)
        cold.append(time.perf_counter() - t0)
    warm = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        registry.catalog(include_user=False).get("glm4-chat-1m")
        warm.append(time.perf_counter() - t0)
    n = len(cat.names())
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"families: {n}")
    print(f"cold parse+validate: {c * 1000:.2f} ms ({c / n * 1000:.2f} ms per family)")
    print(f"cached look-up:      {w * 1e6:.1f} us  (cold/cached = {c / w:.0f}x)")


if __name__ == "__main__":
    main()
