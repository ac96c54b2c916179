"""Past one machine: the programme streamed over Redis Cluster, Sentinel, three Kafka brokers
and three workers, with a node SIGKILLed mid-stream; after each, Redis equals the ground truth.

Every scenario is :class:`tests.faults.harness.Scenario` (the fault suite's checks: totals,
day buckets, leaderboards, counters, dead letters, ``rekap reconcile``) on a private
multi-node stack (``tests/scale/conftest.py``). The topology decides only where data
lives and which process dies; the promise checked is the same exactness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode
from redis.crc import key_slot

from rekap.errors import ConfigError
from rekap.redisconn import SyncClient, check_eviction_policy, connect_sync
from rekap.settings import Settings
from streams.script import script_source
from tests.faults.harness import ROOT, PrivateStack, Row, Scenario, Size
from tests.support.procs import wait_until

pytestmark = [pytest.mark.scale, pytest.mark.stack, pytest.mark.reliability]

#: How long a replica may take to be promoted (measured ~3 s; cluster-node-timeout 2 s,
#: down-after-milliseconds 2 s) before the scenario fails.
PROMOTION_TIMEOUT_S = 30
#: The issue's bound on a stall when one of three brokers dies.
BROKER_STALL_LIMIT_S = 30
#: The largest simulator scale of the ingest scenario (~9,400 records).
INGEST_SCALE = 0.3


# ------------------------------------------------------------------------------- helpers --

def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)


def slot_owner(stack: PrivateStack, slot: int, dead: int | None = None) -> int | None:
    """The port of the primary that serves ``slot``, as the first live node's CLUSTER NODES
    says (not ``dead``, whose own view is gone; the others name it until they flag it FAIL)."""
    for port in stack.redis_ports:
        if port == dead:
            continue
        try:
            with _node(port) as node:
                text = node.execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            continue
        text = text.decode() if isinstance(text, bytes) else str(text)
        for line in text.splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(fields[1].split(":")[1].split("@")[0])
    return None


def programme_primary(sc: Scenario, stack: PrivateStack) -> tuple[int, int]:
    """(slot, primary's port) of the programme's tree: every key of it shares that slot."""
    slot = key_slot(sc.keys.stats(ROOT).encode())
    primary = slot_owner(stack, slot)
    assert primary is not None, f"no primary serves slot {slot}"
    return slot, primary


def replicas_of(stack: PrivateStack, primary: int) -> list[int]:
    """Ports of the replicas of the primary on ``primary``, from its CLUSTER NODES."""
    with _node(primary) as node:
        text = node.execute_command("CLUSTER", "NODES")
    lines = [line.split() for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines()]
    (me,) = [f[0] for f in lines if "myself" in f[2]]
    return [int(f[1].split(":")[1].split("@")[0]) for f in lines if f[3] == me]


def sentinel_primary(stack: PrivateStack) -> int | None:
    """The primary's port as a majority of the sentinels name it (None while they disagree)."""
    votes: Counter[int] = Counter()
    for port in stack.sentinel_ports:
        try:
            with _node(port) as sentinel:
                addr = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "rekap")
        except redis.RedisError:
            continue
        if addr:
            votes[int(addr[1])] += 1
    if not votes:
        return None
    port, n = votes.most_common(1)[0]
    return port if n >= 2 else None


def has_script(port: int) -> bool:
    """Whether the node on ``port`` has the apply script cached (SCRIPT EXISTS)."""
    sha = hashlib.sha1(script_source().encode(), usedforsecurity=False).hexdigest()
    with _node(port) as node:
        return bool(node.script_exists(sha)[0])


@contextmanager
def cut_off(replicas: list[int]) -> Iterator[None]:
    """Replicas that stop receiving their primary's writes until the block ends: their
    link is killed and a wrong password keeps it down (a SIGSTOP would not do: the kernel
    goes on buffering the replication stream for the stopped process)."""
    saved = {}
    try:
        for port in replicas:
            with _node(port) as node:
                saved[port] = node.config_get("masterauth").get("masterauth", "")
                node.config_set("masterauth", "not-the-password")
                node.client_kill_filter(_type="master")
        for port in replicas:
            with _node(port) as node:
                wait_until(lambda node=node: node.info("replication")
                           .get("master_link_status") == "down", 10,
                           message=f"redis-{port}'s link down")
        yield
    finally:
        for port, auth in saved.items():
            with _node(port) as node:
                node.config_set("masterauth", auth)


def acknowledged_by_primary_alone(sc: Scenario, records: int = 100) -> None:
    """Wait until the worker has applied ``records`` more (the primary acknowledged them)."""
    before = sc.counted()
    wait_until(lambda: sc.counted() >= before + records, 60,
               message=f"{records} records acknowledged by the primary alone")


def healed(sc: Scenario) -> bool:
    """Whether a worker noticed that Redis lost acknowledged writes and re-applied them."""
    return any("Redis holds the ledger only below offset" in w.log_text() for _, w in sc.history)


def forget_scripts(port: int) -> None:
    """Empty the script cache of a just-promoted node (as if it had restarted since the
    script was loaded; a replica may or may not have it): the worker's next call meets
    NOSCRIPT and must load the script again, not fail the batch."""
    with _node(port) as node:
        node.script_flush()
    assert not has_script(port)


def busiest_broker(settings: Settings) -> int:
    """The node id of the broker leading most partitions of the sales topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    try:
        (topic,) = admin.describe_topics([settings.topic_sales])
    finally:
        admin.close()
    leaders = Counter(p["leader_id"] for p in topic["partitions"])
    return leaders.most_common(1)[0][0]


# -------------------------------------------------------------------------- Redis Cluster --

@pytest.mark.scale_default
def test_a_key_outside_the_trees_slot_is_refused_on_redis_cluster(cluster_stack: PrivateStack) -> None:
    """The apply script's ``#!lua`` shebang: Redis Cluster refuses a key in another slot than
    the declared ones even when both live on the same node (without it the write passes)."""
    declared = "scale:{t}:a"
    slot = key_slot(declared.encode())
    port = slot_owner(cluster_stack, slot)
    assert port is not None
    # Another tree's key that lives on the same node, in another slot.
    other = next(f"scale:{{t{i}}}:b" for i in range(1000)
                 if key_slot(f"scale:{{t{i}}}:b".encode()) != slot
                 and slot_owner(cluster_stack, key_slot(f"scale:{{t{i}}}:b".encode())) == port)
    script = "redis.call('SET', KEYS[1], 1) return redis.call('SET', ARGV[1], 1)"
    with _node(port) as node:
        try:
            assert node.eval(script, 1, declared, other)  # no shebang: written, and stranded
            with pytest.raises(redis.ResponseError, match="do not hash to the same slot"):
                node.eval("#!lua\n" + script, 1, declared, other)
        finally:
            node.delete(declared)
            node.delete(other)


@pytest.mark.scale_default
def test_every_cluster_node_must_refuse_eviction(cluster_stack: PrivateStack) -> None:
    """The worker's start-up check asks every node, replicas too: a replica that may evict
    is tomorrow's primary that may drop an offset fence."""
    settings = Settings(redis_url=cluster_stack.redis_url)

    def knows_a_replica() -> tuple[SyncClient, ClusterNode] | None:
        # Right after the cluster formed, nodes may still disagree on who replicates whom:
        # a client's slot map lists a replica once the node it asked has gossiped it.
        fresh = connect_sync(settings)
        known = [n for n in fresh.get_nodes() if n.server_type == "replica"]
        if known:
            return fresh, known[0]
        fresh.close()
        return None

    client, replica = wait_until(knows_a_replica, PROMOTION_TIMEOUT_S,
                                 message="a replica in a client's slot map")
    try:
        check_eviction_policy(client, settings)
        with _node(replica.port) as node:
            node.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(ConfigError, match=f"{replica.port}.*allkeys-lru"):
            check_eviction_policy(client, settings)
    finally:
        with _node(replica.port) as node:
            node.config_set("maxmemory-policy", "noeviction")
        client.close()


@pytest.mark.scale_default
def test_acknowledged_writes_lost_in_a_cluster_failover_heal(
        cluster_stack: PrivateStack, scale_size: Size, scale_rows: list[Row], tmp_path: Path) -> None:
    """Replication is asynchronous: cut the programme's replica off its primary while the
    primary acknowledges batches, SIGKILL the primary, let the replica be promoted without
    those writes. The worker must notice its fences fell back and re-apply from the ledger."""
    with Scenario("Redis Cluster: failover loses acked writes", cluster_stack, scale_size, 203,
                  tmp_path, scale_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.5))
        slot, primary = programme_primary(sc, cluster_stack)
        (replica,) = replicas_of(cluster_stack, primary)
        with cut_off([replica]):
            sc.mark_fault(f"redis-{replica} cut off its primary")
            acknowledged_by_primary_alone(sc)
            sc.kill_service(f"redis-{primary}")
        wait_until(lambda: slot_owner(cluster_stack, slot, dead=primary) == replica,
                   PROMOTION_TIMEOUT_S, message=f"redis-{replica} promoted for slot {slot}")
        sc.mark_fault(f"redis-{replica} promoted")
        cluster_stack.up()
        sc.finish()
        assert healed(sc), "no acknowledged write was lost: the scenario tested nothing"


def test_programme_exact_on_redis_cluster_with_a_primary_sigkilled(
        cluster_stack: PrivateStack, scale_size: Size, scale_rows: list[Row], tmp_path: Path) -> None:
    """SIGKILL the primary that holds the programme's tree mid-stream: its replica is promoted,
    the worker rides the failover out, and the killed node rejoins as a replica."""
    with Scenario("Redis Cluster: primary SIGKILL", cluster_stack, scale_size, 201, tmp_path,
                  scale_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        slot, primary = programme_primary(sc, cluster_stack)
        sc.kill_service(f"redis-{primary}")
        promoted = wait_until(
            lambda: (p := slot_owner(cluster_stack, slot, dead=primary)) != primary and p,
            PROMOTION_TIMEOUT_S, message=f"a replica promoted for slot {slot}")
        sc.mark_fault(f"redis-{promoted} promoted")
        forget_scripts(promoted)
        cluster_stack.up()  # the killed node comes back, as a replica of the promoted one
        sc.finish()
        assert has_script(promoted), "the worker never loaded the script on the promoted node"


def test_programme_exact_on_redis_cluster(cluster_stack: PrivateStack, scale_size: Size,
                                          scale_rows: list[Row], tmp_path: Path) -> None:
    """The seeded programme, resends, refunds and bad records included, exact on the cluster."""
    with Scenario("Redis Cluster: replay", cluster_stack, scale_size, 202, tmp_path,
                  scale_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.finish(exact_dead_letters=True)


# ------------------------------------------------------------------------------- Sentinel --

@pytest.mark.scale_default
def test_programme_exact_through_a_sentinel_failover(
        sentinel_stack: PrivateStack, scale_size: Size, scale_rows: list[Row], tmp_path: Path) -> None:
    """Cut both replicas off the Sentinel-managed primary, then SIGKILL it: the sentinels
    promote a replica and the worker follows. The stack's ``min-replicas-to-write 1`` makes
    the cut-off primary refuse writes (NOREPLICAS, retried by the worker) rather than
    acknowledge batches its replicas never get. The promoted node has no script cached;
    the old primary, restarted, is demoted to a replica."""
    with Scenario("Sentinel: failover, replicas cut off", sentinel_stack, scale_size, 301,
                  tmp_path, scale_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.5))
        primary = sentinel_primary(sentinel_stack)
        assert primary is not None, "the sentinels name no primary"
        replicas = [p for p in sentinel_stack.redis_ports if p != primary]
        with cut_off(replicas):
            sc.mark_fault("both replicas cut off the primary")
            time.sleep(2)  # the worker's batches meet NOREPLICAS meanwhile
            sc.kill_service(f"redis-{primary}")
        promoted = wait_until(lambda: (p := sentinel_primary(sentinel_stack)) != primary and p,
                              PROMOTION_TIMEOUT_S, message="the sentinels' failover")
        sc.mark_fault(f"redis-{promoted} promoted")
        forget_scripts(promoted)
        sentinel_stack.up()
        sc.finish()
        logs = "".join(w.log_text() for _, w in sc.history)
        assert "NOREPLICAS" in logs, "the cut-off primary went on acknowledging writes"
        assert has_script(promoted), "the worker never loaded the script on the promoted node"


def test_programme_exact_on_sentinel(sentinel_stack: PrivateStack, scale_size: Size,
                                     scale_rows: list[Row], tmp_path: Path) -> None:
    with Scenario("Sentinel: replay", sentinel_stack, scale_size, 302, tmp_path, scale_rows) as sc:
        sc.start_worker()
        sc.start_stream()
        sc.finish(exact_dead_letters=True)


# ------------------------------------------------------------------ three Kafka brokers --

def test_one_of_three_brokers_sigkilled_under_ingest(
        brokers_stack: PrivateStack, scale_size: Size, scale_rows: list[Row], tmp_path: Path) -> None:
    """Ingest and the worker run; the broker leading most sales partitions is SIGKILLed and
    restarted. Every sale ingest answered 202 is applied, none twice, no stall over 30 s."""
    # The simulator posts one request per run of same-sender records and waits for each 202
    # (acks from two of three brokers): ~100 records/s here, so a third of the programme.
    size = dataclasses.replace(scale_size, scale=min(scale_size.scale, INGEST_SCALE), rate=150)
    with Scenario("3 brokers: one SIGKILL, via ingest", brokers_stack, size, 401, tmp_path,
                  scale_rows, via="ingest") as sc:
        sc.start_worker()
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        broker = busiest_broker(sc.settings)
        sc.kill_service(f"kafka-{broker}")
        time.sleep(sc.rng.uniform(3, 6))
        brokers_stack.up()
        sc.mark_fault(f"kafka-{broker} restarted")
        sc.finish()
        assert sc.pause_s() <= BROKER_STALL_LIMIT_S, f"stalled {sc.pause_s():.1f}s"


def test_three_workers_one_sigkilled(brokers_stack: PrivateStack, scale_size: Size,
                                     scale_rows: list[Row], tmp_path: Path) -> None:
    """Three workers in one group share the 6 partitions; one is SIGKILLed and restarted."""
    with Scenario("3 workers: one SIGKILL", brokers_stack, scale_size, 402, tmp_path, scale_rows,
                  rate=scale_size.restart_rate) as sc:
        assert sc.settings.sales_partitions == 6
        for role in ("a", "b", "c"):
            sc.start_worker(role)
        sc.start_stream()
        sc.wait_progress(sc.rng.uniform(0.3, 0.6))
        sc.kill_worker("b")
        sc.start_worker("b")
        sc.finish()
