"""Aggregation: the Faust app, its agents, the Redis apply, and the worker's web views."""
