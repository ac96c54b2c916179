"""``rekap watch EVENT --once`` prints one frame of the live leaderboard, in Indonesian."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rekap.settings import Settings
from tests.streams.web.conftest import KOKAS
from tests.support.env import settings_env

pytestmark = pytest.mark.integration


def test_watch_once_prints_the_leaderboard(seeded: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rekap.cli", "watch", KOKAS, "--once"],
        env=settings_env(seeded, COLUMNS="120", NO_COLOR="1"), capture_output=True, text=True,
        timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for label in ("Papan Peringkat", "Total Penjualan", "Transaksi", "Penjualan Terbaru"):
        assert label in text
    assert "Rp2,6 juta" in text and "Rp2.600.000" in text
    lines = [ln for ln in text.splitlines() if "Lampung Ethnica" in ln or "Pisang Shamiya" in ln]
    assert "Lampung Ethnica" in lines[0] and "Rp2 juta" in lines[0]
    assert "Pisang Shamiya" in lines[1] and "Rp300.000" in lines[1]


def test_watch_unknown_event_says_so(seeded: Settings) -> None:
    out = subprocess.run([sys.executable, "-m", "rekap.cli", "watch", "nope", "--once"],
                         env=settings_env(seeded), capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2
    assert "not in the registry" in out.stderr
