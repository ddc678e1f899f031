"""Evaluation: metrics on hit matrices, the full-ranking evaluator, statistics and reports."""

from recforge.evaluate.evaluator import Report, evaluate

__all__ = ["Report", "evaluate"]
