"""The simulator's scenario: pure, reproducible, exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from producers.simulator.groundtruth import compute
from producers.simulator.scenario import Options, generate, split
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def test_split_is_exact_and_respects_the_minimum() -> None:
    parts = split(1_000_003, [0.1, 5, 2.5, 1e-9], minimum=7)
    assert sum(parts) == 1_000_003 and min(parts) >= 7
    with pytest.raises(ValueError):
        split(10, [1, 1, 1], minimum=4)


@pytest.mark.parametrize("scale", [0.002, 0.03])
def test_same_seed_same_bytes_other_seed_other_bytes(registry: Registry, scale: float) -> None:
    a = generate(registry, Options(seed=7, scale=scale))
    b = generate(registry, Options(seed=7, scale=scale))
    c = generate(registry, Options(seed=8, scale=scale))
    assert a.jsonl() == b.jsonl() and a.digest == b.digest
    assert a.truth == b.truth
    assert c.digest != a.digest


@pytest.mark.parametrize(("scale", "refunds", "resends", "bad"), [
    (0.002, 0.0, 0.0, 0.0), (0.01, 0.3, 0.2, 0.05), (0.2, 0.03, 0.02, 0.005)])
def test_ground_truth_is_exact_at_any_scale(registry: Registry, scale: float, refunds: float,
                                            resends: float, bad: float) -> None:
    sc = generate(registry, Options(seed=2022, scale=scale, refund_rate=refunds,
                                    resend_rate=resends, bad_rate=bad))
    ev = sc.truth["events"]
    assert ev["lagawi-2022"]["amount_idr"] == 5_230_000_000
    assert ev["lagawi-2022-kokas"]["amount_idr"] == 210_900_000
    prog = ev["lagawi-2022"]
    assert prog["gross_idr"] - prog["refunds_idr"] == prog["amount_idr"]
    assert sum(i["amount_idr"] for i in prog["ikm"].values()) == 5_230_000_000
    assert sum(c["amount_idr"] for c in prog["channels"].values()) == 5_230_000_000
    assert sum(d["amount_idr"] for d in prog["days"].values()) == 5_230_000_000
    assert ev["lagawi-2022-kokas"]["channels"]["offline"]["amount_idr"] == 210_900_000
    assert set(ev["lagawi-2022-kokas"]["days"]) == {f"2022-06-0{d}" for d in range(1, 7)}
    assert min(prog["days"]) >= "2022-03-20" and max(prog["days"]) <= "2022-06-17"
    assert len(prog["ikm"]) == 30
    if refunds:
        assert prog["refund_count"] > 0
    rec = sc.truth["records"]
    assert rec["sent"] == len(sc.emissions) == rec["applied"] + rec["duplicates"] + rec["rejected_total"]
    if resends:
        assert rec["duplicates"] > 0
    if bad:
        assert rec["rejected_total"] > 0
    # the fold is independent of the generator: recomputing from bytes gives the same answer
    again = compute(((e.key, e.value) for e in sc.emissions), registry)
    assert again["events"] == sc.truth["events"]


def test_champions_sell_more_and_the_shape_is_plausible(registry: Registry) -> None:
    sc = generate(registry, Options(seed=2022, scale=0.2))
    ikm = sc.truth["events"]["lagawi-2022"]["ikm"]
    champions = [i for i in ikm if registry.ikm[i].champion]
    others = [i for i in ikm if not registry.ikm[i].champion]
    avg = lambda xs: sum(ikm[i]["amount_idr"] for i in xs) / len(xs)  # noqa: E731
    assert avg(champions) > 2 * avg(others)
    days = sc.truth["events"]["lagawi-2022"]["days"]
    assert days["2022-05-02"]["amount_idr"] < days["2022-04-25"]["amount_idr"]  # Lebaran dip
    for e in sc.emissions:
        if e.expect == "apply":
            sale = json.loads(e.value)
            assert sale["occurred_at"].endswith("+07:00")
            if sale["channel"] == "offline":
                assert 10 <= int(sale["occurred_at"][11:13]) < 22  # mall hours
                assert sale["event_id"] == "lagawi-2022-kokas" and sale["booth_id"].startswith("kokas-")


def test_full_programme_has_a_realistic_size(registry: Registry) -> None:
    # How long generation takes is not asserted: on a shared machine a timed assertion fails for
    # reasons that are not the code's (the README's demo section quotes the measured time).
    sc = generate(registry)
    assert 20_000 <= sc.truth["records"]["applied"] <= 40_000


def test_cli_dry_run_writes_the_same_stream_twice(tmp_path: Path) -> None:
    digests = []
    for n in range(2):
        dump, truth = tmp_path / f"s{n}.jsonl", tmp_path / f"t{n}.json"
        subprocess.run([sys.executable, "-m", "rekap.cli", "simulate", "--scale", "0.005", "--seed", "5",
                        "--dry-run", "--dump", str(dump), "--truth", str(truth)], check=True,
                       capture_output=True, timeout=60)
        digests.append((dump.read_bytes(), truth.read_bytes()))
    assert digests[0] == digests[1]
    doc = json.loads(digests[0][1])
    assert doc["events"]["lagawi-2022"]["amount_idr"] == 5_230_000_000
