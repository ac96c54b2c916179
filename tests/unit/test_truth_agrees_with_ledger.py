"""Two independent folds of one stream agree: the simulator's ground truth and the ledger model.

:func:`producers.simulator.groundtruth.compute` folds records in the order they
were sent; :func:`consumers.ledger.fold` (what ``rekap reconcile`` expects Redis
to hold) folds the topic partition by partition. They are written separately,
so a rule one of them gets wrong (a refund's limits, what a refund may target,
what counts as a resend) shows up as a disagreement on the random streams of
:mod:`tests.support.ledger_strategies`. Because a ``sale_id`` is scoped to its
IKM, the record key, the two orders must give the same totals.

Day and channel buckets are left out: the ground truth books a refund on its own
day and channel (the scenario always uses the sale's), the ledger on the sale's.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hypothesis_settings

from consumers.ledger import fold
from producers.simulator.groundtruth import compute
from rekap.names import TOTAL_FIELDS, Keys
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY
from tests.support.ledger_strategies import Record, place, sale_streams

REGISTRY = load_registry(DEFAULT_REGISTRY)
KEYS = Keys("t")


def _nonzero(values: dict[str, int]) -> dict[str, int]:
    return {f: values.get(f, 0) for f in TOTAL_FIELDS if values.get(f, 0)}


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(stream=sale_streams(REGISTRY))
def test_ground_truth_in_send_order_equals_the_ledger_partition_by_partition(
        stream: list[Record]) -> None:
    stream = [(k, v) for k, v in stream if v is not None]  # the ground truth reads sale bytes
    truth = compute(((k or b"", v) for k, v in stream), REGISTRY)
    ledger = fold([r for part in place(stream, "t") for r in part], REGISTRY, KEYS)

    for event_id, totals in truth["events"].items():
        root = REGISTRY.root(event_id)
        assert _nonzero(ledger.hashes[KEYS.event_totals(root, event_id)]) == _nonzero(totals)
        for ikm_id, ikm_totals in totals["ikm"].items():
            got = ledger.hashes[KEYS.ikm_totals(root, event_id, ikm_id)]
            assert _nonzero(got) == _nonzero(ikm_totals), (event_id, ikm_id)
    touched = {k for k, h in ledger.hashes.items() if _nonzero(h) and not k.endswith(":days")}
    expected = {KEYS.event_totals(REGISTRY.root(e), e) for e in truth["events"]}
    expected |= {KEYS.ikm_totals(REGISTRY.root(e), e, i)
                 for e, t in truth["events"].items() for i in t["ikm"]}
    assert touched <= expected

    stats: dict[str, int] = {}
    for per_root in ledger.stats.values():
        for label, n in per_root.items():
            stats[label] = stats.get(label, 0) + n
    records = truth["records"]
    assert stats.get("applied", 0) == records["applied"]
    # The ground truth calls any repeat of a known (ikm_id, sale_id) a duplicate; the ledger
    # rejects a repeat with other content as sale_id_conflict.
    conflicts = stats.get("rejected:sale_id_conflict", 0)
    assert stats.get("duplicate:sale_id", 0) + conflicts == records["duplicates"]
    assert {label.removeprefix("rejected:"): n for label, n in stats.items()
            if label.startswith("rejected:") and label != "rejected:sale_id_conflict"} \
        == records["rejected"]
