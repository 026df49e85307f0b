"""sessiondb's benchmark harness: `python -m benchmarks --help` (see docs/benchmarks.md)."""
