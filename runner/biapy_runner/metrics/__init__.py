"""Scores against ground truth: instance matching and restoration metrics."""
