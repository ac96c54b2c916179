"""Turn a test's Settings into the REKAP_* environment of a child process, and run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``rekap ARGS...`` in a child process (this interpreter and venv); output captured as text."""
    return subprocess.run([sys.executable, "-m", "rekap.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
