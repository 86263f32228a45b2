"""compressed-tensors builds (vLLM `--quantization compressed-tensors`) through llm-compressor.

`run_convert(req)` is what `registry convert --to compressed-tensors` calls. Heavy libraries are
imported inside the functions that use them.
"""

from __future__ import annotations


def run_convert(req) -> list:
    from .build import run

    return run(req)
