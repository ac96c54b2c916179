"""Turn a test's Settings into the REKAP_* environment of a child process."""

from __future__ import annotations

import os
from dataclasses import fields

from rekap.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKAP_")}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f"REKAP_{f.name.upper()}"] = str(value)
    env.update(extra)
    return env
