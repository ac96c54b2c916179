"""Benchmarks of rekap: ``make bench`` runs ``python -m bench`` (see ``--help``).

One step alone: ``python -m bench.throughput``, ``bench.latency``, ``bench.memory``,
``bench.apply``.
"""
