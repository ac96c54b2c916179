"""Turn a test's Settings into the REKAP_* environment of a child process, and run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

from rekap.settings import Settings


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its ``REKAP_*`` variables, plus ``extra``.

    For a child that must not inherit the developer's or CI's ``REKAP_*`` settings.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith("REKAP_")} | extra


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with its ``REKAP_*`` replaced by ``settings``, plus ``extra``."""
    return clean_env() | settings.to_env() | extra


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``rekap ARGS...`` in a child process (this interpreter and venv); output captured as text."""
    return subprocess.run([sys.executable, "-m", "rekap.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
