"""The booth's outbox: every sale captured goes to SQLite first, then to ingest.

Why SQLite in WAL mode with ``synchronous=FULL``: a sale committed here survives
a killed process and a power cut; each write is one transaction, so a crash
leaves a sale either fully recorded or not at all. The ``sale_id`` (a ULID) is
minted at capture and stored with the sale, so however often ``sync`` sends it
again after a crash, downstream counts it once.

States: ``pending`` → ``sent`` (ingest acknowledged: Kafka has it) or
``rejected`` (ingest said 4xx, with the reason: retrying cannot help).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rekap.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    sale_id     TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'rejected')),
    created_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT,
    reason      TEXT,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, seq);
"""


@dataclass(frozen=True)
class Pending:
    seq: int
    sale_id: str
    payload: dict[str, Any]


def default_path(runtime_dir: Path, booth_id: str) -> Path:
    """Where a booth's outbox lives unless ``--outbox`` says otherwise."""
    return runtime_dir / "booth" / f"{booth_id}.sqlite3"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Outbox:
    """A SQLite outbox file; one per process, used by one thread at a time."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open the outbox at ``path``.

        ``create=True`` (``rekap booth record``) makes the file and its folder when missing.
        ``create=False`` (``sync``, ``status``) opens only an outbox that already exists and
        raises :class:`ConfigError` naming the path otherwise, so a mistyped booth id fails
        instead of showing an empty outbox.
        """
        self.path = path
        if not create and not path.is_file():
            raise ConfigError(f"no booth outbox at {path}: check --booth-id / --outbox "
                              "(`rekap booth record` creates it with the first sale)")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                target, uri = str(path), False
            else:  # mode=rw: SQLite itself refuses to create the file if it vanished meanwhile
                target, uri = path.resolve().as_uri() + "?mode=rw", True
            self._db = sqlite3.connect(target, timeout=30, isolation_level=None,
                                       check_same_thread=False, uri=uri)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the booth outbox {path}: {exc} "
                              "(check the path and free disk space, or pass --outbox)") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def record(self, sale: dict[str, Any]) -> bool:
        """Store one sale (one transaction). False if its sale_id is already stored."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (sale_id, payload, created_at) VALUES (?, ?, ?)",
                (sale["sale_id"], json.dumps(sale, separators=(",", ":"), ensure_ascii=False), _now()))
            return cur.rowcount == 1

    def pending(self, limit: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT seq, sale_id, payload FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
            (limit,)).fetchall()
        return [Pending(seq, sid, json.loads(payload)) for seq, sid, payload in rows]

    def attempted(self, sale_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, updated_at = ? WHERE sale_id = ?",
                           [(_now(), s) for s in sale_ids])

    def mark_sent(self, sale_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET state = 'sent', updated_at = ?, reason = NULL, detail = NULL "
                "WHERE sale_id = ? AND state = 'pending'", [(_now(), s) for s in sale_ids])

    def mark_rejected(self, rejections: Iterable[tuple[str, str, str]]) -> None:
        """``(sale_id, reason, detail)`` triples: ingest refused them for good (4xx)."""
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET state = 'rejected', updated_at = ?, reason = ?, detail = ? "
                "WHERE sale_id = ? AND state = 'pending'",
                [(_now(), reason, detail, s) for s, reason, detail in rejections])

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "sent": 0, "rejected": 0}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            out[state] = n
        return out

    def amounts(self) -> dict[str, int]:
        """Net whole rupiah per state: a sale adds its ``amount_idr``, a refund subtracts it.

        Booth staff reconcile the cash box against this, so a Rp125.000 sale and its full
        refund net to Rp0 (and a refund whose sale is in another state can make one negative).
        """
        out = {"pending": 0, "sent": 0, "rejected": 0}
        for state, total in self._db.execute(
                "SELECT state, SUM(CASE json_extract(payload, '$.kind') WHEN 'refund' "
                "THEN -json_extract(payload, '$.amount_idr') "
                "ELSE json_extract(payload, '$.amount_idr') END) FROM outbox GROUP BY state"):
            out[state] = int(total or 0)
        return out

    def refunds(self) -> dict[str, int]:
        """How many of each state's records are refunds (already subtracted in :meth:`amounts`)."""
        out = {"pending": 0, "sent": 0, "rejected": 0}
        for state, n in self._db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE json_extract(payload, '$.kind') = 'refund' "
                "GROUP BY state"):
            out[state] = n
        return out

    def rejected(self, limit: int = 20) -> list[tuple[str, str, str]]:
        return list(self._db.execute(
            "SELECT sale_id, reason, detail FROM outbox WHERE state = 'rejected' "
            "ORDER BY seq DESC LIMIT ?", (limit,)))
