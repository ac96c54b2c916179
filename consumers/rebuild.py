"""``rekap rebuild``: rebuild Redis from the sales topic (the ledger) while the worker runs.

The data keys live in *generations* (:mod:`rekap.names`): readers read the one
``P:gen`` names, the worker writes each tree in the one its pointer
``P:{R}:gen`` names (absent: ``P:gen``; nothing set at all is generation 0,
the layout before generations). With G the readers' generation, a rebuild:

1. **builds** generation T = G + 1: folds the topic through the worker's own
   planner and script (:mod:`streams.apply`) into ``P:gT:{R}:...``, with T's own
   offset fences, from T's fences (a run that was interrupted resumes there) to
   the high watermarks. The worker keeps applying to G and serving from it;
2. **switches the writer**, tree by tree: catches T up to the live high
   watermarks again and runs ``streams/lua/switch_tree.lua`` on each tree, which
   refuses while T has applied less of a partition than G and otherwise, in one
   atomic call in the tree's slot, lifts every totals version of T above G's
   (subscribers keep the highest version), retires G's fences (the worker's
   next call there writes nothing and makes it follow the pointer,
   :mod:`streams.progress`) and moves the tree pointer to T. After
   :data:`SWITCH_ATTEMPTS` refusals under a heavy load it switches anyway: the
   worker then replays what T lacks before it applies anything more;
3. **switches the readers**: G is frozen now, so T is caught up to the high
   watermarks once more (then T holds at least all of G) and ``P:gen`` is set to
   T: every reader's next request reads T. Between 2 and 3 readers see G frozen,
   never a partial T, and never a total lower than one they saw;
4. **drops** every other generation, :data:`DROP_GRACE_S` later (SCAN + UNLINK in
   chunks; redis-py splits an UNLINK by slot on Redis Cluster).

Safe to interrupt anywhere: the pointers move only in 2 and 3; a run that stops
in 1 leaves a partial T that the next run resumes (readers and worker never look
at it); a run that stops in 2 or 3 leaves readers on G (its trees frozen, so the
figures stand still but are never wrong) until the next run finishes the switch;
a run that stops in 4 leaves garbage the next run drops. One rebuild runs at a
time (``P:rebuild``, a lock with a TTL, so a killed run does not block the next
for long).

Redis Cluster: every write of a tree, in both generations, carries the tree's
hash tag, so the build and the switch are single-slot; the readers' pointer is
one key, set with one SET. The steps are the same on one node and on a cluster.

The rebuild re-sends no dead letters (the compacted dead-letter topic already
holds them, keyed by source coordinates) and no totals (the worker publishes a
key when it next changes, with a version above every earlier one).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rekap.errors import KafkaUnavailable, RekapError
from rekap.kafkaconn import admin_client, reader, unavailable
from rekap.names import Keys
from rekap.settings import Settings

T = TypeVar("T")

#: Keys per UNLINK when dropping a generation: bounded, so Redis never blocks on one call.
UNLINK_CHUNK = 500
#: Writer switches refused (the new generation behind the live worker) before switching anyway.
SWITCH_ATTEMPTS = 20
#: Seconds between moving the readers' pointer and dropping the old generation: a request
#: that resolved the pointer just before it moved still finds its keys (requests take ms).
DROP_GRACE_S = 2.0
#: TTL of the rebuild lock; refreshed while the rebuild runs. A killed rebuild blocks the
#: next one at most this long.
LOCK_TTL_MS = 10_000
LOCK_REFRESH_S = 2.0

#: Extends the lock only if it is still ours.
_REFRESH: str = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: str = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RebuildBusy(RekapError):
    """Another ``rekap rebuild`` holds the lock."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised at the next point where stopping is safe."""


@dataclass
class RebuildResult:
    #: The readers' generation before and after.
    old_generation: int
    generation: int
    applied_records: int
    keys_removed: int
    #: Trees switched although the new generation was behind the worker (heavy load).
    forced_trees: int = 0


class Reporter:
    """Where a rebuild shows its progress: a rich bar on stderr, or nothing (``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} rec/s" if speed else "– rec/s", style="cyan")

        self.console = Console(stderr=True, quiet=quiet)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), RateColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), TimeElapsedColumn(),
                                  console=self.console, disable=quiet, transient=False)
        self._task: Any = None

    def __enter__(self) -> Reporter:
        self._progress.start()
        self._task = self._progress.add_task("membangun ulang / rebuilding", total=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def more(self, records: int) -> None:
        """``records`` more records to fold."""
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=(task.total or 0) + records)

    def advance(self, records: int) -> None:
        self._progress.advance(self._task, records)

    def say(self, text: str) -> None:
        self._progress.console.print(f"rebuild: {text}", markup=False, highlight=False)


class Lock:
    """``P:rebuild``: one rebuild at a time; expires if its holder dies."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.key = keys.rebuild_lock()
        self.token = secrets.token_hex(8)
        self._refreshed = 0.0

    async def acquire(self, wait_s: float, say: Callable[[str], None]) -> None:
        deadline = time.monotonic() + wait_s
        told = False
        while not await self.client.set(self.key, self.token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() > deadline:
                raise RebuildBusy(f"another `rekap rebuild` holds {self.key}; try again when it "
                                  "has finished")
            if not told:
                say(f"waiting for another rebuild ({self.key}) to finish or expire")
                told = True
            await asyncio.sleep(0.5)
        self._refreshed = time.monotonic()

    async def refresh(self) -> None:
        if time.monotonic() - self._refreshed < LOCK_REFRESH_S:
            return
        if not await self.client.eval(_REFRESH, 1, self.key, self.token, LOCK_TTL_MS):
            raise RebuildBusy(f"lost {self.key} (the rebuild stalled for over "
                              f"{LOCK_TTL_MS / 1000:.0f}s); run `rekap rebuild` again")
        self._refreshed = time.monotonic()

    async def release(self) -> None:
        await self.client.eval(_RELEASE, 1, self.key, self.token)


def generation_of_key(key: str, base: Keys) -> int | None:
    """The generation a data key belongs to; None for the pointers, the lock and any key
    rekap's layout does not name (those are never dropped)."""
    head = base.prefix + ":"
    if not key.startswith(head):
        return None
    rest = key[len(head):]
    if rest.startswith("{"):
        return None if rest.endswith("}:gen") else 0
    match = re.match(r"g(\d+):\{", rest)
    return int(match.group(1)) if match else None


class Rebuild:
    """One run of ``rekap rebuild`` (see the module docstring); :meth:`run` does it all."""

    def __init__(self, settings: Settings, client: Any, report: Reporter) -> None:
        from rekap.registry import load_registry
        from streams.apply import Applier
        from streams.progress import LedgerReader, known_roots

        self.settings = settings
        self.client = client
        self.report = report
        self.registry = load_registry(settings.registry_path)
        self.roots = known_roots(self.registry)
        self.base = Keys(settings.redis_prefix)
        self.reader = LedgerReader(settings, settings.batch_max)
        self.applier = Applier(client, settings)
        self.lock = Lock(client, self.base)
        self.next: dict[int, int] = {}
        self.applied = 0
        #: Set by SIGINT/SIGTERM. Checked between chunks rather than cancelling the task:
        #: a cancellation can be swallowed by a racing ``asyncio.wait_for`` (Python < 3.12)
        #: in the clients, and the switch is better finished than left half-way.
        self.stop = asyncio.Event()
        self._switching = False

    def check(self) -> None:
        if self.stop.is_set() and not self._switching:
            raise Interrupted

    async def run(self) -> RebuildResult:
        from rekap.generations import generation_of

        await self.lock.acquire(LOCK_TTL_MS / 1000 + 5, self.report.say)
        try:
            replies = await self._pipeline([("get", self.base.pointer())]
                                           + [("get", self.base.tree_pointer(r)) for r in self.roots])
            old = generation_of(replies[0])
            trees = [generation_of(v) for v in replies[1:] if v is not None]
            # A tree already past the readers: an earlier run stopped while switching.
            target = max([g for g in trees if g > old], default=old + 1)
            new_keys = self.base.at(target)
            self.applier.keys = new_keys
            self.report.say(f"generation {old} → {target} (key prefix {new_keys.namespace()}:)")
            await self.resume_from(new_keys)
            await self.catch_up(new_keys)                               # 1. build
            self.check()
            self._switching = True  # a few quick calls: done whole, even when asked to stop
            forced = await self.switch_writer(old, target, new_keys)    # 2. writer
            await self.catch_up(new_keys)                               # 3. readers
            await self.client.set(self.base.pointer(), str(target))
            self._switching = False
            self.report.say(f"readers switched to generation {target}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), DROP_GRACE_S)
            self.check()
            removed = await self.drop_except(target)                    # 4. drop
            self.report.say(f"dropped {removed} keys of other generations")
            return RebuildResult(old, target, self.applied, removed, forced)
        finally:
            try:
                await self.lock.release()
            finally:
                await self.reader.close()

    async def _pipeline(self, calls: list[tuple[str, str]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for name, key in calls:
                getattr(pipe, name)(key)
            return list(await pipe.execute())

    async def resume_from(self, keys: Keys) -> None:
        """Where the build resumes per partition: the lowest fence over all trees + 1."""
        from streams.progress import read_fences

        ends = await self.reader.ends()
        fences = await read_fences(self.client, self.settings, self.roots, list(ends), keys)
        self.next = {p: min(fences[p].values(), default=-1) + 1 for p in ends}
        if any(self.next.values()):
            self.report.say("resuming a generation an earlier run began: "
                            + ", ".join(f"p{p}@{o}" for p, o in sorted(self.next.items())))

    async def catch_up(self, keys: Keys) -> int:
        """Fold every partition from where the build stands to the current high watermark."""
        from streams.batch import plan_batch

        ends = await self.reader.ends()
        todo = {p: e for p, e in ends.items() if e > self.next.get(p, 0)}
        self.report.more(sum(e - self.next.get(p, 0) for p, e in todo.items()))
        folded = 0
        for partition, stop in sorted(todo.items()):
            start = self.next.get(partition, 0)
            read = 0
            async for chunk in self.reader.read(partition, start, stop):
                plan = plan_batch(chunk, self.registry, keys, fence_roots=self.roots)
                await self.applier.apply(plan)
                self.next[partition] = chunk[-1].offset + 1
                read += len(chunk)
                self.report.advance(len(chunk))
                await self.lock.refresh()
                self.check()
            # Offsets below the log start (retention) or holding no record (transaction
            # markers) are never read: they count as done.
            self.report.advance(stop - start - read)
            self.next[partition] = stop
            folded += read
        self.applied += folded
        return folded

    async def switch_writer(self, old: int, target: int, new_keys: Keys) -> int:
        """Switch every tree's writes to ``target`` (step 2); return how many were forced."""
        from importlib.resources import files

        source = files("streams").joinpath("lua", "switch_tree.lua").read_text(encoding="utf-8")
        script = self.client.register_script(source)
        old_keys = self.base.at(old)
        topic = self.settings.topic_sales
        pending = list(self.roots)
        forced = 0
        for attempt in range(SWITCH_ATTEMPTS + 1):
            force = attempt == SWITCH_ATTEMPTS
            if attempt:
                await self.catch_up(new_keys)
            waiting = []
            for root in pending:
                events = sorted(e for e in self.registry.events if self.registry.root(e) == root)
                keys = [self.base.tree_pointer(root), old_keys.fence(root, topic),
                        new_keys.fence(root, topic)]
                for e in events:
                    keys += [old_keys.event_totals(root, e), new_keys.event_totals(root, e),
                             old_keys.board(root, e)]
                reply = [v.decode() if isinstance(v, bytes) else str(v) for v in await script(
                    keys=keys, args=[old, target, old, len(self.next), "1" if force else "0"])]
                if reply[0] == "behind":
                    waiting.append(root)
                elif reply[0] == "other":
                    raise RekapError(f"tree {root} is on generation {reply[1]}, neither {old} nor "
                                     f"{target}: was {self.base.tree_pointer(root)} edited?")
                elif force and reply[0] == "switched":
                    forced += 1
            pending = waiting
            if not pending:
                break
        self.report.say(f"worker switched to generation {target}"
                        + (f" ({forced} trees while it was ahead; it replays the gap)"
                           if forced else ""))
        return forced

    async def drop_except(self, keep: int) -> int:
        """UNLINK every data key of a generation other than ``keep``, in chunks."""
        doomed: list[str] = []
        removed = 0
        async for raw in self.client.scan_iter(match=self.base.pattern(), count=1000):
            key = raw.decode() if isinstance(raw, bytes) else raw
            generation = generation_of_key(key, self.base)
            if generation is not None and generation != keep:
                doomed.append(key)
            if len(doomed) >= UNLINK_CHUNK:
                removed += await self.client.unlink(*doomed)
                doomed.clear()
                await self.lock.refresh()
                self.check()
        if doomed:
            removed += await self.client.unlink(*doomed)
        return removed


def rebuild(settings: Settings, *, quiet: bool = False) -> RebuildResult:
    """Run ``rekap rebuild`` (see the module docstring); the worker may keep running."""
    from rekap.redisconn import REDIS_ERRORS, connect
    from rekap.redisconn import unavailable as redis_unavailable

    async def main(report: Reporter) -> RebuildResult:
        client = connect(settings)
        job = Rebuild(settings, client, report)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, job.stop.set)
        try:
            return await job.run()
        except REDIS_ERRORS as exc:
            raise redis_unavailable(settings, exc, "rebuilding") from exc
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await client.aclose()

    with Reporter(quiet) as report:
        try:
            return asyncio.run(main(report))
        except Interrupted:
            raise KeyboardInterrupt from None


async def apply_all(settings: Settings, records: list[Any]) -> int:
    """Apply ``records`` to the readers' generation through the worker's planner and script,
    here, without a worker (tests and tools that load Redis from a topic they read)."""
    from rekap.generations import current_keys
    from rekap.redisconn import connect
    from rekap.registry import load_registry
    from streams.apply import Applier
    from streams.batch import plan_batch
    from streams.progress import known_roots

    registry = load_registry(settings.registry_path)
    client = connect(settings)
    try:
        keys = await current_keys(client, Keys(settings.redis_prefix))
        applier = Applier(client, settings)
        applier.keys = keys
        for start in range(0, len(records), settings.batch_max):
            await applier.apply(plan_batch(records[start:start + settings.batch_max], registry,
                                           keys, fence_roots=known_roots(registry)))
    finally:
        await client.aclose()
    return len(records)


# -- consumer group helpers (the worker's tests use them) ------------------------------------

#: A group coordinator is not available for a few seconds after a broker starts
#: (the offsets topic is being created) or moves; such errors are retried this long.
COORDINATOR_WAIT_S = 15.0


def retrying(call: Callable[[], T], timeout_s: float = COORDINATOR_WAIT_S) -> T:
    """Run a Kafka admin ``call``, retrying errors Kafka marks retriable until ``timeout_s``."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def active_members(settings: Settings) -> int:
    """How many members the worker's consumer group has right now."""
    with (unavailable(f"describing group {settings.app_id}", settings),
          admin_client(settings, "rebuild") as admin):
        groups = retrying(lambda: admin.describe_groups([settings.app_id]))
        group = groups.get(settings.app_id) or {}
        return len(group.get("members") or [])


def commit_offsets(settings: Settings, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition → next offset to read) for the worker's group."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    with (unavailable(f"committing offsets for group {settings.app_id}", settings),
          admin_client(settings, "rebuild") as admin):
        result = retrying(lambda: admin.alter_group_offsets(settings.app_id, {
            TopicPartition(settings.topic_sales, p): OffsetAndMetadata(o, "rekap", -1)
            for p, o in offsets.items()}))
    failed = {tp: err for tp, err in result.items() if err.__name__ != "NoError"}
    if failed:
        raise KafkaUnavailable(f"committing offsets for group {settings.app_id} failed: {failed} "
                               "(is a worker still running?)")


def beginning_offsets(settings: Settings) -> dict[int, int]:
    from kafka import TopicPartition

    with (unavailable(f"looking up the beginning offsets of {settings.topic_sales}", settings),
          reader(settings, "rebuild") as consumer):
        parts = [TopicPartition(settings.topic_sales, p)
                 for p in sorted(consumer.partitions_for_topic(settings.topic_sales) or [])]
        return {tp.partition: o for tp, o in consumer.beginning_offsets(parts).items()}
