"""The one exception root of rekap.

::

    RekapError
    ├── ConfigError          a setting or file the operator must fix
    │   └── RegistryError    the registry file is invalid
    ├── KafkaUnavailable     the broker cannot be reached or refused a write
    └── RedisUnavailable     Redis cannot be reached or answered an error

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


class KafkaUnavailable(RekapError):
    """Kafka could not be reached, or did not acknowledge a write in time."""


class RedisUnavailable(RekapError):
    """Redis could not be reached, or a script failed."""
