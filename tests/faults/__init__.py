"""Fault suite: rekap's totals stay exact while Kafka, Redis and workers are killed under load.

Each scenario streams the seeded Lagawi Fest simulator into a private stack (its own
Kafka and Redis, never the session's shared one), injects one kind of fault mid-stream
with real processes and real signals, and then holds Redis to the simulator's ground
truth. ``tests/faults/harness.py`` explains what is measured and how; ``make faults``
runs the long version and keeps the summary in ``.rekap/faults-report.json``.
"""
