"""``rekap booth status``: pending / sent / rejected counts, refunds and net rupiah of an outbox.

Sales are recorded with the real ``rekap booth record``, moved between states the way
``sync`` moves them (the outbox API, or a real ``rekap booth sync`` against a real
ingest server), and ``booth status`` is read back as JSON and as the table. ``status``
and ``sync`` never create an outbox: a mistyped booth id is an error, not an empty box.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from producers.booth.outbox import Outbox
from rekap.errors import ConfigError
from rekap.settings import Settings
from tests.producers.conftest import Ingest
from tests.support.env import run_cli, settings_env
from tests.support.kafka import read_all
from tests.support.procs import free_port

#: Inside the Kota Kasablanka exhibition (1–6 June 2022, WIB), the event of booths kokas-*.
AT = "2022-06-02T{:02d}:15:00+07:00"


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """REKAP_* of ``settings``; a wide, plain console so rich neither wraps nor styles the table."""
    env = settings_env(settings, COLUMNS="200", NO_COLOR="1", **extra)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    return env


def record(env: dict[str, str], *args: str) -> str:
    """``rekap booth record ...``; returns the sale_id it minted."""
    proc = run_cli(env, "booth", "record", *args)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[0] == "tercatat" and len(words[1]) == 26, proc.stdout
    return words[1]


def status_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = run_cli(env, "booth", "status", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def status_doc(counts: tuple[int, int, int], amounts_idr: tuple[int, int, int],
               refunds: tuple[int, int, int] = (0, 0, 0), booth_id: str = "kokas-01") -> dict[str, Any]:
    """The ``booth status --json`` document, each triple given as (pending, sent, rejected)."""
    def states(values: tuple[int, int, int]) -> dict[str, int]:
        return dict(zip(("pending", "sent", "rejected"), values, strict=True))

    return {"booth_id": booth_id, "counts": states(counts), "refunds": states(refunds),
            "amounts_idr": states(amounts_idr)}


def status_table(env: dict[str, str], *args: str
                 ) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """The table's rows as ``{label: (jumlah, retur, nilai bersih)}``, and the lines after it."""
    proc = run_cli(env, "booth", "status", *args)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    rows: dict[str, tuple[str, str, str]] = {}
    after: list[str] = []
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]  # header: heavy bars
        if len(cells) == 4:
            rows[cells[0]] = (cells[1], cells[2], cells[3])
        elif line.startswith("ditolak "):
            after.append(line)
    return rows, after


def test_status_reports_each_state_as_sync_marks_it(tmp_path: Path) -> None:
    settings = Settings.from_env(runtime_dir=tmp_path / "runtime")
    env = cli_env(settings, REKAP_BOOTH_ID="kokas-01")
    amounts = ["100000", "Rp125.000", "150000", "200000", "35000"]
    ids = [record(env, "--ikm", "lampung-ethnica", "--amount", a, "--qty", "2", "--at", AT.format(10 + i))
           for i, a in enumerate(amounts)]
    outbox_path = settings.runtime_dir / "booth" / "kokas-01.sqlite3"
    assert outbox_path.exists()  # the default outbox: <runtime_dir>/booth/<booth-id>.sqlite3

    assert status_json(env) == status_doc(counts=(5, 0, 0), amounts_idr=(610_000, 0, 0))

    # What sync does with one answer: every item attempted, then accepted → sent, 4xx → rejected.
    with Outbox(outbox_path) as outbox:
        outbox.attempted(ids[:3])
        outbox.mark_sent([ids[0], ids[1]])
        outbox.mark_rejected([(ids[2], "outside_event_window", "2022-06-07 is after the event")])
        outbox.mark_sent([ids[2]])  # a late acknowledgement never flips a settled sale

    assert status_json(env) == status_doc(counts=(2, 2, 1), amounts_idr=(235_000, 225_000, 150_000))
    rows, rejected = status_table(env)
    assert rows == {"Status": ("Jumlah", "Retur", "Nilai bersih"), "tertunda": ("2", "0", "Rp235.000"),
                    "terkirim": ("2", "0", "Rp225.000"), "ditolak": ("1", "0", "Rp150.000")}
    assert rejected == [f"ditolak {ids[2]}: outside_event_window — 2022-06-07 is after the event"]


def test_status_reads_only_the_outbox_it_is_given(tmp_path: Path) -> None:
    settings = Settings.from_env(runtime_dir=tmp_path / "runtime")
    env = cli_env(settings)
    other = tmp_path / "tablet-2.sqlite3"
    record(env, "--booth-id", "kokas-02", "--ikm", "pisang-shamiya", "--amount", "42000",
           "--at", AT.format(11))
    record(env, "--booth-id", "kokas-02", "--outbox", str(other), "--ikm", "pisang-shamiya",
           "--amount", "58000", "--at", AT.format(12))
    record(env, "--booth-id", "kokas-02", "--outbox", str(other), "--ikm", "pisang-shamiya",
           "--amount", "60000", "--at", AT.format(13))
    assert status_json(env, "--booth-id", "kokas-02")["counts"] == {"pending": 1, "sent": 0, "rejected": 0}
    doc = status_json(env, "--booth-id", "kokas-02", "--outbox", str(other))
    assert doc["counts"] == {"pending": 2, "sent": 0, "rejected": 0}
    assert doc["amounts_idr"]["pending"] == 118_000
    rows, rejected = status_table(env, "--booth-id", "kokas-02", "--outbox", str(other))
    assert rows["tertunda"] == ("2", "0", "Rp118.000") and rows["ditolak"] == ("0", "0", "Rp0")
    assert rejected == []


def test_amounts_are_net_rupiah_refunds_subtract(tmp_path: Path) -> None:
    settings = Settings.from_env(runtime_dir=tmp_path / "runtime")
    env = cli_env(settings, REKAP_BOOTH_ID="kokas-01")
    sold = record(env, "--ikm", "lampung-ethnica", "--amount", "Rp125.000", "--at", AT.format(10))
    refund = record(env, "--ikm", "lampung-ethnica", "--amount", "125000", "--qty", "1",
                    "--refund-of", sold, "--at", AT.format(11))
    other = record(env, "--ikm", "lampung-ethnica", "--amount", "50000", "--at", AT.format(12))

    # A sale and its full refund are Rp0 in the cash box, not Rp250.000.
    assert status_json(env) == status_doc(counts=(3, 0, 0), amounts_idr=(50_000, 0, 0), refunds=(1, 0, 0))
    rows, _ = status_table(env)
    assert rows["tertunda"] == ("3", "1", "Rp50.000")

    # The sale went out before its refund: each state shows its own net, the refund negative.
    outbox_path = settings.runtime_dir / "booth" / "kokas-01.sqlite3"
    with Outbox(outbox_path) as outbox:
        outbox.mark_sent([sold])
        outbox.mark_rejected([(other, "outside_event_window", "test")])
        assert outbox.amounts() == {"pending": -125_000, "sent": 125_000, "rejected": 50_000}
        assert outbox.refunds() == {"pending": 1, "sent": 0, "rejected": 0}
    doc = status_json(env)
    assert doc["amounts_idr"] == {"pending": -125_000, "sent": 125_000, "rejected": 50_000}
    assert all(type(v) is int for v in doc["amounts_idr"].values())
    rows, _ = status_table(env)
    assert rows["tertunda"] == ("1", "1", "-Rp125.000")
    assert rows["terkirim"] == ("1", "0", "Rp125.000")
    assert rows["ditolak"] == ("1", "0", "Rp50.000")

    with Outbox(outbox_path) as outbox:
        outbox.mark_sent([refund])
    assert status_json(env)["amounts_idr"] == {"pending": 0, "sent": 0, "rejected": 50_000}


@pytest.mark.parametrize("command", ["status", "sync"])
def test_status_and_sync_never_create_an_outbox(tmp_path: Path, command: str) -> None:
    settings = Settings.from_env(runtime_dir=tmp_path / "runtime")
    env = cli_env(settings, REKAP_BOOTH_TOKEN="not-used", REKAP_BOOTH_URL="http://127.0.0.1:9")
    record(env, "--booth-id", "kokas-01", "--ikm", "lampung-ethnica", "--amount", "42000",
           "--at", AT.format(10))
    booth_dir = settings.runtime_dir / "booth"
    assert sorted(p.name for p in booth_dir.iterdir()) == ["kokas-01.sqlite3"]

    typo = booth_dir / "typo-99.sqlite3"
    proc = run_cli(env, "booth", command, "--booth-id", "typo-99")
    assert proc.returncode == 2, proc.stdout
    assert f"no booth outbox at {typo}" in proc.stderr
    assert proc.stdout == ""
    missing = tmp_path / "elsewhere" / "tablet.sqlite3"
    proc = run_cli(env, "booth", command, "--booth-id", "kokas-01", "--outbox", str(missing))
    assert proc.returncode == 2, proc.stdout
    assert f"no booth outbox at {missing}" in proc.stderr
    assert not missing.parent.exists()
    assert sorted(p.name for p in booth_dir.iterdir()) == ["kokas-01.sqlite3"]


def test_outbox_opens_without_creating_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "booth" / "kokas-01.sqlite3"
    with pytest.raises(ConfigError, match="no booth outbox at"):
        Outbox(path, create=False)
    assert not path.parent.exists()
    with Outbox(path) as outbox:  # create=True is the default: `record` makes the file
        assert outbox.counts() == {"pending": 0, "sent": 0, "rejected": 0}
    with Outbox(path, create=False) as outbox:
        assert outbox.counts() == {"pending": 0, "sent": 0, "rejected": 0}
    path.unlink()
    for side in path.parent.iterdir():  # -wal / -shm left beside it
        side.unlink()
    with pytest.raises(ConfigError, match="no booth outbox at"):
        Outbox(path, create=False)
    assert not path.exists()


def test_status_without_a_booth_id_is_a_config_error(tmp_path: Path) -> None:
    proc = run_cli(cli_env(Settings.from_env(runtime_dir=tmp_path / "runtime")), "booth", "status")
    assert proc.returncode == 2
    assert "give --booth-id or set REKAP_BOOTH_ID" in proc.stderr


@pytest.mark.integration
async def test_status_after_real_syncs_matches_what_ingest_did(ingest: Ingest, tmp_path: Path) -> None:
    settings = ingest.settings
    outbox = tmp_path / "tablet.sqlite3"
    env = cli_env(settings, REKAP_BOOTH_TOKEN=ingest.tokens["booths"]["kokas-01"])
    mine = [await asyncio.to_thread(record, env, "--booth-id", "kokas-01", "--outbox", str(outbox),
                                    "--ikm", "lampung-ethnica", "--amount", str(a), "--at", AT.format(9 + i))
            for i, a in enumerate((50_000, 75_000, 125_000))]
    # The tablet was used by the neighbouring booth too: ingest refuses its sale for kokas-01's token.
    foreign = await asyncio.to_thread(record, env, "--booth-id", "kokas-02", "--outbox", str(outbox),
                                      "--ikm", "pisang-shamiya", "--amount", "40000", "--at", AT.format(14))
    common = ("--booth-id", "kokas-01", "--outbox", str(outbox))

    # Venue Wi-Fi down: nothing answers, sync gives up, everything stays pending.
    down = await asyncio.to_thread(run_cli, env, "booth", "sync", *common,
                                   "--url", f"http://127.0.0.1:{free_port()}", "--max-attempts", "1")
    assert down.returncode == 3, down.stderr
    assert "terkirim 0, ditolak 0, tertunda 4" in down.stdout
    assert (await asyncio.to_thread(status_json, env, *common))["counts"] == \
        {"pending": 4, "sent": 0, "rejected": 0}

    up = await asyncio.to_thread(run_cli, env, "booth", "sync", *common, "--url", ingest.url, "--batch", "2")
    assert up.returncode == 0, up.stderr
    assert "terkirim 3, ditolak 1, tertunda 0" in up.stdout
    later = await asyncio.to_thread(record, env, *common, "--ikm", "lampung-ethnica", "--amount", "20000",
                                    "--at", AT.format(16))

    assert await asyncio.to_thread(status_json, env, *common) == \
        status_doc(counts=(1, 3, 1), amounts_idr=(20_000, 250_000, 40_000))
    rows, rejected = await asyncio.to_thread(status_table, env, *common)
    assert rows["tertunda"] == ("1", "0", "Rp20.000")
    assert rows["terkirim"] == ("3", "0", "Rp250.000")
    assert rows["ditolak"] == ("1", "0", "Rp40.000")
    assert len(rejected) == 1 and rejected[0].startswith(f"ditolak {foreign}: booth_not_allowed — ")

    # "sent" means in the ledger: exactly the three accepted sales, once each; not the others.
    values = [r.value for r in read_all(settings, settings.topic_sales)]
    on_topic = Counter(json.loads(v)["sale_id"] for v in values if v is not None)
    assert sum(on_topic.values()) == len(values)
    assert on_topic == Counter(mine)
    assert later not in on_topic and foreign not in on_topic
