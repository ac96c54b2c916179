"""``rekap import virtual-expo FILE.csv --via ingest`` against a real ingest server and broker.

The CLI runs as a child process with a real ``virtual_expo`` channel token; what
it claims is checked against the real sales topic. With ``--via ingest`` it reports
ingest's own answer for each row, not its local validation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from producers.ingest.app import STATE
from rekap.settings import Settings
from tests.producers.conftest import Ingest, start_ingest, with_tokens
from tests.support.env import run_cli, settings_env
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "producers" / "samples" / "virtual-expo.csv"

#: What the sample's SETTLED and REFUND rows must become (its PENDING row is ignored).
EXPECTED: dict[str, dict[str, Any]] = {
    "vx:telkom:VX220325-0001": {"kind": "sale", "ikm_id": "askha-jaya", "amount_idr": 180_000,
                                "quantity": 2, "occurred_at": "2022-03-25T14:02:11+07:00"},
    "vx:telkom:VX220325-0002": {"kind": "sale", "ikm_id": "kopi-bukit-tanggamus", "amount_idr": 145_000,
                                "quantity": 1, "occurred_at": "2022-03-25T14:10:45+07:00"},
    "vx:telkom:VX220326-0003": {"kind": "sale", "ikm_id": "tapis-sekar-ayu", "amount_idr": 1_250_000,
                                "quantity": 1, "occurred_at": "2022-03-26T09:31:00+07:00"},
    "vx:telkom:VX220326-0004": {"kind": "refund", "ikm_id": "askha-jaya", "amount_idr": 90_000,
                                "quantity": 1, "occurred_at": "2022-03-26T11:00:00+07:00",
                                "refund_of": "vx:telkom:VX220325-0001"},
}

#: Rows appended after the sample's five (file lines 7, 8, 9, 10), each bad in its own way.
BAD_ROWS = (
    "VX220328-0006,askha-jaya,2022-03-28 10:00:00,AJ-KOPI-500,1,sembilan puluh ribu,SETTLED,\n"
    "VX220328-0007,toko-tidak-ada,2022-03-28 10:05:00,X-1,1,50000,SETTLED,\n"
    "VX220328-0008,askha-jaya,kemarin sore,AJ-KOPI-500,1,50000,SETTLED,\n"
    "VX220328-0009,askha-jaya,2022-03-28 11:00:00,AJ-KOPI-500,1,90000,REFUND,\n"
)
BAD_REASONS = {
    "line 7 (VX220328-0006)": "wrong_type",
    "line 8 (VX220328-0007)": "unknown_ikm",
    "line 9 (VX220328-0008)": "bad_timestamp",
    "line 10 (VX220328-0009)": "missing_field",
}


async def rekap_import(ingest: Ingest, *args: str, channel: str | None = "virtual_expo",
                       env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rekap import virtual-expo ...`` with the test's settings and, in ``REKAP_CHANNEL_TOKEN``,
    the token of ``channel`` (None: no token in the environment); ``env_extra`` overrides."""
    extra = {"REKAP_CHANNEL_TOKEN": ingest.tokens["channels"][channel]} if channel else {}
    env = settings_env(ingest.settings, **extra, **(env_extra or {}))
    return await asyncio.to_thread(run_cli, env, "import", "virtual-expo", *args)


def ledger(ingest: Ingest) -> list[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of every record in the test's sales topic."""
    out = []
    for r in read_all(ingest.settings, ingest.settings.topic_sales):
        assert r.value is not None
        out.append((r.partition, r.offset, r.key, r.value))
    return out


def sale_ids(records: list[tuple[int, int, bytes | None, bytes]]) -> Counter[str]:
    return Counter(json.loads(value)["sale_id"] for _, _, _, value in records)


def assert_expected(records: list[tuple[int, int, bytes | None, bytes]]) -> None:
    for _, _, key, value in records:
        sale = json.loads(value)
        want = EXPECTED[sale["sale_id"]]
        assert {k: sale.get(k) for k in want} == want
        assert (sale["channel"], sale["event_id"], key) == ("virtual_expo", "lagawi-2022",
                                                           want["ikm_id"].encode())
        assert sale["source"] == {"provider": "telkom", "trx_id": sale["sale_id"].rsplit(":", 1)[1]}


async def test_import_lands_each_sale_once_and_a_reimport_sends_the_same_ids(ingest: Ingest) -> None:
    first = await rekap_import(ingest, str(SAMPLE), "--via", "ingest")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("4 diterima, 0 ditolak, 1 diabaikan")
    once = ledger(ingest)
    assert sale_ids(once) == Counter(list(EXPECTED))  # each exactly once, nothing else
    assert_expected(once)

    again = await rekap_import(ingest, str(SAMPLE), "--via", "ingest")
    assert again.returncode == 0, again.stderr
    twice = ledger(ingest)
    assert sale_ids(twice) == Counter({sale_id: 2 for sale_id in EXPECTED})
    # The second import's records are byte for byte the first's, with the same key, so they land
    # in the same partition: the worker sees them as resends of sales it already counted.
    new = sorted(set(twice) - set(once))
    assert len(new) == 4
    by_id = {json.loads(v)["sale_id"]: (p, k, v) for p, _, k, v in once}
    for p, _, k, v in new:
        assert by_id[json.loads(v)["sale_id"]] == (p, k, v)


async def test_malformed_rows_are_reported_with_a_reason_and_the_good_rows_land(
        ingest: Ingest, tmp_path: Path) -> None:
    csv_file = tmp_path / "export.csv"
    csv_file.write_text(SAMPLE.read_text() + BAD_ROWS)
    proc = await rekap_import(ingest, str(csv_file), "--via", "ingest", "--url", ingest.url,
                              "--token", ingest.tokens["channels"]["virtual_expo"], channel=None)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == f"{csv_file}: 4 diterima, 4 ditolak, 1 diabaikan"
    reported = [line for line in proc.stderr.splitlines() if line.startswith("ditolak ")]
    assert len(reported) == len(BAD_REASONS)
    for ref, reason in BAD_REASONS.items():
        (line,) = [r for r in reported if r.startswith(f"ditolak {ref}: ")]
        head, _, detail = line.partition(" — ")
        assert head == f"ditolak {ref}: {reason}" and detail.strip(), line
    records = ledger(ingest)
    assert sale_ids(records) == Counter(list(EXPECTED))
    assert_expected(records)


@pytest.mark.parametrize("via", ["ingest", "kafka"])
async def test_dry_run_prints_the_mapped_sales_and_produces_nothing(ingest: Ingest, via: str) -> None:
    proc = await rekap_import(ingest, str(SAMPLE), "--via", via, "--dry-run", channel=None)
    assert proc.returncode == 0, proc.stderr
    *lines, summary = proc.stdout.strip().splitlines()
    assert summary == f"{SAMPLE}: 4 diterima, 0 ditolak, 1 diabaikan"
    printed = [json.loads(line) for line in lines]
    assert [s["sale_id"] for s in printed] == list(EXPECTED)
    for sale in printed:
        want = EXPECTED[sale["sale_id"]]
        assert {k: sale.get(k) for k in want} == want
        assert (sale["schema_version"], sale["channel"], sale["event_id"]) == (1, "virtual_expo",
                                                                               "lagawi-2022")
    assert ledger(ingest) == []


@pytest.mark.parametrize(("channel", "message"), [
    (None, "give --token or set REKAP_CHANNEL_TOKEN"),
    ("website", "ingest answered 403"),  # a real token, of another channel
])
async def test_import_without_the_channels_token_fails_and_produces_nothing(
        ingest: Ingest, channel: str | None, message: str) -> None:
    proc = await rekap_import(ingest, str(SAMPLE), "--via", "ingest", channel=channel)
    assert proc.returncode == 2
    assert message in proc.stderr
    if channel:
        assert "channel_not_allowed" in proc.stderr
    assert ledger(ingest) == []


@pytest.fixture
async def strict_ingest(settings: Settings, tmp_path: Path) -> AsyncIterator[Ingest]:
    """A real ingest whose registry caps one sale at Rp1.000.000 where the CLI's allows Rp500 juta
    (ingest picks up registry changes the CLI's copy may not have yet)."""
    text = settings.registry_path.read_text(encoding="utf-8")
    assert text.count("max_sale_idr = 500000000\n") == 1
    registry = tmp_path / "stricter-registry.toml"
    registry.write_text(text.replace("max_sale_idr = 500000000\n", "max_sale_idr = 1000000\n"),
                        encoding="utf-8")
    s, tokens = with_tokens(dataclasses.replace(settings, registry_path=registry), tmp_path / "tokens")
    runner, app = await start_ingest(s)
    try:
        yield Ingest(f"http://{s.host}:{s.ingest_port}", s, tokens, app)
    finally:
        await runner.cleanup()


async def test_the_report_is_what_ingest_decided_not_the_local_check(
        strict_ingest: Ingest, settings: Settings) -> None:
    # The CLI's own registry (the test's default one) accepts all four rows; ingest refuses the
    # Rp1.250.000 row. The CLI must say so, not claim four landed.
    proc = await rekap_import(strict_ingest, str(SAMPLE), "--via", "ingest",
                              env_extra={"REKAP_REGISTRY_PATH": str(settings.registry_path)})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == f"{SAMPLE}: 3 diterima, 1 ditolak, 1 diabaikan"
    (line,) = [r for r in proc.stderr.splitlines() if r.startswith("ditolak ")]
    head, _, detail = line.partition(" — ")
    assert head == "ditolak line 4 (VX220326-0003): amount_too_large" and detail.strip(), line
    assert sale_ids(ledger(strict_ingest)) == Counter(
        sid for sid in EXPECTED if sid != "vx:telkom:VX220326-0003")


async def test_rows_kafka_did_not_acknowledge_exit_3_and_a_reimport_lands_them(
        ingest: Ingest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_file = tmp_path / "export.csv"
    csv_file.write_text(SAMPLE.read_text() + BAD_ROWS.splitlines(keepends=True)[1])  # + unknown_ikm
    async def kafka_down() -> bool:
        return True

    monkeypatch.setattr(ingest.app[STATE], "kafka_down", kafka_down)  # outage: 503 per row
    down = await rekap_import(ingest, str(csv_file), "--via", "ingest")
    assert down.returncode == 3, down.stderr
    assert down.stdout.strip() == f"{csv_file}: 0 diterima, 1 ditolak, 1 diabaikan, 4 belum diterima Kafka"
    (rejected,) = [r for r in down.stderr.splitlines() if r.startswith("ditolak ")]
    assert rejected.startswith("ditolak line 7 (VX220328-0007): unknown_ikm — "), rejected
    assert "ingest: Kafka tidak tersedia; ulangi impor nanti (aman: sale_id sama)" in down.stderr
    assert ledger(ingest) == []

    monkeypatch.undo()
    up = await rekap_import(ingest, str(csv_file), "--via", "ingest")
    assert up.returncode == 1, up.stderr  # the unknown_ikm row is still rejected: fix, not retry
    assert up.stdout.strip() == f"{csv_file}: 4 diterima, 1 ditolak, 1 diabaikan"
    assert "ulangi impor" not in up.stderr
    assert sale_ids(ledger(ingest)) == Counter(list(EXPECTED))


@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_file_larger_than_ingest_takes_fails_before_sending(
        ingest: Ingest, dry_run: bool) -> None:
    size = SAMPLE.stat().st_size
    flags = ("--dry-run",) if dry_run else ()
    proc = await rekap_import(ingest, str(SAMPLE), "--via", "ingest", *flags,
                              env_extra={"REKAP_MAX_BODY_BYTES": str(size - 1)})
    if dry_run:  # nothing is sent, so the cap does not apply
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith("4 diterima, 0 ditolak, 1 diabaikan")
    else:
        assert proc.returncode == 2, proc.stdout
        assert f"{SAMPLE} is {size} bytes" in proc.stderr
        assert "--via kafka" in proc.stderr and "split" in proc.stderr
        assert proc.stdout == ""
    assert ledger(ingest) == []


async def test_an_unreachable_ingest_exits_3_with_a_retry_message(ingest: Ingest) -> None:
    from tests.support.procs import free_port

    nobody = f"http://127.0.0.1:{free_port()}"
    proc = await rekap_import(ingest, str(SAMPLE), "--via", "ingest", "--url", nobody)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert f"ingest {nobody} tidak terjangkau" in proc.stderr
    assert "ulangi impor nanti" in proc.stderr and "Traceback" not in proc.stderr
    assert ledger(ingest) == []
