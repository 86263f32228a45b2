"""Quality report: KL divergence and top-1 agreement of a build's next-token distributions vs the F16 build.

Both builds run in llama.cpp (llama_cpp.Llama, logits for every position) over the same fixed
token sequence: the F16 model's tokenization of a fixed text, repeated to `n_tokens`. The maths
is converters.quality's, shared with the compressed-tensors check.
"""

from __future__ import annotations

from pathlib import Path

from ..quality import compare_logits, repeat_to

TEXT = (
    "The quick brown fox jumps over the lazy dog. GLM models answer questions, write code and call tools. "
    "In 1905 Einstein published four papers; one of them introduced E = mc^2. "
    "def add(a, b):\n    return a + b\n"
    "北京是中国的首都。上海是一座国际化大都市。"
)


def _logits(path: Path, tokens: list[int]):
    import numpy as np
    import llama_cpp

    m = llama_cpp.Llama(str(path), logits_all=True, n_ctx=max(64, len(tokens) + 8), n_batch=len(tokens) + 8,
                        verbose=False, seed=0)
    try:
        m.eval(tokens)
        return np.array(m.scores[: len(tokens)], dtype=np.float64)
    finally:
        m.close()


def fixed_tokens(reference: Path, n_tokens: int = 64) -> list[int]:
    import llama_cpp
    from llama_cpp import _internals

    # The vocabulary alone, without the context llama_cpp.Llama would create for it: that context
    # logs "n_ctx_seq (512) > n_ctx_train (0)" past verbose=False, since a vocab-only load has no
    # training context. LlamaModel(verbose=False) keeps the loader's own log quiet.
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    m = _internals.LlamaModel(path_model=str(reference), params=params, verbose=False)
    try:
        toks = m.tokenize(TEXT.encode(), add_bos=False, special=False)
    finally:
        m.close()
    return repeat_to([t for t in toks if t >= 0] or [0], n_tokens)


def quality_report(reference: Path, candidates: dict[str, Path], n_tokens: int = 64,
                   reference_name: str = "F16") -> dict[str, dict]:
    """{quant: {"reference": reference_name, "tokens", "kl_divergence", "top1_agreement"}} per candidate."""
    tokens = fixed_tokens(reference, n_tokens)
    ref = _logits(reference, tokens)
    return {name: compare_logits(ref, _logits(path, tokens), reference_name) for name, path in candidates.items()}
