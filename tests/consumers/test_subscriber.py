"""The totals subscriber: models, schema, highest version wins, resume, the documented example."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from consumers.subscriber import (
    CHANNEL_FIELDS,
    TOTAL_FIELDS,
    EventTotals,
    IkmTotals,
    Skipped,
    SkipReason,
    Subscriber,
    TotalsUpdate,
    TotalsView,
    parse_totals,
    read_view,
)
from rekap.names import CHANNELS
from rekap.settings import Settings
from tests.conftest import REPO
from tests.consumers.crafted_totals import send_totals, totals_doc
from tests.support.env import settings_env
from tests.support.kafka import produce, read_all
from tests.support.procs import wait_until
from tests.support.worker import start_worker

SCHEMA = json.loads(files("rekap").joinpath("data", "totals.v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EV = "lagawi-2022-kokas"


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_models_and_schema_name_the_same_fields() -> None:
    props = set(SCHEMA["properties"])
    for model in (EventTotals, IkmTotals):
        fields = {f.name for f in dataclasses.fields(model)}
        assert fields <= props, fields - props
    assert set(SCHEMA["required"]) == {f.name for f in dataclasses.fields(EventTotals)} | {"schema", "scope"}
    assert set(SCHEMA["$defs"]["channel"]["required"]) == set(CHANNEL_FIELDS)
    assert set(SCHEMA["properties"]["channels"]["required"]) == set(CHANNELS)
    assert set(TOTAL_FIELDS) <= props


@pytest.mark.parametrize("ikm", [None, "askha-jaya"])
def test_a_crafted_message_passes_schema_and_parses(ikm: str | None) -> None:
    doc = totals_doc(EV, ikm, 7, 12_500_000, refunds_idr=500_000, count=3)
    VALIDATOR.validate(doc)
    update = parse_totals(f"{EV}/{ikm}" if ikm else EV, json.dumps(doc).encode())
    assert isinstance(update, IkmTotals if ikm else EventTotals)
    assert as_doc(update) == doc


def as_doc(update: TotalsUpdate) -> dict[str, Any]:
    """A model back in the message's shape, to compare with what was published."""
    out: dict[str, Any] = {"schema": "rekap.totals.v1", "scope": update.scope}
    for f in dataclasses.fields(update):
        value = getattr(update, f.name)
        out[f.name] = ({c: dataclasses.asdict(v) for c, v in value.items()}
                       if f.name == "channels" else value)
    return out


GOOD = totals_doc(EV, "askha-jaya", 3, 1000)
BAD: list[tuple[bytes | None, SkipReason]] = [
    (None, SkipReason.UNDECODABLE),
    (b"", SkipReason.UNDECODABLE),
    (b"\xff\xfe not json", SkipReason.UNDECODABLE),
    (b"[1, 2]", SkipReason.UNDECODABLE),
    (b"[" * 5000, SkipReason.UNDECODABLE),
    (json.dumps({**GOOD, "schema": "rekap.totals.v2"}).encode(), SkipReason.UNKNOWN_SCHEMA),
    (json.dumps({**GOOD, "scope": "booth"}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({**GOOD, "version": "3"}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({**GOOD, "version": True}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({**GOOD, "version": 0}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({**GOOD, "amount_idr": 1.5}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({k: v for k, v in GOOD.items() if k != "count"}).encode(), SkipReason.MISSING_FIELD),
    (json.dumps({k: v for k, v in GOOD.items() if k != "ikm_id"}).encode(), SkipReason.MISSING_FIELD),
    (json.dumps({**GOOD, "channels": []}).encode(), SkipReason.WRONG_TYPE),
    (json.dumps({**GOOD, "channels": {"offline": {"count": 1}}}).encode(), SkipReason.MISSING_FIELD),
    (json.dumps({**GOOD, "as_of": 5}).encode(), SkipReason.WRONG_TYPE),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_messages_are_skipped_with_a_reason_never_raised(raw: bytes | None, reason: SkipReason) -> None:
    got = parse_totals(f"{EV}/askha-jaya", raw)
    assert isinstance(got, Skipped) and got.reason == reason, got
    if raw and raw.startswith(b"{"):
        assert not VALIDATOR.is_valid(json.loads(raw))  # the schema refuses it too


def test_a_key_that_does_not_match_the_value_is_skipped() -> None:
    got = parse_totals(b"lagawi-2022/askha-jaya", json.dumps(GOOD).encode())
    assert isinstance(got, Skipped) and got.reason == SkipReason.KEY_MISMATCH


def test_the_view_keeps_the_highest_version() -> None:
    view = TotalsView()
    ups = [parse_totals(None, totals_doc(EV, "askha-jaya", v, v * 10)) for v in (1, 3, 2, 3, 4)]
    assert [view.offer(u) for u in ups if not isinstance(u, Skipped)] == [True, True, False, False, True]
    held = view.ikm(EV, "askha-jaya")
    assert held is not None and (held.version, held.amount_idr) == (4, 40)
    # versions from a caller's own store: nothing at or below them is taken
    seeded = TotalsView({("ikm", f"{EV}/askha-jaya"): 3})
    assert [seeded.offer(u) for u in ups if not isinstance(u, Skipped)] == [False, False, False, False, True]


# --- against the real broker -------------------------------------------------------------

async def take(it: AsyncIterator[TotalsUpdate], n: int, within_s: float = 30.0) -> list[TotalsUpdate]:
    return [await asyncio.wait_for(anext(it), within_s) for _ in range(n)]


def versions(updates: list[TotalsUpdate]) -> list[tuple[str, int]]:
    return [(u.key, u.version) for u in updates]


@pytest.mark.integration
async def test_duplicates_out_of_order_and_replays_are_dropped(settings: Settings) -> None:
    ikm = [totals_doc(EV, "askha-jaya", v, v * 1000) for v in (1, 2, 2, 1, 3)]
    event = [totals_doc(EV, None, v, v * 1000) for v in (5, 4, 6)]
    await asyncio.to_thread(send_totals, settings, ikm + event)
    await asyncio.to_thread(produce, settings, settings.topic_totals_ikm,
                            [(f"{EV}/askha-jaya".encode(), b"{not json")])
    async with Subscriber(settings) as sub:
        it = aiter(sub)
        got = await take(it, 5)
        assert sorted(versions(got)) == [(EV, 5), (EV, 6), (f"{EV}/askha-jaya", 1),
                                         (f"{EV}/askha-jaya", 2), (f"{EV}/askha-jaya", 3)]
        # per key, only growing versions come out
        assert [v for k, v in versions(got) if k == EV] == [5, 6]
        # a replay of everything, then one newer version: only the newer one comes out
        await asyncio.to_thread(send_totals, settings, ikm + event + [totals_doc(EV, "askha-jaya", 4, 1)])
        [newer] = await take(it, 1)
        assert versions([newer]) == [(f"{EV}/askha-jaya", 4)] and newer.amount_idr == 1
        await wait_for(lambda: sub.stats.stale == 3 + 8)
        assert sub.stats.skipped == {SkipReason.UNDECODABLE: 1}
        assert sub.stats.accepted == 6


async def wait_for(predicate: Any, within_s: float = 20.0) -> None:
    for _ in range(int(within_s * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not reached within {within_s}s")


@pytest.mark.integration
async def test_a_restart_resumes_from_the_committed_offsets(settings: Settings) -> None:
    first = [totals_doc(EV, f"ikm-{i}", 1, i) for i in range(12)]
    await asyncio.to_thread(send_totals, settings, first)
    group = f"{settings.app_id}-sub"
    seen_a: list[tuple[str, int]] = []
    async with Subscriber(settings, group) as sub:
        async for update in sub:
            seen_a.append((update.key, update.version))
            if len(seen_a) == 5:
                break  # leaving the block commits what was handled (the 5th is still in hand)
    # meanwhile the worker published more: new keys, and a newer version of a handled one
    later = [totals_doc(EV, f"ikm-{i}", 1, i) for i in range(12, 15)] + \
        [totals_doc(EV, "ikm-0", 2, 99)]
    await asyncio.to_thread(send_totals, settings, later)
    seen_b: list[tuple[str, int]] = []
    async with Subscriber(settings, group, until_end=True) as sub:
        seen_b = versions([u async for u in sub])
    everything = {(d["event_id"] + "/" + d["ikm_id"], d["version"]) for d in first + later}
    assert set(seen_a) | set(seen_b) == everything  # nothing missed
    # at least once: at most the update in hand when A stopped comes again
    assert len(set(seen_a) & set(seen_b)) <= 1, set(seen_a) & set(seen_b)
    assert len(seen_b) <= len(everything) - len(seen_a) + 1
    # a fresh view in the same group: everything again, from the beginning
    async with Subscriber(settings, group, until_end=True, from_beginning=True) as sub:
        fresh = {(u.key, u.version) async for u in sub}
    assert fresh == everything


@pytest.mark.integration
def test_the_worker_publishes_what_the_schema_and_models_say(settings: Settings, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "rekap.cli", "simulate", "--seed", "5", "--scale", "0.002",
                    "--refund-rate", "0.2", "--no-progress"],
                   env=settings_env(settings), check=True, capture_output=True, timeout=120)
    with start_worker(settings):
        wait_until(lambda: read_view(settings).event("lagawi-2022-kokas"), timeout=60,
                   message="totals of the exhibition published")
    records = [r for t in (settings.topic_totals_event, settings.topic_totals_ikm)
               for r in read_all(settings, t)]
    assert len(records) > 10
    scopes = set()
    for r in records:
        doc = json.loads(r.value or b"")
        VALIDATOR.validate(doc)
        update = parse_totals(r.key, r.value)
        assert not isinstance(update, Skipped), (r.key, update)
        assert as_doc(update) == doc
        scopes.add(update.scope)
    assert scopes == {"event", "ikm"}


def example_code() -> str:
    text = (REPO / "docs" / "downstream.md").read_text()
    block = re.search(r"<!-- example: subscriber -->\n```python\n(.*?)```\n<!-- /example -->", text, re.S)
    assert block, "docs/downstream.md lost its subscriber example"
    return block.group(1)


def test_the_documented_example_is_about_ten_lines() -> None:
    code = [line for line in example_code().splitlines() if line.strip()]
    assert len(code) <= 11, code


@pytest.mark.integration
def test_the_documented_example_runs(settings: Settings, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example_code())
    send_totals(settings, [totals_doc(EV, "askha-jaya", 1, 5000), totals_doc(EV, None, 1, 5000),
                           totals_doc(EV, "askha-jaya", 2, 7000), totals_doc(EV, "askha-jaya", 1, 5000)])
    out = tmp_path / "out.txt"
    env = settings_env(settings, PYTHONPATH=str(REPO))
    with out.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                cwd=tmp_path)
        try:
            want = [f"{EV} askha-jaya 5000 1", f"{EV} askha-jaya 7000 2"]
            wait_until(lambda: out.read_text().splitlines() == want, timeout=40,
                       message=f"the example printing {want}")
            send_totals(settings, [totals_doc(EV, "askha-jaya", 3, 9000)])
            wait_until(lambda: out.read_text().splitlines()[-1:] == [f"{EV} askha-jaya 9000 3"], timeout=20)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.mark.integration
def test_totals_tail_prints_the_newest_per_key(settings: Settings) -> None:
    from tests.support.env import run_cli

    send_totals(settings, [totals_doc(EV, "askha-jaya", v, v * 1000) for v in (1, 2, 1)])
    out = run_cli(settings_env(settings), "totals-tail", "--until-end")
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[2] for line in out.stdout.splitlines()[:-1]] == ["v1", "v2"]
    assert out.stdout.splitlines()[-1] == "totals-tail: 2 taken, 1 stale dropped, 0 skipped"
