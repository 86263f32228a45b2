"""GGUF converter: HF GLM checkpoints -> GGUF F16/BF16/Q8_0, then K-quants through libllama.

Public: convert(), quality_report(), run_convert() (what `registry convert --to ggufv2`
calls); quantize() is converters.gguf.quantize.quantize (a wrapper here would be replaced by the
submodule of the same name as soon as that is imported). Heavy imports (numpy, gguf, llama_cpp)
happen inside the functions.
"""

from __future__ import annotations


def convert(*args, **kwargs):
    from .core import convert as _convert

    return _convert(*args, **kwargs)


def quality_report(*args, **kwargs):
    from .report import quality_report as _qr

    return _qr(*args, **kwargs)


def run_convert(req):
    from .run import run_convert as _run

    return _run(req)
