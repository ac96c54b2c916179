"""The one exception root of rekap.

::

    RekapError
    ├── ConfigError          a setting or file the operator must fix
    │   └── RegistryError    the registry file is invalid
    ├── KafkaUnavailable     the broker cannot be reached or refused a write
    ├── RedisUnavailable     Redis cannot be reached or answered an error
    └── RedisLostWrites      Redis no longer holds writes it acknowledged (the worker
                             re-applies the ledger from the offset fences; not an outage)

Errors from kafka-python, aiokafka and redis are translated into these at the
adapter boundary and re-raised ``from exc``, with a message that tells the
operator what to do. Bad *input* is never an exception: validation returns a
:class:`rekap.contract.Rejection`, and duplicates are a result too.
"""

from __future__ import annotations


class RekapError(Exception):
    """Base class of every error rekap raises on purpose."""


class ConfigError(RekapError):
    """A setting or configuration file is wrong; the message says which."""


class RegistryError(ConfigError):
    """The registry file does not describe a consistent programme."""


class LegacyLedger(ConfigError):
    """Redis holds a ledger in a layout this version cannot de-duplicate against."""


class KafkaUnavailable(RekapError):
    """Kafka could not be reached, or did not acknowledge a write in time."""


class RedisUnavailable(RekapError):
    """Redis could not be reached, or a script failed."""


class RedisLostWrites(RekapError):
    """Redis holds an offset fence below one the worker saw it hold: acknowledged writes are gone.

    Raised by the apply script's check, before it writes anything. ``fences``
    maps (root, partition) to the fence Redis holds now.
    """

    def __init__(self, fences: dict[tuple[str, int], int]) -> None:
        self.fences = fences
        where = ", ".join(f"{{{root}}} partition {p} at {f}" for (root, p), f in sorted(fences.items()))
        super().__init__(f"Redis lost acknowledged writes: fences fell back to {where}")
