"""Evaluation: metrics, thresholds, score normalisation, reports and plots."""
