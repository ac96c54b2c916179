"""Benchmarks of rekap. Run ``python -m bench.throughput --help``."""
