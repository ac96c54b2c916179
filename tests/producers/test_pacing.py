"""The simulator's pacing (``--rate`` / ``--speedup``) on a fake clock: pure, no wall time.

``_paced`` yields chunks of emissions; the schedule is when each chunk is yielded,
measured on an injected clock whose ``sleep`` only moves the clock forward. A
test's "consumer" may spend fake time on each chunk (sending it), as a real
producer does.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from producers.simulator.run import INGEST_BATCH, _paced
from producers.simulator.scenario import Emission, Options, generate
from rekap.cli import build_parser
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY

#: A realistic Unix time (2022-06-01) so the clock arithmetic runs on large floats, as it does live.
PROGRAMME_T0 = 1_654_052_400.0


class FakeClock:
    """``clock()`` reads the time; ``sleep(s)`` records the call and advances the time by ``s``."""

    def __init__(self, start: float = 5_000.0) -> None:
        self.start = start
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, f"slept {seconds}s"
        assert len(self.sleeps) < 100_000, "pacing loop does not converge"
        self.sleeps.append(seconds)
        self.now += seconds


def emissions(ats: Sequence[float]) -> list[Emission]:
    """One emission per programme time (seconds after PROGRAMME_T0)."""
    return [Emission(key=b"askha-jaya", value=str(i).encode(), expect="apply", at=PROGRAMME_T0 + at,
                     sender="channel:website") for i, at in enumerate(ats)]


def schedule(items: list[Emission], rate: float | None, speedup: float | None, chunk: int,
             clock: FakeClock, work_s: float = 0.0) -> list[tuple[float, list[int]]]:
    """(seconds after start when yielded, indexes into ``items`` of the chunk) for every chunk.

    ``work_s`` is the fake time the consumer spends on each chunk before asking for the next.
    """
    index = {id(e): i for i, e in enumerate(items)}
    out: list[tuple[float, list[int]]] = []
    for batch in _paced(items, rate, speedup, chunk, clock=clock, sleep=clock.sleep):
        out.append((clock.now - clock.start, [index[id(e)] for e in batch]))
        clock.now += work_s
    return out


def times(sched: list[tuple[float, list[int]]]) -> list[float]:
    return [t for t, _ in sched]


def chunks(sched: list[tuple[float, list[int]]]) -> list[list[int]]:
    return [c for _, c in sched]


@pytest.mark.parametrize(("rate", "speedup"), [(None, None), (0.0, None), (None, 0.0)])
def test_unpaced_yields_every_chunk_at_once(rate: float | None, speedup: float | None) -> None:
    clock = FakeClock()
    sched = schedule(emissions([0, 10, 20, 30, 40, 50, 60]), rate, speedup, 3, clock)
    assert chunks(sched) == [[0, 1, 2], [3, 4, 5], [6]]
    assert times(sched) == [0.0, 0.0, 0.0]
    assert clock.sleeps == []


@pytest.mark.parametrize(("rate", "speedup"), [(None, None), (50.0, None), (None, 86_400.0)])
def test_nothing_to_send_yields_nothing(rate: float | None, speedup: float | None) -> None:
    clock = FakeClock()
    assert schedule([], rate, speedup, 10, clock) == []
    assert clock.sleeps == []


@pytest.mark.parametrize(("rate", "n", "step"), [
    (100.0, 23, 5),     # 20 chunks a second: 5 records each
    (1_000.0, 120, 50),
    (2.0, 3, 1),        # below 20/s a chunk is one record
    (0.25, 3, 1),       # one record every 4 s: waits are cut into sleeps of at most 1 s
])
def test_rate_dues_the_kth_chunk_at_k_times_chunk_over_rate(rate: float, n: int, step: int) -> None:
    clock = FakeClock()
    sched = schedule(emissions([0.0] * n), rate, None, 2000, clock)
    want = [list(range(i, min(i + step, n))) for i in range(0, n, step)]
    assert chunks(sched) == want
    assert times(sched) == pytest.approx([k * step / rate for k in range(len(want))])
    assert clock.sleeps and max(clock.sleeps) <= 1.0


@pytest.mark.parametrize(("rate", "chunk", "step"), [
    (1_000.0, 10, 10),    # rate/20 = 50 records, capped at the chunk size: 100 sends a second
    (10_000.0, 200, 200),  # INGEST_BATCH at a high rate: never more than one request's worth
    (1_000.0, 50, 50),    # the cap and rate/20 agree
])
def test_rate_never_yields_more_than_a_chunk_and_still_keeps_the_rate(
        rate: float, chunk: int, step: int) -> None:
    n = 4 * step + 3
    clock = FakeClock()
    sched = schedule(emissions([0.0] * n), rate, None, chunk, clock)
    assert chunks(sched) == [list(range(i, min(i + step, n))) for i in range(0, n, step)]
    assert times(sched) == pytest.approx([k * step / rate for k in range(len(sched))])


def test_rate_keeps_an_absolute_schedule_when_sending_takes_time() -> None:
    # 100/s → a chunk of 5 every 0.05 s. A consumer taking 0.01 s per chunk does not shift the
    # schedule (no drift: due times count from the start, not from the previous chunk) ...
    clock = FakeClock()
    assert times(schedule(emissions([0.0] * 20), 100.0, None, 2000, clock, work_s=0.01)) == \
        pytest.approx([0.0, 0.05, 0.10, 0.15])
    # ... and one taking 0.2 s (slower than the rate) gets the next chunk at once, same size.
    slow = FakeClock()
    sched = schedule(emissions([0.0] * 20), 100.0, None, 2000, slow, work_s=0.2)
    assert times(sched) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert chunks(sched) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    assert slow.sleeps == []


def test_speedup_dues_a_chunk_at_its_first_records_programme_time_over_x() -> None:
    # Programme times 0, 0, 100, 100, 100, 250, 1000 s at 100x → due 0, 0, 1, 1, 1, 2.5, 10 s.
    ats = [0, 0, 100, 100, 100, 250, 1000]
    clock = FakeClock()
    sched = schedule(emissions(ats), None, 100.0, 10, clock)
    assert sched == [(0.0, [0, 1]), (pytest.approx(1.0), [2, 3, 4]), (pytest.approx(2.5), [5]),
                     (pytest.approx(10.0), [6])]
    assert max(clock.sleeps) <= 1.0
    # The chunk size caps how many records that are due together go out at once.
    capped = schedule(emissions(ats), None, 100.0, 2, FakeClock())
    assert chunks(capped) == [[0, 1], [2, 3], [4], [5], [6]]
    assert times(capped) == pytest.approx([0.0, 1.0, 1.0, 2.5, 10.0])


def test_speedup_offsets_from_the_first_record_not_from_zero() -> None:
    # The programme starts 3 days after PROGRAMME_T0: the first record still goes out at once.
    sched = schedule(emissions([259_200.0, 259_200.0 + 86_400.0]), None, 86_400.0, 10, FakeClock())
    assert sched == [(0.0, [0]), (pytest.approx(1.0), [1])]


def test_speedup_catches_up_with_everything_due_after_a_slow_send() -> None:
    # The consumer spends 3 s on each chunk: at 3 s the records due at 1 s and 2.5 s go together.
    ats = [0, 0, 100, 100, 100, 250, 1000]
    clock = FakeClock()
    sched = schedule(emissions(ats), None, 100.0, 10, clock, work_s=3.0)
    assert sched == [(0.0, [0, 1]), (pytest.approx(3.0), [2, 3, 4, 5]), (pytest.approx(10.0), [6])]


def test_speedup_on_a_generated_programme_keeps_order_and_is_never_early() -> None:
    registry = load_registry(DEFAULT_REGISTRY)
    items = generate(registry, Options(seed=11, scale=0.01)).emissions
    speedup = 86_400.0  # a programme day per second
    first = items[0].at
    due = [(e.at - first) / speedup for e in items]
    clock = FakeClock()
    sched = schedule(items, None, speedup, INGEST_BATCH, clock, work_s=0.25)
    sent = [i for _, c in sched for i in c]
    assert sent == list(range(len(items)))  # every record once, in stream order
    previous_done = 0.0
    for t, c in sched:
        assert len(c) <= INGEST_BATCH
        assert all(due[i] <= t + 1e-9 for i in c), "a record went out before its time"
        # the first record goes out as soon as it is due or the consumer is free, not later
        assert t == pytest.approx(max(due[c[0]], previous_done))
        # and it takes along everything else already due, up to the chunk size
        after = c[-1] + 1
        if len(c) < INGEST_BATCH and after < len(items):
            assert due[after] > t
        previous_done = t + 0.25
    assert any(len(c) > 1 for _, c in sched)  # the slow consumer really made chunks catch up
    assert max(clock.sleeps) <= 1.0


def test_rate_and_speedup_flags_parse_and_exclude_each_other() -> None:
    parser = build_parser()
    args = parser.parse_args(["simulate", "--rate", "500"])
    assert (args.rate, args.speedup) == (500.0, None)
    args = parser.parse_args(["simulate", "--speedup", "86400"])
    assert (args.rate, args.speedup) == (None, 86_400.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--rate", "500", "--speedup", "86400"])
    args = parser.parse_args(["simulate", "--rate", "0.5"])
    assert args.rate == 0.5
    assert parser.parse_args(["simulate"]).rate is None  # leave the flag out: as fast as possible


@pytest.mark.parametrize("flag", ["--rate", "--speedup"])
@pytest.mark.parametrize("value", ["0", "-500", "-0.5", "nan", "inf", "fast"])
def test_a_pacing_flag_must_be_a_positive_number(flag: str, value: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # 0 or a negative number used to be accepted and silently meant "no pacing".
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["simulate", f"{flag}={value}"])
    assert exc.value.code == 2
    assert f"argument {flag}: {value!r} is not a positive number" in capsys.readouterr().err
