"""Offline evaluation: full-ranking and sampled protocols, metrics, exported top-K lists.

    from shoprec.evaluate import evaluate, SampledProtocol
    result = evaluate(model, split, k=(5, 10, 20))

Submodules: `protocol` (evaluate, evaluate_scores, SampledProtocol, EvaluationResult),
`metrics` (the metric functions on plain arrays), `export` (write, read and re-score top-K lists).
"""

from shoprec.evaluate.export import export_topk, read_topk, score_export
from shoprec.evaluate.protocol import EvaluationResult, SampledProtocol, evaluate, evaluate_scores

__all__ = [
    "EvaluationResult",
    "SampledProtocol",
    "evaluate",
    "evaluate_scores",
    "export_topk",
    "read_topk",
    "score_export",
]
