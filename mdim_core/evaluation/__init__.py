"""Scoring outputs against ground truth: metrics."""
