"""Shortlist and programme report on the Lagawi Fest replay: figures equal the ground truth.

One replay per module (``rekap simulate`` into the real worker, real Kafka and Redis), then
the commands run as the operator runs them (``rekap shortlist``, ``rekap report``) and their
files are read back: the CSV, the XLSX cells (openpyxl) and the PDF (rendered to PNG by
pypdfium2 into ``test-artifacts/report/`` for a human to look at, its text extracted).
The shortlist's raw criteria are recomputed here, independently, from the ground truth.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from rekap.names import CHANNELS, Keys
from rekap.redisconn import SyncClient
from rekap.registry import Registry, load_registry
from rekap.settings import Settings
from rekap.topics import delete_topics, ensure_topics
from tests.conftest import REPO
from tests.support.env import run_cli, settings_env
from tests.support.procs import free_port, wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration

ROOT, EXPO = "lagawi-2022", "lagawi-2022-kokas"
ARTIFACTS = REPO / "test-artifacts" / "report"
CHANNEL_LABELS = {"offline": "Luring", "marketplace": "Marketplace",
                  "virtual_expo": "Pameran Virtual", "website": "Situs Web"}


@dataclass
class Replay:
    settings: Settings
    truth: dict[str, Any]
    registry: Registry
    client: SyncClient

    def env(self) -> dict[str, str]:
        return settings_env(self.settings)


@pytest.fixture(scope="module")
def replay(base_settings: Settings, kafka_ready: str, redis_session: SyncClient,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    """Lagawi Fest at 1 % scale (every headline total stays exact) with refunds, resends
    and bad records, applied by a real worker until Redis equals the ground truth."""
    test_id = f"t{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("replay")
    s = Settings.from_env(
        kafka_bootstrap=base_settings.kafka_bootstrap, redis_url=base_settings.redis_url,
        redis_prefix=test_id, topic_sales=f"{test_id}.sales",
        topic_dead_letter=f"{test_id}.dead-letter", topic_totals_ikm=f"{test_id}.totals.ikm",
        topic_totals_event=f"{test_id}.totals.event", sales_partitions=3, app_id=test_id,
        worker_port=free_port(), ingest_port=free_port(), exporter_port=free_port(),
        runtime_dir=tmp / "runtime", tls_cert=None, tls_key=None, tls_ca=None)
    ensure_topics(s)
    try:
        truth_path = tmp / "truth.json"
        subprocess.run(
            [sys.executable, "-m", "rekap.cli", "simulate", "--seed", "13", "--scale", "0.01",
             "--refund-rate", "0.2", "--resend-rate", "0.1", "--bad-rate", "0.05",
             "--no-progress", "--truth", str(truth_path)],
            env=settings_env(s), check=True, capture_output=True, timeout=120)
        truth = json.loads(truth_path.read_text())
        registry = load_registry(s.registry_path)
        keys = Keys(s.redis_prefix)
        want = truth["events"][ROOT]["amount_idr"]
        with start_worker(s):
            wait_until(lambda: int(redis_session.hget(keys.event_totals(ROOT, ROOT), "amount_idr")
                                   or 0) == want and applied(redis_session, keys) ==
                       truth["records"]["applied"],
                       timeout=60, interval=0.3, message="the worker applied the replay")
        yield Replay(s, truth, registry, redis_session)
    finally:
        delete_topics(s)
        stale = list(redis_session.scan_iter(match=f"{test_id}:*", count=1000))
        for start in range(0, len(stale), 500):
            redis_session.delete(*stale[start:start + 500])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def applied(client: SyncClient, keys: Keys) -> int:
    return int(client.hget(keys.stats(ROOT), "applied") or 0)


# ------------------------------------------------- independent recomputation --

def window(registry: Registry, event_id: str) -> list[date]:
    ev = registry.events[event_id]
    return [ev.starts_on + timedelta(n) for n in range((ev.ends_on - ev.starts_on).days + 1)]


def expected_criteria(truth_ikm: dict[str, Any] | None, days: list[date],
                      channels: Sequence[str]) -> dict[str, float]:
    """The six raw criteria from one IKM's ground truth, written out again from the docs."""
    t = truth_ikm or {"amount_idr": 0, "gross_idr": 0, "refunds_idr": 0, "channels": {},
                      "days": {}}
    daily = [t["days"].get(d.isoformat(), {}).get("amount_idr", 0) for d in days]
    half = len(days) // 2
    a, b = sum(daily[:half]), sum(daily[len(days) - half:])
    per_channel = [t["channels"].get(c, {}).get("amount_idr", 0) for c in channels]
    net = t["amount_idr"]
    positive = [x for x in per_channel if x > 0]
    entropy = -sum(x / net * math.log(x / net) for x in positive) if net > 0 else 0.0
    mean = sum(daily) / len(daily)
    sd = math.sqrt(sum((x - mean) ** 2 for x in daily) / len(daily))
    online = sum(x for c, x in zip(channels, per_channel, strict=True) if c != "offline")
    return {
        "net": float(net),
        "growth": (b - a) / (a + b) if a + b else 0.0,
        "channel_mix": entropy / math.log(len(channels)) if len(channels) > 1 else 0.0,
        "online_share": online / net if net > 0 else 0.0,
        "consistency": 1 / (1 + sd / mean) if mean > 0 else 0.0,
        "refund_rate": t["refunds_idr"] / t["gross_idr"] if t["gross_idr"] else 0.0,
    }


# ---------------------------------------------------------------- shortlist --

@pytest.mark.parametrize("event_id", [ROOT, EXPO])
def test_shortlist_criteria_equal_the_ground_truth(replay: Replay, event_id: str,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "shortlist.csv"
    done = run_cli(replay.env() | {"COLUMNS": "200"}, "shortlist", event_id, "--csv", str(out),
                   "--top", "5")
    assert done.returncode == 0, done.stderr
    assert "Shortlist champion" in done.stdout and "Pertumbuhan" in done.stdout
    rows = read_csv(out)
    ev = replay.registry.events[event_id]
    assert {r["ikm_id"] for r in rows} == set(ev.ikm)
    truth_ikm = replay.truth["events"][event_id]["ikm"]
    days = window(replay.registry, event_id)
    channels = [c for c in CHANNELS if c in ev.channels]
    for r in rows:
        want = expected_criteria(truth_ikm.get(r["ikm_id"]), days, channels)
        assert int(r["net_raw"]) == int(r["net_idr"]) == int(want["net"]), r["ikm_id"]
        for c, value in want.items():
            assert float(r[f"{c}_raw"]) == pytest.approx(value, abs=2e-6), (r["ikm_id"], c)
    assert [int(r["peringkat"]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r["skor"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
    if event_id == EXPO:  # booths only: channel mix and online share cannot tell IKM apart
        assert float(rows[0]["channel_mix_bobot"]) == 0 and float(rows[0]["online_share_bobot"]) == 0


def test_shortlist_weights_change_the_order(replay: Replay, tmp_path: Path) -> None:
    """Only net sales weighed: the order is the leaderboard's."""
    out = tmp_path / "net.csv"
    done = run_cli(replay.env(), "shortlist", ROOT, "--csv", str(out),
                   "--weights", "growth=0,channel_mix=0,online_share=0,consistency=0,refund_rate=0")
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    truth_ikm = replay.truth["events"][ROOT]["ikm"]
    by_net = sorted(replay.registry.events[ROOT].ikm,
                    key=lambda i: (-truth_ikm.get(i, {"amount_idr": 0})["amount_idr"], i))
    assert [r["ikm_id"] for r in rows] == by_net
    bad = run_cli(replay.env(), "shortlist", ROOT, "--weights", "luck=1")
    assert bad.returncode == 2 and "luck" in bad.stderr


# ------------------------------------------------------------------- report --

def sheet_rows(ws: Any) -> list[tuple[Any, ...]]:
    return [r for r in ws.iter_rows(values_only=True) if any(v is not None for v in r)]


def test_report_figures_equal_the_ground_truth(replay: Replay, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    done = run_cli(replay.env(), "report", ROOT, "--out", str(tmp_path), timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert "Diperiksa terhadap ledger pada" in done.stdout
    xlsx, pdf = tmp_path / f"laporan-{ROOT}.xlsx", tmp_path / f"laporan-{ROOT}.pdf"
    truth = replay.truth["events"][ROOT]

    wb = load_workbook(xlsx)
    summary = {r[0]: r for r in sheet_rows(wb["Ringkasan"])}
    assert summary["Penjualan bersih"][1:] == (5_230_000_000, "Rp5,23 miliar")
    assert wb["Ringkasan"]["B5"].number_format == '"Rp"#,##0'
    for label, field in [("Penjualan kotor", "gross_idr"), ("Refund", "refunds_idr"),
                         ("Jumlah transaksi", "count"), ("Jumlah refund", "refund_count"),
                         ("Kuantitas terjual", "quantity")]:
        assert summary[label][1] == truth[field], label
    expo_name = replay.registry.events[EXPO].name
    assert summary[f"Penjualan bersih — {expo_name}"][1:2] == (210_900_000,)
    assert summary[f"Penjualan bersih — {expo_name}"][2].startswith("Rp210,9 juta")
    checked = [r[0] for r in sheet_rows(wb["Ringkasan"])
               if str(r[0]).startswith("Diperiksa terhadap ledger pada")]
    assert checked and replay.settings.topic_sales in checked[0] and "p0: " in checked[0]

    ikm_sheet = sheet_rows(wb["IKM"])
    names = {i.name: i.id for i in replay.registry.ikm.values()}
    assert {names[r[1]]: r[4] for r in ikm_sheet[1:]} == \
        {i: truth["ikm"].get(i, {"amount_idr": 0})["amount_idr"]
         for i in replay.registry.events[ROOT].ikm}
    assert {r[0]: r[1:4] for r in sheet_rows(wb["Kanal"])[1:]} == \
        {CHANNEL_LABELS[c]: (v["amount_idr"], v["count"], v["refunds_idr"])
         for c, v in truth["channels"].items()}
    daily = {r[0].date().isoformat(): r[1:4] for r in sheet_rows(wb["Harian"])[1:]}
    assert len(daily) == 90
    assert {d: v for d, v in daily.items() if v != (0, 0, 0)} == \
        {d: (v["amount_idr"], v["count"], v["refunds_idr"]) for d, v in truth["days"].items()
         if (v["amount_idr"], v["count"], v["refunds_idr"]) != (0, 0, 0)}
    refunds = sheet_rows(wb["Refund"])
    assert next(r for r in refunds if r[0] == "Total")[1:3] == (truth["refunds_idr"],
                                                                 truth["refund_count"])
    shortlist = sheet_rows(wb["Shortlist"])
    assert shortlist[0][:3] == ("Peringkat", "IKM", "Skor") and len(shortlist) >= 31
    assert all(len(wb[name]._charts) == 1
               for name in ("Harian", "Kanal", "IKM", "Shortlist")), "a chart per sheet"

    text = render_pdf(pdf, ARTIFACTS)
    for needle in ("Rp5.230.000.000", "Rp5,23 miliar", "Rp210.900.000", "Rp210,9 juta",
                   "Diperiksa terhadap ledger pada", "Kurva penjualan bersih harian",
                   "Kanal penjualan", "Refund", "Shortlist champion", "Lampung Ethnica"):
        assert needle in text, needle


def render_pdf(pdf: Path, out_dir: Path) -> str:
    """Every page as a PNG in ``out_dir`` (checked not blank); the document's text."""
    import pypdfium2 as pdfium
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("page-*.png"):
        old.unlink()
    doc = pdfium.PdfDocument(pdf)
    try:
        assert len(doc) >= 4
        text = []
        for n in range(len(doc)):
            page = doc[n]
            image = page.render(scale=1.5).to_pil()
            png = out_dir / f"page-{n + 1}.png"
            image.save(png)
            with Image.open(png) as back:
                lo, hi = cast(tuple[int, int], back.convert("L").getextrema())
                assert back.size[0] > 1000 and lo < 100 < hi, f"{png} looks blank"
            textpage = page.get_textpage()
            text.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return "\n".join(text)
    finally:
        doc.close()


def test_report_refuses_when_reconcile_finds_a_difference(replay: Replay, tmp_path: Path) -> None:
    keys = Keys(replay.settings.redis_prefix)
    key = keys.ikm_totals(ROOT, ROOT, "askha-jaya")
    replay.client.hincrby(key, "amount_idr", 1)
    try:
        done = run_cli(replay.env(), "report", ROOT, "--out", str(tmp_path), "--timeout", "2",
                       timeout_s=120)
    finally:
        replay.client.hincrby(key, "amount_idr", -1)
    assert done.returncode != 0
    assert "reconcile found differences" in done.stderr and "askha-jaya" in done.stderr
    assert list(tmp_path.iterdir()) == []
