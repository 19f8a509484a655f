"""Evaluation: continual-learning metrics (and, per path, the evaluators in `everlearn.runs`)."""
