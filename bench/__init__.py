"""Benchmarks: ``python -m bench.<name> --help``. Figures are recorded in docs/benchmarks.md."""
