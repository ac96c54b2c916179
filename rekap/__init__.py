"""rekap — exact sales tallies for Indonesian IKM sales programmes.

The shared kernel lives here: settings, the exception root, names (topics and
the Redis key layout), money, days, the sale contract and the registry. The
three pipeline stages are top-level packages of their own: a sale enters in
``producers``, is aggregated in ``streams``, leaves in ``consumers``.
"""

__version__ = "0.1.0"
