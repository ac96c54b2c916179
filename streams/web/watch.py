"""``rekap watch EVENT``: the live leaderboard in a terminal (rich), in Bahasa Indonesia.

Reads the same snapshot as the venue screen (:func:`streams.web.queries.snapshot`),
so the numbers and their formatting match the page and the API.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rekap.generations import current_keys_sync
from rekap.names import Keys
from rekap.redisconn import REDIS_ERRORS, connect_sync, unavailable
from rekap.registry import RegistrySource
from rekap.settings import Settings
from streams.web import queries

#: Seconds between refreshes of the live view.
REFRESH_S = 1.0


def render(snap: dict[str, Any], now: str = "") -> Group:
    """One frame: the event header, the totals, the leaderboard and the latest sales."""
    head = Text.assemble((snap["name"], "bold yellow"), "  ", (snap["venue"], "dim"))
    totals = Table.grid(padding=(0, 4))
    totals.add_row(
        Text.assemble(("Total Penjualan  ", "bold"), (snap["total_text"], "bold green"),
                      (f"  ({snap['total_exact']})", "dim")),
        Text.assemble(("Transaksi  ", "bold"), snap["count_text"]),
        Text.assemble(("IKM terjual  ", "bold"), f"{snap['ranked_ikm']} / {snap['ikm_count']}"),
    )
    board = Table(title="Papan Peringkat", title_style="bold yellow", expand=True)
    board.add_column("#", justify="right", style="bold")
    board.add_column("IKM")
    board.add_column("Penjualan", justify="right", style="green")
    board.add_column("Persis", justify="right", style="dim")
    board.add_column("Transaksi", justify="right")
    board.add_column("Pangsa", justify="right")
    for row in snap["leaderboard"]:
        board.add_row(str(row["rank"]), row["name"], row["amount_text"], row["amount_exact"],
                      f"{row['count']:,}".replace(",", "."), row["share_pct"])
    if not snap["leaderboard"]:
        board.add_row("", "Belum ada penjualan.", "", "", "", "")
    ticker = Table(title="Penjualan Terbaru", title_style="bold yellow", expand=True, show_header=False)
    ticker.add_column("waktu", style="dim")
    ticker.add_column("IKM")
    ticker.add_column("jumlah", justify="right")
    ticker.add_column("kanal", style="dim")
    for item in snap["ticker"][:5]:
        style = "red" if item["kind"] == "refund" else "green"
        ticker.add_row(item["time"], item["name"], Text(item["amount_text"], style=style),
                       item["channel_label"])
    footer = Text(f"Diperbarui {now}" if now else "", style="dim")
    return Group(Panel(Group(head, totals)), board, ticker, footer)


def watch(settings: Settings, event_id: str, *, once: bool = False, limit: int = 10,
          console: Console | None = None) -> int:
    """Print one frame (``once``) or refresh the view every second until Ctrl-C."""

    console = console or Console()
    source = RegistrySource(settings.registry_path)
    keys = Keys(settings.redis_prefix)
    client = connect_sync(settings, socket_timeout=5, socket_connect_timeout=5)

    def frame() -> Group:
        try:
            # Per frame: a rebuild moves the generation (rekap.generations).
            reader = queries.Reader(current_keys_sync(client, keys), source.current())
            snap = queries.run_sync(client, queries.snapshot(reader, event_id, limit=limit))
        except REDIS_ERRORS as exc:
            raise unavailable(settings, exc, "reading the leaderboard") from exc
        return render(snap, time.strftime("%H.%M.%S"))

    try:
        if once:
            console.print(frame())
            return 0
        with Live(frame(), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(REFRESH_S)
                live.update(frame())
    finally:
        client.close()
