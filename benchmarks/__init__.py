"""Benchmarks: run by hand (``python -m benchmarks.<name>``), never by pytest."""
