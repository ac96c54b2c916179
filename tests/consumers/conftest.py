"""Import kafka-python's admin client at collection time.

kafka-python 3.0 builds its protocol classes on first import with the
deprecated ``importlib.resources.read_text``; imported inside a test, that
warning becomes an error under ``filterwarnings = error``. (The lasting fix is
``ignore::DeprecationWarning:kafka.*`` in pyproject's filterwarnings.)
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.admin  # noqa: F401
