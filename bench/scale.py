"""A registry and a sale stream at a chosen scale: ``n`` IKM taking part in one event.

The benchmarks run the worker at 30, 10,000 and 100,000 IKM. :func:`write_registry`
writes the TOML file the worker reads (``REKAP_REGISTRY_PATH``): one event
(``bench-fest``, seven local days) with ``n`` IKM and one booth that may post for
all of them; :func:`load` writes it and reads it back.

:func:`stream` makes the records with :func:`producers.simulator.synthetic.generate`
(sales, partial and full refunds, identical resends). That generator draws each
sale's IKM from ``sorted(event.ikm)``, ~18 ms per record at 100,000 IKM, so a
stream is generated on the first :data:`BASE_IKM` IKM and then *spread*: each
sale moves to an IKM drawn uniformly from all ``n`` (seeded), and its refunds
and resends follow it, so every refund still names a sale of its own IKM and the
ledger fold of the spread stream stays exact.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from producers.simulator.synthetic import generate
from rekap.registry import Registry, load_registry

#: The id of the one event of a scaled registry.
EVENT = "bench-fest"
#: The booth of :data:`EVENT`; it lists every IKM, so offline sales stay possible.
BOOTH = "bench-booth"
#: IKM the generator draws from before :func:`spread` (Lagawi Fest's mentored 30).
BASE_IKM = 30


def ikm_ids(n: int) -> list[str]:
    width = max(6, len(str(n)))
    return [f"ikm-{i:0{width}d}" for i in range(1, n + 1)]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def write_registry(path: Path, n: int) -> Path:
    """Write the registry of ``n`` IKM as TOML (what ``rekap worker`` loads) and return ``path``."""
    if n < 1:
        raise ValueError("a scaled registry needs at least one IKM")
    return _write(path, n, [(EVENT, f"Bench Fest, {n} IKM", BOOTH)],
                  f"one event, {n} IKM, one booth for all of them")


def _write(path: Path, n: int, events: list[tuple[str, str, str]], what: str) -> Path:
    """A registry of ``n`` IKM and ``events`` as (event id, name, booth id): each event is
    a root of its own, with every IKM, seven local days, and one booth for all of them."""
    ids = ikm_ids(n)
    lines = [f"# Written by bench/scale.py: {what}.", "version = 1",
             "ikm = [" + ", ".join(f'{{ id = "{i}" }}' for i in ids) + "]", ""]
    for event, name, booth in events:
        lines += [
            "[[events]]",
            f'id = "{event}"',
            f'name = "{name}"',
            'venue = "bench"',
            'timezone = "Asia/Jakarta"',
            "starts_on = 2024-05-01",
            "ends_on = 2024-05-07",
            f"ikm = {_toml_list(ids)}",
            "",
            "[[booths]]",
            f'id = "{booth}"',
            f'event = "{event}"',
            f"ikm = {_toml_list(ids)}",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def load(path: Path, n: int) -> Registry:
    """Write the registry of ``n`` IKM to ``path`` and return it as the worker will read it."""
    return load_registry(write_registry(path, n))


def _base(registry: Registry) -> Registry:
    """``registry`` cut down to its first :data:`BASE_IKM` IKM (what the generator draws from)."""
    event = registry.events[EVENT]
    keep = frozenset(sorted(event.ikm)[:BASE_IKM])
    return Registry(events={EVENT: replace(event, ikm=keep)},
                    ikm={i: registry.ikm[i] for i in keep},
                    booths={b.id: replace(b, ikm=b.ikm & keep) for b in registry.booths.values()})


def spread(records: list[dict[str, Any]], ids: list[str], seed: int) -> list[dict[str, Any]]:
    """Move each sale to an IKM drawn from ``ids``; its refunds and resends follow it."""
    rng = random.Random(seed)
    home: dict[str, str] = {}
    out = []
    for r in records:
        if r["kind"] == "refund":
            ikm = home[r["refund_of"]]
        else:  # a sale, or an identical resend of one (same sale_id)
            ikm = home.setdefault(r["sale_id"], ids[rng.randrange(len(ids))])
        out.append({**r, "ikm_id": ikm})
    return out


def stream(registry: Registry, n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` valid records (sales, refunds, resends) over every IKM of ``registry``'s event."""
    event = registry.events.get(EVENT)
    if event is None or len(event.ikm) <= BASE_IKM:  # any other registry: the generator as is
        return generate(registry, n, seed=seed, prefix=prefix)
    return spread(generate(_base(registry), n, seed=seed, prefix=prefix), sorted(event.ikm), seed)


# --------------------------------------------------------------------------- forests
#
# Several independent event trees instead of one (``bench.scaleout``). Each tree is one
# event without a parent, so the root of its own tree and of its own Redis hash tag
# ``{<id>}``: one slot each, which Redis Cluster may place on different primaries. Every
# tree has the same ``n`` IKM (and its own booth), so each partition, and each batch,
# carries records of every tree. :func:`stream` generates a forest's records as is (no
# spread): each sale's event is drawn uniformly, so the trees get about equal shares; the
# generator's per-record cost grows with ``n``, so keep ``n`` near :data:`BASE_IKM`.


def tree_ids(trees: int) -> list[str]:
    """The event ids of a forest of ``trees``. Two-digit numbers on purpose: the hash slots
    of ``bench-tree-01`` .. ``-06`` fall 2/2/2 into the three slot ranges of a 3-primary
    cluster as ``redis-cli --cluster create`` splits them (0-5460, 5461-10922, 10923-16383)."""
    return [f"bench-tree-{i:02d}" for i in range(1, trees + 1)]


def write_forest(path: Path, n: int, trees: int) -> Path:
    """Write a registry of ``trees`` independent events with the same ``n`` IKM each (one
    booth per event, for all of them) as TOML and return ``path``."""
    if n < 1 or trees < 1:
        raise ValueError("a forest needs at least one tree and one IKM")
    return _write(path, n, [(tree, f"Bench tree {tree}, {n} IKM", f"{tree}-booth")
                            for tree in tree_ids(trees)],
                  f"{trees} independent events, {n} IKM each, a booth each")


def load_forest(path: Path, n: int, trees: int) -> Registry:
    """Write the forest of ``trees`` events with ``n`` IKM to ``path`` and read it back."""
    return load_registry(write_forest(path, n, trees))
