"""The quality report's maths, shared by every converter: how far a build's next-token
distributions are from its reference's over the same token sequence.

Report format: {"reference", "tokens", "kl_divergence", "top1_agreement"}, where
kl_divergence is KL(reference || build) averaged over positions and top1_agreement the share of
positions whose most likely next token is the same. Each converter only produces the logits
(llama.cpp for GGUF, Transformers for compressed-tensors).
"""

from __future__ import annotations


def repeat_to(ids: list[int], n: int) -> list[int]:
    """`ids` repeated and cut to exactly n tokens (a fixed text of any length gives n positions)."""
    if not ids:
        raise ValueError("no tokens to repeat")
    return (list(ids) * (n // len(ids) + 1))[:n]


def _log_softmax(logits):
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare_logits(reference, candidate, reference_name: str) -> dict:
    """The report for a build's logits vs its reference's: both [positions, vocab], same tokens."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != got.shape:
        raise ValueError(f"logits must be [positions, vocab] of one shape, got {ref.shape} and {got.shape}")
    p_log, q_log = _log_softmax(ref), _log_softmax(got)
    kl = float(np.mean(np.sum(np.exp(p_log) * (p_log - q_log), axis=-1)))
    top1 = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    # KL is never negative; rounding can give -1e-17 for identical distributions.
    return {"reference": reference_name, "tokens": int(ref.shape[0]), "kl_divergence": max(kl, 0.0),
            "top1_agreement": top1}
