"""The worker's web surface: read API, venue page, metrics. (Filled by the web/metrics work.)"""

from __future__ import annotations

from typing import Any

from rekap.settings import Settings


def install(app: Any, settings: Settings) -> None:
    """Register the worker's web views on the Faust app. Called once by ``streams.app``."""
