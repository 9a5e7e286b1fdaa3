"""Benchmarks against PyTorch: the PyTorch twins of every model and the timing harness.

Importing this package needs torch (a test/benchmark extra, not a runtime dependency).
"""
