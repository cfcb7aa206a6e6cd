"""Evaluation: test sets, quality indexes of fusers on them, and the benchmark runner."""
